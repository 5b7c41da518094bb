//! The encoder stack every Kiln Transformer is built from: positions added to the inputs, burn's
//! `TransformerEncoder` (multi-head self-attention and a position-wise feed-forward network per layer, pre- or
//! post-norm), a final layer norm for pre-norm stacks, and the padding and causal masks.
//!
//! burn's `TransformerEncoder`, `MultiHeadAttention` and sinusoidal `PositionalEncoding` are the modules
//! (the attention is checked against `torch.nn.MultiheadAttention` in `tests/torch_parity.rs`); their layers
//! run through [`fused`], which computes burn's forward with Kiln's fused kernels on flex. Kiln adds what
//! they lack: learned positions, the final norm a pre-norm stack needs (burn's pre-norm encoder ends on a
//! residual sum, as PyTorch's does without its optional `norm`), and a checked config.

use super::fused;
use crate::ModelError;
use burn::nn::activation::ActivationConfig;
use burn::nn::attention::{MhaInput, generate_autoregressive_mask};
use burn::nn::transformer::{
    TransformerDecoder, TransformerDecoderConfig, TransformerEncoder, TransformerEncoderConfig,
};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig,
    PositionalEncoding, PositionalEncodingConfig,
};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// How positions are told to the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PositionKind {
    /// Fixed sinusoids (Vaswani et al. 2017), burn's `PositionalEncoding`.
    #[default]
    Sinusoidal,
    /// A learned vector per position (an embedding table of `max_len` rows), as GPT-2.
    Learned,
}

/// Configuration of an [`EncoderStack`].
#[derive(Config, Debug, PartialEq)]
pub struct EncoderStackConfig {
    /// Width of every position's vector.
    pub d_model: usize,
    /// Attention heads (must divide `d_model`).
    #[config(default = 4)]
    pub n_heads: usize,
    /// Layers.
    #[config(default = 2)]
    pub n_layers: usize,
    /// Hidden width of the feed-forward network.
    #[config(default = 256)]
    pub d_ff: usize,
    /// Dropout on attention weights, residual branches and the embedded inputs (training only).
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Layer norm before each sub-layer (pre-norm, with a final norm) instead of after it (post-norm).
    #[config(default = true)]
    pub norm_first: bool,
    /// Sinusoidal or learned positions.
    #[config(default = "PositionKind::Sinusoidal")]
    pub positions: PositionKind,
    /// Longest sequence the positions cover.
    #[config(default = 512)]
    pub max_len: usize,
}

impl EncoderStackConfig {
    /// Checks the sizes, heads and dropout.
    fn check(&self) -> Result<(), ModelError> {
        let error = |field: &'static str, message: String| ModelError::Config {
            model: "transformer",
            field,
            message,
        };
        if self.d_model == 0 || self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return Err(error(
                "n_heads, d_model",
                format!(
                    "n_heads ({}) must divide d_model ({}), both positive",
                    self.n_heads, self.d_model
                ),
            ));
        }
        if self.n_layers == 0 || self.d_ff == 0 || self.max_len == 0 {
            return Err(error(
                "n_layers, d_ff, max_len",
                format!(
                    "n_layers ({}), d_ff ({}) and max_len ({}) must be positive",
                    self.n_layers, self.d_ff, self.max_len
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(error(
                "dropout",
                format!("dropout {} is not in [0, 1)", self.dropout),
            ));
        }
        Ok(())
    }

    fn positions(&self, device: &Device) -> Positions {
        match self.positions {
            PositionKind::Sinusoidal => Positions {
                sinusoidal: Some(
                    PositionalEncodingConfig::new(self.d_model)
                        .with_max_sequence_size(self.max_len)
                        .init(device),
                ),
                learned: None,
            },
            PositionKind::Learned => Positions {
                sinusoidal: None,
                learned: Some(EmbeddingConfig::new(self.max_len, self.d_model).init(device)),
            },
        }
    }

    /// Checks the config and builds the stack on `device`.
    pub fn init(&self, device: &Device) -> Result<EncoderStack, ModelError> {
        self.check()?;
        let encoder =
            TransformerEncoderConfig::new(self.d_model, self.d_ff, self.n_heads, self.n_layers)
                .with_dropout(self.dropout)
                .with_norm_first(self.norm_first)
                .with_activation(ActivationConfig::Gelu)
                .init(device);
        Ok(EncoderStack {
            positions: self.positions(device),
            input_dropout: DropoutConfig::new(self.dropout).init(),
            encoder,
            final_norm: self
                .norm_first
                .then(|| LayerNormConfig::new(self.d_model).init(device)),
            d_model: self.d_model,
            max_len: self.max_len,
        })
    }
}

/// Sinusoidal or learned positions, added to a sequence of vectors.
#[derive(Module, Debug)]
pub struct Positions {
    /// Fixed sinusoidal positions, when chosen.
    pub sinusoidal: Option<PositionalEncoding>,
    /// Learned positions, when chosen.
    pub learned: Option<Embedding>,
}

impl Positions {
    /// `x` plus the vector of each position, `[batch, steps, d_model]` (steps checked by the caller).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, steps, _] = x.dims();
        match (&self.sinusoidal, &self.learned) {
            (Some(sinusoids), _) => sinusoids.forward(x),
            (None, Some(table)) => {
                let positions = Tensor::<1, Int>::arange(0..steps as i64, &x.device())
                    .reshape([1, steps])
                    .expand([batch, steps]);
                x + table.forward(positions)
            }
            (None, None) => x,
        }
    }
}

/// Checks `x` against `[_, 1..=max_len, d_model]` and `valid` against `[batch, steps]`.
fn check_sequence(
    model: &'static str,
    x: &Tensor<3>,
    valid: Option<&Tensor<2, Bool>>,
    d_model: usize,
    max_len: usize,
) -> Result<(), ModelError> {
    let [batch, steps, _] = x.dims();
    crate::check_shape(model, &[None, None, Some(d_model)], &x.dims())?;
    if steps == 0 || steps > max_len {
        return Err(ModelError::Shape {
            model,
            expected: format!("[_, 1..={max_len}, {d_model}] (steps up to max_len)"),
            found: x.dims().to_vec(),
        });
    }
    if let Some(valid) = valid
        && valid.dims() != [batch, steps]
    {
        return Err(ModelError::Shape {
            model,
            expected: format!("padding mask [{batch}, {steps}]"),
            found: valid.dims().to_vec(),
        });
    }
    Ok(())
}

/// Positions, a Transformer encoder and (for pre-norm) a final layer norm.
#[derive(Module, Debug)]
pub struct EncoderStack {
    /// Sinusoidal or learned positions.
    pub positions: Positions,
    /// Dropout on the inputs once positions are added.
    pub input_dropout: Dropout,
    /// burn's encoder layers.
    pub encoder: TransformerEncoder,
    /// The last layer norm of a pre-norm stack.
    pub final_norm: Option<LayerNorm>,
    /// Width of every position's vector.
    #[module(skip)]
    pub d_model: usize,
    /// Longest sequence the positions cover.
    #[module(skip)]
    pub max_len: usize,
}

impl EncoderStack {
    /// Adds positions and runs the layers.
    ///
    /// # Shapes
    /// - `x`: `[batch, steps, d_model]` with `steps ≤ max_len`
    /// - `valid`: optional `[batch, steps]`, `true` on real steps, `false` on padding (keys at padded steps
    ///   are never attended to)
    /// - `causal`: when `true`, step `t` attends to steps `≤ t` only
    /// - returns `[batch, steps, d_model]`
    pub fn try_forward(
        &self,
        x: Tensor<3>,
        valid: Option<Tensor<2, Bool>>,
        causal: bool,
    ) -> Result<Tensor<3>, ModelError> {
        let (mut x, mask_pad, mask_attn) = self.prepare(x, valid, causal)?;
        for layer in &self.encoder.layers {
            x = fused::encoder_layer(layer, x, mask_pad.clone(), mask_attn.clone());
        }
        Ok(match &self.final_norm {
            Some(norm) => fused::layer_norm(norm, x),
            None => x,
        })
    }

    /// Checks the input, adds positions and input dropout, and builds burn's masks (`true` = not attended).
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        x: Tensor<3>,
        valid: Option<Tensor<2, Bool>>,
        causal: bool,
    ) -> Result<(Tensor<3>, Option<Tensor<2, Bool>>, Option<Tensor<3, Bool>>), ModelError> {
        let [batch, steps, _] = x.dims();
        check_sequence(
            "transformer",
            &x,
            valid.as_ref(),
            self.d_model,
            self.max_len,
        )?;
        let device = x.device();
        let x = self.input_dropout.forward(self.positions.forward(x));
        let mask_pad = valid.map(|valid| valid.bool_not());
        let mask_attn = causal.then(|| generate_autoregressive_mask(batch, steps, &device));
        Ok((x, mask_pad, mask_attn))
    }

    /// The attention weights of every layer, `[batch, heads, steps (queries), steps (keys)]` each, in
    /// layer order: what [`EncoderStack::try_forward`] computes with the same arguments (burn's
    /// `MultiHeadAttention` returns them beside its context). Rows sum to 1; masked keys get 0.
    pub fn attention_weights(
        &self,
        x: Tensor<3>,
        valid: Option<Tensor<2, Bool>>,
        causal: bool,
    ) -> Result<Vec<Tensor<4>>, ModelError> {
        let (mut x, mask_pad, mask_attn) = self.prepare(x, valid, causal)?;
        let mut weights = Vec::with_capacity(self.encoder.layers.len());
        for layer in &self.encoder.layers {
            // The attention reads the layer's input, normalised first in a pre-norm layer.
            let input = if layer.norm_first {
                fused::layer_norm(&layer.norm_2, x.clone())
            } else {
                x.clone()
            };
            let mut mha = MhaInput::new(input.clone(), input.clone(), input);
            if let Some(mask) = &mask_pad {
                mha = mha.mask_pad(mask.clone());
            }
            if let Some(mask) = &mask_attn {
                mha = mha.mask_attn(mask.clone());
            }
            weights.push(layer.mha.forward(mha).weights);
            x = fused::encoder_layer(layer, x, mask_pad.clone(), mask_attn.clone());
        }
        Ok(weights)
    }
}

/// Configuration of a [`DecoderStack`]: the same fields as the encoder's (`norm_first`, positions, sizes).
pub type DecoderStackConfig = EncoderStackConfig;

impl EncoderStackConfig {
    /// Checks the config and builds a decoder stack (causal self-attention, cross-attention over a memory)
    /// on `device`.
    pub fn init_decoder(&self, device: &Device) -> Result<DecoderStack, ModelError> {
        self.check()?;
        let decoder =
            TransformerDecoderConfig::new(self.d_model, self.d_ff, self.n_heads, self.n_layers)
                .with_dropout(self.dropout)
                .with_norm_first(self.norm_first)
                .with_activation(ActivationConfig::Gelu)
                .init(device);
        Ok(DecoderStack {
            positions: self.positions(device),
            input_dropout: DropoutConfig::new(self.dropout).init(),
            decoder,
            final_norm: self
                .norm_first
                .then(|| LayerNormConfig::new(self.d_model).init(device)),
            d_model: self.d_model,
            max_len: self.max_len,
        })
    }
}

/// Positions, burn's Transformer decoder (causal self-attention, cross-attention over the encoder's output,
/// feed-forward) and (for pre-norm) a final layer norm.
#[derive(Module, Debug)]
pub struct DecoderStack {
    /// Sinusoidal or learned positions.
    pub positions: Positions,
    /// Dropout on the inputs once positions are added.
    pub input_dropout: Dropout,
    /// burn's decoder layers.
    pub decoder: TransformerDecoder,
    /// The last layer norm of a pre-norm stack.
    pub final_norm: Option<LayerNorm>,
    /// Width of every position's vector.
    #[module(skip)]
    pub d_model: usize,
    /// Longest target sequence the positions cover.
    #[module(skip)]
    pub max_len: usize,
}

impl DecoderStack {
    /// Runs the decoder: target step `t` sees target steps `≤ t` and every real memory step.
    ///
    /// # Shapes
    /// - `x`: `[batch, steps, d_model]`, `steps ≤ max_len`; `valid`: optional `[batch, steps]`
    /// - `memory`: `[batch, memory_steps, d_model]`; `memory_valid`: optional `[batch, memory_steps]`
    /// - returns `[batch, steps, d_model]`
    pub fn try_forward(
        &self,
        x: Tensor<3>,
        valid: Option<Tensor<2, Bool>>,
        memory: Tensor<3>,
        memory_valid: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<3>, ModelError> {
        let [batch, steps, _] = x.dims();
        check_sequence(
            "transformer decoder",
            &x,
            valid.as_ref(),
            self.d_model,
            self.max_len,
        )?;
        let [memory_batch, memory_steps, width] = memory.dims();
        if memory_batch != batch || width != self.d_model {
            return Err(ModelError::Shape {
                model: "transformer decoder memory",
                expected: format!("[{batch}, _, {}]", self.d_model),
                found: memory.dims().to_vec(),
            });
        }
        if let Some(m) = &memory_valid
            && m.dims() != [batch, memory_steps]
        {
            return Err(ModelError::Shape {
                model: "transformer decoder memory mask",
                expected: format!("[{batch}, {memory_steps}]"),
                found: m.dims().to_vec(),
            });
        }
        let device = x.device();
        let mut x = self.input_dropout.forward(self.positions.forward(x));
        let masks = fused::DecoderMasks {
            target_pad: valid.map(|valid| valid.bool_not()),
            target_attn: Some(generate_autoregressive_mask(batch, steps, &device)),
            memory_pad: memory_valid.map(|valid| valid.bool_not()),
        };
        for layer in &self.decoder.layers {
            x = fused::decoder_layer(layer, x, &memory, &masks);
        }
        Ok(match &self.final_norm {
            Some(norm) => fused::layer_norm(norm, x),
            None => x,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    fn stack(positions: PositionKind, norm_first: bool) -> EncoderStack {
        let device = Device::flex();
        device.seed(3);
        EncoderStackConfig::new(8)
            .with_n_heads(2)
            .with_d_ff(16)
            .with_positions(positions)
            .with_norm_first(norm_first)
            .with_max_len(6)
            .init(&device)
            .unwrap()
    }

    #[test]
    fn a_padded_step_never_changes_the_real_steps() {
        let device = Device::flex();
        for (positions, norm_first) in [
            (PositionKind::Sinusoidal, true),
            (PositionKind::Learned, false),
        ] {
            let model = stack(positions, norm_first);
            let x = Tensor::<3>::random([1, 5, 8], Distribution::Default, &device);
            let valid = Tensor::<2, Bool>::from_data([[true, true, true, false, false]], &device);
            let short = model
                .try_forward(x.clone().slice([0..1, 0..3, 0..8]), None, false)
                .unwrap();
            // Whatever the padded steps hold, the real ones come out the same.
            let noise = Tensor::<3>::random([1, 2, 8], Distribution::Default, &device) * 50.0;
            let x2 = Tensor::cat(vec![x.clone().slice([0..1, 0..3, 0..8]), noise], 1);
            for input in [x, x2] {
                let padded = model
                    .try_forward(input, Some(valid.clone()), false)
                    .unwrap()
                    .slice([0..1, 0..3, 0..8]);
                padded
                    .into_data()
                    .assert_approx_eq::<f32>(&short.to_data(), Tolerance::absolute(1e-5));
            }
        }
    }

    #[test]
    fn the_causal_mask_never_lets_a_step_see_the_next() {
        let device = Device::flex();
        let model = stack(PositionKind::Learned, true);
        let x = Tensor::<3>::random([2, 6, 8], Distribution::Default, &device);
        let full = model.try_forward(x.clone(), None, true).unwrap();
        for t in 1..6 {
            // Changing steps t.. leaves the outputs of steps < t unchanged.
            let changed = Tensor::cat(
                vec![
                    x.clone().slice([0..2, 0..t, 0..8]),
                    Tensor::<3>::random([2, 6 - t, 8], Distribution::Default, &device),
                ],
                1,
            );
            let out = model.try_forward(changed, None, true).unwrap();
            out.slice([0..2, 0..t, 0..8])
                .into_data()
                .assert_approx_eq::<f32>(
                    &full.clone().slice([0..2, 0..t, 0..8]).into_data(),
                    Tolerance::absolute(1e-5),
                );
        }
        // Without the mask, step 0 does see later steps.
        let open = model.try_forward(x.clone(), None, false).unwrap();
        let changed = Tensor::cat(
            vec![
                x.clone().slice([0..2, 0..1, 0..8]),
                // (A random change: a constant one would vanish in the layer norms.)
                Tensor::<3>::random([2, 5, 8], Distribution::Default, &device),
            ],
            1,
        );
        let diff = (model.try_forward(changed, None, false).unwrap() - open)
            .slice([0..2, 0..1, 0..8])
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(
            diff > 1e-3,
            "step 0 ignored the others without a mask ({diff})"
        );
    }

    #[test]
    fn bad_configs_and_shapes_are_errors_naming_them() {
        let device = Device::flex();
        let err = EncoderStackConfig::new(10)
            .with_n_heads(4)
            .init(&device)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("n_heads (4) must divide d_model (10)"),
            "{err}"
        );
        let model = stack(PositionKind::Sinusoidal, true);
        let too_long = Tensor::<3>::zeros([1, 7, 8], &device);
        let err = model.try_forward(too_long, None, false).unwrap_err();
        assert!(err.to_string().contains("1..=6"), "{err}");
        let wrong_width = Tensor::<3>::zeros([1, 3, 5], &device);
        let err = model.try_forward(wrong_width, None, false).unwrap_err();
        assert!(err.to_string().contains("[_, _, 8]"), "{err}");
        let x = Tensor::<3>::zeros([2, 3, 8], &device);
        let mask = Tensor::<2, Bool>::from_data([[true, true]], &device);
        let err = model.try_forward(x, Some(mask), false).unwrap_err();
        assert!(err.to_string().contains("[2, 3]"), "{err}");
    }
}
