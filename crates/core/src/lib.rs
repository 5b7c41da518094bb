//! What Kiln's models and its learner share, and nothing of training itself.
//!
//! A model crate depends on this crate and on burn, never on the learner (`kiln-train`, burn-train), as
//! linfa's algorithms depend on its small core and burn's guide keeps `model.rs` free of training:
//! - [`step`]: the [`Supervised`] trait a model implements (one forward pass on a batch, giving its loss)
//!   and the outputs the learner scores ([`ClassificationOutput`], [`RegressionOutput`], [`TokenOutput`], [`LossOutput`]);
//! - [`loss`]: MSE, cross-entropy and binary cross-entropy on burn's loss modules;
//! - [`files`]: writing a file whole or not at all (temporary name, then rename);
//! - [`params`]: a module's parameters as one flat vector and back.
//!
//! `kiln-train` adapts these outputs to burn-train's metrics.
#![warn(missing_docs)]

pub mod files;
pub mod loss;
pub mod params;
pub mod step;

pub use step::{
    BatchError, ClassificationOutput, LossOutput, PAD_ID, RegressionOutput, StepOutput, Supervised,
    TokenOutput,
};
