//! DP-SGD training of an MLP on features held on the host, with the privacy spent after every epoch:
//! the loop of Abadi et al. (2016) — lots Poisson-sampled with rate q = L / N, each step a [`DpSgd`] step,
//! the accountant composing one sampled Gaussian mechanism per step.

use crate::{DpSgd, PrivacyError, RdpAccountant};
use burn::prelude::*;
use kiln_data::ImageDataset;
use kiln_models::Mlp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// Examples as rows of features with their class labels, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Row-major values, `len() · dim` of them.
    pub values: Vec<f32>,
    /// Features per example.
    pub dim: usize,
    /// Each example's class.
    pub labels: Vec<i64>,
}

impl Features {
    /// Examples from row-major `values` of `dim` features each and their `labels` (refused if the two
    /// disagree on the number of examples).
    pub fn new(values: Vec<f32>, dim: usize, labels: Vec<i64>) -> Result<Self, PrivacyError> {
        if dim == 0 || values.len() != dim * labels.len() {
            return Err(PrivacyError::Model(format!(
                "{} feature values do not make {} examples of {dim} features",
                values.len(),
                labels.len()
            )));
        }
        Ok(Self {
            values,
            dim,
            labels,
        })
    }

    /// The images at `indices` of `images`, their pixels scaled to [0, 1] (a fixed scale: it costs no
    /// privacy), one row each.
    pub fn from_images(images: &ImageDataset, indices: &[usize]) -> Result<Self, PrivacyError> {
        let dim = images.height() * images.width();
        let mut values = Vec::with_capacity(indices.len() * dim);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= images.len() {
                return Err(PrivacyError::Model(format!(
                    "image {i} of a dataset of {}",
                    images.len()
                )));
            }
            values.extend(images.pixels(i).iter().map(|&p| f32::from(p) / 255.0));
            labels.push(i64::from(images.label(i)));
        }
        Self::new(values, dim, labels)
    }

    /// Every value multiplied by `factor` (a fixed, data-independent scale, so it costs no privacy).
    pub fn scaled(mut self, factor: f32) -> Self {
        self.values.iter_mut().for_each(|v| *v *= factor);
        self
    }

    /// How many examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Example `i`'s features.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// The examples at `indices` as a batch on `device`: features `[k, dim]` and labels `[k]`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        let mut values = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            values.extend_from_slice(self.row(i));
        }
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i]).collect();
        (
            Tensor::from_data(TensorData::new(values, [indices.len(), self.dim]), device),
            Tensor::from_data(TensorData::new(labels, [indices.len()]), device),
        )
    }
}

/// DP-SGD's training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpTraining {
    /// Epochs (each N / L lots).
    pub epochs: usize,
    /// Expected lot size L (lots are Poisson-sampled with q = L / N).
    pub lot: usize,
    /// The per-example clip norm, noise multiplier and learning rate.
    pub step: DpSgd,
    /// δ of the ε reported.
    pub delta: f64,
    /// Seed of the lot sampling and the noise.
    pub seed: u64,
}

/// One epoch of a DP-SGD run.
#[derive(Debug, Clone, PartialEq)]
pub struct DpEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// ε spent so far at the run's δ (every mechanism the accountant has composed, this run's steps
    /// included).
    pub epsilon: f64,
    /// Accuracy on the validation examples after the epoch.
    pub validation_accuracy: f64,
    /// Share of the epoch's per-example gradients that were clipped.
    pub clipped: f64,
    /// Seconds the epoch's steps took.
    pub seconds: f64,
}

/// Trains `model` (on an autodiff device) with DP-SGD on `train`, scoring `valid` after every epoch and
/// composing every step into `accountant` (which may already hold other mechanisms, such as a private
/// PCA of the same data). Calls `on_epoch` after each epoch.
pub fn train_dp_sgd(
    mut model: Mlp,
    train: &Features,
    valid: &Features,
    config: &DpTraining,
    accountant: &mut RdpAccountant,
    mut on_epoch: impl FnMut(&DpEpoch),
) -> Result<(Mlp, Vec<DpEpoch>), PrivacyError> {
    let n = train.len();
    if config.lot == 0 || config.lot > n || config.epochs == 0 {
        return Err(PrivacyError::Model(format!(
            "a lot of {} from {n} examples for {} epochs: the lot must be 1..={n} and epochs ≥ 1",
            config.lot, config.epochs
        )));
    }
    let device = model.output.weight.val().device();
    let q = config.lot as f64 / n as f64;
    let steps = n / config.lot;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut epochs = Vec::with_capacity(config.epochs);
    for epoch in 1..=config.epochs {
        let started = Instant::now();
        let (mut clipped, mut seen) = (0usize, 0usize);
        for _ in 0..steps {
            let chosen: Vec<usize> = (0..n).filter(|_| rng.random::<f64>() < q).collect();
            if chosen.is_empty() {
                continue;
            }
            let (x, y) = train.batch(&chosen, &device);
            let (next, report) = config.step.step(model, x, y, config.lot as f32, &mut rng)?;
            model = next;
            clipped += report.clipped;
            seen += chosen.len();
        }
        let seconds = started.elapsed().as_secs_f64();
        accountant.compose_poisson_gaussian(
            q,
            f64::from(config.step.noise_multiplier),
            steps as u64,
        )?;
        let record = DpEpoch {
            epoch,
            epsilon: accountant.epsilon(config.delta)?.0,
            validation_accuracy: accuracy(&model, valid)?,
            clipped: clipped as f64 / seen.max(1) as f64,
            seconds,
        };
        on_epoch(&record);
        epochs.push(record);
    }
    Ok((model, epochs))
}

/// `model`'s accuracy on `data` (in chunks of 1,000, off the autodiff graph).
pub fn accuracy(model: &Mlp, data: &Features) -> Result<f64, PrivacyError> {
    if data.is_empty() {
        return Err(PrivacyError::Model("no examples to score".into()));
    }
    let model = model.valid();
    let device = model.output.weight.val().device();
    let mut right = 0i64;
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(1000) {
        let (x, y) = data.batch(chunk, &device);
        let predicted = model.forward(x).argmax(1).reshape([chunk.len()]);
        right += predicted.equal(y).int().sum().into_scalar::<i64>();
    }
    Ok(right as f64 / data.len() as f64)
}
