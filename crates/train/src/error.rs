//! Errors of `kiln-train`.

use std::path::PathBuf;

/// What can go wrong while training, evaluating, saving or loading.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Reading data failed.
    #[error(transparent)]
    Data(#[from] kiln_data::DataError),
    /// A batch the model cannot take (a wrong shape, a label past its classes, an id past its tables),
    /// found before the first step.
    #[error("the first {split} batch does not fit the model: {source}")]
    Batch {
        /// `training` or `validation`.
        split: &'static str,
        /// The model's error (downcast to read its fields).
        source: kiln_core::BatchError,
    },
    /// A dataset item could not be read while batching.
    #[error("cannot read a dataset item: {0}")]
    Dataset(String),
    /// A device name that this build does not offer.
    #[error("unknown device `{name}`; this build offers: {available}")]
    UnknownDevice {
        /// The name asked for.
        name: String,
        /// The devices compiled in.
        available: String,
    },
    /// A configuration value that cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The loss became NaN or infinite.
    #[error(
        "training diverged: the mean {split} loss of epoch {epoch} is {value} (lower the learning rate?)"
    )]
    NonFiniteLoss {
        /// The epoch (1-based).
        epoch: usize,
        /// `train` or `valid`.
        split: String,
        /// The value seen.
        value: f64,
    },
    /// A weights file that does not fit the model (another architecture, other sizes, or not a burnpack
    /// file).
    #[error("cannot load weights from {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// burn's explanation.
        message: String,
    },
    /// `resume` was asked for, but the run folder holds no checkpoint to resume from.
    #[error("cannot resume: {dir} holds no checkpoint (run without resuming to start afresh)")]
    NothingToResume {
        /// The checkpoint folder searched.
        dir: PathBuf,
    },
    /// A metric could not read its inputs back from the device.
    #[error("metric {metric}: {message}")]
    Metric {
        /// The metric's name.
        metric: String,
        /// The read-back error.
        message: String,
    },
    /// An evaluation was asked for a metric it did not compute.
    #[error("no metric `{name}` in this evaluation; it has: {available}")]
    MissingMetric {
        /// The name asked for.
        name: String,
        /// The metrics it has.
        available: String,
    },
    /// Another rank of a data-parallel run failed, or the ranks disagree.
    #[error("rank {rank}: {message}")]
    DataParallel {
        /// This process's rank.
        rank: usize,
        /// What happened.
        message: String,
    },
    /// burn-train stopped with an error.
    #[error("training failed: {0}")]
    Training(String),
    /// A report or history file could not be (de)serialised.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Drawing a plot failed.
    #[error("cannot draw {path}: {message}")]
    Plot {
        /// The image file.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
