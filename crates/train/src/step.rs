//! What a model implements to be trained by the learner, and the wrapper the learner trains.

use crate::Regularization;
use crate::evaluate::Scores;
use burn::module::{Module, ModuleDisplay};
use burn::prelude::*;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{
    ClassificationOutput, InferenceStep, ItemLazy, RegressionOutput, SupervisedTraining,
    TrainOutput, TrainStep,
};
use std::fmt::Display;

/// The output of one step: carries the (data) loss and can be scored on a test set.
pub trait StepOutput: ItemLazy + Sized + 'static {
    /// The batch loss, shape `[1]`.
    fn loss(&self) -> Tensor<1>;

    /// Adds this batch to running test scores.
    fn score(&self, scores: &mut Scores);

    /// Registers the burn-train metrics that fit this output (loss, plus accuracy for classifiers).
    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel + TrainStep<Output = Self> + InferenceStep<Output = Self>;
}

impl StepOutput for ClassificationOutput {
    fn loss(&self) -> Tensor<1> {
        self.loss.clone()
    }

    fn score(&self, scores: &mut Scores) {
        scores.add_classification(self);
    }

    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel + TrainStep<Output = Self> + InferenceStep<Output = Self>,
    {
        training.metrics((LossMetric::new(), AccuracyMetric::new()))
    }
}

impl StepOutput for RegressionOutput {
    fn loss(&self) -> Tensor<1> {
        self.loss.clone()
    }

    fn score(&self, scores: &mut Scores) {
        scores.add_regression(self);
    }

    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel + TrainStep<Output = Self> + InferenceStep<Output = Self>,
    {
        training.metrics((LossMetric::new(),))
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

impl burn::train::metric::Adaptor<burn::train::metric::LossInput> for LossOutput {
    fn adapt(&self) -> burn::train::metric::LossInput {
        burn::train::metric::LossInput::new(self.loss.clone())
    }
}

impl ItemLazy for LossOutput {
    fn sync(self) -> Result<Self, burn_std::ExecutionError> {
        // As burn-train's outputs do: flush the producing stream and leave the autodiff graph.
        self.loss.device().flush()?;
        Ok(Self {
            loss: self.loss.without_autodiff(),
            items: self.items,
        })
    }
}

impl StepOutput for LossOutput {
    fn loss(&self) -> Tensor<1> {
        self.loss.clone()
    }

    fn score(&self, scores: &mut Scores) {
        scores.add_loss(&self.loss, self.items);
    }

    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel + TrainStep<Output = Self> + InferenceStep<Output = Self>,
    {
        training.metrics((LossMetric::new(),))
    }
}

/// A model the learner can train: one forward pass on a batch, giving the loss and what to score.
pub trait Supervised: Module + ModuleDisplay + Display + 'static {
    /// The batch the model consumes.
    type Batch: Send + 'static;
    /// What a step produces: [`ClassificationOutput`] or [`RegressionOutput`].
    type Output: StepOutput;

    /// Forward pass and loss on one batch (without any regularisation penalty).
    fn forward_step(&self, batch: Self::Batch) -> Self::Output;
}

/// A model with the L1/L2 penalty of its weights added to its training loss. This is the module burn-train
/// trains and checkpoints; its `model` field is the user's model.
#[derive(Module, Debug)]
pub struct Regularized<M: Module> {
    /// The model being trained.
    pub model: M,
    /// The penalty (not a parameter; not saved with the weights).
    #[module(skip)]
    pub penalty: Regularization,
}

impl<M: Supervised> TrainStep for Regularized<M> {
    type Input = M::Batch;
    type Output = M::Output;

    fn step(&self, batch: M::Batch) -> TrainOutput<M::Output> {
        let output = self.model.forward_step(batch);
        let loss = match self.penalty.penalty(&self.model) {
            Some(p) => output.loss() + p,
            None => output.loss(),
        };
        TrainOutput::new(self, loss.backward(), output)
    }
}

impl<M: Supervised> InferenceStep for Regularized<M> {
    type Input = M::Batch;
    type Output = M::Output;

    fn step(&self, batch: M::Batch) -> M::Output {
        self.model.forward_step(batch)
    }
}
