//! burn's Transformer layers run on Kiln's fused kernels where they exist.
//!
//! [`encoder_layer`] and [`decoder_layer`] compute what `TransformerEncoderLayer::forward` and
//! `TransformerDecoderLayer::forward` compute, on the same modules (so records, initialisation and PyTorch
//! weight import are burn's), with the attention core, the layer norms and the exact GELU as single ops of
//! `kiln-kernels` on flex f32. Each op falls back to burn's own where [`kiln_kernels::on_flex_f32`] says
//! no (wgpu, cuda, ndarray, quantized weights), and everywhere when `KILN_FUSED_TRANSFORMER=0` is set, for
//! comparison.

use burn::nn::activation::Activation;
use burn::nn::attention::{MhaInput, MultiHeadAttention};
use burn::nn::transformer::{
    PositionWiseFeedForward, TransformerDecoderLayer, TransformerEncoderLayer,
};
use burn::nn::{Dropout, LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::Distribution;
use kiln_kernels::on_flex_f32;

/// The epsilon of every layer norm in Kiln's stacks: burn's default, which `EncoderStackConfig` never
/// changes. (burn keeps a `LayerNorm`'s epsilon private; the tests compare with burn's forward.)
const LAYER_NORM_EPS: f64 = 1e-5;

/// Whether the fused kernels may run at all (`KILN_FUSED_TRANSFORMER=0` turns them off), read once: every
/// layer norm, GELU and attention of a training step asks.
fn fused_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("KILN_FUSED_TRANSFORMER").map_or(true, |v| v != "0"))
}

/// Whether `dropout` changes its input here, by burn's own rule (`Dropout::forward`).
fn dropout_applies(dropout: &Dropout, device: &Device) -> bool {
    dropout.training.is_enabled() && device.is_autodiff() && dropout.prob > 0.0
}

/// `norm.forward(x)`.
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    let gamma = norm.gamma.val();
    let beta = norm.beta.as_ref().map(|b| b.val());
    if fused_enabled()
        && on_flex_f32(&x)
        && on_flex_f32(&gamma)
        && beta.as_ref().is_none_or(on_flex_f32)
    {
        kiln_kernels::layer_norm::layer_norm(x, gamma, beta, LAYER_NORM_EPS)
    } else {
        norm.forward(x)
    }
}

/// `linear.forward(x)` as one `[batch · steps, d_in] × [d_in, d_out]` product. burn runs a 3-D input as a
/// batched matmul against the broadcast weight: one small GEMM per sequence forward, and a weight gradient
/// of one GEMM per sequence summed afterwards.
pub fn linear(linear: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [batch, steps, width] = x.dims();
    let y = linear.forward(x.reshape([batch * steps, width]));
    let out = y.dims()[1];
    y.reshape([batch, steps, out])
}

/// `pwff.forward(x)`.
pub fn feed_forward(pwff: &PositionWiseFeedForward, x: Tensor<3>) -> Tensor<3> {
    let x = linear(&pwff.linear_inner, x);
    let x = match &pwff.activation {
        Activation::Gelu(gelu) if !gelu.approximate && fused_enabled() && on_flex_f32(&x) => {
            kiln_kernels::gelu::gelu(x)
        }
        activation => activation.forward(x),
    };
    linear(&pwff.linear_outer, pwff.dropout.forward(x))
}

/// `mha.forward(MhaInput::new(query, key, value) + masks).context`: `[batch, q_steps, d_model]`.
///
/// Masks follow burn's convention: `true` where a key is not attended to (`mask_pad`, `[batch, k_steps]`)
/// or a query may not see a key (`mask_attn`, `[batch, q_steps, k_steps]`).
pub fn attention(
    mha: &MultiHeadAttention,
    query: Tensor<3>,
    key: Tensor<3>,
    value: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    mask_attn: Option<Tensor<3, Bool>>,
) -> Tensor<3> {
    if !fused_enabled() || mha.quiet_softmax || !on_flex_f32(&query) {
        let mut input = MhaInput::new(query, key, value);
        if let Some(mask) = mask_pad {
            input = input.mask_pad(mask);
        }
        if let Some(mask) = mask_attn {
            input = input.mask_attn(mask);
        }
        return mha.forward(input).context;
    }
    let [batch, q_steps, _] = query.dims();
    let [_, k_steps, _] = key.dims();
    let device = query.device();
    let q = linear(&mha.query, query);
    let k = linear(&mha.key, key);
    let v = linear(&mha.value, value);
    let pad = mask_pad.map(|pad| {
        pad.reshape([batch, 1, k_steps])
            .expand([batch, q_steps, k_steps])
    });
    let blocked = match (pad, mask_attn) {
        (Some(pad), Some(attn)) => Some(pad.bool_or(attn)),
        (pad, attn) => pad.or(attn),
    };
    let keep = dropout_applies(&mha.dropout, &device).then(|| {
        let keep = 1.0 - mha.dropout.prob;
        Tensor::<4>::random(
            [batch, mha.n_heads, q_steps, k_steps],
            Distribution::Bernoulli(keep),
            &device,
        ) * (1.0 / keep)
    });
    let scale = 1.0 / (mha.d_k as f32).sqrt();
    let context = kiln_kernels::attention::attention(
        q,
        k,
        v,
        mha.n_heads,
        blocked.map(|m| m.float()),
        keep,
        scale,
    );
    linear(&mha.output, context)
}

/// `layer.forward(x, mask_pad, mask_attn)` of burn's encoder layer.
pub fn encoder_layer(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    mask_attn: Option<Tensor<3, Bool>>,
) -> Tensor<3> {
    let attend = |input: Tensor<3>| {
        attention(
            &layer.mha,
            input.clone(),
            input.clone(),
            input,
            mask_pad,
            mask_attn,
        )
    };
    if layer.norm_first {
        let x = x.clone() + layer.dropout.forward(attend(layer_norm(&layer.norm_2, x)));
        let branch = feed_forward(&layer.pwff, layer_norm(&layer.norm_1, x.clone()));
        x + layer.dropout.forward(branch)
    } else {
        let x = layer_norm(&layer.norm_1, x.clone() + layer.dropout.forward(attend(x)));
        let branch = feed_forward(&layer.pwff, x.clone());
        layer_norm(&layer.norm_2, x + layer.dropout.forward(branch))
    }
}

/// The masks of a decoder layer's two attentions (burn's `TransformerDecoderInput` keeps its own private).
#[derive(Debug, Clone, Default)]
pub struct DecoderMasks {
    /// `[batch, steps]`, `true` at padded target steps.
    pub target_pad: Option<Tensor<2, Bool>>,
    /// `[batch, steps, steps]`, `true` where a target step may not see another (the causal mask).
    pub target_attn: Option<Tensor<3, Bool>>,
    /// `[batch, memory_steps]`, `true` at padded memory steps.
    pub memory_pad: Option<Tensor<2, Bool>>,
}

/// `layer.forward(input).target` of burn's decoder layer: self-attention over the target, cross-attention
/// over `memory`, feed-forward.
pub fn decoder_layer(
    layer: &TransformerDecoderLayer,
    x: Tensor<3>,
    memory: &Tensor<3>,
    masks: &DecoderMasks,
) -> Tensor<3> {
    let self_attend = |input: Tensor<3>| {
        attention(
            &layer.self_attn,
            input.clone(),
            input.clone(),
            input,
            masks.target_pad.clone(),
            masks.target_attn.clone(),
        )
    };
    let cross_attend = |input: Tensor<3>| {
        attention(
            &layer.cross_attn,
            input,
            memory.clone(),
            memory.clone(),
            masks.memory_pad.clone(),
            None,
        )
    };
    if layer.norm_first {
        let x = x.clone()
            + layer
                .dropout
                .forward(self_attend(layer_norm(&layer.norm_3, x)));
        let x = x.clone()
            + layer
                .dropout
                .forward(cross_attend(layer_norm(&layer.norm_1, x)));
        let branch = feed_forward(&layer.pwff, layer_norm(&layer.norm_2, x.clone()));
        x + layer.dropout.forward(branch)
    } else {
        let x = layer_norm(
            &layer.norm_1,
            x.clone() + layer.dropout.forward(self_attend(x)),
        );
        let x = layer_norm(
            &layer.norm_2,
            x.clone() + layer.dropout.forward(cross_attend(x)),
        );
        let branch = feed_forward(&layer.pwff, x.clone());
        layer_norm(&layer.norm_3, x + layer.dropout.forward(branch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::transformer::TransformerDecoderInput;
    use burn::nn::transformer::{TransformerDecoderConfig, TransformerEncoderConfig};
    use burn::tensor::Tolerance;

    const TOL: f32 = 1e-4;

    fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, what: &str) {
        let (a, b) = (a.into_data(), b.into_data());
        let diff = a
            .iter::<f32>()
            .zip(b.iter::<f32>())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= TOL, "{what}: fused and burn differ by {diff}");
        a.assert_approx_eq::<f32>(&b, Tolerance::absolute(TOL));
    }

    /// Padding in the second sequence, and a causal mask.
    fn masks(device: &Device) -> (Tensor<2, Bool>, Tensor<3, Bool>) {
        let pad = Tensor::<2, Bool>::from_data(
            [
                [false, false, false, false, false],
                [false, false, false, true, true],
            ],
            device,
        );
        let causal = burn::nn::attention::generate_autoregressive_mask(2, 5, device);
        (pad, causal)
    }

    /// The gradient `grads` hold for `t`.
    fn grad_of<const D: usize>(t: &Tensor<D>, grads: &burn::tensor::Gradients) -> Tensor<D> {
        t.grad(grads).expect("a gradient")
    }

    #[test]
    fn the_encoder_layer_equals_burns_forward_and_gradients() {
        let device = Device::flex().autodiff();
        for norm_first in [true, false] {
            device.seed(11);
            let encoder = TransformerEncoderConfig::new(8, 16, 2, 1)
                .with_norm_first(norm_first)
                // No dropout: the flex device's generator is shared by tests running in parallel, so two
                // runs cannot be made to draw the same masks (dropout has a test of its own below).
                .with_dropout(0.0)
                .init(&device);
            let layer = &encoder.layers[0];
            let x = Tensor::<3>::random([2, 5, 8], Distribution::Default, &device).require_grad();
            let weights = Tensor::<3>::random([2, 5, 8], Distribution::Default, &device);
            let (pad, causal) = masks(&device);
            let run = |fused: bool| {
                let out = if fused {
                    encoder_layer(layer, x.clone(), Some(pad.clone()), Some(causal.clone()))
                } else {
                    layer.forward(x.clone(), Some(pad.clone()), Some(causal.clone()))
                };
                let grads = (out.clone() * weights.clone()).sum().backward();
                let params = [
                    layer.mha.query.weight.val(),
                    layer.mha.key.weight.val(),
                    layer.mha.value.weight.val(),
                    layer.mha.output.weight.val(),
                    layer.pwff.linear_inner.weight.val(),
                ];
                let param_grads: Vec<Tensor<2>> =
                    params.iter().map(|p| grad_of(p, &grads)).collect();
                let norm_grads = [
                    grad_of(&layer.norm_1.gamma.val(), &grads),
                    grad_of(&layer.norm_2.beta.as_ref().unwrap().val(), &grads),
                ];
                (out.inner(), grad_of(&x, &grads), param_grads, norm_grads)
            };
            let (out_f, dx_f, params_f, norms_f) = run(true);
            let (out_b, dx_b, params_b, norms_b) = run(false);
            assert_close(out_f, out_b, "output");
            assert_close(dx_f, dx_b, "input gradient");
            for (i, (f, b)) in params_f.into_iter().zip(params_b).enumerate() {
                assert_close(f, b, &format!("weight gradient {i}"));
            }
            for (f, b) in norms_f.into_iter().zip(norms_b) {
                assert_close(f, b, "layer norm gradient");
            }
        }
    }

    #[test]
    fn the_decoder_layer_equals_burns_forward_and_gradients() {
        let device = Device::flex().autodiff();
        for norm_first in [true, false] {
            device.seed(12);
            let decoder = TransformerDecoderConfig::new(8, 16, 2, 1)
                .with_norm_first(norm_first)
                .with_dropout(0.0)
                .init(&device);
            let layer = &decoder.layers[0];
            let x = Tensor::<3>::random([2, 5, 8], Distribution::Default, &device).require_grad();
            let memory =
                Tensor::<3>::random([2, 4, 8], Distribution::Default, &device).require_grad();
            let memory_pad = Tensor::<2, Bool>::from_data(
                [[false, false, false, false], [false, false, true, true]],
                &device,
            );
            let weights = Tensor::<3>::random([2, 5, 8], Distribution::Default, &device);
            let (pad, causal) = masks(&device);
            let run = |fused: bool| {
                let out = if fused {
                    let masks = DecoderMasks {
                        target_pad: Some(pad.clone()),
                        target_attn: Some(causal.clone()),
                        memory_pad: Some(memory_pad.clone()),
                    };
                    decoder_layer(layer, x.clone(), &memory, &masks)
                } else {
                    let input = TransformerDecoderInput::new(x.clone(), memory.clone())
                        .target_mask_pad(pad.clone())
                        .target_mask_attn(causal.clone())
                        .memory_mask_pad(memory_pad.clone());
                    decoder.forward(input)
                };
                let grads = (out.clone() * weights.clone()).sum().backward();
                (
                    out.inner(),
                    grad_of(&x, &grads),
                    grad_of(&memory, &grads),
                    grad_of(&layer.cross_attn.key.weight.val(), &grads),
                    grad_of(&layer.self_attn.query.weight.val(), &grads),
                    grad_of(&layer.norm_3.gamma.val(), &grads),
                )
            };
            let f = run(true);
            let b = run(false);
            assert_close(f.0, b.0, "output");
            assert_close(f.1, b.1, "target gradient");
            assert_close(f.2, b.2, "memory gradient");
            assert_close(f.3, b.3, "cross-attention key weight gradient");
            assert_close(f.4, b.4, "self-attention query weight gradient");
            assert_close(f.5, b.5, "layer norm gradient");
        }
    }

    /// In training, the fused attention drops weights (an output unlike the dropout-free one, whose mean
    /// over many draws it approaches, as inverted dropout does); in evaluation it drops nothing.
    #[test]
    fn attention_dropout_applies_in_training_only() {
        use burn::nn::attention::MultiHeadAttentionConfig;
        let device = Device::flex().autodiff();
        let mha = MultiHeadAttentionConfig::new(8, 2)
            .with_dropout(0.5)
            .init(&device);
        let x = Tensor::<3>::random([2, 5, 8], Distribution::Default, &device);
        let attend = |mha: &MultiHeadAttention, x: Tensor<3>| {
            attention(mha, x.clone(), x.clone(), x, None, None)
        };
        let eval = mha.valid();
        let exact = attend(&eval, x.clone().inner());
        assert_close(
            exact.clone(),
            eval.forward(MhaInput::self_attn(x.clone().inner())).context,
            "evaluation output",
        );
        let draws = 400;
        let mut mean = Tensor::<3>::zeros([2, 5, 8], &Device::flex());
        let mut changed = 0.0f32;
        for _ in 0..draws {
            let y = attend(&mha, x.clone()).inner();
            changed = changed.max((y.clone() - exact.clone()).abs().max().into_scalar::<f32>());
            mean = mean + y / draws as f32;
        }
        assert!(changed > 1e-2, "dropout changed nothing ({changed})");
        let gap = (mean - exact).abs().max().into_scalar::<f32>();
        assert!(
            gap < 0.1,
            "the mean of {draws} dropped outputs is {gap} away"
        );
    }

    #[test]
    fn without_autodiff_the_fused_layers_equal_burns() {
        let device = Device::flex();
        device.seed(13);
        let encoder = TransformerEncoderConfig::new(8, 16, 2, 1).init(&device);
        let layer = &encoder.layers[0];
        let x = Tensor::<3>::random([2, 5, 8], Distribution::Default, &device);
        let (pad, causal) = masks(&device);
        assert_close(
            encoder_layer(layer, x.clone(), Some(pad.clone()), Some(causal.clone())),
            layer.forward(x, Some(pad), Some(causal)),
            "masked encoder output",
        );
    }
}
