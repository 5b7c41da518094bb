//! Int8 quantization: post-training weight quantization through burn, and quantization-aware training
//! with fake quantization and a straight-through estimator.
//!
//! - [`ptq_int8`] quantizes every weight with burn's quantization (MinMax calibration, symmetric int8, per
//!   tensor or per block); burn stores the weights packed, so saved files shrink about 4×, and dequantizes
//!   them in every operation.
//! - burn 0.22 has no per-channel scales and no quantization-aware training, so [`fake_quantize_int8`]
//!   (per tensor, per output channel or per block) and [`FakeQuant`] (a burn reparameterization: the forward
//!   pass sees the quantized weight, the backward pass treats the rounding as the identity) are written here.
//! - [`ptq_int8_per_channel`] stores per-channel int8 through burn all the same: each weight becomes
//!   integer levels `q` (in `[−127, 127]`, stored by burn's per-tensor int8 with a scale of exactly 1, so
//!   losslessly) times a [`ChannelScale`] reparameterization holding one f32 scale per output channel.

use burn::module::{Module, ModuleMapper, Param, Reparameterization, Reparameterizer};
use burn::prelude::*;
use burn::tensor::quantization::{
    Calibration, CalibrationRange, QuantScheme, ScaleDtype, compute_q_params, compute_range,
};
use serde::{Deserialize, Serialize};

/// Which weights share one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One scale per tensor.
    PerTensor,
    /// One scale per output channel: dimension 1 of a rank-2 weight (burn's `Linear` is `[in, out]`),
    /// dimension 0 of higher ranks (convolutions are `[out, in, k…]`).
    PerChannel,
    /// One scale per block of this many consecutive values (in row-major order).
    PerBlock(usize),
}

/// The largest int8 magnitude used (symmetric quantization leaves −128 out).
const QMAX: f64 = 127.0;

/// `x` quantized to symmetric int8 and dequantized: `clamp(round(x / s), −127, 127) · s`, with `s` the
/// group's largest magnitude over 127 (MinMax calibration). The error of each value is at most `s / 2`.
pub fn fake_quantize_int8<const D: usize>(x: Tensor<D>, granularity: Granularity) -> Tensor<D> {
    let shape = x.shape();
    let n = shape.num_elements();
    // Rows of the 2-D view each hold one group.
    let grouped: Tensor<2> = match granularity {
        Granularity::PerTensor => x.reshape([1, n]),
        Granularity::PerChannel => channel_rows(x),
        Granularity::PerBlock(block) => {
            let block = block.max(1);
            let padded = n.div_ceil(block) * block;
            let flat = x.reshape([n]);
            let flat = if padded > n {
                Tensor::cat(
                    vec![flat.clone(), Tensor::zeros([padded - n], &flat.device())],
                    0,
                )
            } else {
                flat
            };
            flat.reshape([padded / block, block])
        }
    };
    let scale = row_scales(grouped.clone());
    let dequantized = (grouped / scale.clone()).round().clamp(-QMAX, QMAX) * scale;
    match granularity {
        Granularity::PerTensor => dequantized.reshape(shape),
        Granularity::PerChannel if channel_dim(D) == 1 => dequantized.transpose().reshape(shape),
        Granularity::PerChannel => dequantized.reshape(shape),
        Granularity::PerBlock(_) => {
            let [rows, cols] = dequantized.dims();
            dequantized
                .reshape([rows * cols])
                .slice(0..n)
                .reshape(shape)
        }
    }
}

/// The 2-D view of a weight with one row per output channel (dimension [`channel_dim`]).
fn channel_rows<const D: usize>(x: Tensor<D>) -> Tensor<2> {
    let dims = x.dims();
    if channel_dim(D) == 1 {
        x.reshape([dims[0], dims[1]]).transpose()
    } else {
        let n: usize = dims.iter().product();
        x.reshape([dims[0], n / dims[0].max(1)])
    }
}

/// The symmetric int8 scale of each row (MinMax): its largest magnitude over 127, `[rows, 1]`.
fn row_scales(rows: Tensor<2>) -> Tensor<2> {
    (rows.abs().max_dim(1) / QMAX).clamp_min(1e-12)
}

/// Fake quantization of a weight for quantization-aware training: the effective weight is the int8-rounded
/// one, and gradients pass through the rounding unchanged (the straight-through estimator).
#[derive(Module, Debug)]
pub struct FakeQuant {
    /// Which weights share a scale.
    #[module(skip)]
    pub granularity: Granularity,
}

impl Reparameterization for FakeQuant {
    const NAME: &'static str = "fake_quant";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let rounded = fake_quantize_int8(base.clone().detach(), self.granularity);
        // base + (q(base) − base) with the difference out of the graph: forward q(base), backward identity.
        base.clone() + (rounded - base.detach())
    }
}

/// Attaches [`FakeQuant`] to every weight of rank 2 or more (biases stay float, as in int8 inference).
#[derive(Debug, Clone, Copy)]
pub struct QatQuantizer {
    /// Which weights share a scale.
    pub granularity: Granularity,
}

impl Reparameterizer for QatQuantizer {
    type Reparam = FakeQuant;

    fn reparameterize<const D: usize>(
        &mut self,
        _path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<FakeQuant>) {
        if D < 2 {
            return (param, None);
        }
        (
            param,
            Some(FakeQuant {
                granularity: self.granularity,
            }),
        )
    }
}

impl QatQuantizer {
    /// Returns `model` with fake quantization on its weights, ready to fine-tune; `Module::materialize`
    /// afterwards gives the rounded float weights, and [`ptq_int8`] then stores them as int8.
    pub fn prepare<M: Module>(self, model: M) -> M {
        model.apply_reparameterization(self)
    }
}

/// Post-training int8 quantization of every weight (float parameter of rank 2 or more) through burn's
/// quantization (symmetric, MinMax calibration): one scale per tensor, or one per `block` consecutive values
/// of the last dimension where that dimension is a multiple of `block` (burn requires whole blocks; other
/// weights fall back to one scale per tensor). Biases stay float, as in int8 inference engines.
pub fn ptq_int8<M: Module>(model: M, block: Option<u8>) -> M {
    model.map(&mut PtqMapper { block })
}

/// burn's `Quantizer` applies one scheme to every parameter, and a per-block scheme panics on a tensor its
/// blocks do not tile; this mapper picks the scheme per weight.
struct PtqMapper {
    block: Option<u8>,
}

impl ModuleMapper for PtqMapper {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D < 2 {
            return param;
        }
        let block = self.block;
        param.map(|tensor| {
            let last = tensor.dims()[D - 1];
            let scheme = match block {
                Some(b) if b > 0 && last % b as usize == 0 => {
                    QuantScheme::default().per_block([b], ScaleDtype::F32)
                }
                _ => QuantScheme::default(),
            };
            let range = compute_range(&scheme, &tensor, &Calibration::MinMax);
            let qparams = compute_q_params(&scheme, range);
            tensor.quantize(&scheme, qparams)
        })
    }
}

/// The output-channel dimension of a weight of rank `rank`: 1 for burn's `Linear` (`[in, out]`), 0 for
/// convolutions (`[out, in, k…]`).
fn channel_dim(rank: usize) -> usize {
    if rank == 2 { 1 } else { 0 }
}

/// One scale per output channel of a weight stored as integer levels: the effective weight is
/// `levels · scale`, the scale broadcast along the weight's channel dimension.
#[derive(Module, Debug)]
pub struct ChannelScale {
    /// One scale per output channel; never trained.
    pub scale: Param<Tensor<1>>,
}

impl Reparameterization for ChannelScale {
    const NAME: &'static str = "channel_scale";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let mut shape = [1; D];
        shape[channel_dim(D)] = self.scale.dims()[0];
        base * self.scale.val().reshape(shape)
    }
}

/// Splits every weight into integer levels and a [`ChannelScale`] (MinMax calibration per channel).
struct PerChannelSplitter;

impl Reparameterizer for PerChannelSplitter {
    type Reparam = ChannelScale;

    fn reparameterize<const D: usize>(
        &mut self,
        _path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<ChannelScale>) {
        if D < 2 {
            return (param, None);
        }
        let weight = param.val();
        let channel = channel_dim(D);
        let channels = weight.dims()[channel];
        let scale = row_scales(channel_rows(weight.clone())).reshape([channels]);
        let mut broadcast = [1; D];
        broadcast[channel] = channels;
        let levels = (weight / scale.clone().reshape(broadcast))
            .round()
            .clamp(-QMAX, QMAX);
        (
            param.map(|_| levels),
            Some(ChannelScale {
                scale: Param::from_tensor(scale).set_require_grad(false),
            }),
        )
    }
}

/// Post-training int8 quantization with one scale per output channel (what PyTorch and TensorRT default
/// to for weights), stored as int8 on disk: see the module docs. Biases stay float. A model of the same
/// architecture passed through this function loads the saved file back.
pub fn ptq_int8_per_channel<M: Module>(model: M) -> M {
    model
        .apply_reparameterization(PerChannelSplitter)
        .map(&mut LevelsMapper)
}

/// Stores integer levels in `[−127, 127]` as burn int8 with a scale of exactly 1. burn's symmetric int8
/// maps `±max|x|` onto 255 steps (a scale of `2·127/255` for levels, which would round them again), so the
/// range is given as `±127.5` instead of calibrated.
struct LevelsMapper;

impl ModuleMapper for LevelsMapper {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D < 2 {
            return param;
        }
        param.map(|levels| {
            let device = levels.device();
            let scheme = QuantScheme::default();
            let range = CalibrationRange {
                min: Tensor::from_floats([-(QMAX + 0.5)], &device),
                max: Tensor::from_floats([QMAX + 0.5], &device),
            };
            let qparams = compute_q_params(&scheme, range);
            levels.quantize(&scheme, qparams)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use kiln_models::{CnnConfig, MlpConfig};

    #[test]
    fn quantize_dequantize_error_is_at_most_half_a_step() {
        let device = Device::flex();
        device.seed(3);
        let x = Tensor::<2>::random([6, 10], Distribution::Normal(0.0, 1.0), &device)
            * Tensor::<2>::from_data(
                [[1.0, 10.0, 0.1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]],
                &device,
            );
        for granularity in [
            Granularity::PerTensor,
            Granularity::PerChannel,
            Granularity::PerBlock(7),
        ] {
            let q = fake_quantize_int8(x.clone(), granularity);
            let error = (q.clone() - x.clone()).abs();
            // The coarsest step any group can have: the tensor's largest magnitude / 127.
            let step = x.clone().abs().max().into_scalar::<f32>() / 127.0;
            assert!(
                error.clone().max().into_scalar::<f32>() <= step / 2.0 + 1e-6,
                "{granularity:?}"
            );
            // At most 255 distinct levels per group; here checked per tensor for the per-tensor case.
            if granularity == Granularity::PerTensor {
                let levels = (q / step).round();
                assert!(levels.abs().max().into_scalar::<f32>() <= 127.0);
            }
        }
        // Per channel: column 2 (values ~0.1) keeps fine steps, unlike per tensor.
        let per_channel = fake_quantize_int8(x.clone(), Granularity::PerChannel);
        let per_tensor = fake_quantize_int8(x.clone(), Granularity::PerTensor);
        let column = |t: Tensor<2>| {
            (t - x.clone())
                .slice([0..6, 2..3])
                .abs()
                .max()
                .into_scalar::<f32>()
        };
        assert!(column(per_channel) < column(per_tensor) / 10.0);
    }

    #[test]
    fn fake_quantization_rounds_forward_and_passes_gradients_straight_through() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let model = MlpConfig::new(8, vec![6], 3).init(&device).unwrap();
        let dense_weight = model.hidden[0].weight.val();
        let qat = QatQuantizer {
            granularity: Granularity::PerChannel,
        }
        .prepare(model);
        let effective = qat.hidden[0].weight.val();
        effective.clone().into_data().assert_approx_eq::<f32>(
            &fake_quantize_int8(dense_weight.clone().detach(), Granularity::PerChannel).into_data(),
            Tolerance::absolute(1e-6),
        );
        // d(sum(w_q))/d(w) is 1 everywhere under the straight-through estimator.
        let grads = effective.sum().backward();
        let grad = qat.hidden[0].weight.base().grad(&grads).unwrap();
        grad.into_data().assert_approx_eq::<f32>(
            &Tensor::<2>::ones([8, 6], &device.inner()).into_data(),
            Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn post_training_int8_is_smaller_on_disk_close_in_output_and_loads_back() {
        let device = Device::flex();
        device.seed(5);
        let model = MlpConfig::new(256, vec![128], 10).init(&device).unwrap();
        let x = Tensor::<2>::random([4, 256], Distribution::Default, &device);
        let dense_out = model.try_forward(x.clone()).unwrap();
        let dir = std::env::temp_dir().join(format!("kiln-ptq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dense_file = dir.join("dense.bpk");
        model.clone().save_file(&dense_file).unwrap();
        for block in [None, Some(32)] {
            let quantized = ptq_int8(model.clone(), block);
            let out = quantized.try_forward(x.clone()).unwrap();
            let diff = (out - dense_out.clone()).abs().max().into_scalar::<f32>();
            assert!(diff < 0.05, "{block:?}: {diff}");
            let file = dir.join("int8.bpk");
            quantized.clone().save_file(&file).unwrap();
            let ratio = std::fs::metadata(&dense_file).unwrap().len() as f64
                / std::fs::metadata(&file).unwrap().len() as f64;
            // Per block, each 32 int8 values carry a 4-byte scale: at best 128 / 36 = 3.56×.
            let bar = if block.is_none() { 3.5 } else { 3.2 };
            assert!(ratio > bar, "{block:?}: {ratio:.2}× smaller");
            // Loads back into a quantized model of the same architecture.
            let fresh = ptq_int8(
                MlpConfig::new(256, vec![128], 10).init(&device).unwrap(),
                block,
            );
            let loaded = fresh.try_load_file(&file).unwrap();
            loaded
                .try_forward(x.clone())
                .unwrap()
                .into_data()
                .assert_approx_eq::<f32>(
                    &quantized.try_forward(x.clone()).unwrap().into_data(),
                    Tolerance::absolute(1e-6),
                );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn per_channel_int8_matches_fake_quantization_is_small_on_disk_and_loads_back() {
        let device = Device::flex();
        device.seed(6);
        let config = CnnConfig::new(1, 12, 12, 10).with_hidden(vec![32]);
        let model = config.init(&device).unwrap();
        let x = Tensor::<3>::random([4, 12, 12], Distribution::Default, &device);
        let quantized = ptq_int8_per_channel(model.clone());
        // The stored levels times the channel scales are exactly the per-channel fake-quantized weights.
        let conv = quantized.blocks[0].conv.weight.val();
        conv.into_data().assert_approx_eq::<f32>(
            &fake_quantize_int8(model.blocks[0].conv.weight.val(), Granularity::PerChannel)
                .into_data(),
            Tolerance::absolute(1e-6),
        );
        let linear = quantized.hidden[0].weight.val();
        linear.into_data().assert_approx_eq::<f32>(
            &fake_quantize_int8(model.hidden[0].weight.val(), Granularity::PerChannel).into_data(),
            Tolerance::absolute(1e-6),
        );
        // The scales are quantization metadata, not parameters of the model.
        let layers = |m: &kiln_models::Cnn| {
            crate::sparsity_report(m)
                .iter()
                .map(|l| (l.path.clone(), l.total))
                .collect::<Vec<_>>()
        };
        assert_eq!(layers(&quantized), layers(&model));
        let dir = std::env::temp_dir().join(format!("kiln-ptq-pc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (dense_file, file) = (dir.join("dense.bpk"), dir.join("int8.bpk"));
        model.clone().save_file(&dense_file).unwrap();
        quantized.clone().save_file(&file).unwrap();
        let ratio = std::fs::metadata(&dense_file).unwrap().len() as f64
            / std::fs::metadata(&file).unwrap().len() as f64;
        assert!(ratio > 3.5, "{ratio:.2}× smaller");
        let loaded = ptq_int8_per_channel(config.init(&device).unwrap())
            .try_load_file(&file)
            .unwrap();
        loaded
            .try_forward_greyscale(x.clone())
            .unwrap()
            .into_data()
            .assert_approx_eq::<f32>(
                &quantized.try_forward_greyscale(x).unwrap().into_data(),
                Tolerance::absolute(1e-6),
            );
        std::fs::remove_dir_all(&dir).ok();
    }
}
