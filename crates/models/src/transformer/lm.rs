//! Decoder-only (GPT-style) character language model: token embedding → an [`EncoderStack`] under a causal
//! mask → a linear head over the vocabulary; trained with cross-entropy on the real steps, sampled with a
//! temperature from a prompt.
//!
//! The embedding is not scaled by √d_model (as Vaswani et al. do with embeddings initialised at
//! std d_model^-½): burn initialises embeddings at std 1, and scaling them drowns the learned positions, which
//! start at std 1 too; the model then cannot tell which character came last (a first run stalled at 2.4
//! nats/char).

use super::cache::DecodingCache;
use super::stack::{EncoderStack, EncoderStackConfig};
use crate::check;
use crate::next_token::{TextGenerator, check_token_range, sample_logits};
use crate::{ModelError, check_shape};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use kiln_core::{BatchError, Supervised, TokenOutput};
use kiln_data::TokenBatch;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Configuration of a [`TransformerLm`].
#[derive(Config, Debug)]
pub struct TransformerLmConfig {
    /// Number of token ids.
    pub vocab_size: usize,
    /// The decoder stack (self-attention under a causal mask); `max_len` is the context window.
    pub stack: EncoderStackConfig,
}

impl TransformerLmConfig {
    /// Checks the config and builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<TransformerLm, ModelError> {
        if self.vocab_size < 2 {
            return Err(ModelError::Config {
                model: "transformer_lm",
                field: "vocab_size",
                message: format!("vocab_size must be 2+, got {}", self.vocab_size),
            });
        }
        let stack = self.stack.init(device)?;
        Ok(TransformerLm {
            embedding: EmbeddingConfig::new(self.vocab_size, self.stack.d_model).init(device),
            output: LinearConfig::new(self.stack.d_model, self.vocab_size).init(device),
            stack,
        })
    }
}

/// A decoder-only Transformer language model.
#[derive(Module, Debug)]
pub struct TransformerLm {
    /// Token embeddings.
    pub embedding: Embedding,
    /// Positions and layers, run under a causal mask.
    pub stack: EncoderStack,
    /// Next-token logits.
    pub output: Linear,
}

impl TransformerLm {
    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.output.weight.dims()[1]
    }

    /// The longest context the model reads.
    pub fn context(&self) -> usize {
        self.stack.max_len
    }

    /// Next-token logits for every step; step `t` sees tokens `..=t` only.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, steps]` ids below `vocab_size`, `steps ≤ context()`; `valid`: optional
    ///   `[batch, steps]`, `true` on real tokens
    /// - returns `[batch, steps, vocab_size]`
    pub fn try_forward(
        &self,
        tokens: Tensor<2, Int>,
        valid: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<3>, ModelError> {
        check_shape("transformer_lm", &[None, None], &tokens.dims())?;
        check_token_range("transformer_lm", &tokens, self.vocab_size())?;
        let x = self.embedding.forward(tokens);
        Ok(super::fused::linear(
            &self.output,
            self.stack.try_forward(x, valid, true)?,
        ))
    }

    /// The causal attention weights of every layer for `tokens` (see
    /// [`EncoderStack::attention_weights`]), `[batch, heads, steps, steps]` each.
    ///
    /// [`EncoderStack::attention_weights`]: super::EncoderStack::attention_weights
    pub fn attention_weights(
        &self,
        tokens: Tensor<2, Int>,
        valid: Option<Tensor<2, Bool>>,
    ) -> Result<Vec<Tensor<4>>, ModelError> {
        check_shape("transformer_lm", &[None, None], &tokens.dims())?;
        check_token_range("transformer_lm", &tokens, self.vocab_size())?;
        self.stack
            .attention_weights(self.embedding.forward(tokens), valid, true)
    }

    /// The step's loss (nats per token over real steps) with the logits and targets for the metrics.
    pub fn try_step(&self, batch: TokenBatch) -> Result<TokenOutput, ModelError> {
        let logits = self.try_forward(batch.inputs, Some(batch.mask))?;
        Ok(kiln_core::loss::token_output(logits, batch.targets))
    }

    /// Feeds the tokens of `text` that `cache` has not seen (at least one) and returns the next-token logits
    /// after the last, `[vocab]`.
    fn feed_cached(
        &self,
        text: &[u32],
        cache: &mut DecodingCache,
        device: &Device,
    ) -> Result<Tensor<1>, ModelError> {
        let vocab = self.vocab_size();
        let mut last = None;
        for &id in &text[cache.steps()..] {
            let input =
                Tensor::<2, Int>::from_data(TensorData::new(vec![id as i64], [1, 1]), device);
            check_token_range("transformer_lm", &input, vocab)?;
            let out = self
                .stack
                .try_step_causal(self.embedding.forward(input), cache)?;
            last = Some(super::fused::linear(&self.output, out).reshape([vocab]));
        }
        last.ok_or_else(|| ModelError::Shape {
            model: "transformer_lm",
            expected: format!("more than the {} tokens already decoded", cache.steps()),
            found: vec![text.len()],
        })
    }

    /// Samples `length` tokens after `prompt` (not empty): each step reads the last `context()` tokens and
    /// draws from softmax(logits / `temperature`) with a seeded generator, so the same seed gives the same
    /// text. While the text fits the context, each step runs only the newest token, with the earlier ones'
    /// keys and values cached ([`DecodingCache`]).
    pub fn generate(
        &self,
        prompt: &[u32],
        length: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<u32>, ModelError> {
        if prompt.is_empty() || temperature <= 0.0 {
            return Err(ModelError::Argument {
                model: "transformer_lm",
                argument: "prompt, temperature",
                message: format!(
                    "generation needs a prompt (got {} ids) and a positive temperature (got {temperature})",
                    prompt.len()
                ),
            });
        }
        let device = self.output.weight.device();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut text: Vec<u32> = prompt.to_vec();
        let vocab = self.vocab_size();
        // The prompt is the only input from outside: sampled ids are below the vocabulary.
        if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab) {
            return Err(ModelError::IdOutOfRange {
                model: "transformer_lm",
                what: "token",
                id: id as i64,
                size: vocab,
            });
        }
        let mut cache = self.stack.start_cache();
        for _ in 0..length {
            let last = if text.len() <= self.context() {
                // The cache holds every position but the newest few: feed those, sample from the last.
                self.feed_cached(&text, &mut cache, &device)?
            } else {
                // Past the context the window slides and every position moves: the window runs again whole.
                let window = &text[text.len().saturating_sub(self.context())..];
                let ids: Vec<i64> = window.iter().map(|&id| id as i64).collect();
                let steps = ids.len();
                let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, steps]), &device);
                self.try_forward(input, None)?
                    .slice([0..1, steps - 1..steps, 0..vocab])
                    .reshape([vocab])
            };
            text.push(sample_logits(
                "transformer_lm",
                last,
                temperature,
                &mut rng,
            )?);
        }
        Ok(text.split_off(prompt.len()))
    }
}

impl TextGenerator for TransformerLm {
    fn generate(
        &self,
        prompt: &[u32],
        length: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<u32>, ModelError> {
        TransformerLm::generate(self, prompt, length, temperature, seed)
    }
}

impl Supervised for TransformerLm {
    type Batch = TokenBatch;
    type Output = TokenOutput;

    fn forward_step(&self, batch: TokenBatch) -> TokenOutput {
        self.try_step(batch).unwrap_or_else(|e| panic!("{e}"))
    }

    fn check_batch(&self, batch: &TokenBatch) -> Result<(), BatchError> {
        // Sizes from `lazy_shape`, and no forward pass: reading or running a parameter would initialise a
        // lazily initialised one now, from another point of the random stream than training's first step.
        let inputs = self.embedding.weight.lazy_shape()[0];
        let vocab = self.output.weight.lazy_shape()[1];
        check_shape("transformer_lm", &[None, None], &batch.inputs.dims())?;
        let steps = batch.inputs.dims()[1];
        if steps > self.context() {
            return Err(ModelError::Shape {
                model: "transformer_lm",
                expected: format!("[_, at most {}] (its context)", self.context()),
                found: batch.inputs.dims().to_vec(),
            }
            .into());
        }
        check::ids_within("transformer_lm", "token", &batch.inputs, inputs)?;
        check::ids_within("transformer_lm", "target token", &batch.targets, vocab)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    fn model(device: &Device) -> TransformerLm {
        device.seed(7);
        TransformerLmConfig::new(
            12,
            EncoderStackConfig::new(8).with_n_heads(2).with_max_len(6),
        )
        .init(device)
        .unwrap()
    }

    #[test]
    fn logits_shape_out_of_range_ids_and_long_inputs_are_rejected() {
        let device = Device::flex();
        let lm = model(&device);
        let tokens = Tensor::<2, Int>::from_data([[1i64, 2, 3], [4, 5, 6]], &device);
        assert_eq!(lm.try_forward(tokens, None).unwrap().dims(), [2, 3, 12]);
        let bad = Tensor::<2, Int>::from_data([[1i64, 12]], &device);
        let err = lm.try_forward(bad, None).unwrap_err();
        assert!(
            matches!(
                err,
                ModelError::IdOutOfRange {
                    id: 12,
                    size: 12,
                    ..
                }
            ),
            "{err}"
        );
        let long = Tensor::<2, Int>::zeros([1, 7], &device);
        assert!(lm.try_forward(long, None).is_err());
    }

    #[test]
    fn a_later_token_never_changes_an_earlier_prediction() {
        let device = Device::flex();
        let lm = model(&device);
        let a = Tensor::<2, Int>::from_data([[1i64, 2, 3, 4, 5]], &device);
        let b = Tensor::<2, Int>::from_data([[1i64, 2, 3, 9, 0]], &device);
        let la = lm.try_forward(a, None).unwrap().slice([0..1, 0..3, 0..12]);
        let lb = lm.try_forward(b, None).unwrap().slice([0..1, 0..3, 0..12]);
        la.into_data()
            .assert_approx_eq::<f32>(&lb.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn generation_is_seeded_and_slides_past_the_context() {
        let device = Device::flex();
        let lm = model(&device);
        let one = lm.generate(&[1, 2], 10, 1.0, 42).unwrap();
        assert_eq!(one.len(), 10);
        assert!(one.iter().all(|&t| t < 12));
        assert_eq!(one, lm.generate(&[1, 2], 10, 1.0, 42).unwrap());
        assert!(lm.generate(&[], 3, 1.0, 0).is_err());
        assert!(lm.generate(&[1], 3, 0.0, 0).is_err());
    }
}
