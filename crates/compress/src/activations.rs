//! Static int8 quantization of activations (W8A8), which burn 0.22 does not have: the input of every weight
//! layer is calibrated on a few training batches (MinMax, as PyTorch's `MinMaxObserver`), then rounded to
//! one of 256 affine levels on every forward pass; the weights are per-channel int8
//! ([`crate::ptq_int8_per_channel`]).
//!
//! This is *simulated* quantization, as in PyTorch's `prepare`/`calibrate` before `convert`: the rounding
//! (and so the accuracy) is that of an int8 engine, but the arithmetic stays float, since burn has no int8
//! matrix multiply or convolution on the CPU; it measures what int8 activations cost in accuracy, not speed.

use crate::{CompressError, ptq_int8_per_channel};
use burn::module::Param;
use burn::prelude::*;
use kiln_core::{ClassificationOutput, Supervised};
use kiln_data::ImageBatch;
use kiln_models::{HookedClassifier, Layer, LayerInputHook};

/// Number of affine levels of an 8-bit activation.
const LEVELS: f64 = 255.0;

/// Records the smallest and largest input of every layer over the batches it sees.
#[derive(Debug, Clone, Default)]
pub struct RangeObserver {
    /// Layers, in forward order, with their `(min, max)` so far.
    pub ranges: Vec<(Layer, f32, f32)>,
}

impl LayerInputHook for RangeObserver {
    fn layer_input<const D: usize>(&mut self, layer: Layer, input: Tensor<D>) -> Tensor<D> {
        // One read from the device for both.
        let extremes = Tensor::cat(vec![input.clone().min(), input.clone().max()], 0)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_else(|_| vec![f32::NAN; 2]);
        let (min, max) = (extremes[0], extremes[1]);
        match self.ranges.iter_mut().find(|(seen, _, _)| *seen == layer) {
            Some((_, lo, hi)) => {
                *lo = lo.min(min);
                *hi = hi.max(max);
            }
            None => self.ranges.push((layer, min, max)),
        }
        input
    }
}

/// `x` rounded to 256 affine levels spanning `[min, max]` (values outside are clamped): the level is
/// `clamp(round(x / s) + z, 0, 255)` with `s = (max − min) / 255` and the zero point `z = round(−min / s)`,
/// and the result `(level − z) · s`. `min ≤ 0 ≤ max` is expected, so that 0 is exact.
///
/// # Shapes
/// - `x`: any; `min`, `max`: `[1]`
pub fn fake_quantize_activation<const D: usize>(
    x: Tensor<D>,
    min: Tensor<1>,
    max: Tensor<1>,
) -> Tensor<D> {
    let scale = ((max - min.clone()) / LEVELS).clamp_min(1e-12);
    let zero_point = (min.neg() / scale.clone()).round();
    let (scale, zero_point) = (scale.reshape([1; D]), zero_point.reshape([1; D]));
    let level = ((x / scale.clone()).round() + zero_point.clone()).clamp(0.0, LEVELS);
    (level - zero_point) * scale
}

/// The field name of [`StaticInt8::ranges`] in the module record.
pub(crate) const RANGES: &str = "ranges";

/// How burn's visitors name the struct holding [`StaticInt8::ranges`] (`Struct:` and the type's name).
pub(crate) const RANGES_CONTAINER: &str = "Struct:StaticInt8";

/// A classifier with int8 weights (per channel) and int8 layer inputs (per tensor, calibrated ranges).
#[derive(Module, Debug)]
pub struct StaticInt8<M: Module> {
    /// The model, its weights per-channel int8.
    pub model: M,
    /// `[min₀, max₀, min₁, max₁, …]`: the calibrated input range of each layer in [`Self::layers`]; saved with
    /// the weights, never trained.
    pub ranges: Param<Tensor<1>>,
    /// The calibrated layers, in forward order.
    #[module(skip)]
    pub layers: Vec<Layer>,
}

impl<M: HookedClassifier> StaticInt8<M> {
    /// Calibrates the input range of every layer of `model` on `batches` (the float model, as PyTorch does
    /// before converting), then quantizes its weights per channel.
    pub fn calibrate(
        model: M,
        batches: impl IntoIterator<Item = ImageBatch>,
    ) -> Result<Self, CompressError> {
        let model_eval = model.valid();
        let mut observer = RangeObserver::default();
        let mut seen = 0;
        for batch in batches {
            let _ = model_eval.forward_step_hooked(batch, &mut observer);
            seen += 1;
        }
        if seen == 0 || observer.ranges.is_empty() {
            return Err(CompressError::Config {
                what: "calibration",
                message: "no calibration batches (or a model without weight layers)".into(),
            });
        }
        let mut flat = Vec::with_capacity(2 * observer.ranges.len());
        for (name, min, max) in &observer.ranges {
            if !(min.is_finite() && max.is_finite()) {
                return Err(CompressError::Config {
                    what: "calibration",
                    message: format!("the input of layer {name} is not finite ({min}, {max})"),
                });
            }
            // The range always holds 0, so that zero (padding, ReLU's output) is exact.
            flat.extend([min.min(0.0), max.max(0.0)]);
        }
        let device = model.devices().into_iter().next().unwrap_or_default();
        let ranges = Tensor::<1>::from_floats(flat.as_slice(), &device);
        Ok(Self {
            model: ptq_int8_per_channel(model),
            ranges: Param::from_tensor(ranges).set_require_grad(false),
            layers: observer.ranges.iter().map(|(layer, _, _)| *layer).collect(),
        })
    }
}

/// Rounds each layer input to its calibrated int8 levels.
struct QuantizeInputs<'a> {
    layers: &'a [Layer],
    ranges: Tensor<1>,
}

impl LayerInputHook for QuantizeInputs<'_> {
    fn layer_input<const D: usize>(&mut self, layer: Layer, input: Tensor<D>) -> Tensor<D> {
        let Some(i) = self
            .layers
            .iter()
            .position(|&calibrated| calibrated == layer)
        else {
            panic!("layer {layer} was not calibrated: calibrate the model it belongs to");
        };
        let min = self.ranges.clone().slice(2 * i..2 * i + 1);
        let max = self.ranges.clone().slice(2 * i + 1..2 * i + 2);
        fake_quantize_activation(input, min, max)
    }
}

impl<M: HookedClassifier> Supervised for StaticInt8<M> {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    fn forward_step(&self, batch: ImageBatch) -> ClassificationOutput {
        let mut hook = QuantizeInputs {
            layers: &self.layers,
            ranges: self.ranges.val(),
        };
        self.model.forward_step_hooked(batch, &mut hook)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use kiln_models::{CnnConfig, MlpConfig};

    fn batch(device: &Device, n: usize, seed: u64) -> ImageBatch {
        device.seed(seed);
        ImageBatch {
            images: Tensor::random([n, 8, 8], Distribution::Normal(0.0, 1.0), device),
            labels: Tensor::from_ints(
                [0, 1, 2].repeat(n.div_ceil(3))[..n].to_vec().as_slice(),
                device,
            ),
        }
    }

    #[test]
    fn activations_take_256_levels_with_error_within_half_a_step_and_exact_zero() {
        let device = Device::flex();
        device.seed(7);
        let x = Tensor::<2>::random([50, 40], Distribution::Uniform(-1.0, 3.0), &device);
        let (min, max) = (-1.0f32, 3.0f32);
        let q = fake_quantize_activation(
            x.clone(),
            Tensor::from_floats([min], &device),
            Tensor::from_floats([max], &device),
        );
        let step = (max - min) / 255.0;
        let error = (q.clone() - x).abs().max().into_scalar::<f32>();
        assert!(error <= step / 2.0 + 1e-5, "{error} > {}", step / 2.0);
        let mut levels: Vec<i64> = q
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| (v / step).round() as i64)
            .collect();
        levels.sort_unstable();
        levels.dedup();
        assert!(levels.len() <= 256, "{} levels", levels.len());
        // Zero stays zero; values beyond the range are clamped to it.
        let edge = fake_quantize_activation(
            Tensor::<1>::from_floats([0.0, 10.0, -10.0], &device),
            Tensor::from_floats([min], &device),
            Tensor::from_floats([max], &device),
        )
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
        assert_eq!(edge[0], 0.0);
        assert!((edge[1] - max).abs() <= step && (edge[2] - min).abs() <= step);
    }

    #[test]
    fn calibrated_model_stays_close_to_float_and_saves_its_ranges() {
        let device = Device::flex();
        device.seed(8);
        for cnn in [false, true] {
            let x = batch(&device, 6, 9);
            let (float_logits, w8a8) = if cnn {
                let model = CnnConfig::new(1, 8, 8, 3)
                    .with_hidden(vec![16])
                    .init(&device)
                    .unwrap();
                let q = StaticInt8::calibrate(model.clone(), [batch(&device, 32, 10)]).unwrap();
                assert_eq!(
                    q.layers.iter().map(Layer::to_string).collect::<Vec<_>>(),
                    ["blocks.0.conv", "blocks.1.conv", "hidden.0", "output"]
                );
                (
                    model.forward_step(x.clone()).output,
                    q.forward_step(x.clone()).output,
                )
            } else {
                let model = MlpConfig::new(64, vec![32], 3).init(&device).unwrap();
                let q = StaticInt8::calibrate(model.clone(), [batch(&device, 32, 10)]).unwrap();
                assert_eq!(
                    q.layers.iter().map(Layer::to_string).collect::<Vec<_>>(),
                    ["hidden.0", "output"]
                );
                // Saved and loaded into a freshly calibrated model of the same shape: the ranges come back.
                let file =
                    std::env::temp_dir().join(format!("kiln-w8a8-{}.bpk", std::process::id()));
                q.clone().save_file(&file).unwrap();
                let other = StaticInt8::calibrate(
                    MlpConfig::new(64, vec![32], 3).init(&device).unwrap(),
                    [batch(&device, 4, 11)],
                )
                .unwrap();
                let loaded = other.try_load_file(&file).unwrap();
                // burn reads a loaded file lazily: remove it only after the tensors are read.
                loaded
                    .ranges
                    .val()
                    .into_data()
                    .assert_approx_eq::<f32>(&q.ranges.val().into_data(), Tolerance::absolute(0.0));
                std::fs::remove_file(&file).ok();
                (
                    model.forward_step(x.clone()).output,
                    q.forward_step(x.clone()).output,
                )
            };
            let scale = float_logits.clone().abs().max().into_scalar::<f32>();
            let diff = (w8a8.clone() - float_logits)
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(diff > 0.0, "activations were not rounded");
            assert!(
                diff < 0.05 * scale,
                "cnn {cnn}: {diff} against logits up to {scale}"
            );
        }
    }

    #[test]
    fn sparsity_reports_leave_out_the_ranges_wherever_the_model_is_nested() {
        let device = Device::flex();
        device.seed(3);
        let model = MlpConfig::new(64, vec![8], 3).init(&device).unwrap();
        let total = |report: &[crate::LayerSparsity]| report.iter().map(|l| l.total).sum::<usize>();
        let params = total(&crate::sparsity_report(&model));
        assert_eq!(params, 64 * 8 + 8 + 8 * 3 + 3);
        let q = StaticInt8::calibrate(model.clone(), [batch(&device, 8, 1)]).unwrap();
        assert_eq!(total(&crate::sparsity_report(&q)), params);
        // Nested as a distillation student, its ranges sit at `student.ranges`.
        let nested = crate::Distillation::new(q, model, crate::DistillationConfig::new()).unwrap();
        let report = crate::sparsity_report(&nested);
        assert!(
            report.iter().all(|l| !l.path.ends_with("ranges")),
            "{report:?}"
        );
        assert_eq!(total(&report), params);
    }

    #[test]
    fn calibration_without_batches_is_an_error() {
        let device = Device::flex();
        let model = MlpConfig::new(64, vec![8], 3).init(&device).unwrap();
        let error = StaticInt8::calibrate(model, Vec::new()).unwrap_err();
        assert!(error.to_string().contains("calibration"), "{error}");
    }
}
