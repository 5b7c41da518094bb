//! The training-step trait a model implements, and the outputs of one step.

use burn::module::{Module, ModuleDisplay};
use burn::prelude::*;
use std::fmt::Display;

/// The output of one step: carries the (data) loss of the batch.
pub trait StepOutput: Send + Sized + 'static {
    /// The batch loss, shape `[1]`.
    fn loss(&self) -> Tensor<1>;
}

/// A classifier's step: the loss, the logits and the true classes.
#[derive(Debug, Clone)]
pub struct ClassificationOutput {
    /// The batch loss, shape `[1]`.
    pub loss: Tensor<1>,
    /// Logits, shape `[batch, classes]`.
    pub output: Tensor<2>,
    /// True classes, shape `[batch]`.
    pub targets: Tensor<1, Int>,
}

impl ClassificationOutput {
    /// Bundles a step's loss, logits and classes.
    pub fn new(loss: Tensor<1>, output: Tensor<2>, targets: Tensor<1, Int>) -> Self {
        Self {
            loss,
            output,
            targets,
        }
    }
}

/// A regressor's step: the loss, the predictions and the targets (in model units).
#[derive(Debug, Clone)]
pub struct RegressionOutput {
    /// The batch loss, shape `[1]`.
    pub loss: Tensor<1>,
    /// Predictions, shape `[batch, outputs]`.
    pub output: Tensor<2>,
    /// Targets, shape `[batch, outputs]`.
    pub targets: Tensor<2>,
}

impl RegressionOutput {
    /// Bundles a step's loss, predictions and targets.
    pub fn new(loss: Tensor<1>, output: Tensor<2>, targets: Tensor<2>) -> Self {
        Self {
            loss,
            output,
            targets,
        }
    }
}

/// The id every Kiln token vocabulary reserves for padding: no real token has it, so a target equal to it
/// marks a padded step (burn's pad-aware cross-entropy and metrics skip it).
pub const PAD_ID: u32 = 0;

/// A sequence model's step: the mean loss over the real (unpadded) steps, every step's logits, and the
/// targets with [`PAD_ID`] on padded steps.
#[derive(Debug, Clone)]
pub struct TokenOutput {
    /// The batch loss, shape `[1]` (nats per real token).
    pub loss: Tensor<1>,
    /// Logits of every step, shape `[batch, steps, vocab]`.
    pub logits: Tensor<3>,
    /// Next-token targets, shape `[batch, steps]`, [`PAD_ID`] on padded steps.
    pub targets: Tensor<2, Int>,
}

impl TokenOutput {
    /// Bundles a step's loss, logits and padded targets.
    pub fn new(loss: Tensor<1>, logits: Tensor<3>, targets: Tensor<2, Int>) -> Self {
        Self {
            loss,
            logits,
            targets,
        }
    }
}

/// The output of a step whose only figure is its loss (ranking losses of knowledge-graph embeddings, say).
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// The batch loss, shape `[1]`.
    pub loss: Tensor<1>,
    /// Items in the batch (weights the loss in test scores).
    pub items: usize,
}

impl StepOutput for ClassificationOutput {
    fn loss(&self) -> Tensor<1> {
        self.loss.clone()
    }
}

impl StepOutput for RegressionOutput {
    fn loss(&self) -> Tensor<1> {
        self.loss.clone()
    }
}

impl StepOutput for TokenOutput {
    fn loss(&self) -> Tensor<1> {
        self.loss.clone()
    }
}

impl StepOutput for LossOutput {
    fn loss(&self) -> Tensor<1> {
        self.loss.clone()
    }
}

/// Why a batch does not fit a model: the model crate's own typed error, boxed so that this crate needs none
/// of them (downcast it to read its fields).
pub type BatchError = Box<dyn std::error::Error + Send + Sync>;

/// A model the learner can train: one forward pass on a batch, giving the loss and what to score.
pub trait Supervised: Module + ModuleDisplay + Display + 'static {
    /// The batch the model consumes.
    type Batch: Send + 'static;
    /// What a step produces: [`ClassificationOutput`], [`RegressionOutput`], [`TokenOutput`] or
    /// [`LossOutput`].
    type Output: StepOutput;

    /// Forward pass and loss on one batch (without any regularisation penalty).
    fn forward_step(&self, batch: Self::Batch) -> Self::Output;

    /// Checks that the model can take `batch` — its shapes, and its labels and ids within the model's
    /// classes, vocabularies and tables — so that the learner refuses data the model cannot take before the
    /// first step rather than panicking inside one (burn-train's step cannot return an error). The default
    /// accepts every batch.
    fn check_batch(&self, batch: &Self::Batch) -> Result<(), BatchError> {
        let _ = batch;
        Ok(())
    }
}
