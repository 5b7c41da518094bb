//! DP-SGD (Abadi et al. 2016) for Kiln's MLP: every example's gradient clipped to L2 norm `clip_norm`, the
//! clipped sum noised with N(0, (σ · clip_norm)²) per coordinate, divided by the expected lot size, and a
//! plain SGD step.
//!
//! Per-example gradients, without vmap (burn has none): by *ghost clipping* (Goodfellow 2015; Lee & Kifer
//! 2020; Li et al. 2021). An example's gradient of a linear layer is the outer product xᵢᵀδᵢ of the layer's
//! input and the loss's gradient with respect to its output, so its squared norm is ‖xᵢ‖²·‖δᵢ‖² (plus ‖δᵢ‖²
//! for the bias) and needs no per-example gradient in memory. δ comes from a zero "probe" added to each
//! layer's output, whose gradient is δ row by row. A first forward/backward gives the norms and so each
//! example's clip factor cᵢ = min(1, C / ‖gᵢ‖); a second backward of Σ cᵢ·lossᵢ gives the clipped sum
//! directly. Two passes per step, against one for SGD, whatever the batch; the alternative, one backward per
//! example, costs a pass per example. The probes need the layers' outputs, so this is written for the MLP's
//! structure (the model family Abadi et al. trained).

use crate::PrivacyError;
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::Gradients;
use burn::tensor::activation::log_softmax;
use kiln_models::Mlp;
use rand::Rng;
use rand::rngs::StdRng;

/// DP-SGD's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpSgd {
    /// The L2 norm every example's gradient is clipped to (C).
    pub clip_norm: f32,
    /// The noise standard deviation as a multiple of `clip_norm` (σ).
    pub noise_multiplier: f32,
    /// The SGD learning rate.
    pub lr: f32,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct DpStep {
    /// Mean cross-entropy of the lot before the step.
    pub loss: f32,
    /// Each example's gradient norm before clipping.
    pub norms: Vec<f32>,
    /// How many of them were clipped.
    pub clipped: usize,
}

/// The logits and per-example losses of `images` (`[batch, features]`), with a zero probe added to every
/// layer's output and each layer's input kept.
struct Probed {
    losses: Tensor<1>,
    inputs: Vec<Tensor<2>>,
    probes: Vec<Tensor<2>>,
}

fn probed_forward(model: &Mlp, images: Tensor<2>, labels: Tensor<1, Int>) -> Probed {
    let [batch, _] = images.dims();
    let device = images.device();
    let mut inputs = Vec::new();
    let mut probes = Vec::new();
    let mut x = images;
    let layers = model.hidden.iter().chain(std::iter::once(&model.output));
    let depth = model.hidden.len();
    for (i, layer) in layers.enumerate() {
        let out = layer.weight.dims()[1];
        let probe = Tensor::<2>::zeros([batch, out], &device).require_grad();
        inputs.push(x.clone());
        let y = layer.forward(x) + probe.clone();
        probes.push(probe);
        x = if i < depth {
            model.activation.apply(y)
        } else {
            y
        };
    }
    let losses = -log_softmax(x, 1)
        .gather(1, labels.reshape([batch, 1]))
        .reshape([batch]);
    Probed {
        losses,
        inputs,
        probes,
    }
}

/// Every example's gradient norm (all parameters together) of the cross-entropy of `model` on
/// `images` (`[batch, features]`) with `labels`, by ghost norms. `model` must be on an autodiff device.
pub fn per_example_gradient_norms(
    model: &Mlp,
    images: Tensor<2>,
    labels: Tensor<1, Int>,
) -> Result<Vec<f32>, PrivacyError> {
    check(model)?;
    let probed = probed_forward(model, images, labels);
    let grads = probed.losses.clone().sum().backward();
    norms(model, &probed, &grads)
}

fn check(model: &Mlp) -> Result<(), PrivacyError> {
    if model.dropout.prob > 0.0 {
        return Err(PrivacyError::Model(format!(
            "the MLP has dropout {}: DP-SGD's two passes must see the same network, so train it without",
            model.dropout.prob
        )));
    }
    Ok(())
}

fn norms(model: &Mlp, probed: &Probed, grads: &Gradients) -> Result<Vec<f32>, PrivacyError> {
    let layers: Vec<_> = model
        .hidden
        .iter()
        .chain(std::iter::once(&model.output))
        .collect();
    let mut squared: Option<Tensor<1>> = None;
    for ((layer, x), probe) in layers.iter().zip(&probed.inputs).zip(&probed.probes) {
        let delta = probe
            .grad(grads)
            .ok_or_else(|| PrivacyError::Model("no gradient reached a layer's output".into()))?;
        let [batch, _] = delta.dims();
        let delta_sq = delta.powi_scalar(2).sum_dim(1).reshape([batch]);
        let x_sq = x.clone().inner().powi_scalar(2).sum_dim(1).reshape([batch]);
        let bias = if layer.bias.is_some() { 1.0 } else { 0.0 };
        let layer_sq = (x_sq + bias) * delta_sq;
        squared = Some(match squared {
            Some(s) => s + layer_sq,
            None => layer_sq,
        });
    }
    let squared = squared.ok_or_else(|| PrivacyError::Model("an MLP without layers".into()))?;
    squared
        .sqrt()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| PrivacyError::Model(format!("cannot read the gradient norms back: {e:?}")))
}

impl DpSgd {
    /// One DP-SGD step of `model` (on an autodiff device) on a lot `images` (`[batch, features]`) with
    /// `labels`, the noised sum divided by `expected_batch` (the lot size Poisson sampling expects, q · N).
    /// The noise is drawn from `rng` (on the host, so that a seeded run repeats whatever else uses the
    /// device's random stream).
    pub fn step(
        &self,
        model: Mlp,
        images: Tensor<2>,
        labels: Tensor<1, Int>,
        expected_batch: f32,
        rng: &mut StdRng,
    ) -> Result<(Mlp, DpStep), PrivacyError> {
        let valid = self.clip_norm > 0.0
            && self.noise_multiplier >= 0.0
            && self.lr > 0.0
            && expected_batch > 0.0;
        if !valid {
            return Err(PrivacyError::Model(format!(
                "DP-SGD needs clip_norm > 0, noise_multiplier ≥ 0, lr > 0 and an expected batch > 0 (got \
                 {self:?}, expected batch {expected_batch})"
            )));
        }
        check(&model)?;
        let first = probed_forward(&model, images.clone(), labels.clone());
        let loss = first.losses.clone().inner().mean().into_scalar::<f32>();
        let grads = first.losses.clone().sum().backward();
        let norms = norms(&model, &first, &grads)?;
        let factors: Vec<f32> = norms
            .iter()
            .map(|&n| (self.clip_norm / (n + 1e-6)).min(1.0))
            .collect();
        let clipped = factors.iter().filter(|f| **f < 1.0).count();
        let device = images.device();
        let weights = Tensor::<1>::from_data(
            TensorData::new(factors, [norms.len()]),
            &device.clone().inner(),
        );
        // The clipped sum: the gradient of Σ cᵢ·lossᵢ (the factors are constants).
        let second = probed_forward(&model, images, labels);
        let grads = (second.losses * Tensor::from_inner(weights))
            .sum()
            .backward();
        let mut update = NoisyUpdate {
            grads: &grads,
            std: self.noise_multiplier * self.clip_norm,
            scale: self.lr / expected_batch,
            rng,
        };
        let model = model.map(&mut update);
        Ok((
            model,
            DpStep {
                loss,
                norms,
                clipped,
            },
        ))
    }
}

/// θ ← θ − lr · (g + N(0, std²)) / expected batch, for every parameter with a gradient.
struct NoisyUpdate<'a> {
    grads: &'a Gradients,
    std: f32,
    scale: f32,
    rng: &'a mut StdRng,
}

impl ModuleMapper for NoisyUpdate<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grad) = param.val().grad(self.grads) else {
            return param;
        };
        let (std, scale) = (self.std, self.scale);
        let noise = (std > 0.0).then(|| {
            let shape = grad.dims();
            let values = gaussian(self.rng, shape.iter().product(), std);
            Tensor::<D>::from_data(TensorData::new(values, shape), &grad.device())
        });
        param.map(|t| {
            let noisy = match noise {
                Some(noise) => grad + noise,
                None => grad,
            };
            Tensor::from_inner(t.inner() - noisy * scale).require_grad()
        })
    }
}

/// `n` draws of N(0, std²) by the Box–Muller transform (the workspace's `rand` 0.9 has no normal
/// distribution of its own, and the `rand_distr` in the lock file belongs to another `rand`).
pub(crate) fn gaussian(rng: &mut StdRng, n: usize, std: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * f64::from(std);
        let theta = std::f64::consts::TAU * u2;
        out.push((r * theta.cos()) as f32);
        out.push((r * theta.sin()) as f32);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn box_muller_draws_have_the_asked_spread() {
        let mut rng = StdRng::seed_from_u64(1);
        let v = gaussian(&mut rng, 200_001, 2.5);
        assert_eq!(v.len(), 200_001);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var.sqrt() - 2.5).abs() < 0.02, "std {}", var.sqrt());
    }
}
