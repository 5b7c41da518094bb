//! Autoregressive decoding with cached keys and values: each step runs only the newest position through
//! the layers; its self-attention reads the keys and values every earlier position left in the cache, and a
//! decoder's cross-attention reads the memory's keys and values, projected once on the first step.
//!
//! burn 0.22.1 has autoregressive caches for its Transformer (`TransformerDecoderAutoregressiveCache`), but
//! they keep each layer's per-position outputs in private fields with no way to select rows, so beam search
//! (whose hypotheses are re-ordered every step) could not use them, and they take the whole prefix every
//! step. This cache keeps projected keys and values (`[rows, steps, d_model]`, heads side by side) and
//! [`DecodingCache::select`] re-orders its rows.
//!
//! The arithmetic is burn's `MultiHeadAttention` (scores scaled by `1/√d_k`, blocked keys filled with its
//! `min_float`, softmax or quiet softmax) and burn's layer order (pre- or post-norm), so a cached step gives
//! the logits of a full forward pass at that position (tested within 1e-4 against
//! [`super::Seq2Seq::decode`] and [`super::TransformerLm::try_forward`]). Decoding runs without autodiff,
//! where dropout is the identity.

use super::fused::{feed_forward, layer_norm, linear};
use super::stack::{DecoderStack, EncoderStack, Positions};
use crate::ModelError;
use burn::nn::attention::MultiHeadAttention;
use burn::nn::transformer::{TransformerDecoderLayer, TransformerEncoderLayer};
use burn::prelude::*;
use burn::tensor::activation::{quiet_softmax, softmax};

/// Keys and values of one attention, projected: `[rows, steps, d_model]` each.
#[derive(Debug, Clone)]
struct KeyValues {
    keys: Tensor<3>,
    values: Tensor<3>,
}

impl KeyValues {
    fn project(mha: &MultiHeadAttention, x: Tensor<3>) -> Self {
        Self {
            keys: linear(&mha.key, x.clone()),
            values: linear(&mha.value, x),
        }
    }

    fn append(self, new: Self) -> Self {
        Self {
            keys: Tensor::cat(vec![self.keys, new.keys], 1),
            values: Tensor::cat(vec![self.values, new.values], 1),
        }
    }

    fn select(&self, rows: &Tensor<1, Int>) -> Self {
        Self {
            keys: self.keys.clone().select(0, rows.clone()),
            values: self.values.clone().select(0, rows.clone()),
        }
    }

    /// Rows repeated to `rows` where there is one (the memory of a single beam-searched sentence).
    fn rows(&self, rows: usize) -> Self {
        let [have, steps, width] = self.keys.dims();
        if have == rows {
            return self.clone();
        }
        Self {
            keys: self.keys.clone().expand([rows, steps, width]),
            values: self.values.clone().expand([rows, steps, width]),
        }
    }
}

/// What one layer keeps between steps.
#[derive(Debug, Clone, Default)]
struct LayerCache {
    /// Keys and values of the earlier positions.
    past: Option<KeyValues>,
    /// The memory's keys and values (decoders).
    memory: Option<KeyValues>,
}

/// The keys and values a stack keeps while it decodes a batch of sequences one position at a time.
#[derive(Debug, Clone)]
pub struct DecodingCache {
    layers: Vec<LayerCache>,
    steps: usize,
}

impl DecodingCache {
    fn new(layers: usize) -> Self {
        Self {
            layers: vec![LayerCache::default(); layers],
            steps: 0,
        }
    }

    /// Positions decoded so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The cache of the rows `rows` (in that order, repeats allowed): beam search keeps the rows of the
    /// hypotheses it extends. The memory's keys and values are kept as they are.
    pub fn select(&self, rows: &Tensor<1, Int>) -> Self {
        Self {
            layers: self
                .layers
                .iter()
                .map(|layer| LayerCache {
                    past: layer.past.as_ref().map(|kv| kv.select(rows)),
                    memory: layer.memory.clone(),
                })
                .collect(),
            steps: self.steps,
        }
    }
}

/// burn's multi-head attention of projected `query` (`[rows, q_steps, d_model]`) over projected keys and
/// values, `blocked` (`[rows, k_steps]`, `true` where a key is not attended to) filled with `min_float`.
fn attend(
    mha: &MultiHeadAttention,
    query: Tensor<3>,
    kv: &KeyValues,
    blocked: Option<&Tensor<2, Bool>>,
) -> Tensor<3> {
    let [rows, q_steps, width] = query.dims();
    let k_steps = kv.keys.dims()[1];
    let (heads, d_k) = (mha.n_heads, mha.d_k);
    let split = |x: Tensor<3>, steps: usize| x.reshape([rows, steps, heads, d_k]).swap_dims(1, 2);
    let scores = split(query, q_steps)
        .matmul(split(kv.keys.clone(), k_steps).transpose())
        .div_scalar((d_k as f32).sqrt());
    let scores = match blocked {
        Some(mask) => scores.mask_fill(mask.clone().reshape([rows, 1, 1, k_steps]), mha.min_float),
        None => scores,
    };
    let weights = if mha.quiet_softmax {
        quiet_softmax(scores, 3)
    } else {
        softmax(scores, 3)
    };
    let context = weights
        .matmul(split(kv.values.clone(), k_steps))
        .swap_dims(1, 2)
        .reshape([rows, q_steps, width]);
    linear(&mha.output, context)
}

/// Self-attention of the newest position `x` (`[rows, 1, d_model]`) over itself and the cached positions;
/// its keys and values join the cache.
fn self_attend(mha: &MultiHeadAttention, x: Tensor<3>, cache: &mut LayerCache) -> Tensor<3> {
    let new = KeyValues::project(mha, x.clone());
    let kv = match cache.past.take() {
        Some(past) => past.append(new),
        None => new,
    };
    let out = attend(mha, linear(&mha.query, x), &kv, None);
    cache.past = Some(kv);
    out
}

/// `x` plus the vector of position `at`.
fn position_at(positions: &Positions, x: Tensor<3>, at: usize) -> Tensor<3> {
    let [rows, steps, width] = x.dims();
    match (&positions.sinusoidal, &positions.learned) {
        (Some(sinusoids), _) => {
            x + sinusoids
                .sinusoids
                .clone()
                .slice([0..1, at..at + steps, 0..width])
        }
        (None, Some(table)) => {
            let ids = Tensor::<1, Int>::arange(at as i64..(at + steps) as i64, &x.device())
                .reshape([1, steps])
                .expand([rows, steps]);
            x + table.forward(ids)
        }
        (None, None) => x,
    }
}

/// Checks the newest position `x` against `[rows, 1, d_model]`, a cache of `rows` rows, and the room the
/// positions leave.
fn check_step(
    model: &'static str,
    x: &Tensor<3>,
    cache: &DecodingCache,
    d_model: usize,
    max_len: usize,
) -> Result<(), ModelError> {
    let [rows, steps, width] = x.dims();
    if steps != 1 || width != d_model {
        return Err(ModelError::Shape {
            model,
            expected: format!("[_, 1, {d_model}] (one new position)"),
            found: x.dims().to_vec(),
        });
    }
    if cache.steps >= max_len {
        return Err(ModelError::Shape {
            model,
            expected: format!("at most {max_len} positions (the positions the stack covers)"),
            found: vec![rows, cache.steps + 1, width],
        });
    }
    if let Some(kv) = cache.layers.first().and_then(|l| l.past.as_ref())
        && kv.keys.dims()[0] != rows
    {
        return Err(ModelError::Shape {
            model,
            expected: format!("[{}, 1, {d_model}] (the cache's rows)", kv.keys.dims()[0]),
            found: x.dims().to_vec(),
        });
    }
    Ok(())
}

/// One decoder layer on the newest position (burn's `TransformerDecoderLayer` order).
fn decoder_layer_step(
    layer: &TransformerDecoderLayer,
    x: Tensor<3>,
    memory: &KeyValues,
    memory_blocked: Option<&Tensor<2, Bool>>,
    cache: &mut LayerCache,
) -> Tensor<3> {
    let cross = |input: Tensor<3>| {
        attend(
            &layer.cross_attn,
            linear(&layer.cross_attn.query, input),
            memory,
            memory_blocked,
        )
    };
    if layer.norm_first {
        let x = x.clone() + self_attend(&layer.self_attn, layer_norm(&layer.norm_3, x), cache);
        let x = x.clone() + cross(layer_norm(&layer.norm_1, x));
        x.clone() + feed_forward(&layer.pwff, layer_norm(&layer.norm_2, x))
    } else {
        let x = layer_norm(
            &layer.norm_1,
            x.clone() + self_attend(&layer.self_attn, x, cache),
        );
        let x = layer_norm(&layer.norm_2, x.clone() + cross(x));
        layer_norm(&layer.norm_3, x.clone() + feed_forward(&layer.pwff, x))
    }
}

/// One causal encoder layer on the newest position (burn's `TransformerEncoderLayer` order).
fn encoder_layer_step(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    cache: &mut LayerCache,
) -> Tensor<3> {
    if layer.norm_first {
        let x = x.clone() + self_attend(&layer.mha, layer_norm(&layer.norm_2, x), cache);
        x.clone() + feed_forward(&layer.pwff, layer_norm(&layer.norm_1, x))
    } else {
        let x = layer_norm(&layer.norm_1, x.clone() + self_attend(&layer.mha, x, cache));
        layer_norm(&layer.norm_2, x.clone() + feed_forward(&layer.pwff, x))
    }
}

impl DecoderStack {
    /// An empty cache for [`Self::try_step`].
    pub fn start_cache(&self) -> DecodingCache {
        DecodingCache::new(self.decoder.layers.len())
    }

    /// The decoder's output at the next position, given its input vector there (`x`, `[rows, 1, d_model]`,
    /// the embedded token before positions) and the cache of the earlier positions, which it extends.
    ///
    /// `memory` (`[rows or 1, memory_steps, d_model]`) and `memory_valid` (`[rows or 1, memory_steps]`)
    /// are read on the first step only (a memory of one row serves every row: beam search).
    ///
    /// Returns `[rows, 1, d_model]`.
    pub fn try_step(
        &self,
        x: Tensor<3>,
        memory: &Tensor<3>,
        memory_valid: Option<&Tensor<2, Bool>>,
        cache: &mut DecodingCache,
    ) -> Result<Tensor<3>, ModelError> {
        check_step("transformer decoder", &x, cache, self.d_model, self.max_len)?;
        let rows = x.dims()[0];
        let memory_rows = memory.dims()[0];
        if memory_rows != rows && memory_rows != 1 {
            return Err(ModelError::Shape {
                model: "transformer decoder memory",
                expected: format!("[{rows} or 1, _, {}]", self.d_model),
                found: memory.dims().to_vec(),
            });
        }
        let blocked = memory_valid.map(|valid| {
            let [r, steps] = valid.dims();
            let blocked = valid.clone().bool_not();
            if r == rows {
                blocked
            } else {
                blocked.expand([rows, steps])
            }
        });
        let mut x = position_at(&self.positions, x, cache.steps);
        for (layer, layer_cache) in self.decoder.layers.iter().zip(&mut cache.layers) {
            let kv = layer_cache
                .memory
                .get_or_insert_with(|| KeyValues::project(&layer.cross_attn, memory.clone()))
                .rows(rows);
            x = decoder_layer_step(layer, x, &kv, blocked.as_ref(), layer_cache);
        }
        cache.steps += 1;
        Ok(match &self.final_norm {
            Some(norm) => layer_norm(norm, x),
            None => x,
        })
    }
}

impl EncoderStack {
    /// An empty cache for [`Self::try_step_causal`].
    pub fn start_cache(&self) -> DecodingCache {
        DecodingCache::new(self.encoder.layers.len())
    }

    /// The causal stack's output at the next position (`x`: its input vector, `[rows, 1, d_model]`), which
    /// attends to the positions in `cache` and joins them. Returns `[rows, 1, d_model]`.
    pub fn try_step_causal(
        &self,
        x: Tensor<3>,
        cache: &mut DecodingCache,
    ) -> Result<Tensor<3>, ModelError> {
        check_step("transformer", &x, cache, self.d_model, self.max_len)?;
        let mut x = position_at(&self.positions, x, cache.steps);
        for (layer, layer_cache) in self.encoder.layers.iter().zip(&mut cache.layers) {
            x = encoder_layer_step(layer, x, layer_cache);
        }
        cache.steps += 1;
        Ok(match &self.final_norm {
            Some(norm) => layer_norm(norm, x),
            None => x,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transformer::{
        EncoderStackConfig, PositionKind, Seq2Seq, Seq2SeqConfig, TransformerLm,
        TransformerLmConfig,
    };
    use burn::data::dataloader::batcher::Batcher;
    use burn::tensor::Tolerance;
    use kiln_data::parallel::BOS_ID;
    use kiln_data::{IdPair, PairBatcher};

    fn stack(norm_first: bool, positions: PositionKind) -> EncoderStackConfig {
        EncoderStackConfig::new(16)
            .with_n_heads(2)
            .with_n_layers(2)
            .with_d_ff(32)
            .with_dropout(0.0)
            .with_norm_first(norm_first)
            .with_positions(positions)
            .with_max_len(12)
    }

    fn seq2seq(device: &Device, norm_first: bool, positions: PositionKind) -> Seq2Seq {
        device.seed(3);
        let s = stack(norm_first, positions);
        Seq2SeqConfig::new(20, 24, s.clone(), s)
            .init(device)
            .unwrap()
    }

    /// Two padded sources, encoded.
    fn memory(model: &Seq2Seq, device: &Device) -> (Tensor<3>, Tensor<2, Bool>) {
        let batch = PairBatcher { max_len: 12 }.batch(
            vec![
                IdPair {
                    source: vec![5, 6, 7, 8],
                    target: vec![9],
                },
                IdPair {
                    source: vec![10, 11],
                    target: vec![9],
                },
            ],
            device,
        );
        let memory = model
            .encode(batch.source, batch.source_valid.clone())
            .unwrap();
        (memory, batch.source_valid)
    }

    /// The full forward pass's logits at the last position of each row of `prefixes`, `[rows, vocab]`.
    fn full_last(
        model: &Seq2Seq,
        prefixes: &[Vec<i64>],
        memory: Tensor<3>,
        valid: Tensor<2, Bool>,
        device: &Device,
    ) -> Tensor<2> {
        let (rows, t) = (prefixes.len(), prefixes[0].len());
        let ids: Vec<i64> = prefixes.iter().flatten().copied().collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, t]), device);
        let logits = model.decode(input, None, memory, valid).unwrap();
        let vocab = logits.dims()[2];
        logits
            .slice([0..rows, t - 1..t, 0..vocab])
            .reshape([rows, vocab])
    }

    fn cached_step(
        model: &Seq2Seq,
        tokens: &[i64],
        memory: &Tensor<3>,
        valid: &Tensor<2, Bool>,
        cache: &mut DecodingCache,
        device: &Device,
    ) -> Tensor<2> {
        let rows = tokens.len();
        let input =
            Tensor::<2, Int>::from_data(TensorData::new(tokens.to_vec(), [rows, 1]), device);
        let out = model
            .decoder
            .try_step(
                model.target_embedding.forward(input),
                memory,
                Some(valid),
                cache,
            )
            .unwrap();
        let vocab = model.output.weight.dims()[1];
        linear(&model.output, out).reshape([rows, vocab])
    }

    #[test]
    fn each_cached_decoder_step_equals_the_full_forward_pass_there() {
        let device = Device::flex();
        let tokens: [[i64; 6]; 2] = [
            [BOS_ID as i64, 4, 9, 17, 3, 22],
            [BOS_ID as i64, 8, 8, 1, 23, 5],
        ];
        for norm_first in [true, false] {
            for positions in [PositionKind::Sinusoidal, PositionKind::Learned] {
                let model = seq2seq(&device, norm_first, positions);
                let (memory, valid) = memory(&model, &device);
                let mut cache = model.decoder.start_cache();
                for t in 0..tokens[0].len() {
                    let step: Vec<i64> = tokens.iter().map(|row| row[t]).collect();
                    let cached = cached_step(&model, &step, &memory, &valid, &mut cache, &device);
                    let prefixes: Vec<Vec<i64>> =
                        tokens.iter().map(|row| row[..=t].to_vec()).collect();
                    let full = full_last(&model, &prefixes, memory.clone(), valid.clone(), &device);
                    cached
                        .into_data()
                        .assert_approx_eq::<f32>(&full.into_data(), Tolerance::absolute(1e-4));
                }
                assert_eq!(cache.steps(), tokens[0].len());
            }
        }
    }

    #[test]
    fn selected_rows_continue_as_the_reordered_prefixes() {
        let device = Device::flex();
        let model = seq2seq(&device, true, PositionKind::Sinusoidal);
        let (memory, valid) = memory(&model, &device);
        // One sentence's memory serves every row (beam search).
        let one = memory.clone().slice([0..1, 0..4, 0..16]);
        let one_valid = valid.clone().slice([0..1, 0..4]);
        let mut cache = model.decoder.start_cache();
        let rows: [[i64; 2]; 3] = [[BOS_ID as i64, 4], [BOS_ID as i64, 7], [BOS_ID as i64, 12]];
        for t in 0..2 {
            let step: Vec<i64> = rows.iter().map(|r| r[t]).collect();
            cached_step(&model, &step, &one, &one_valid, &mut cache, &device);
        }
        let order = [2usize, 0, 0];
        let mut cache = cache.select(&Tensor::<1, Int>::from_ints([2, 0, 0], &device));
        let next = [5i64, 6, 19];
        let cached = cached_step(&model, &next, &one, &one_valid, &mut cache, &device);
        let prefixes: Vec<Vec<i64>> = order
            .iter()
            .zip(next)
            .map(|(&r, id)| vec![rows[r][0], rows[r][1], id])
            .collect();
        let full = full_last(
            &model,
            &prefixes,
            one.expand([3, 4, 16]),
            one_valid.expand([3, 4]),
            &device,
        );
        cached
            .into_data()
            .assert_approx_eq::<f32>(&full.into_data(), Tolerance::absolute(1e-4));
    }

    /// Greedy decoding by re-running the whole prefix every step (what `greedy` did before the cache).
    fn uncached_greedy(
        model: &Seq2Seq,
        memory: Tensor<3>,
        valid: Tensor<2, Bool>,
        steps: usize,
    ) -> Vec<Vec<i64>> {
        let device = memory.device();
        let rows = memory.dims()[0];
        let mut prefixes = vec![vec![BOS_ID as i64]; rows];
        for _ in 0..steps {
            let next = full_last(model, &prefixes, memory.clone(), valid.clone(), &device)
                .argmax(1)
                .reshape([rows])
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap();
            for (p, id) in prefixes.iter_mut().zip(next) {
                p.push(id);
            }
        }
        prefixes
    }

    #[test]
    fn cached_and_uncached_greedy_decoding_give_the_same_tokens() {
        let device = Device::flex();
        for norm_first in [true, false] {
            let model = seq2seq(&device, norm_first, PositionKind::Sinusoidal);
            let (memory, valid) = memory(&model, &device);
            let reference = uncached_greedy(&model, memory.clone(), valid.clone(), 10);
            let mut cache = model.decoder.start_cache();
            let mut prefixes = vec![vec![BOS_ID as i64]; 2];
            for _ in 0..10 {
                let last: Vec<i64> = prefixes.iter().map(|p| p[p.len() - 1]).collect();
                let next = cached_step(&model, &last, &memory, &valid, &mut cache, &device)
                    .argmax(1)
                    .reshape([2])
                    .into_data()
                    .convert::<i64>()
                    .try_to_vec::<i64>()
                    .unwrap();
                for (p, id) in prefixes.iter_mut().zip(next) {
                    p.push(id);
                }
            }
            assert_eq!(prefixes, reference);
        }
    }

    fn lm(device: &Device) -> TransformerLm {
        device.seed(9);
        TransformerLmConfig::new(12, stack(true, PositionKind::Learned).with_max_len(8))
            .init(device)
            .unwrap()
    }

    #[test]
    fn the_language_models_cached_steps_equal_its_forward_pass() {
        let device = Device::flex();
        let model = lm(&device);
        let tokens: Vec<i64> = vec![3, 7, 1, 1, 11, 0, 5, 2];
        let full = model
            .try_forward(
                Tensor::<2, Int>::from_data(TensorData::new(tokens.clone(), [1, 8]), &device),
                None,
            )
            .unwrap()
            .reshape([8, 12]);
        let mut cache = model.stack.start_cache();
        for (t, &id) in tokens.iter().enumerate() {
            let input = Tensor::<2, Int>::from_data(TensorData::new(vec![id], [1, 1]), &device);
            let out = model
                .stack
                .try_step_causal(model.embedding.forward(input), &mut cache)
                .unwrap();
            let cached = linear(&model.output, out).reshape([1, 12]);
            cached.into_data().assert_approx_eq::<f32>(
                &full.clone().slice([t..t + 1, 0..12]).into_data(),
                Tolerance::absolute(1e-4),
            );
        }
        // The positions end at the context: a ninth step is an error, not a wrong position.
        let input = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64], [1, 1]), &device);
        assert!(
            model
                .stack
                .try_step_causal(model.embedding.forward(input), &mut cache)
                .is_err()
        );
    }

    #[test]
    fn cached_generation_samples_the_uncached_tokens() {
        use rand::SeedableRng;
        let device = Device::flex();
        let model = lm(&device);
        let (prompt, length, temperature, seed) = ([3u32, 7, 1], 12, 0.8, 5);
        // The text outgrows the context of 8 after five tokens: the rest slides the window.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut text = prompt.to_vec();
        for _ in 0..length {
            let window = &text[text.len().saturating_sub(8)..];
            let ids: Vec<i64> = window.iter().map(|&id| id as i64).collect();
            let steps = ids.len();
            let logits = model
                .try_forward(
                    Tensor::<2, Int>::from_data(TensorData::new(ids, [1, steps]), &device),
                    None,
                )
                .unwrap()
                .slice([0..1, steps - 1..steps, 0..12])
                .reshape([12]);
            let id =
                crate::next_token::sample_logits("test", logits, temperature, &mut rng).unwrap();
            text.push(id);
        }
        let generated = model.generate(&prompt, length, temperature, seed).unwrap();
        assert_eq!(generated, text[prompt.len()..]);
    }
}
