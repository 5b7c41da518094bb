//! Encoder–decoder Transformer for translation (Vaswani et al. 2017, pre-norm): source embedding → an
//! [`EncoderStack`], target embedding → a [`DecoderStack`] (causal self-attention, cross-attention over the
//! encoder's output) → a linear layer over the target vocabulary. Trained with teacher forcing on
//! [`PairBatch`]es; translates by greedy decoding (batched) or beam search.

use super::cache::DecodingCache;
use super::stack::{DecoderStack, EncoderStack, EncoderStackConfig};
use crate::check;
use crate::next_token::check_token_range;
use crate::{ModelError, check_shape};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use kiln_core::{BatchError, Supervised, TokenOutput};
use kiln_data::PairBatch;
use kiln_data::parallel::{BOS_ID, EOS_ID};

/// Configuration of a [`Seq2Seq`].
#[derive(Config, Debug)]
pub struct Seq2SeqConfig {
    /// Source vocabulary size.
    pub source_vocab: usize,
    /// Target vocabulary size.
    pub target_vocab: usize,
    /// Encoder sizes (its `max_len` bounds source length).
    pub encoder: EncoderStackConfig,
    /// Decoder sizes (its `max_len` bounds target length, BOS included); `d_model` must equal the
    /// encoder's.
    pub decoder: EncoderStackConfig,
}

impl Seq2SeqConfig {
    /// Checks the config and builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<Seq2Seq, ModelError> {
        if self.source_vocab < 5
            || self.target_vocab < 5
            || self.encoder.d_model != self.decoder.d_model
        {
            return Err(ModelError::Config {
                model: "transformer_seq2seq",
                field: "source_vocab, target_vocab, encoder.d_model, decoder.d_model",
                message: format!(
                    "vocabularies need the 4 special ids and a word (got {} and {}); encoder and decoder \
                     widths must agree (got {} and {})",
                    self.source_vocab,
                    self.target_vocab,
                    self.encoder.d_model,
                    self.decoder.d_model
                ),
            });
        }
        let d = self.encoder.d_model;
        Ok(Seq2Seq {
            source_embedding: EmbeddingConfig::new(self.source_vocab, d).init(device),
            target_embedding: EmbeddingConfig::new(self.target_vocab, d).init(device),
            encoder: self.encoder.init(device)?,
            decoder: self.decoder.init_decoder(device)?,
            output: LinearConfig::new(d, self.target_vocab).init(device),
        })
    }
}

/// An encoder–decoder Transformer.
#[derive(Module, Debug)]
pub struct Seq2Seq {
    /// Source token embeddings.
    pub source_embedding: Embedding,
    /// Target token embeddings.
    pub target_embedding: Embedding,
    /// The encoder.
    pub encoder: EncoderStack,
    /// The decoder.
    pub decoder: DecoderStack,
    /// Target-token logits.
    pub output: Linear,
}

/// One hypothesis of beam search: its tokens after BOS and their summed log-probability.
#[derive(Debug, Clone)]
struct Hypothesis {
    tokens: Vec<u32>,
    log_prob: f64,
}

impl Seq2Seq {
    fn source_vocab(&self) -> usize {
        self.source_embedding.weight.dims()[0]
    }

    fn target_vocab(&self) -> usize {
        self.output.weight.dims()[1]
    }

    /// The longest target the decoder reads, BOS included.
    pub fn max_target_len(&self) -> usize {
        self.decoder.max_len
    }

    /// The encoder's output.
    ///
    /// # Shapes
    /// - `source`: `[batch, source_steps]`; `valid`: `[batch, source_steps]`, `true` on real tokens
    /// - returns `[batch, source_steps, d_model]`
    pub fn encode(
        &self,
        source: Tensor<2, Int>,
        valid: Tensor<2, Bool>,
    ) -> Result<Tensor<3>, ModelError> {
        check_shape("transformer_seq2seq source", &[None, None], &source.dims())?;
        check_token_range("transformer_seq2seq source", &source, self.source_vocab())?;
        self.encoder
            .try_forward(self.source_embedding.forward(source), Some(valid), false)
    }

    /// Next-token logits for every target step.
    ///
    /// # Shapes
    /// - `target_in`: `[batch, steps]` (BOS first); `target_valid`: optional `[batch, steps]`
    /// - `memory`, `source_valid`: the encoder's output and the source mask
    /// - returns `[batch, steps, target_vocab]`
    pub fn decode(
        &self,
        target_in: Tensor<2, Int>,
        target_valid: Option<Tensor<2, Bool>>,
        memory: Tensor<3>,
        source_valid: Tensor<2, Bool>,
    ) -> Result<Tensor<3>, ModelError> {
        check_token_range(
            "transformer_seq2seq target",
            &target_in,
            self.target_vocab(),
        )?;
        let x = self.target_embedding.forward(target_in);
        let out = self
            .decoder
            .try_forward(x, target_valid, memory, Some(source_valid))?;
        Ok(super::fused::linear(&self.output, out))
    }

    /// The teacher-forced loss (nats per target token over real steps) with logits and targets for metrics.
    pub fn try_step(&self, batch: PairBatch) -> Result<TokenOutput, ModelError> {
        let memory = self.encode(batch.source, batch.source_valid.clone())?;
        let logits = self.decode(
            batch.target_in,
            Some(batch.target_valid),
            memory,
            batch.source_valid,
        )?;
        Ok(kiln_core::loss::token_output(logits, batch.target_out))
    }

    /// Next-token logits (`[rows, target_vocab]`) after feeding each row's newest token (`last`), the
    /// earlier ones being in `cache`, which this extends.
    fn decode_step(
        &self,
        last: Vec<i64>,
        device: &Device,
        memory: &Tensor<3>,
        source_valid: &Tensor<2, Bool>,
        cache: &mut DecodingCache,
    ) -> Result<Tensor<2>, ModelError> {
        let rows = last.len();
        // `last` holds BOS or ids the model chose, all below its vocabulary: no range check per step.
        let input = Tensor::<2, Int>::from_data(TensorData::new(last, [rows, 1]), device);
        let x = self.target_embedding.forward(input);
        let out = self
            .decoder
            .try_step(x, memory, Some(source_valid), cache)?;
        let vocab = self.target_vocab();
        Ok(super::fused::linear(&self.output, out).reshape([rows, vocab]))
    }

    /// Greedy translations of a batch of sources: each step appends every sentence's most likely next token,
    /// until all have produced EOS or `max_len` tokens. Returns each translation's tokens before EOS.
    ///
    /// # Shapes
    /// - `source`, `valid`: `[batch, source_steps]` as [`kiln_data::PairBatcher::sources`] makes them
    pub fn greedy(
        &self,
        source: Tensor<2, Int>,
        valid: Tensor<2, Bool>,
        max_len: usize,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        let [batch, _] = source.dims();
        let device = source.device();
        let memory = self.encode(source, valid.clone())?;
        let steps = max_len.min(self.max_target_len());
        let mut prefixes: Vec<Vec<u32>> = vec![vec![BOS_ID]; batch];
        let mut done = vec![false; batch];
        let mut cache = self.decoder.start_cache();
        for _ in 0..steps {
            let last: Vec<i64> = prefixes.iter().map(|p| p[p.len() - 1] as i64).collect();
            let logits = self.decode_step(last, &device, &memory, &valid, &mut cache)?;
            let next: Vec<i64> = logits
                .argmax(1)
                .reshape([batch])
                .into_data()
                .convert::<i64>()
                .try_to_vec()
                .map_err(|e| ModelError::ReadBack {
                    model: "transformer_seq2seq",
                    what: "tokens",
                    message: format!("{e:?}"),
                })?;
            for (i, prefix) in prefixes.iter_mut().enumerate() {
                // Finished sentences keep decoding (the batch stays rectangular); their tail is dropped.
                prefix.push(if done[i] { EOS_ID } else { next[i] as u32 });
                done[i] |= next[i] as u32 == EOS_ID;
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        Ok(prefixes
            .into_iter()
            .map(|p| {
                p[1..]
                    .iter()
                    .copied()
                    .take_while(|&id| id != EOS_ID)
                    .collect()
            })
            .collect())
    }

    /// Beam search for one source sentence: keeps the `beam` most likely prefixes, moves those that end
    /// with EOS to the finished list, and stops when `beam` have finished (or after `max_len` tokens). The
    /// translation is the finished hypothesis with the best log-probability divided by GNMT's length
    /// penalty ((5 + length) / 6)^`alpha`. With `beam` 1 it is greedy decoding.
    ///
    /// # Shapes
    /// - `source`, `valid`: `[1, source_steps]`
    pub fn beam_search(
        &self,
        source: Tensor<2, Int>,
        valid: Tensor<2, Bool>,
        beam: usize,
        max_len: usize,
        alpha: f64,
    ) -> Result<Vec<u32>, ModelError> {
        let [one, _] = source.dims();
        if one != 1 || beam == 0 {
            return Err(ModelError::Argument {
                model: "transformer_seq2seq",
                argument: "source, beam",
                message: format!(
                    "beam search takes one sentence ([1, steps], got {:?}) and a beam of 1+ (got {beam})",
                    source.dims()
                ),
            });
        }
        let device = source.device();
        let memory = self.encode(source, valid.clone())?;
        let vocab = self.target_vocab();
        let steps = max_len.min(self.max_target_len());
        let mut live = vec![Hypothesis {
            tokens: Vec::new(),
            log_prob: 0.0,
        }];
        let mut finished: Vec<Hypothesis> = Vec::new();
        // One cache row per live hypothesis; the memory's single row serves them all.
        let mut cache = self.decoder.start_cache();
        for _ in 0..steps {
            let k = live.len();
            let last: Vec<i64> = live
                .iter()
                .map(|h| h.tokens.last().copied().unwrap_or(BOS_ID) as i64)
                .collect();
            let logits = self.decode_step(last, &device, &memory, &valid, &mut cache)?;
            let log_probs: Vec<f32> = log_softmax(logits, 1)
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .map_err(|e| ModelError::ReadBack {
                    model: "transformer_seq2seq",
                    what: "probabilities",
                    message: format!("{e:?}"),
                })?;
            // The `beam` best continuations over every live hypothesis (ties: lower hypothesis, lower id).
            let mut candidates: Vec<(f64, usize, u32)> = Vec::with_capacity(k * vocab);
            for (h, hyp) in live.iter().enumerate() {
                for (id, &lp) in log_probs[h * vocab..(h + 1) * vocab].iter().enumerate() {
                    candidates.push((hyp.log_prob + lp as f64, h, id as u32));
                }
            }
            let take = beam.min(candidates.len());
            candidates.select_nth_unstable_by(take - 1, |a, b| {
                b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
            });
            candidates.truncate(take);
            candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let mut next = Vec::with_capacity(take);
            let mut parents = Vec::with_capacity(take);
            for (log_prob, h, id) in candidates {
                let tokens = live[h].tokens.clone();
                if id == EOS_ID {
                    finished.push(Hypothesis { tokens, log_prob });
                } else {
                    let mut tokens = tokens;
                    tokens.push(id);
                    next.push(Hypothesis { tokens, log_prob });
                    parents.push(h as i64);
                }
            }
            live = next;
            if !parents.is_empty() {
                let rows = parents.len();
                cache = cache.select(&Tensor::<1, Int>::from_data(
                    TensorData::new(parents, [rows]),
                    &device,
                ));
            }
            if live.is_empty() || finished.len() >= beam {
                break;
            }
        }
        finished.extend(live);
        let penalty = |len: usize| ((5.0 + len as f64) / 6.0).powf(alpha);
        Ok(finished
            .into_iter()
            .max_by(|a, b| {
                (a.log_prob / penalty(a.tokens.len() + 1))
                    .total_cmp(&(b.log_prob / penalty(b.tokens.len() + 1)))
            })
            .map(|h| h.tokens)
            .unwrap_or_default())
    }
}

impl Supervised for Seq2Seq {
    type Batch = PairBatch;
    type Output = TokenOutput;

    fn forward_step(&self, batch: PairBatch) -> TokenOutput {
        self.try_step(batch).unwrap_or_else(|e| panic!("{e}"))
    }

    fn check_batch(&self, batch: &PairBatch) -> Result<(), BatchError> {
        // Sizes from `lazy_shape`, and no forward pass: reading or running a parameter would initialise a
        // lazily initialised one now, from another point of the random stream than training's first step.
        let source = self.source_embedding.weight.lazy_shape()[0];
        let target = self.target_embedding.weight.lazy_shape()[0];
        let vocab = self.output.weight.lazy_shape()[1];
        for (what, ids, longest) in [
            (
                "transformer_seq2seq source",
                &batch.source,
                self.encoder.max_len,
            ),
            (
                "transformer_seq2seq target",
                &batch.target_in,
                self.decoder.max_len,
            ),
        ] {
            let dims = ids.dims();
            if dims.len() != 2 || dims[1] > longest {
                return Err(ModelError::Shape {
                    model: what,
                    expected: format!("[_, at most {longest}]"),
                    found: dims.to_vec(),
                }
                .into());
            }
        }
        check::ids_within("transformer_seq2seq", "source token", &batch.source, source)?;
        check::ids_within(
            "transformer_seq2seq",
            "target token",
            &batch.target_in,
            target,
        )?;
        check::ids_within(
            "transformer_seq2seq",
            "target token",
            &batch.target_out,
            vocab,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataloader::batcher::Batcher;
    use kiln_data::{IdPair, PairBatcher};

    fn model(device: &Device) -> Seq2Seq {
        device.seed(11);
        let stack = EncoderStackConfig::new(16)
            .with_n_heads(2)
            .with_d_ff(32)
            .with_dropout(0.0)
            .with_max_len(12);
        Seq2SeqConfig::new(20, 24, stack.clone(), stack)
            .init(device)
            .unwrap()
    }

    fn sources() -> Vec<Vec<u32>> {
        vec![
            vec![5, 6, 7, 8],
            vec![9, 10],
            vec![11, 12, 13, 14, 15, 16],
            vec![19],
        ]
    }

    #[test]
    fn teacher_forced_logits_have_the_target_shape() {
        let device = Device::flex();
        let model = model(&device);
        let batch = PairBatcher { max_len: 12 }.batch(
            vec![
                IdPair {
                    source: vec![5, 6, 7],
                    target: vec![8, 9],
                },
                IdPair {
                    source: vec![5],
                    target: vec![10, 11, 12, 13],
                },
            ],
            &device,
        );
        let memory = model
            .encode(batch.source.clone(), batch.source_valid.clone())
            .unwrap();
        assert_eq!(memory.dims(), [2, 4, 16]);
        let logits = model
            .decode(
                batch.target_in.clone(),
                None,
                memory,
                batch.source_valid.clone(),
            )
            .unwrap();
        assert_eq!(logits.dims(), [2, 5, 24]);
        let loss = model.try_step(batch).unwrap().loss.into_scalar::<f32>();
        // An untrained model is close to uniform over 24 ids: about ln 24 = 3.18 nats.
        assert!((2.0..5.0).contains(&loss), "{loss}");
        let wrong = PairBatcher { max_len: 12 }.sources(&[vec![25]], &device);
        assert!(model.encode(wrong.0, wrong.1).is_err());
    }

    #[test]
    fn beam_of_one_equals_greedy_and_batched_greedy_equals_one_by_one() {
        let device = Device::flex();
        let model = model(&device);
        let batcher = PairBatcher { max_len: 12 };
        let (source, valid) = batcher.sources(&sources(), &device);
        let batched = model.greedy(source, valid, 10).unwrap();
        for (i, sentence) in sources().iter().enumerate() {
            let (source, valid) = batcher.sources(std::slice::from_ref(sentence), &device);
            let alone = model.greedy(source.clone(), valid.clone(), 10).unwrap();
            assert_eq!(alone[0], batched[i], "sentence {i}");
            let beam = model.beam_search(source, valid, 1, 10, 0.6).unwrap();
            assert_eq!(beam, batched[i], "sentence {i}");
        }
    }
}
