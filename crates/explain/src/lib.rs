//! Attributions of Kiln's image classifiers — which pixels a prediction rests on — as Captum defines them:
//! [`Explainer::saliency`], [`Explainer::input_x_gradient`], [`Explainer::integrated_gradients`] (with its
//! completeness gap), [`Explainer::smoothgrad`] (a noise tunnel over saliency), [`Explainer::occlusion`],
//! and [`grad_cam`] on a convolution block of the CNN; and, from a classifier's logits, its confusion
//! matrix, calibration and temperature scaling ([`outputs`]); and the statistics of every layer's input
//! over a dataset ([`activations`]); the Transformers' attention maps and their rollout ([`attention`]).
//!
//! Every classifier that reads an [`ImageBatch`] and scores classes works (the MLP, the CNN, the recurrent
//! classifiers and the Transformer classifier reading images row by row): the explainer runs its
//! `forward_step` on the autodiff device with the images as a leaf and differentiates the target class's
//! logit. Attributions are in the space the model reads, normalised pixels `[batch, height, width]`.
#![warn(missing_docs)]

pub mod activations;
pub mod attention;
mod integrated;
pub mod outputs;

pub use activations::{GateStatistics, LayerStatistics, activation_statistics, gate_saturation};
pub use attention::{attention_rollout, head_mean};
pub use integrated::{IntegratedGradients, Quadrature};
pub use outputs::{Calibration, ConfusionMatrix, Scored, fit_temperature};

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use kiln_core::{ClassificationOutput, Supervised};
use kiln_data::ImageBatch;
use kiln_models::Cnn;

/// What can go wrong computing attributions.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The targets do not fit the images or the model.
    #[error("{0}")]
    Argument(String),
    /// The model refused the images.
    #[error(transparent)]
    Model(#[from] kiln_models::ModelError),
    /// The backward pass gave no gradient for the input (a model that does not use it).
    #[error("no gradient reached the input")]
    NoGradient,
}

/// What [`Explainer::maximise_classes`] found.
#[derive(Debug, Clone)]
pub struct ClassImages {
    /// The images, `[batch, height, width]`, normalised pixels.
    pub images: Tensor<3>,
    /// Each target's logit at the start.
    pub before: Tensor<1>,
    /// Each target's logit at the end.
    pub after: Tensor<1>,
}

/// A classifier in inference mode on an autodiff device, ready to be differentiated with respect to its
/// input.
pub struct Explainer<M> {
    model: M,
    device: Device,
}

impl<M> Explainer<M>
where
    M: Supervised<Batch = ImageBatch, Output = ClassificationOutput> + Module,
{
    /// Explains `model` on `device` (a plain device; autodiff is added). Dropout is off.
    pub fn new(model: &M, device: &Device) -> Self {
        let device = device.clone().autodiff();
        Self {
            model: model.valid().fork(&device),
            device,
        }
    }

    /// The plain device attributions come back on.
    fn plain(&self) -> Device {
        Tensor::<1>::zeros([1], &self.device).inner().device()
    }

    fn labels(&self, targets: &[usize], n: usize) -> Result<Tensor<1, Int>, ExplainError> {
        if targets.len() != n {
            return Err(ExplainError::Argument(format!(
                "{} targets for {n} images",
                targets.len()
            )));
        }
        let t: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
        Ok(Tensor::from_data(TensorData::new(t, [n]), &self.device))
    }

    /// Class logits of `images` `[batch, height, width]`.
    pub fn logits(&self, images: Tensor<3>) -> Tensor<2> {
        let n = images.dims()[0];
        let images = on_autodiff(images);
        let labels = Tensor::zeros([n], &self.device);
        self.model
            .forward_step(ImageBatch { images, labels })
            .output
            .inner()
    }

    /// The logit of each image's target class.
    pub fn target_scores(
        &self,
        images: Tensor<3>,
        targets: &[usize],
    ) -> Result<Tensor<1>, ExplainError> {
        let n = images.dims()[0];
        let index = self.labels(targets, n)?.inner().reshape([n, 1]);
        Ok(self.logits(images).gather(1, index).reshape([n]))
    }

    /// The gradient of each image's target logit with respect to the image, and those logits.
    pub fn gradient(
        &self,
        images: Tensor<3>,
        targets: &[usize],
    ) -> Result<(Tensor<3>, Tensor<1>), ExplainError> {
        let n = images.dims()[0];
        let labels = self.labels(targets, n)?;
        let x = on_autodiff(images).require_grad();
        let out = self.model.forward_step(ImageBatch {
            images: x.clone(),
            labels: labels.clone(),
        });
        let scores = out.output.gather(1, labels.reshape([n, 1])).reshape([n]);
        // The images are independent, so the gradient of the sum is each image's own.
        let grads = scores.clone().sum().backward();
        let g = x.grad(&grads).ok_or(ExplainError::NoGradient)?;
        Ok((g, scores.inner()))
    }

    /// Saliency (Simonyan et al. 2014; Captum's `Saliency`, `abs=True`): |∂ score / ∂ pixel|.
    pub fn saliency(
        &self,
        images: Tensor<3>,
        targets: &[usize],
    ) -> Result<Tensor<3>, ExplainError> {
        Ok(self.gradient(images, targets)?.0.abs())
    }

    /// Gradient × input (Shrikumar et al. 2016; Captum's `InputXGradient`).
    pub fn input_x_gradient(
        &self,
        images: Tensor<3>,
        targets: &[usize],
    ) -> Result<Tensor<3>, ExplainError> {
        let (g, _) = self.gradient(images.clone(), targets)?;
        Ok(g * images.to_device(&self.plain()))
    }

    /// SmoothGrad (Smilkov et al. 2017; Captum's `NoiseTunnel(Saliency)` with `nt_type="smoothgrad"`):
    /// the mean saliency over `samples` copies of each image with Gaussian noise of standard deviation
    /// `stdev` added. The noise comes from the device's random stream (seed it for repeatable maps).
    pub fn smoothgrad(
        &self,
        images: Tensor<3>,
        targets: &[usize],
        samples: usize,
        stdev: f64,
    ) -> Result<Tensor<3>, ExplainError> {
        let plain = self.plain();
        let images = images.to_device(&plain);
        let noise: Vec<Tensor<3>> = (0..samples.max(1))
            .map(|_| images.random_like(Distribution::Normal(0.0, stdev)))
            .collect();
        self.smoothgrad_with_noise(images, targets, &noise)
    }

    /// SmoothGrad with the noise given: the mean over `noise` (each `[batch, height, width]`, like
    /// `images`) of the saliency of `images + noise[k]`. Captum's `NoiseTunnel` draws one
    /// `[batch · samples, …]` tensor for inputs repeated with `repeat_interleave`, so its sample `k` of
    /// image `b` is row `b · samples + k` of that draw.
    pub fn smoothgrad_with_noise(
        &self,
        images: Tensor<3>,
        targets: &[usize],
        noise: &[Tensor<3>],
    ) -> Result<Tensor<3>, ExplainError> {
        if noise.is_empty() {
            return Err(ExplainError::Argument(
                "SmoothGrad needs at least one noise sample".into(),
            ));
        }
        let plain = self.plain();
        let images = images.to_device(&plain);
        if let Some(n) = noise.iter().find(|n| n.dims() != images.dims()) {
            return Err(ExplainError::Argument(format!(
                "a noise sample of shape {:?} for images of shape {:?}",
                n.dims(),
                images.dims()
            )));
        }
        let mut total = Tensor::zeros_like(&images);
        for n in noise {
            total = total + self.saliency(images.clone() + n.clone().to_device(&plain), targets)?;
        }
        Ok(total / noise.len() as f64)
    }

    /// Activation maximisation of classes (Erhan et al. 2009; Simonyan et al. 2014, §2): gradient ascent on
    /// the input, from `start` (`[batch, height, width]`, one image per target), on the target logit minus
    /// `l2` · ‖x − start‖², for `steps` steps of size `lr`, every pixel kept in `range` (the model's
    /// normalised pixel range). Returns the images and their target logits before and after.
    pub fn maximise_classes(
        &self,
        start: Tensor<3>,
        targets: &[usize],
        steps: usize,
        lr: f32,
        l2: f32,
        range: (f32, f32),
    ) -> Result<ClassImages, ExplainError> {
        if !(lr > 0.0 && lr.is_finite() && l2 >= 0.0 && range.0 < range.1) {
            return Err(ExplainError::Argument(format!(
                "activation maximisation needs lr > 0 (got {lr}), l2 ≥ 0 (got {l2}) and a range low < high \
                 (got {range:?})"
            )));
        }
        let start = start.clamp(range.0, range.1);
        let (_, before) = self.gradient(start.clone(), targets)?;
        let mut x = start.clone();
        for _ in 0..steps {
            let (g, _) = self.gradient(x.clone(), targets)?;
            let pull = (x.clone() - start.clone()) * (2.0 * l2);
            x = (x + (g - pull) * lr).clamp(range.0, range.1);
        }
        let (_, after) = self.gradient(x.clone(), targets)?;
        Ok(ClassImages {
            images: x,
            before,
            after,
        })
    }

    /// Occlusion (Zeiler & Fergus 2014; Captum's `Occlusion`): every `window` (rows, columns) placed at
    /// multiples of `stride` is replaced by `baseline`, and each pixel gets the mean drop of the target
    /// logit over the windows that cover it (0 for a pixel no window covers).
    pub fn occlusion(
        &self,
        images: Tensor<3>,
        targets: &[usize],
        window: (usize, usize),
        stride: (usize, usize),
        baseline: f32,
    ) -> Result<Tensor<3>, ExplainError> {
        let plain = self.plain();
        let images = images.to_device(&plain);
        let [n, h, w] = images.dims();
        let (wh, ww) = window;
        let (sh, sw) = (stride.0.max(1), stride.1.max(1));
        if wh == 0 || ww == 0 || wh > h || ww > w {
            return Err(ExplainError::Argument(format!(
                "an occlusion window of {wh}×{ww} for {h}×{w} images"
            )));
        }
        let full = self.target_scores(images.clone(), targets)?;
        let mut total = Tensor::<3>::zeros([n, h, w], &plain);
        let mut count = Tensor::<3>::zeros([n, h, w], &plain);
        for top in (0..=h - wh).step_by(sh) {
            for left in (0..=w - ww).step_by(sw) {
                let mask = Tensor::<3>::zeros([1, h, w], &plain).slice_assign(
                    [0..1, top..top + wh, left..left + ww],
                    Tensor::ones([1, wh, ww], &plain),
                );
                let occluded =
                    images.clone() * (mask.clone().neg() + 1.0) + mask.clone() * baseline;
                let drop = full.clone() - self.target_scores(occluded, targets)?;
                total = total + mask.clone() * drop.reshape([n, 1, 1]);
                count = count + mask;
            }
        }
        Ok(total / count.clamp_min(1.0))
    }
}

/// `t` as a fresh leaf on the autodiff version of its device.
fn on_autodiff<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    let t = t.detach();
    if t.is_autodiff() {
        t.inner().autodiff()
    } else {
        t.autodiff()
    }
}

/// Grad-CAM (Selvaraju et al. 2017; Captum's `LayerGradCam` with its defaults: no ReLU on the map) on the
/// output of convolution block `block` of `cnn`: each channel weighted by the spatial mean of the target
/// logit's gradient, summed over channels. Returns `[batch, height', width']` at the block's resolution.
pub fn grad_cam(
    cnn: &Cnn,
    device: &Device,
    images: Tensor<3>,
    targets: &[usize],
    block: usize,
) -> Result<Tensor<3>, ExplainError> {
    let autodiff = device.clone().autodiff();
    let model = cnn.valid().fork(&autodiff);
    let [n, h, w] = images.dims();
    if targets.len() != n {
        return Err(ExplainError::Argument(format!(
            "{} targets for {n} images",
            targets.len()
        )));
    }
    let x = on_autodiff(images).reshape([n, 1, h, w]);
    let features = model.block_output(x, block)?.detach().require_grad();
    let logits = model.logits_from_block(features.clone(), block);
    let t: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    let index = Tensor::<2, Int>::from_data(TensorData::new(t, [n, 1]), &autodiff);
    let grads = logits.gather(1, index).sum().backward();
    let g = features.grad(&grads).ok_or(ExplainError::NoGradient)?;
    let a = features.inner();
    let [_, c, fh, fw] = a.dims();
    let weights = g.mean_dim(3).mean_dim(2); // [n, c, 1, 1]
    let _ = c;
    Ok((a * weights).sum_dim(1).reshape([n, fh, fw]))
}
