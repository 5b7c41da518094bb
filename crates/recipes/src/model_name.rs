//! The model families the recipes train, by their report names.

use anyhow::Context;
use kiln_models::{CellKind, KgScorer};
use std::str::FromStr;

/// The models `train-all` and `train` know, by their report names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelName {
    /// [`kiln_models::LinearRegression`] on a table.
    LinearRegression,
    /// [`kiln_models::LogisticRegression`] on IDX images.
    LogisticRegression,
    /// [`kiln_models::Mlp`] on IDX images.
    Mlp,
    /// [`kiln_models::Cnn`] on IDX images.
    Cnn,
    /// A vanilla RNN: [`kiln_models::SequenceClassifier`] on IDX images read row by row, or
    /// [`kiln_models::CharLm`] on a text file.
    Rnn,
    /// A GRU, on images read row by row or on text (as [`Self::Rnn`]).
    Gru,
    /// An LSTM, on images read row by row or on text (as [`Self::Rnn`]).
    Lstm,
    /// [`kiln_models::TransformerClassifier`] on IDX images read row by row.
    TransformerEncoder,
    /// [`kiln_models::TransformerLm`], a decoder-only character language model, on a text file.
    TransformerLm,
    /// [`kiln_models::Seq2Seq`], an encoder–decoder Transformer, on sentence pairs (translation).
    TransformerSeq2Seq,
    /// The copy-the-source baseline of translation: the source sentence as its own translation.
    CopySource,
    /// [`kiln_models::KgEmbedding`] with TransE scores, on a knowledge graph.
    TransE,
    /// [`kiln_models::KgEmbedding`] with DistMult scores, on a knowledge graph.
    DistMult,
}

impl ModelName {
    /// Every model, in report order.
    pub const ALL: [ModelName; 13] = [
        Self::LinearRegression,
        Self::LogisticRegression,
        Self::Mlp,
        Self::Cnn,
        Self::Rnn,
        Self::Gru,
        Self::Lstm,
        Self::TransformerEncoder,
        Self::TransformerLm,
        Self::TransformerSeq2Seq,
        Self::CopySource,
        Self::TransE,
        Self::DistMult,
    ];

    /// The scoring function of a knowledge-graph model.
    pub fn kg_scorer(self) -> Option<KgScorer> {
        match self {
            Self::TransE => Some(KgScorer::TransE),
            Self::DistMult => Some(KgScorer::DistMult),
            _ => None,
        }
    }

    /// The recurrent cell of a recurrent model.
    pub fn cell(self) -> Option<CellKind> {
        match self {
            Self::Rnn => Some(CellKind::Rnn),
            Self::Gru => Some(CellKind::Gru),
            Self::Lstm => Some(CellKind::Lstm),
            _ => None,
        }
    }

    /// Translation models (and the copy baseline), which read sentence pairs.
    pub fn translates(self) -> bool {
        matches!(self, Self::TransformerSeq2Seq | Self::CopySource)
    }

    /// Models that read images as sequences of rows (sequential MNIST by default).
    pub fn reads_rows(self) -> bool {
        self.cell().is_some() || self == Self::TransformerEncoder
    }

    /// The hyper-parameter families ([`crate::Hyper::family`]) a recipe of this model may give.
    pub fn families(self) -> &'static [&'static str] {
        match self {
            Self::LinearRegression => &["linear_regression"],
            Self::LogisticRegression => &["logistic_regression"],
            Self::Mlp => &["mlp"],
            Self::Cnn => &["cnn"],
            Self::Rnn | Self::Gru | Self::Lstm => &["row_classifier", "char_lm"],
            Self::TransformerEncoder => &["row_transformer"],
            Self::TransformerLm => &["transformer_lm"],
            Self::TransformerSeq2Seq => &["translation"],
            Self::CopySource => &["copy_source"],
            Self::TransE | Self::DistMult => &["kg_embedding"],
        }
    }

    /// The snake_case report name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LinearRegression => "linear_regression",
            Self::LogisticRegression => "logistic_regression",
            Self::Mlp => "mlp",
            Self::Cnn => "cnn",
            Self::Rnn => "rnn",
            Self::Gru => "gru",
            Self::Lstm => "lstm",
            Self::TransformerEncoder => "transformer_encoder",
            Self::TransformerLm => "transformer_lm",
            Self::TransformerSeq2Seq => "transformer_seq2seq",
            Self::CopySource => "copy_source",
            Self::TransE => "transe",
            Self::DistMult => "distmult",
        }
    }
}

impl FromStr for ModelName {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .with_context(|| {
                let names: Vec<_> = Self::ALL.iter().map(|m| m.as_str()).collect();
                format!("unknown model `{s}`; known models: {}", names.join(", "))
            })
    }
}

impl serde::Serialize for ModelName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ModelName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}
