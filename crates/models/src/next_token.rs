//! What the language models share: token-range checks and temperature sampling (their pad-aware loss is
//! `kiln_core::loss::token_output`).

use crate::ModelError;
use burn::prelude::*;

/// A language model that samples text from a prompt (token ids in, token ids out).
pub trait TextGenerator {
    /// Samples `length` tokens after `prompt` (not empty) at `temperature` (positive) with a seeded
    /// generator: the same seed gives the same text.
    fn generate(
        &self,
        prompt: &[u32],
        length: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<u32>, ModelError>;
}

/// Draws a token id from softmax(`logits` / `temperature`) (`logits`: `[vocab]`) with `rng`.
pub(crate) fn sample_logits(
    model: &'static str,
    logits: Tensor<1>,
    temperature: f64,
    rng: &mut impl rand::Rng,
) -> Result<u32, ModelError> {
    let probs: Vec<f32> = burn::tensor::activation::softmax(logits / temperature, 0)
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| ModelError::ReadBack {
            model,
            what: "probabilities",
            message: format!("{e:?}"),
        })?;
    Ok(sample(&probs, rng.random::<f32>()))
}

/// The index where the running sum of `probs` passes `u` (in `[0, 1)`); the last index if rounding leaves
/// it short.
pub(crate) fn sample(probs: &[f32], u: f32) -> u32 {
    let mut total = 0.0;
    for (i, p) in probs.iter().enumerate() {
        total += p;
        if u < total {
            return i as u32;
        }
    }
    probs.len().saturating_sub(1) as u32
}

/// Checks that every id of `tokens` is below `vocab_size`.
pub(crate) fn check_token_range(
    model: &'static str,
    tokens: &Tensor<2, Int>,
    vocab_size: usize,
) -> Result<(), ModelError> {
    crate::check::ids_within(model, "token", tokens, vocab_size)
}
