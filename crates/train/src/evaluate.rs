//! Test-set evaluation on burn-train's [`Metric`]s: the metrics a model's output registers for validation
//! inside `fit` ([`LearnerOutput::test_metrics`]) run over a test loader, and their split-wide values come
//! back by name as an [`Evaluation`].
//!
//! burn-train's own `Evaluator` renders and logs to files but returns no values, so this module drives the
//! metrics itself: each batch's output is adapted to every metric's input ([`Adaptor`]) and `update`d, and
//! each metric's `final_value` is read once at the end.

use crate::TrainError;
use crate::step::LearnerOutput;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder, Progress};
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::tensor::TensorReadError;
use burn::train::metric::{Adaptor, Metric, MetricMetadata, Numeric};
use kiln_core::Supervised;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A metric the evaluator drives without knowing its input type: any burn-train [`Metric`] +
/// [`Numeric`] whose input the item `I` adapts to.
trait ErasedMetric<I>: Send {
    fn name(&self) -> String;
    fn update(&mut self, item: &I, metadata: &MetricMetadata) -> Result<(), TensorReadError>;
    fn finish(&mut self) -> Result<f64, TensorReadError>;
}

struct Adapted<M>(M);

impl<I, M> ErasedMetric<I> for Adapted<M>
where
    M: Metric + Numeric,
    I: Adaptor<M::Input>,
{
    fn name(&self) -> String {
        self.0.name().to_string()
    }

    fn update(&mut self, item: &I, metadata: &MetricMetadata) -> Result<(), TensorReadError> {
        self.0.update(&item.adapt(), metadata).map(|_| ())
    }

    fn finish(&mut self) -> Result<f64, TensorReadError> {
        self.0.compute()?;
        Ok(self.0.final_value().current())
    }
}

/// The metrics to compute over a split, for items of type `I` (a model's burn-train output).
pub struct Metrics<I> {
    list: Vec<Box<dyn ErasedMetric<I>>>,
    batches: usize,
}

impl<I> Default for Metrics<I> {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            batches: 0,
        }
    }
}

impl<I: 'static> Metrics<I> {
    /// No metrics yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `metric` (its name must be unique in the set; a later one of the same name replaces the
    /// figure of an earlier one).
    pub fn with<M>(mut self, metric: M) -> Self
    where
        M: Metric + Numeric + 'static,
        I: Adaptor<M::Input>,
    {
        self.list.push(Box::new(Adapted(metric)));
        self
    }

    /// Adds one batch; `progress` (the loader's, after this batch) is passed on to the metrics.
    pub fn update(&mut self, item: &I, progress: Progress) -> Result<(), TrainError> {
        self.batches += 1;
        let metadata = MetricMetadata {
            progress,
            iteration: Some(self.batches),
            lr: None,
        };
        for metric in &mut self.list {
            metric
                .update(item, &metadata)
                .map_err(|e| TrainError::Metric {
                    metric: metric.name(),
                    message: format!("{e:?}"),
                })?;
        }
        Ok(())
    }

    /// Every metric's value over all the batches added.
    pub fn finish(mut self) -> Result<Evaluation, TrainError> {
        let mut figures = BTreeMap::new();
        for metric in &mut self.list {
            let value = metric.finish().map_err(|e| TrainError::Metric {
                metric: metric.name(),
                message: format!("{e:?}"),
            })?;
            figures.insert(metric.name(), value);
        }
        Ok(Evaluation { figures })
    }
}

/// The split-wide values of a set of [`Metrics`], by metric name (the constants of [`crate::metrics`],
/// or burn's names for its own metrics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    figures: BTreeMap<String, f64>,
}

impl Evaluation {
    /// The value of metric `name`, or an error naming the metrics this evaluation has.
    pub fn get(&self, name: &str) -> Result<f64, TrainError> {
        self.figures
            .get(name)
            .copied()
            .ok_or_else(|| TrainError::MissingMetric {
                name: name.to_string(),
                available: self.figures.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The mean loss per item ([`LOSS`](crate::metrics::LOSS)).
    pub fn loss(&self) -> Result<f64, TrainError> {
        self.get(crate::metrics::LOSS)
    }

    /// The fraction of correct predictions, 0–1 (burn's [`ACCURACY`](crate::metrics::ACCURACY) metric
    /// is in percent).
    pub fn accuracy(&self) -> Result<f64, TrainError> {
        Ok(self.get(crate::metrics::ACCURACY)? / 100.0)
    }

    /// The number of items scored ([`ITEMS`](crate::metrics::ITEMS)): rows, or real tokens.
    pub fn items(&self) -> Result<usize, TrainError> {
        Ok(self.get(crate::metrics::ITEMS)? as usize)
    }

    /// The coefficient of determination ([`R2`](crate::metrics::R2)).
    pub fn r2(&self) -> Result<f64, TrainError> {
        self.get(crate::metrics::R2)
    }

    /// The root mean squared error in the data's units ([`RMSE`](crate::metrics::RMSE)).
    pub fn rmse(&self) -> Result<f64, TrainError> {
        self.get(crate::metrics::RMSE)
    }

    /// Every figure, by name.
    pub fn figures(&self) -> &BTreeMap<String, f64> {
        &self.figures
    }
}

/// Evaluates `model` on every batch of `loader` with `metrics` (no gradients are tracked: pass a model on
/// a plain device).
pub fn evaluate_with<M: Supervised>(
    model: &M,
    loader: Arc<dyn DataLoader<M::Batch>>,
    mut metrics: Metrics<<M::Output as LearnerOutput>::Item>,
) -> Result<Evaluation, TrainError>
where
    M::Output: LearnerOutput,
{
    let mut iterator = loader.iter();
    while let Some(batch) = iterator.next() {
        let batch = batch.map_err(|e| TrainError::Dataset(e.to_string()))?;
        let item = model.forward_step(batch).into_item();
        metrics.update(&item, iterator.progress())?;
    }
    metrics.finish()
}

/// Evaluates `model` on every batch of `loader` with the metrics its output registers for validation
/// ([`LearnerOutput::test_metrics`]); `target_scale` converts regression errors back to the data's units
/// (1 if the targets were not standardised).
pub fn evaluate<M: Supervised>(
    model: &M,
    loader: Arc<dyn DataLoader<M::Batch>>,
    target_scale: f64,
) -> Result<Evaluation, TrainError>
where
    M::Output: LearnerOutput,
{
    evaluate_with(
        model,
        loader,
        <M::Output as LearnerOutput>::test_metrics(target_scale),
    )
}

/// [`evaluate`] on a whole dataset, batched with `batcher` on `device` (a plain device).
pub fn evaluate_dataset<M, I, B, D>(
    model: &M,
    data: D,
    batcher: B,
    batch_size: usize,
    device: &Device,
    target_scale: f64,
) -> Result<Evaluation, TrainError>
where
    M: Supervised,
    M::Output: LearnerOutput,
    M::Batch: Clone + std::fmt::Debug,
    I: Send + Sync + Clone + std::fmt::Debug + 'static,
    B: Batcher<I, M::Batch> + 'static,
    D: Dataset<I> + 'static,
{
    let loader = DataLoaderBuilder::new(batcher)
        .batch_size(batch_size.max(1))
        .set_device(device.clone())
        .build(data);
    evaluate(model, loader, target_scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ACCURACY, ITEMS, LOSS, PERPLEXITY, R2, RMSE};
    use kiln_core::{ClassificationOutput, RegressionOutput};

    fn evaluate_items<O: LearnerOutput>(outputs: Vec<O>, target_scale: f64) -> Evaluation {
        let mut metrics = O::test_metrics(target_scale);
        let total = outputs.len();
        for (i, out) in outputs.into_iter().enumerate() {
            let progress = Progress {
                items_processed: i + 1,
                items_total: total,
                unit: None,
            };
            metrics.update(&out.into_item(), progress).unwrap();
        }
        metrics.finish().unwrap()
    }

    #[test]
    fn accuracy_and_loss_are_means_over_items_not_batches() {
        let d = Device::flex();
        let e = evaluate_items(
            vec![
                ClassificationOutput::new(
                    Tensor::from_data([0.5], &d),
                    Tensor::from_data([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], &d),
                    Tensor::from_data([1, 1, 1], &d),
                ),
                ClassificationOutput::new(
                    Tensor::from_data([2.0], &d),
                    Tensor::from_data([[0.1, 0.9]], &d),
                    Tensor::from_data([0], &d),
                ),
            ],
            1.0,
        );
        assert!(
            (e.get(ACCURACY).unwrap() - 50.0).abs() < 1e-12,
            "burn's accuracy is in percent"
        );
        assert!((e.accuracy().unwrap() - 2.0 / 4.0).abs() < 1e-12);
        // (0.5·3 + 2·1) / 4, not (0.5 + 2) / 2.
        assert!((e.get(LOSS).unwrap() - 3.5 / 4.0).abs() < 1e-6);
        assert_eq!(e.get(ITEMS).unwrap(), 4.0);
        let missing = e.get("BLEU").unwrap_err().to_string();
        assert!(
            missing.contains("BLEU") && missing.contains(ACCURACY),
            "{missing}"
        );
    }

    #[test]
    fn rmse_is_in_the_data_units_and_r2_about_the_split_mean() {
        let d = Device::flex();
        let e = evaluate_items(
            vec![RegressionOutput::new(
                Tensor::from_data([1.0], &d),
                Tensor::from_data([[1.0], [2.0], [4.0]], &d),
                Tensor::from_data([[1.0], [3.0], [5.0]], &d),
            )],
            2.0,
        );
        // SSE 2 over 3 items; targets mean 3, SST 8.
        assert!((e.get(RMSE).unwrap() - 2.0 * (2.0f64 / 3.0).sqrt()).abs() < 1e-6);
        assert!((e.get(R2).unwrap() - (1.0 - 2.0 / 8.0)).abs() < 1e-6);
    }

    #[test]
    fn padded_steps_count_nowhere() {
        let d = Device::flex();
        // The padded step (target PAD_ID) has PAD_ID as its argmax: it must count neither as an item nor
        // towards accuracy.
        let logits =
            Tensor::<3>::from_data([[[0.1, 0.9, 0.0], [0.1, 0.0, 0.9], [0.9, 0.0, 0.1]]], &d);
        let targets = Tensor::<2, Int>::from_data([[1, 1, 0]], &d);
        let e = evaluate_items(
            vec![kiln_core::loss::token_output(logits.clone(), targets)],
            1.0,
        );
        assert_eq!(e.get(ITEMS).unwrap(), 2.0);
        assert!((e.accuracy().unwrap() - 0.5).abs() < 1e-12);
        // Perplexity is exp of the mean loss over the same real steps.
        let ppl = e.get(PERPLEXITY).unwrap();
        assert!((ppl.ln() - e.get(LOSS).unwrap()).abs() < 1e-5, "{ppl}");
    }
}
