//! The one learner every Kiln model trains with.
//!
//! Built on burn-train's `SupervisedTraining` (dashboard, checkpoints, resume, early stopping, metric logs);
//! this crate adds what burn lacks or what Kiln needs around it:
//! - [`step`]: [`LearnerOutput`], which adapts the step outputs of `kiln-core` (where the [`Supervised`]
//!   trait models implement lives) to burn-train's metrics, and [`Regularized`], which adds L1/L2
//!   penalties to the loss (burn has no L1) and is what burn-train actually trains;
//! - [`optim`]: optimizers and learning-rate schedules chosen by a serde config ([`fused_adam`]: burn's
//!   Adam and AdamW with each update as one pass on flex);
//! - [`learner`]: `fit` (train / validate, early stopping, checkpoints, resume, best-epoch restore);
//!   [`epoch_loader`]: its training loader, whose epochs depend only on (seed, epoch), so resuming is exact;
//! - [`metrics`]: the burn-train metrics burn lacks (item-weighted loss, RMSE, R², MRR, Hits@k, corpus
//!   BLEU), logged for validation by `fit`; [`evaluate`]: the same metrics over a test set, by name;
//!   [`bleu`]: corpus BLEU as sacreBLEU computes it;
//! - [`history`] and [`curves`]: per-epoch metrics as CSV and as PNG curves; [`board`]: TensorBoard
//!   event files of every run (per-step and per-epoch metrics, weight and gradient histograms);
//! - [`report`]: the `report.json` schema shared by `cargo xtask train-all` and `train`;
//! - [`data_parallel`]: training as one of several ranks (gradients averaged through a [`Collective`]);
//! - [`device`]: the run-time choice of backend; [`compute_pool`]: training loops run on rayon's pool.
#![warn(missing_docs)]

pub mod bleu;
pub mod board;
pub mod compute_pool;
pub mod curves;
pub mod data_parallel;
pub mod device;
pub mod epoch_loader;
pub mod error;
pub mod evaluate;
pub mod fused_adam;
pub mod history;
pub mod learner;
pub mod metrics;
pub mod optim;
pub mod regularization;
mod renderer;
pub mod report;
pub mod step;

pub use bleu::{Bleu, corpus_bleu};
pub use data_parallel::{Collective, DataParallel};
pub use device::DeviceChoice;
pub use error::TrainError;
pub use evaluate::{Evaluation, Metrics, evaluate, evaluate_dataset, evaluate_with};
pub use kiln_core::{
    ClassificationOutput, LossOutput, PAD_ID, RegressionOutput, StepOutput, Supervised,
    TokenOutput, loss,
};
pub use learner::{Dashboard, FitOutcome, RunOptions, TrainingConfig, fit, fit_with_batchers};
pub use optim::{LrSchedule, OptimizerConfig};
pub use regularization::Regularization;
pub use report::{Report, RunRecord};
pub use step::{LearnerOutput, LossItem, Regularized};
