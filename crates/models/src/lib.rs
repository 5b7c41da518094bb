//! Kiln's model families, one file each: a serde config, a burn `Module`, `forward` with its shapes, a
//! `predict` path, and the [`kiln_core::Supervised`] step the learner trains.
//!
//! | model | file | loss | learner output |
//! |---|---|---|---|
//! | linear regression | [`linear_regression`] | MSE | `RegressionOutput` |
//! | logistic regression, binary or multinomial | [`logistic_regression`] | BCE / cross-entropy | `ClassificationOutput` |
//! | multi-layer perceptron | [`mlp`] | cross-entropy | `ClassificationOutput` |
//! | convolutional network (and LeNet-5) | [`cnn`] | cross-entropy | `ClassificationOutput` |
//! | RNN / GRU / LSTM sequence classifier | [`recurrent::classifier`] | cross-entropy | `ClassificationOutput` |
//! | RNN / GRU / LSTM character language model | [`recurrent::char_lm`] | cross-entropy per step | `ClassificationOutput` |
//! | Transformer encoder classifier | [`transformer::classifier`] | cross-entropy | `ClassificationOutput` |
//! | Transformer (decoder-only) character language model | [`transformer::lm`] | cross-entropy per step | `ClassificationOutput` |
//! | Transformer encoder–decoder (translation) | [`transformer::seq2seq`] | cross-entropy per target token | `ClassificationOutput` |
//! | TransE / DistMult knowledge-graph embeddings | [`kg`] | margin ranking / logistic, negative sampling | `LossOutput` |
#![warn(missing_docs)]

mod check;
pub mod cnn;
pub mod error;
pub mod hooks;
pub mod kg;
pub mod linear_regression;
pub mod logistic_regression;
pub mod mlp;
mod next_token;

pub use next_token::TextGenerator;
pub mod persist;
pub mod recurrent;
pub mod torch;
pub mod transformer;

pub use cnn::{Cnn, CnnConfig};
pub use error::ModelError;
pub use hooks::{HookedClassifier, Layer, LayerInputHook, NoHook};
pub use kg::{KgEmbedding, KgEmbeddingConfig, KgScorer, LinkRanks, link_prediction_ranks};
pub use linear_regression::{LinearRegression, LinearRegressionConfig};
pub use logistic_regression::{LogisticRegression, LogisticRegressionConfig};
pub use mlp::{Activation, Mlp, MlpConfig};
pub use recurrent::{
    CellKind, CharLm, CharLmConfig, GateActivations, Pooling, Recurrent, RecurrentConfig,
    RecurrentState, SequenceClassifier, SequenceClassifierConfig,
};
pub use transformer::{
    EncoderStackConfig, PositionKind, Seq2Seq, Seq2SeqConfig, TransformerClassifier,
    TransformerClassifierConfig, TransformerLm, TransformerLmConfig,
};

/// Checks that `found` matches `expected`, where `None` in `expected` accepts any size.
pub(crate) fn check_shape(
    model: &'static str,
    expected: &[Option<usize>],
    found: &[usize],
) -> Result<(), ModelError> {
    let ok = expected.len() == found.len()
        && expected
            .iter()
            .zip(found)
            .all(|(e, f)| e.is_none_or(|e| e == *f));
    if ok {
        Ok(())
    } else {
        let expected = expected
            .iter()
            .map(|e| e.map_or("_".to_string(), |v| v.to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        Err(ModelError::Shape {
            model,
            expected: format!("[{expected}]"),
            found: found.to_vec(),
        })
    }
}
