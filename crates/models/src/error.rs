//! Errors of `kiln-models`.

use std::path::PathBuf;

/// What can go wrong when building, running, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An input tensor of the wrong shape.
    #[error("{model}: input of shape {found:?} does not match the expected {expected}")]
    Shape {
        /// The model.
        model: &'static str,
        /// The shape expected, `_` for any size.
        expected: String,
        /// The shape given.
        found: Vec<usize>,
    },
    /// A tensor the model computed could not be read back to the host (a backend failure, or a dtype the
    /// reader does not take).
    #[error("{model}: cannot read back the {what}: {message}")]
    ReadBack {
        /// The model.
        model: &'static str,
        /// What was being read (tokens, probabilities, scores, a mask).
        what: &'static str,
        /// burn's explanation.
        message: String,
    },
    /// An id (of an entity, a relation, a token) outside the table it indexes.
    #[error("{model}: {what} id {id} is outside the table of {size}")]
    IdOutOfRange {
        /// The model.
        model: &'static str,
        /// What the id names (`entity`, `relation`).
        what: &'static str,
        /// The id given.
        id: i64,
        /// The table's number of rows.
        size: usize,
    },
    /// A label that names no class of the model.
    #[error("{model}: label {label} is not one of the model's {classes} classes (0 to {})", classes.saturating_sub(1))]
    LabelOutOfRange {
        /// The model.
        model: &'static str,
        /// The label given.
        label: i64,
        /// The model's number of classes.
        classes: usize,
    },
    /// A configuration that cannot build a model.
    #[error("invalid {model} config, {field}: {message}")]
    Config {
        /// The model.
        model: &'static str,
        /// The config field (or fields, comma-separated) at fault, as serde names them.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An argument of a call (generation, decoding) that the model cannot take.
    #[error("{model}: invalid {argument}: {message}")]
    Argument {
        /// The model.
        model: &'static str,
        /// The argument at fault (`prompt`, `temperature`, `source`, `beam`).
        argument: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A weights or config file that cannot be read, or does not fit the model (another architecture).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}
