//! Character-level text: a vocabulary built from the training split, a contiguous train/validation/test
//! split, datasets of fixed-length windows, and a batcher that pads and masks sequences of any length.

use crate::DataError;
use crate::read::read_text;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use kiln_core::PAD_ID;

/// The id of the unknown character (a character never seen in the training split). Padding has its own id,
/// [`PAD_ID`], so that an unknown character in a test text is still scored.
pub const UNKNOWN_ID: u32 = 1;

/// Ids before the first character's: [`PAD_ID`] and [`UNKNOWN_ID`].
const SPECIAL_IDS: u32 = 2;

/// A character vocabulary: id 0 is padding, id 1 the unknown character, ids 2… the characters of the
/// training text in code-point order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
    index: HashMap<char, u32>,
}

impl CharVocab {
    /// The vocabulary of `text`'s distinct characters.
    pub fn build(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        let index = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i as u32 + SPECIAL_IDS))
            .collect();
        Self { chars, index }
    }

    /// Number of ids, padding and the unknown one included.
    pub fn len(&self) -> usize {
        self.chars.len() + SPECIAL_IDS as usize
    }

    /// True when no character is known.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The id of `c`, [`UNKNOWN_ID`] when it is not in the vocabulary.
    pub fn id(&self, c: char) -> u32 {
        self.index.get(&c).copied().unwrap_or(UNKNOWN_ID)
    }

    /// The ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.chars().map(|c| self.id(c)).collect()
    }

    /// The character of `id` (`�` for padding, the unknown id or an id out of range).
    pub fn char(&self, id: u32) -> char {
        (id as usize)
            .checked_sub(SPECIAL_IDS as usize)
            .and_then(|i| self.chars.get(i))
            .copied()
            .unwrap_or('\u{fffd}')
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().map(|&id| self.char(id)).collect()
    }
}

/// A text split contiguously into training, validation and test parts (no window crosses a boundary), encoded
/// with the training part's vocabulary.
#[derive(Debug, Clone)]
pub struct CharCorpus {
    /// The vocabulary of the training part.
    pub vocab: CharVocab,
    /// Training ids (the first part of the text).
    pub train: Arc<Vec<u32>>,
    /// Validation ids (the middle part).
    pub valid: Arc<Vec<u32>>,
    /// Test ids (the last part).
    pub test: Arc<Vec<u32>>,
}

impl CharCorpus {
    /// Splits `text` into the first `train` fraction, the next `valid` fraction and the rest as test.
    pub fn split(text: &str, train: f64, valid: f64) -> Result<Self, DataError> {
        if !(train > 0.0 && valid > 0.0 && train + valid < 1.0) {
            return Err(DataError::InvalidSplit(format!(
                "train ({train}) and valid ({valid}) fractions must be positive and sum below 1"
            )));
        }
        let chars: Vec<char> = text.chars().collect();
        let n = chars.len();
        let train_end = (n as f64 * train) as usize;
        let valid_end = (n as f64 * (train + valid)) as usize;
        if train_end == 0 || valid_end == train_end || valid_end == n {
            return Err(DataError::InvalidSplit(format!(
                "a text of {n} characters is too short to split {train}/{valid}/rest"
            )));
        }
        let part = |range: std::ops::Range<usize>| chars[range].iter().collect::<String>();
        let train_text = part(0..train_end);
        let vocab = CharVocab::build(&train_text);
        Ok(Self {
            train: Arc::new(vocab.encode(&train_text)),
            valid: Arc::new(vocab.encode(&part(train_end..valid_end))),
            test: Arc::new(vocab.encode(&part(valid_end..n))),
            vocab,
        })
    }

    /// Reads a UTF-8 text file (gzipped or not) and splits it as [`Self::split`] does.
    pub fn load(path: &Path, train: f64, valid: f64) -> Result<Self, DataError> {
        let text = read_text(path)?;
        if text.is_empty() {
            return Err(DataError::Empty { path: path.into() });
        }
        Self::split(&text, train, valid)
    }
}

/// The vendored complete works of Shakespeare (`data/shakespeare/`), split 90% / 5% / 5% in reading order.
pub fn shakespeare() -> Result<CharCorpus, DataError> {
    CharCorpus::load(
        &crate::data_dir().join("shakespeare/shakespeare.txt.gz"),
        0.9,
        0.05,
    )
}

/// A sequence of token ids, read by language models as inputs `ids[..n−1]` and next-token targets `ids[1..]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSequence {
    /// The ids.
    pub ids: Vec<u32>,
}

/// Non-overlapping windows of `length + 1` ids over one split (consecutive windows share one id, so every
/// id but the first is a target exactly once).
#[derive(Debug, Clone)]
pub struct TokenWindows {
    ids: Arc<Vec<u32>>,
    length: usize,
    starts: Vec<usize>,
}

impl TokenWindows {
    /// Every window of `length` targets over `ids`, in order.
    pub fn new(ids: Arc<Vec<u32>>, length: usize) -> Result<Self, DataError> {
        if length == 0 || ids.len() < length + 1 {
            return Err(DataError::InvalidSplit(format!(
                "windows of {length} steps need at least {} ids, the split holds {}",
                length + 1,
                ids.len()
            )));
        }
        let starts = (0..=ids.len() - (length + 1)).step_by(length).collect();
        Ok(Self {
            ids,
            length,
            starts,
        })
    }

    /// The windows with these indices, in that order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            ids: Arc::clone(&self.ids),
            length: self.length,
            starts: indices
                .iter()
                .filter_map(|&i| self.starts.get(i).copied())
                .collect(),
        }
    }

    /// The first `n` windows.
    pub fn take(&self, n: usize) -> Self {
        Self {
            starts: self.starts.iter().take(n).copied().collect(),
            ..self.clone()
        }
    }

    /// Targets per window.
    pub fn length(&self) -> usize {
        self.length
    }
}

impl Dataset<TokenSequence> for TokenWindows {
    fn get(&self, index: usize) -> Result<TokenSequence, DatasetError> {
        let start = *self.starts.get(index).ok_or_else(|| {
            DatasetError::new(DataError::InvalidSplit(format!(
                "window {index} out of range: {} windows",
                self.starts.len()
            )))
        })?;
        Ok(TokenSequence {
            ids: self.ids[start..start + self.length + 1].to_vec(),
        })
    }

    fn len(&self) -> usize {
        self.starts.len()
    }
}

/// A batch of token sequences, padded to the longest one.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Input ids, `[batch, steps]` (padding holds [`PAD_ID`]).
    pub inputs: Tensor<2, Int>,
    /// Next-token targets, `[batch, steps]` ([`PAD_ID`] on padding: the pad-aware loss skips those steps).
    pub targets: Tensor<2, Int>,
    /// `[batch, steps]`, `true` on real steps and `false` on padding.
    pub mask: Tensor<2, Bool>,
}

/// Turns [`TokenSequence`]s of any lengths (at least 2) into a [`TokenBatch`] padded at the end.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenBatcher;

impl Batcher<TokenSequence, TokenBatch> for TokenBatcher {
    fn batch(&self, items: Vec<TokenSequence>, device: &Device) -> TokenBatch {
        let n = items.len();
        let steps = items
            .iter()
            .map(|s| s.ids.len().saturating_sub(1))
            .max()
            .unwrap_or(0);
        let mut inputs = vec![PAD_ID as i64; n * steps];
        let mut targets = vec![PAD_ID as i64; n * steps];
        let mut mask = vec![false; n * steps];
        for (row, seq) in items.iter().enumerate() {
            for (t, pair) in seq.ids.windows(2).enumerate() {
                let at = row * steps + t;
                inputs[at] = pair[0] as i64;
                targets[at] = pair[1] as i64;
                mask[at] = true;
            }
        }
        TokenBatch {
            inputs: Tensor::from_data(TensorData::new(inputs, [n, steps]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n, steps]), device),
            mask: Tensor::from_data(TensorData::new(mask, [n, steps]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_round_trips_and_maps_unseen_characters_to_unknown() {
        let vocab = CharVocab::build("hello world");
        assert_eq!(vocab.len(), 10); // 8 distinct + padding + unknown
        assert_eq!(vocab.decode(&vocab.encode("hello")), "hello");
        assert_eq!(vocab.id('z'), UNKNOWN_ID);
        assert_eq!(vocab.char(UNKNOWN_ID), '\u{fffd}');
        assert_eq!(vocab.char(PAD_ID), '\u{fffd}');
        assert!(
            vocab
                .encode("hello world")
                .iter()
                .all(|&id| id != PAD_ID && id != UNKNOWN_ID)
        );
    }

    #[test]
    fn split_is_contiguous_and_vocabulary_comes_from_training_text() {
        let text = "aaaaaaaabbz";
        let corpus = CharCorpus::split(text, 0.7, 0.1).unwrap();
        assert_eq!(corpus.vocab.decode(&corpus.train), "aaaaaaa");
        assert_eq!(corpus.valid.len() + corpus.test.len(), 4);
        // b and z never occur in training: unknown.
        assert!(corpus.test.iter().all(|&id| id == UNKNOWN_ID));
        assert!(CharCorpus::split("abc", 0.9, 0.2).is_err());
        assert!(CharCorpus::split("ab", 0.5, 0.4).is_err());
    }

    #[test]
    fn windows_tile_the_split_and_batches_pad_and_mask() {
        let ids = Arc::new((0..11).collect::<Vec<u32>>());
        let windows = TokenWindows::new(ids, 3).unwrap();
        assert_eq!(windows.len(), 3); // starts 0, 3, 6 (9 would need ids up to 12)
        assert_eq!(windows.get(1).unwrap().ids, vec![3, 4, 5, 6]);
        assert!(TokenWindows::new(Arc::new(vec![1, 2]), 5).is_err());

        let device = Device::flex();
        let batch = TokenBatcher.batch(
            vec![
                TokenSequence {
                    ids: vec![5, 6, 7, 8],
                },
                TokenSequence { ids: vec![9, 10] },
            ],
            &device,
        );
        let inputs: Vec<i64> = batch
            .inputs
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        let targets: Vec<i64> = batch
            .targets
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        let mask: Vec<bool> = batch.mask.into_data().try_to_vec().unwrap();
        assert_eq!(inputs, vec![5, 6, 7, 9, PAD_ID as i64, PAD_ID as i64]);
        assert_eq!(targets, vec![6, 7, 8, 10, PAD_ID as i64, PAD_ID as i64]);
        assert_eq!(mask, vec![true, true, true, true, false, false]);
    }

    #[test]
    fn the_vendored_shakespeare_loads_and_a_missing_file_is_named() {
        let corpus = shakespeare().unwrap();
        assert!(corpus.train.len() > 4_000_000, "{}", corpus.train.len());
        assert!(
            (80..100).contains(&corpus.vocab.len()),
            "{}",
            corpus.vocab.len()
        );
        let err = CharCorpus::load(Path::new("/nonexistent/t.txt"), 0.9, 0.05).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/t.txt"), "{err}");
    }
}
