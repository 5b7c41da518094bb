//! How the learner trains a [`Supervised`] model: its outputs adapted to burn-train's metrics, and the
//! wrapper with the L1/L2 penalty that burn-train actually trains.

use crate::Regularization;
use crate::board::WeightHistograms;
use crate::data_parallel::GradientSync;
use crate::evaluate::Metrics;
use crate::metrics::{
    ItemCountMetric, MeanLossInput, MeanLossMetric, R2Metric, RegressionInput, RmseMetric,
};
use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::train::metric::{AccuracyMetric, Adaptor, LossInput, PerplexityMetric};
use burn::train::{InferenceStep, ItemLazy, SupervisedTraining, TrainOutput, TrainStep};
use kiln_core::{
    ClassificationOutput, LossOutput, PAD_ID, RegressionOutput, StepOutput, Supervised, TokenOutput,
};

/// A step output the learner can train on and score: what burn-train receives, the metrics validation
/// logs, and the same metrics (and a few more) for a test set. Implemented for the outputs of `kiln-core`.
pub trait LearnerOutput: StepOutput {
    /// burn-train's form of the output (what its metrics adapt).
    type Item: ItemLazy + Send + 'static;

    /// The output as burn-train receives it.
    fn into_item(self) -> Self::Item;

    /// The metrics a test set is scored with: those [`register_metrics`](Self::register_metrics) logs
    /// for training and validation, plus the item count (and RMSE in the data's units for regressors,
    /// `target_scale` being the target standardiser's std).
    fn test_metrics(target_scale: f64) -> Metrics<Self::Item>;

    /// Registers the metrics logged for training and validation.
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

    fn test_metrics(_: f64) -> Metrics<Self::Item> {
        let (loss, accuracy) = classification_metrics();
        Metrics::new()
            .with(loss)
            .with(accuracy)
            .with(ItemCountMetric::items())
    }

    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel
            + TrainStep<Output = Self::Item>
            + InferenceStep<Output = Self::Item>,
    {
        training.metrics(classification_metrics())
    }
}

/// Loss and accuracy.
fn classification_metrics() -> (MeanLossMetric, AccuracyMetric) {
    (MeanLossMetric::new(), AccuracyMetric::new())
}

impl Adaptor<MeanLossInput> for burn::train::ClassificationOutput {
    fn adapt(&self) -> MeanLossInput {
        MeanLossInput::new(self.loss.clone(), self.targets.dims()[0])
    }
}

impl LearnerOutput for RegressionOutput {
    type Item = burn::train::RegressionOutput;

    fn into_item(self) -> Self::Item {
        burn::train::RegressionOutput::new(self.loss, self.output, self.targets)
    }

    fn test_metrics(target_scale: f64) -> Metrics<Self::Item> {
        let (loss, r2) = regression_metrics();
        Metrics::new()
            .with(loss)
            .with(r2)
            .with(RmseMetric::scaled(target_scale))
            .with(ItemCountMetric::items())
    }

    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel
            + TrainStep<Output = Self::Item>
            + InferenceStep<Output = Self::Item>,
    {
        training.metrics(regression_metrics())
    }
}

/// Loss and R² (RMSE needs the target's scale, which only the test evaluation knows).
fn regression_metrics() -> (MeanLossMetric, R2Metric) {
    (MeanLossMetric::new(), R2Metric::r2())
}

impl Adaptor<MeanLossInput> for burn::train::RegressionOutput {
    fn adapt(&self) -> MeanLossInput {
        MeanLossInput::new(self.loss.clone(), self.targets.dims()[0])
    }
}

impl Adaptor<RegressionInput> for burn::train::RegressionOutput {
    fn adapt(&self) -> RegressionInput {
        RegressionInput::new(self.output.clone(), self.targets.clone())
    }
}

impl LearnerOutput for TokenOutput {
    type Item = burn::train::SequenceOutput;

    fn into_item(self) -> Self::Item {
        burn::train::SequenceOutput::new(self.loss, self.logits, None, self.targets)
    }

    fn test_metrics(_: f64) -> Metrics<Self::Item> {
        let (loss, accuracy, perplexity) = token_metrics();
        Metrics::new()
            .with(loss)
            .with(accuracy)
            .with(perplexity)
            .with(ItemCountMetric::items())
    }

    /// Loss (nats per real token), accuracy and perplexity, all over the real (non-[`PAD_ID`]) steps only.
    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel
            + TrainStep<Output = Self::Item>
            + InferenceStep<Output = Self::Item>,
    {
        training.metrics(token_metrics())
    }
}

/// Loss, accuracy and perplexity over the real steps.
fn token_metrics() -> (MeanLossMetric, AccuracyMetric, PerplexityMetric) {
    (
        MeanLossMetric::new(),
        AccuracyMetric::new().with_pad_token(PAD_ID as usize),
        PerplexityMetric::new().with_pad_token(PAD_ID as usize),
    )
}

impl Adaptor<MeanLossInput> for burn::train::SequenceOutput {
    fn adapt(&self) -> MeanLossInput {
        MeanLossInput::tokens(self.loss.clone(), self.targets.clone())
    }
}

/// burn-train's form of a [`LossOutput`]: the loss alone, for its loss metric.
#[derive(Debug, Clone)]
pub struct LossItem {
    /// The batch loss, shape `[1]`.
    pub loss: Tensor<1>,
    /// Items the loss averages over.
    pub items: usize,
}

impl Adaptor<LossInput> for LossItem {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

impl Adaptor<MeanLossInput> for LossItem {
    fn adapt(&self) -> MeanLossInput {
        MeanLossInput::new(self.loss.clone(), self.items)
    }
}

impl ItemLazy for LossItem {
    fn sync(self) -> Result<Self, burn_std::ExecutionError> {
        // As burn-train's outputs do: flush the producing stream and leave the autodiff graph.
        self.loss.device().flush()?;
        Ok(Self {
            loss: self.loss.without_autodiff(),
            items: self.items,
        })
    }
}

impl LearnerOutput for LossOutput {
    type Item = LossItem;

    fn into_item(self) -> Self::Item {
        LossItem {
            loss: self.loss,
            items: self.items,
        }
    }

    fn test_metrics(_: f64) -> Metrics<Self::Item> {
        Metrics::new()
            .with(MeanLossMetric::new())
            .with(ItemCountMetric::items())
    }

    fn register_metrics<L>(training: SupervisedTraining<L>) -> SupervisedTraining<L>
    where
        L: burn::train::LearnerModel
            + TrainStep<Output = Self::Item>
            + InferenceStep<Output = Self::Item>,
    {
        training.metrics((MeanLossMetric::new(),))
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
    /// Averaging of the gradients over ranks and accumulated passes, where there is any to do.
    #[module(skip)]
    pub sync: Option<GradientSync>,
    /// Weight and gradient histograms for TensorBoard, once an epoch.
    #[module(skip)]
    pub histograms: Option<WeightHistograms>,
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
        if let Some(sync) = &self.sync {
            sync.backward_pass();
        }
        TrainOutput::new(self, loss.backward(), output.into_item())
    }

    fn optimize(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        grads: GradientsParams,
    ) -> Self {
        let grads = match &self.sync {
            Some(sync) => sync.average(&self, grads),
            None => grads,
        };
        if let Some(histograms) = &self.histograms {
            histograms.before_step(&self, &grads);
        }
        optim.step(lr, self, grads)
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
