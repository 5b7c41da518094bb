//! How the learner trains a [`Supervised`] model: its outputs adapted to burn-train's metrics, and the
//! wrapper with the L1/L2 penalty that burn-train actually trains.

use crate::Regularization;
use crate::evaluate::Scores;
use burn::module::Module;
use burn::prelude::*;
use burn::train::metric::{AccuracyMetric, Adaptor, LossInput, LossMetric};
use burn::train::{InferenceStep, ItemLazy, SupervisedTraining, TrainOutput, TrainStep};
use kiln_core::{ClassificationOutput, LossOutput, RegressionOutput, StepOutput, Supervised};

/// A step output the learner can train on and score: what burn-train receives, and how a test set is
/// scored. Implemented for the outputs of `kiln-core`.
pub trait LearnerOutput: StepOutput {
    /// burn-train's form of the output (what its metrics adapt).
    type Item: ItemLazy + Send + 'static;

    /// The output as burn-train receives it.
    fn into_item(self) -> Self::Item;

    /// Adds this batch to running test scores.
    fn score(&self, scores: &mut Scores);

    /// Registers the burn-train metrics that fit this output (loss, plus accuracy for classifiers).
    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel
            + TrainStep<Output = Self::Item>
            + InferenceStep<Output = Self::Item>;
}

impl LearnerOutput for ClassificationOutput {
    type Item = burn::train::ClassificationOutput;

    fn into_item(self) -> Self::Item {
        burn::train::ClassificationOutput::new(self.loss, self.output, self.targets)
    }

    fn score(&self, scores: &mut Scores) {
        scores.add_classification(self);
    }

    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel
            + TrainStep<Output = Self::Item>
            + InferenceStep<Output = Self::Item>,
    {
        training.metrics((LossMetric::new(), AccuracyMetric::new()))
    }
}

impl LearnerOutput for RegressionOutput {
    type Item = burn::train::RegressionOutput;

    fn into_item(self) -> Self::Item {
        burn::train::RegressionOutput::new(self.loss, self.output, self.targets)
    }

    fn score(&self, scores: &mut Scores) {
        scores.add_regression(self);
    }

    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel
            + TrainStep<Output = Self::Item>
            + InferenceStep<Output = Self::Item>,
    {
        training.metrics((LossMetric::new(),))
    }
}

/// burn-train's form of a [`LossOutput`]: the loss alone, for its loss metric.
#[derive(Debug, Clone)]
pub struct LossItem {
    /// The batch loss, shape `[1]`.
    pub loss: Tensor<1>,
}

impl Adaptor<LossInput> for LossItem {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

impl ItemLazy for LossItem {
    fn sync(self) -> Result<Self, burn_std::ExecutionError> {
        // As burn-train's outputs do: flush the producing stream and leave the autodiff graph.
        self.loss.device().flush()?;
        Ok(Self {
            loss: self.loss.without_autodiff(),
        })
    }
}

impl LearnerOutput for LossOutput {
    type Item = LossItem;

    fn into_item(self) -> Self::Item {
        LossItem { loss: self.loss }
    }

    fn score(&self, scores: &mut Scores) {
        scores.add_loss(&self.loss, self.items);
    }

    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel
            + TrainStep<Output = Self::Item>
            + InferenceStep<Output = Self::Item>,
    {
        training.metrics((LossMetric::new(),))
    }
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

impl<M: Supervised> TrainStep for Regularized<M>
where
    M::Output: LearnerOutput,
{
    type Input = M::Batch;
    type Output = <M::Output as LearnerOutput>::Item;

    fn step(&self, batch: M::Batch) -> TrainOutput<Self::Output> {
        let output = self.model.forward_step(batch);
        let loss = match self.penalty.penalty(&self.model) {
            Some(p) => output.loss() + p,
            None => output.loss(),
        };
        TrainOutput::new(self, loss.backward(), output.into_item())
    }
}

impl<M: Supervised> InferenceStep for Regularized<M>
where
    M::Output: LearnerOutput,
{
    type Input = M::Batch;
    type Output = <M::Output as LearnerOutput>::Item;

    fn step(&self, batch: M::Batch) -> Self::Output {
        self.model.forward_step(batch).into_item()
    }
}
