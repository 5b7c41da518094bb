//! Errors of `kiln-compress`.

/// What can go wrong when compressing a model.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// A setting out of its range.
    #[error("invalid {what}: {message}")]
    Config {
        /// The setting.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
}
