//! Character-level (next-token) language model: embedding → recurrent stack → dropout → linear head over
//! the vocabulary, trained with cross-entropy on the real steps, and temperature sampling from a prompt.

use super::layer::{CellKind, Recurrent, RecurrentConfig, RecurrentState};
use crate::check;
use crate::next_token::{TextGenerator, check_token_range, sample_logits};
use crate::{ModelError, check_shape};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use kiln_core::{BatchError, Supervised, TokenOutput};
use kiln_data::TokenBatch;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Configuration of a [`CharLm`].
#[derive(Config, Debug)]
pub struct CharLmConfig {
    /// The recurrent cell.
    pub cell: CellKind,
    /// Number of token ids.
    pub vocab_size: usize,
    /// Embedding size.
    #[config(default = 64)]
    pub d_embedding: usize,
    /// Hidden size.
    #[config(default = 256)]
    pub d_hidden: usize,
    /// Stacked layers.
    #[config(default = 1)]
    pub num_layers: usize,
    /// Dropout between layers and before the output layer (training only).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl CharLmConfig {
    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<CharLm, ModelError> {
        if self.vocab_size < 2 || self.d_embedding == 0 {
            return Err(ModelError::Config {
                model: "char_lm",
                field: "vocab_size, d_embedding",
                message: format!(
                    "vocab_size ({}) must be 2+ and d_embedding ({}) positive",
                    self.vocab_size, self.d_embedding
                ),
            });
        }
        let recurrent = RecurrentConfig::new(self.cell, self.d_embedding, self.d_hidden)
            .with_num_layers(self.num_layers)
            .with_dropout(self.dropout)
            .init(device)?;
        Ok(CharLm {
            embedding: EmbeddingConfig::new(self.vocab_size, self.d_embedding).init(device),
            output: LinearConfig::new(recurrent.d_output(), self.vocab_size).init(device),
            recurrent,
            dropout: DropoutConfig::new(self.dropout).init(),
        })
    }
}

/// A recurrent character-level language model.
#[derive(Module, Debug)]
pub struct CharLm {
    /// Token embeddings.
    pub embedding: Embedding,
    /// The recurrent stack.
    pub recurrent: Recurrent,
    /// Dropout before the output layer.
    pub dropout: Dropout,
    /// Next-token logits.
    pub output: Linear,
}

impl CharLm {
    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.output.weight.dims()[1]
    }

    /// Next-token logits for every step, and the final state.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, steps]` ids below `vocab_size`; `mask`: optional `[batch, steps]`
    /// - returns `[batch, steps, vocab_size]` and the state (`[layers, batch, d_hidden]`)
    pub fn try_forward(
        &self,
        tokens: Tensor<2, Int>,
        state: Option<RecurrentState>,
        mask: Option<Tensor<2, Bool>>,
    ) -> Result<(Tensor<3>, RecurrentState), ModelError> {
        check_shape("char_lm", &[None, None], &tokens.dims())?;
        check_token_range("char_lm", &tokens, self.vocab_size())?;
        let (outputs, state) =
            self.recurrent
                .try_forward(self.embedding.forward(tokens), state, mask)?;
        Ok((self.output.forward(self.dropout.forward(outputs)), state))
    }

    /// Mean cross-entropy (nats per token) over the real steps of a batch, with the logits and targets of
    /// those steps for the metrics.
    pub fn try_step(&self, batch: TokenBatch) -> Result<TokenOutput, ModelError> {
        let (logits, _) = self.try_forward(batch.inputs, None, Some(batch.mask))?;
        Ok(kiln_core::loss::token_output(logits, batch.targets))
    }

    /// Samples `length` tokens after `prompt` (which must not be empty): each step draws from
    /// softmax(logits / `temperature`) with a seeded generator, so the same seed gives the same text.
    pub fn generate(
        &self,
        prompt: &[u32],
        length: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<u32>, ModelError> {
        if prompt.is_empty() || temperature <= 0.0 {
            return Err(ModelError::Argument {
                model: "char_lm",
                argument: "prompt, temperature",
                message: format!(
                    "generation needs a prompt (got {} ids) and a positive temperature (got {temperature})",
                    prompt.len()
                ),
            });
        }
        let device = self.output.weight.device();
        let mut rng = StdRng::seed_from_u64(seed);
        let ids: Vec<i64> = prompt.iter().map(|&id| id as i64).collect();
        let mut input =
            Tensor::<2, Int>::from_data(TensorData::new(ids, [1, prompt.len()]), &device);
        let mut state = None;
        let mut generated = Vec::with_capacity(length);
        for _ in 0..length {
            let steps = input.dims()[1];
            let (logits, next_state) = self.try_forward(input, state, None)?;
            state = Some(next_state);
            let last = logits
                .slice([0..1, steps - 1..steps, 0..self.vocab_size()])
                .reshape([self.vocab_size()]);
            let next = sample_logits("char_lm", last, temperature, &mut rng)?;
            generated.push(next);
            input = Tensor::from_data(TensorData::new(vec![next as i64], [1, 1]), &device);
        }
        Ok(generated)
    }
}

impl TextGenerator for CharLm {
    fn generate(
        &self,
        prompt: &[u32],
        length: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<u32>, ModelError> {
        CharLm::generate(self, prompt, length, temperature, seed)
    }
}

impl Supervised for CharLm {
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
        check_shape("char_lm", &[None, None], &batch.inputs.dims())?;
        check_shape("char_lm targets", &[None, None], &batch.targets.dims())?;
        check::ids_within("char_lm", "token", &batch.inputs, inputs)?;
        check::ids_within("char_lm", "target token", &batch.targets, vocab)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::next_token::sample;
    use burn::data::dataloader::batcher::Batcher;
    use kiln_data::{TokenBatcher, TokenSequence};

    fn model(device: &Device) -> CharLm {
        device.seed(0);
        CharLmConfig::new(CellKind::Gru, 12)
            .with_d_embedding(4)
            .with_d_hidden(8)
            .init(device)
            .unwrap()
    }

    #[test]
    fn logits_shape_and_out_of_range_ids_are_rejected() {
        let device = Device::flex();
        let lm = model(&device);
        let tokens =
            Tensor::<2, Int>::from_data(TensorData::from([[1i64, 2, 3], [4, 5, 6]]), &device);
        let (logits, state) = lm.try_forward(tokens, None, None).unwrap();
        assert_eq!(logits.dims(), [2, 3, 12]);
        assert_eq!(state.h.dims(), [1, 2, 8]);
        let bad = Tensor::<2, Int>::from_data(TensorData::from([[1i64, 12]]), &device);
        let err = lm.try_forward(bad, None, None).unwrap_err();
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
    }

    #[test]
    fn the_loss_counts_only_real_steps() {
        let device = Device::flex();
        let lm = model(&device);
        let long = TokenSequence {
            ids: vec![1, 2, 3, 4, 5],
        };
        let short = TokenSequence { ids: vec![6, 7, 8] };
        let both = lm
            .try_step(TokenBatcher.batch(vec![long.clone(), short.clone()], &device))
            .unwrap();
        assert_eq!(both.targets.dims(), [2, 4], "padded to the longer sequence");
        let real = both
            .targets
            .clone()
            .not_equal_elem(kiln_core::PAD_ID as i64)
            .int()
            .sum()
            .into_scalar::<i64>();
        assert_eq!(real, 6, "4 + 2 real steps");
        let alone = |s: TokenSequence| {
            lm.try_step(TokenBatcher.batch(vec![s], &device))
                .unwrap()
                .loss
                .into_scalar::<f32>()
        };
        let expected = (4.0 * alone(long) + 2.0 * alone(short)) / 6.0;
        let got = both.loss.into_scalar::<f32>();
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn generation_is_seeded_and_stays_in_the_vocabulary() {
        let device = Device::flex();
        let lm = model(&device);
        let a = lm.generate(&[1, 2], 20, 0.8, 7).unwrap();
        assert_eq!(a.len(), 20);
        assert!(a.iter().all(|&id| id < 12));
        assert_eq!(a, lm.generate(&[1, 2], 20, 0.8, 7).unwrap());
        assert!(lm.generate(&[], 5, 1.0, 0).is_err());
        assert!(lm.generate(&[1], 5, 0.0, 0).is_err());
        assert_eq!(sample(&[0.2, 0.3, 0.5], 0.1), 0);
        assert_eq!(sample(&[0.2, 0.3, 0.5], 0.45), 1);
        assert_eq!(sample(&[0.2, 0.3, 0.5], 0.99), 2);
    }
}
