//! Errors of `kiln-compress`.

/// What can go wrong when compressing a model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CompressError {
    /// A weight could not be read back to the host to rank it.
    #[error("cannot read back {what}: {message}")]
    ReadBack {
        /// What was being read.
        what: String,
        /// burn's explanation.
        message: String,
    },
    /// A setting out of its range.
    #[error("invalid {what}: {message}")]
    Config {
        /// The setting.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
}
