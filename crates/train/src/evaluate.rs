//! Test-set scores: accuracy for classifiers; RMSE and R² for regressors (in the target's original units).

use crate::TrainError;
use crate::step::LearnerOutput;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::prelude::*;
use kiln_core::Supervised;
use kiln_core::{ClassificationOutput, RegressionOutput};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Running scores over the batches of a split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Items seen.
    pub count: usize,
    /// Sum over batches of `loss × batch size`.
    pub loss_sum: f64,
    /// Correct predictions (classifiers).
    pub correct: usize,
    /// Sum of squared errors, in model units (regressors).
    pub sse: f64,
    /// Sum of targets (regressors).
    pub target_sum: f64,
    /// Sum of squared targets (regressors).
    pub target_sq_sum: f64,
    /// Multiplier from model units back to the target's units (the target standardiser's std), so that
    /// RMSE is reported in the data's own units. R² does not depend on it.
    pub target_scale: f64,
}

impl Scores {
    /// Empty scores; `target_scale` converts regression errors back to the data's units (1 if the targets
    /// were not standardised).
    pub fn new(target_scale: f64) -> Self {
        Self {
            target_scale,
            ..Self::default()
        }
    }

    /// Adds a classification batch.
    pub fn add_classification(&mut self, out: &ClassificationOutput) {
        let n = out.targets.dims()[0];
        let predicted = out.output.clone().argmax(1).reshape([n]);
        let correct = predicted
            .equal(out.targets.clone())
            .int()
            .sum()
            .into_scalar::<i64>();
        self.correct += correct as usize;
        self.add_loss(&out.loss, n);
    }

    /// Adds a regression batch.
    pub fn add_regression(&mut self, out: &RegressionOutput) {
        let n = out.targets.dims()[0];
        let err = (out.output.clone() - out.targets.clone()).square().sum();
        self.sse += err.into_scalar::<f64>();
        self.target_sum += out.targets.clone().sum().into_scalar::<f64>();
        self.target_sq_sum += out.targets.clone().square().sum().into_scalar::<f64>();
        self.add_loss(&out.loss, n);
    }

    /// Adds a batch of `n` items whose mean loss is `loss`.
    pub fn add_loss(&mut self, loss: &Tensor<1>, n: usize) {
        self.loss_sum += loss.clone().into_scalar::<f64>() * n as f64;
        self.count += n;
    }

    /// Mean loss per item.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.count.max(1) as f64
    }

    /// Fraction of correct predictions.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count.max(1) as f64
    }

    /// Root mean squared error, in the target's original units.
    pub fn rmse(&self) -> f64 {
        (self.sse / self.count.max(1) as f64).sqrt() * self.target_scale
    }

    /// Coefficient of determination, `1 - SSE / SST` with SST about this split's own mean.
    pub fn r2(&self) -> f64 {
        let n = self.count.max(1) as f64;
        let sst = self.target_sq_sum - self.target_sum * self.target_sum / n;
        1.0 - self.sse / sst
    }
}

/// Scores `model` on every batch of `loader` (no gradients are tracked: pass a model on a plain device).
pub fn evaluate<M: Supervised>(
    model: &M,
    loader: Arc<dyn DataLoader<M::Batch>>,
    target_scale: f64,
) -> Result<Scores, TrainError>
where
    M::Output: LearnerOutput,
{
    let mut scores = Scores::new(target_scale);
    for batch in loader.iter() {
        let batch = batch.map_err(|e| TrainError::Dataset(e.to_string()))?;
        model.forward_step(batch).score(&mut scores);
    }
    Ok(scores)
}

/// Scores `model` on a whole dataset, batching it with `batcher` on `device` (a plain device).
pub fn evaluate_dataset<M, I, B, D>(
    model: &M,
    data: D,
    batcher: B,
    batch_size: usize,
    device: &Device,
    target_scale: f64,
) -> Result<Scores, TrainError>
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

    #[test]
    fn accuracy_rmse_and_r2_from_known_batches() {
        let d = Device::flex();
        let mut s = Scores::new(2.0);
        s.add_classification(&ClassificationOutput::new(
            Tensor::from_data([0.5], &d),
            Tensor::from_data([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], &d),
            Tensor::from_data([1, 1, 1], &d),
        ));
        assert!((s.accuracy() - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.loss() - 0.5).abs() < 1e-6);

        let mut r = Scores::new(2.0);
        r.add_regression(&RegressionOutput::new(
            Tensor::from_data([1.0], &d),
            Tensor::from_data([[1.0], [2.0], [4.0]], &d),
            Tensor::from_data([[1.0], [3.0], [5.0]], &d),
        ));
        // SSE 2 over 3 items; targets mean 3, SST 8.
        assert!((r.rmse() - 2.0 * (2.0f64 / 3.0).sqrt()).abs() < 1e-6);
        assert!((r.r2() - (1.0 - 2.0 / 8.0)).abs() < 1e-6);
    }
}
