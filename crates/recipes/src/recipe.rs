//! A recipe as data: the model, its hyper-parameters, the data and its split, the training settings, the
//! smoke-run settings and the bar the report holds the result to. Every run folder saves its recipe as
//! `recipe.json`, and `cargo xtask train --recipe FILE.json` runs one again.

use crate::model_name::ModelName;
use crate::target::Target;
use kiln_models::EncoderStackConfig;
use kiln_train::TrainingConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a recipe file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The file could not be read.
    #[error("{path}: cannot read the recipe: {source}")]
    Read {
        /// The recipe file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a recipe (malformed JSON or a missing or mistyped field).
    #[error("{path}: not a Kiln recipe: {source}")]
    Parse {
        /// The recipe file.
        path: PathBuf,
        /// What serde found wrong, with its line and column.
        source: serde_json::Error,
    },
    /// The hyper-parameters belong to another family than the model.
    #[error(
        "recipe `{recipe}`: model `{model}` takes `{expected}` hyper-parameters, the recipe has `{found}`"
    )]
    WrongFamily {
        /// The recipe's name.
        recipe: String,
        /// The recipe's model.
        model: String,
        /// The families the model takes.
        expected: String,
        /// The family the recipe gives.
        found: String,
    },
    /// A setting that cannot train (zero epochs, an empty batch, a zero dimension…).
    #[error("recipe `{recipe}`: field `{field}` {problem}")]
    Invalid {
        /// The recipe's name.
        recipe: String,
        /// The field, as a JSON path.
        field: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// No recipe of the registry has this name.
    #[error("no recipe named `{name}`; the registry has: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The registry's names.
        known: String,
    },
}

/// Where a recipe's data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// A dataset vendored in the repository, by name (`mnist`, `seq_mnist`, `diabetes`, `shakespeare`,
    /// `kjv_rv1909`, `kinships`, `umls`, `nations`).
    Vendored(String),
    /// A user's file or folder (an IDX folder, a CSV/TSV table, a text file, a sentence-pair file, a folder of
    /// triple files), with the target column of a table (default: its last column).
    Path {
        /// The file or folder.
        path: PathBuf,
        /// The target column of a table.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
}

impl DataSource {
    /// The dataset's name in reports: the vendored name, or the snake-case stem of the user's path.
    pub fn name(&self) -> String {
        match self {
            Self::Vendored(name) => name.clone(),
            Self::Path { path, .. } => crate::runs::dataset_name(path),
        }
    }
}

/// The hyper-parameters of a model family (the sizes the data fixes — inputs, classes, vocabularies,
/// entities — are read from the data when the run starts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Hyper {
    /// Linear regression by full-batch gradient descent.
    LinearRegression,
    /// Softmax regression on pixels.
    LogisticRegression,
    /// A multi-layer perceptron on pixels.
    Mlp {
        /// Hidden widths.
        hidden: Vec<usize>,
        /// Dropout after each hidden layer.
        dropout: f64,
    },
    /// The two-convolution CNN.
    Cnn {
        /// Dropout before the classifier.
        dropout: f64,
    },
    /// A recurrent classifier reading images row by row (the model's cell: RNN, GRU or LSTM).
    RowClassifier {
        /// Hidden width.
        hidden: usize,
    },
    /// A Transformer encoder classifier reading images row by row (`max_len` is set to the rows).
    RowTransformer {
        /// The encoder stack.
        stack: EncoderStackConfig,
    },
    /// A recurrent character language model (the model's cell).
    CharLm {
        /// Embedding width.
        d_embedding: usize,
        /// Hidden width.
        d_hidden: usize,
        /// Characters per training window.
        window: usize,
        /// Characters per test window, the headline first.
        test_windows: Vec<usize>,
    },
    /// A decoder-only Transformer character language model; trained and tested on windows of its context
    /// (the stack's `max_len`).
    TransformerLm {
        /// The decoder stack.
        stack: EncoderStackConfig,
    },
    /// An encoder–decoder Transformer translating sentence pairs.
    Translation {
        /// Encoder and decoder stacks (`max_len` is the longest sequence in tokens).
        stack: EncoderStackConfig,
        /// Longest pair kept, in words on each side.
        max_words: usize,
        /// Words seen fewer times in training become the unknown word.
        min_count: usize,
        /// Largest vocabulary per side.
        max_vocab: usize,
        /// Beam width of the headline decoding.
        beam: usize,
        /// GNMT length penalty α of the beam search.
        length_penalty: f64,
    },
    /// The copy-the-source translation baseline.
    CopySource {
        /// Longest pair kept, in words on each side.
        max_words: usize,
    },
    /// Knowledge-graph embeddings (the model's scorer: TransE or DistMult) with negative sampling.
    KgEmbedding {
        /// Embedding width.
        dim: usize,
        /// Margin of the ranking loss.
        margin: f32,
        /// L2 penalty of the rows a batch uses.
        l2: f32,
        /// Corruptions per training triple.
        negatives: usize,
    },
}

impl Hyper {
    /// The family's name as the JSON spells it.
    pub fn family(&self) -> &'static str {
        match self {
            Self::LinearRegression => "linear_regression",
            Self::LogisticRegression => "logistic_regression",
            Self::Mlp { .. } => "mlp",
            Self::Cnn { .. } => "cnn",
            Self::RowClassifier { .. } => "row_classifier",
            Self::RowTransformer { .. } => "row_transformer",
            Self::CharLm { .. } => "char_lm",
            Self::TransformerLm { .. } => "transformer_lm",
            Self::Translation { .. } => "translation",
            Self::CopySource { .. } => "copy_source",
            Self::KgEmbedding { .. } => "kg_embedding",
        }
    }
}

/// What a smoke run (`--quick`) trims. Counts are of training items before the validation split is cut
/// (images), of windows (text) or of pairs; `test` counts images or pairs, or characters of text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quick {
    /// Epochs of a smoke run.
    pub epochs: usize,
    /// Training items kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<usize>,
    /// Validation items kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<usize>,
    /// Test items kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<usize>,
}

/// One recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// The registry name, `<model>-<dataset>[-<variant>]`: the run folder's and the curves' name.
    pub name: String,
    /// The model family.
    pub model: ModelName,
    /// The data.
    pub dataset: DataSource,
    /// The model's hyper-parameters.
    pub hyper: Hyper,
    /// The learner's settings (epochs, batch, optimizer, schedule, clipping, early stopping, seed).
    pub training: TrainingConfig,
    /// What a smoke run trims.
    pub quick: Quick,
    /// Augment training images on the fly: ±2 px shifts, ±10° rotations, noise σ 0.05 (image
    /// classifiers only; validation and test images are never augmented).
    #[serde(default)]
    pub augment: bool,
    /// Seed of splits, initialisation, shuffling and augmentation.
    pub seed: u64,
    /// The bar the report holds the result to.
    pub target: Target,
    /// Run as a smoke run: apply [`Recipe::quick`].
    #[serde(default)]
    pub smoke: bool,
}

impl Recipe {
    /// Reads a recipe from a JSON file and checks it.
    pub fn load(path: &Path) -> Result<Self, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let recipe: Self = serde_json::from_str(&text).map_err(|source| RecipeError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        recipe.check()?;
        Ok(recipe)
    }

    /// The recipe as pretty JSON (what `recipe.json` holds).
    pub fn to_json(&self) -> String {
        // A recipe holds only strings, numbers, lists and maps with string keys: it always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Refuses a recipe whose hyper-parameters belong to another family or whose settings cannot train.
    pub fn check(&self) -> Result<(), RecipeError> {
        let expected = self.model.families();
        if !expected.contains(&self.hyper.family()) {
            return Err(RecipeError::WrongFamily {
                recipe: self.name.clone(),
                model: self.model.as_str().into(),
                expected: expected.join("` or `"),
                found: self.hyper.family().into(),
            });
        }
        let invalid = |field: &str, problem: &str| RecipeError::Invalid {
            recipe: self.name.clone(),
            field: field.into(),
            problem: problem.into(),
        };
        let trains = self.model != ModelName::CopySource;
        if trains && self.training.epochs == 0 {
            return Err(invalid("training.epochs", "is 0: nothing would train"));
        }
        if trains && self.quick.epochs == 0 {
            return Err(invalid("quick.epochs", "is 0: nothing would train"));
        }
        if !(self.training.lr.is_finite() && self.training.lr > 0.0) {
            return Err(invalid("training.lr", "must be a positive number"));
        }
        let positive = |field: &str, value: usize| {
            if value == 0 {
                Err(invalid(field, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        let dropout = |field: &str, p: f64| {
            if (0.0..1.0).contains(&p) {
                Ok(())
            } else {
                Err(invalid(field, "must be in [0, 1)"))
            }
        };
        let stack = |s: &EncoderStackConfig| {
            positive("hyper.stack.d_model", s.d_model)?;
            positive("hyper.stack.n_heads", s.n_heads)?;
            positive("hyper.stack.n_layers", s.n_layers)?;
            positive("hyper.stack.max_len", s.max_len)?;
            if !s.d_model.is_multiple_of(s.n_heads) {
                return Err(invalid(
                    "hyper.stack.n_heads",
                    "must divide hyper.stack.d_model",
                ));
            }
            dropout("hyper.stack.dropout", s.dropout)
        };
        match &self.hyper {
            Hyper::LinearRegression | Hyper::LogisticRegression => Ok(()),
            Hyper::Mlp { hidden, dropout: p } => {
                for (i, &h) in hidden.iter().enumerate() {
                    positive(&format!("hyper.hidden[{i}]"), h)?;
                }
                dropout("hyper.dropout", *p)
            }
            Hyper::Cnn { dropout: p } => dropout("hyper.dropout", *p),
            Hyper::RowClassifier { hidden } => positive("hyper.hidden", *hidden),
            Hyper::RowTransformer { stack: s } | Hyper::TransformerLm { stack: s } => stack(s),
            Hyper::CharLm {
                d_embedding,
                d_hidden,
                window,
                test_windows,
            } => {
                positive("hyper.d_embedding", *d_embedding)?;
                positive("hyper.d_hidden", *d_hidden)?;
                positive("hyper.window", *window)?;
                if test_windows.is_empty() {
                    return Err(invalid("hyper.test_windows", "is empty"));
                }
                for (i, &w) in test_windows.iter().enumerate() {
                    positive(&format!("hyper.test_windows[{i}]"), w)?;
                }
                Ok(())
            }
            Hyper::Translation {
                stack: s,
                max_words,
                max_vocab,
                beam,
                ..
            } => {
                stack(s)?;
                positive("hyper.max_words", *max_words)?;
                positive("hyper.max_vocab", *max_vocab)?;
                positive("hyper.beam", *beam)
            }
            Hyper::CopySource { max_words } => positive("hyper.max_words", *max_words),
            Hyper::KgEmbedding { dim, negatives, .. } => {
                positive("hyper.dim", *dim)?;
                positive("hyper.negatives", *negatives)
            }
        }
    }

    /// The dataset's name in reports.
    pub fn dataset_name(&self) -> String {
        self.dataset.name()
    }
}
