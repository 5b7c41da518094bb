//! Parallel (translation) corpora: sentence pairs from a TSV file, the vendored King James ↔ Reina-Valera
//! 1909 verses split by whole books, a word tokenizer whose vocabulary comes from the training split, and a
//! batcher that pads and masks source and target sequences for an encoder–decoder.

use crate::DataError;
use crate::read::read_text;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One aligned sentence pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentencePair {
    /// The pair's id in its file (for the Bible, a SWORD verse slot such as `ot-4`).
    pub id: String,
    /// Source-language text.
    pub source: String,
    /// Target-language text.
    pub target: String,
}

impl SentencePair {
    /// Whether both sides have at most `max_words` whitespace-separated words (and at least one).
    pub fn is_short(&self, max_words: usize) -> bool {
        let words = |s: &str| s.split_whitespace().count();
        (1..=max_words).contains(&words(&self.source))
            && (1..=max_words).contains(&words(&self.target))
    }
}

/// Sentence pairs read from a `id<TAB>source<TAB>target` file (gzipped or not, no header).
#[derive(Debug, Clone)]
pub struct ParallelCorpus {
    /// The file read.
    pub path: PathBuf,
    /// The pairs, in file order.
    pub pairs: Vec<SentencePair>,
}

impl ParallelCorpus {
    /// Reads a pair file; a line without exactly three tab-separated fields is an error naming the line.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = read_text(path)?;
        let mut pairs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != 3 {
                return Err(DataError::FieldCount {
                    path: path.to_path_buf(),
                    line: i + 1,
                    expected: 3,
                    found: fields.len(),
                });
            }
            pairs.push(SentencePair {
                id: fields[0].to_string(),
                source: fields[1].trim().to_string(),
                target: fields[2].trim().to_string(),
            });
        }
        if pairs.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            pairs,
        })
    }
}

/// The vendored English → Spanish verse pairs (`data/bible/kjv_rv1909.tsv.gz`).
pub fn kjv_rv1909() -> Result<ParallelCorpus, DataError> {
    ParallelCorpus::load(&crate::data_dir().join("bible/kjv_rv1909.tsv.gz"))
}

/// Training, validation and test pairs.
#[derive(Debug, Clone)]
pub struct PairSplit {
    /// Training pairs.
    pub train: Vec<SentencePair>,
    /// Validation pairs.
    pub valid: Vec<SentencePair>,
    /// Test pairs.
    pub test: Vec<SentencePair>,
}

/// Hosea 1:1, the first verse of the validation books.
const HOSEA_1_1: (&str, &str) = ("ot-22988", "The word of the LORD that came unto Hosea");
/// Romans 1:1, the first verse of the test books.
const ROMANS_1_1: (&str, &str) = ("nt-4912", "Paul, a servant of Jesus Christ");

/// Splits the Bible by whole books: the twelve minor prophets (Hosea–Malachi) for validation, the epistles
/// and Revelation (Romans–Revelation) for test, the rest (Genesis–Daniel, the Gospels, Acts) for training;
/// only pairs with at most `max_words` words on both sides are kept. The first verse of each held-out part
/// is checked, so another file is an error rather than a silently wrong split.
pub fn split_bible_by_books(
    corpus: &ParallelCorpus,
    max_words: usize,
) -> Result<PairSplit, DataError> {
    let slot = |id: &str| -> Option<(bool, usize)> {
        let (testament, n) = id.split_once('-')?;
        Some((testament == "nt", n.parse().ok()?))
    };
    for (id, start) in [HOSEA_1_1, ROMANS_1_1] {
        let found = corpus.pairs.iter().find(|p| p.id == id);
        if !found.is_some_and(|p| p.source.starts_with(start)) {
            return Err(DataError::InvalidSplit(format!(
                "{}: verse {id} should begin {start:?}; not the KJV ↔ RV1909 file with SWORD ids",
                corpus.path.display()
            )));
        }
    }
    let (valid_from, test_from) = (
        slot(HOSEA_1_1.0).unwrap_or_default(),
        slot(ROMANS_1_1.0).unwrap_or_default(),
    );
    let mut split = PairSplit {
        train: Vec::new(),
        valid: Vec::new(),
        test: Vec::new(),
    };
    for pair in &corpus.pairs {
        let Some((nt, n)) = slot(&pair.id) else {
            return Err(DataError::InvalidSplit(format!(
                "{}: id {:?} is not a SWORD verse slot (ot-N or nt-N)",
                corpus.path.display(),
                pair.id
            )));
        };
        if !pair.is_short(max_words) {
            continue;
        }
        let part = if nt && n >= test_from.1 {
            &mut split.test
        } else if !nt && n >= valid_from.1 {
            &mut split.valid
        } else {
            &mut split.train
        };
        part.push(pair.clone());
    }
    Ok(split)
}

/// Padding (the id every Kiln token vocabulary reserves).
pub use kiln_core::PAD_ID;
/// A word not in the vocabulary.
pub const UNK_ID: u32 = 1;
/// Start of a target sentence (the decoder's first input).
pub const BOS_ID: u32 = 2;
/// End of a sentence.
pub const EOS_ID: u32 = 3;
const SPECIALS: [&str; 4] = ["<pad>", "<unk>", "<s>", "</s>"];

/// Splits text into words (runs of letters, digits, marks and `'`) and single punctuation characters.
pub fn word_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let wordy = c.is_alphanumeric() || c == '\'' || c == '’';
        match (wordy, start) {
            (true, None) => start = Some(i),
            (true, Some(_)) => {}
            (false, s) => {
                if let Some(s) = s {
                    tokens.push(&text[s..i]);
                    start = None;
                }
                if !c.is_whitespace() {
                    tokens.push(&text[i..i + c.len_utf8()]);
                }
            }
        }
    }
    if let Some(s) = start {
        tokens.push(&text[s..]);
    }
    tokens
}

/// A word vocabulary: the special ids ([`PAD_ID`], [`UNK_ID`], [`BOS_ID`], [`EOS_ID`]), then the words
/// seen at least `min_count` times in the training texts, most frequent first (ties in code-point order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordVocab {
    words: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl WordVocab {
    /// The vocabulary of `texts`' tokens seen at least `min_count` times, at most `max_size` ids in all.
    pub fn build<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        min_count: usize,
        max_size: usize,
    ) -> Self {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for text in texts {
            for token in word_tokens(text) {
                *counts.entry(token).or_default() += 1;
            }
        }
        let mut ranked: Vec<(&str, usize)> = counts
            .into_iter()
            .filter(|&(_, n)| n >= min_count.max(1))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let words = SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(ranked.into_iter().map(|(w, _)| w.to_string()))
            .take(max_size.max(SPECIALS.len()))
            .collect();
        Self::from_words(words)
    }

    fn from_words(words: Vec<String>) -> Self {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Self { words, index }
    }

    /// Rebuilds the lookup table after deserialising.
    pub fn reindexed(self) -> Self {
        Self::from_words(self.words)
    }

    /// Number of ids, the special ones included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when the vocabulary holds no ids at all (never for a built one).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The ids of `text`'s tokens (unknown words as [`UNK_ID`]), without BOS or EOS.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        word_tokens(text)
            .into_iter()
            .map(|t| self.index.get(t).copied().unwrap_or(UNK_ID))
            .collect()
    }

    /// The text of `ids` up to the first EOS, special ids dropped, with no space before closing
    /// punctuation or after opening punctuation.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = String::new();
        let mut glue_next = true;
        for &id in ids {
            if id == EOS_ID {
                break;
            }
            if id == PAD_ID || id == BOS_ID {
                continue;
            }
            let word = self.words.get(id as usize).map_or("<unk>", String::as_str);
            let closing = matches!(word, "," | "." | ";" | ":" | "?" | "!" | ")" | "]");
            if !glue_next && !closing {
                out.push(' ');
            }
            out.push_str(word);
            glue_next = matches!(word, "¿" | "¡" | "(" | "[");
        }
        out
    }
}

/// A source sentence and its translation, as ids (without BOS or EOS).
#[derive(Debug, Clone, PartialEq)]
pub struct IdPair {
    /// Source ids.
    pub source: Vec<u32>,
    /// Target ids.
    pub target: Vec<u32>,
}

/// Source and target vocabularies and the pairs encoded with them.
#[derive(Debug, Clone)]
pub struct TranslationData {
    /// Source-language vocabulary (from the training split).
    pub source_vocab: WordVocab,
    /// Target-language vocabulary (from the training split).
    pub target_vocab: WordVocab,
}

impl TranslationData {
    /// Vocabularies from the training pairs: words seen at least `min_count` times, at most `max_size` ids.
    pub fn build(train: &[SentencePair], min_count: usize, max_size: usize) -> Self {
        Self {
            source_vocab: WordVocab::build(
                train.iter().map(|p| p.source.as_str()),
                min_count,
                max_size,
            ),
            target_vocab: WordVocab::build(
                train.iter().map(|p| p.target.as_str()),
                min_count,
                max_size,
            ),
        }
    }

    /// The pairs as a burn dataset of ids.
    pub fn encode(&self, pairs: &[SentencePair]) -> InMemDataset<IdPair> {
        InMemDataset::new(
            pairs
                .iter()
                .map(|p| IdPair {
                    source: self.source_vocab.encode(&p.source),
                    target: self.target_vocab.encode(&p.target),
                })
                .collect(),
        )
    }
}

/// A padded batch of id pairs for an encoder–decoder trained with teacher forcing.
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// Source ids followed by EOS, `[batch, source_steps]`, padded with [`PAD_ID`].
    pub source: Tensor<2, Int>,
    /// `[batch, source_steps]`, `true` on real source tokens.
    pub source_valid: Tensor<2, Bool>,
    /// Decoder inputs: BOS then the target ids, `[batch, target_steps]`.
    pub target_in: Tensor<2, Int>,
    /// Decoder targets: the target ids then EOS, `[batch, target_steps]`.
    pub target_out: Tensor<2, Int>,
    /// `[batch, target_steps]`, `true` on real target steps.
    pub target_valid: Tensor<2, Bool>,
}

/// Turns [`IdPair`]s into a [`PairBatch`], each side padded to its longest sequence (capped at
/// `max_len` tokens, EOS included, by cutting the end of longer sentences).
#[derive(Debug, Clone, Copy)]
pub struct PairBatcher {
    /// The longest sequence on either side, EOS (or BOS) included.
    pub max_len: usize,
}

/// `rows` padded to the longest (≤ `cap`) with [`PAD_ID`], and their validity mask.
fn pad(rows: &[Vec<u32>], cap: usize, device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
    let steps = rows
        .iter()
        .map(|r| r.len().min(cap))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut ids = vec![PAD_ID as i64; rows.len() * steps];
    let mut valid = vec![false; rows.len() * steps];
    for (i, row) in rows.iter().enumerate() {
        for (t, &id) in row.iter().take(steps).enumerate() {
            ids[i * steps + t] = id as i64;
            valid[i * steps + t] = true;
        }
    }
    let shape = [rows.len(), steps];
    (
        Tensor::from_data(TensorData::new(ids, shape), device),
        Tensor::from_data(TensorData::new(valid, shape), device),
    )
}

impl PairBatcher {
    /// The source side alone (ids then EOS), padded: what decoding needs.
    pub fn sources(
        &self,
        sources: &[Vec<u32>],
        device: &Device,
    ) -> (Tensor<2, Int>, Tensor<2, Bool>) {
        let rows: Vec<Vec<u32>> = sources.iter().map(|s| self.with_eos(s)).collect();
        pad(&rows, self.max_len, device)
    }

    fn with_eos(&self, ids: &[u32]) -> Vec<u32> {
        let mut row: Vec<u32> = ids
            .iter()
            .copied()
            .take(self.max_len.saturating_sub(1))
            .collect();
        row.push(EOS_ID);
        row
    }
}

impl Batcher<IdPair, PairBatch> for PairBatcher {
    fn batch(&self, items: Vec<IdPair>, device: &Device) -> PairBatch {
        let sources: Vec<Vec<u32>> = items.iter().map(|p| p.source.clone()).collect();
        let (source, source_valid) = self.sources(&sources, device);
        let outs: Vec<Vec<u32>> = items.iter().map(|p| self.with_eos(&p.target)).collect();
        let ins: Vec<Vec<u32>> = outs
            .iter()
            .map(|o| {
                std::iter::once(BOS_ID)
                    .chain(o[..o.len() - 1].iter().copied())
                    .collect()
            })
            .collect();
        let (target_in, _) = pad(&ins, self.max_len, device);
        let (target_out, target_valid) = pad(&outs, self.max_len, device);
        PairBatch {
            source,
            source_valid,
            target_in,
            target_out,
            target_valid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_punctuation_are_tokens_and_decode_glues_punctuation() {
        assert_eq!(
            word_tokens("Y dijo Dios: Sea la luz; ¿quién?"),
            vec![
                "Y", "dijo", "Dios", ":", "Sea", "la", "luz", ";", "¿", "quién", "?"
            ]
        );
        let texts = ["Y dijo Dios: Sea la luz.", "Y fué la luz."];
        let vocab = WordVocab::build(texts, 1, 100);
        assert_eq!(&vocab.words[..4], &SPECIALS.map(String::from));
        // Most frequent first, ties in code-point order: ".", "Y", "la", "luz" occur twice.
        assert_eq!(
            vocab.encode(". Y la luz : Dios dijo"),
            vec![4, 5, 6, 7, 8, 9, 11]
        );
        let ids = vocab.encode("¿Sea la luz? Y fué.");
        // "¿" and "?" never occur in training: unknown.
        assert_eq!(vocab.decode(&ids), "<unk> Sea la luz <unk> Y fué.");
        let known = WordVocab::build(["¿Sea la luz?"], 1, 100);
        assert_eq!(known.decode(&known.encode("¿Sea la luz?")), "¿Sea la luz?");
        assert_eq!(vocab.encode("Mar")[0], UNK_ID);
        let mut with_eos = vocab.encode("Y dijo");
        with_eos.extend([EOS_ID, 5]);
        assert_eq!(vocab.decode(&with_eos), "Y dijo");
        let small = WordVocab::build(texts, 2, 100);
        assert_eq!(small.len(), 4 + 4);
        assert_eq!(WordVocab::build(texts, 1, 6).len(), 6);
    }

    #[test]
    fn batches_carry_bos_eos_padding_and_masks() {
        let device = Device::flex();
        let batch = PairBatcher { max_len: 4 }.batch(
            vec![
                IdPair {
                    source: vec![7, 8, 9, 10, 11],
                    target: vec![20],
                },
                IdPair {
                    source: vec![7],
                    target: vec![21, 22],
                },
            ],
            &device,
        );
        let ints = |t: Tensor<2, Int>| -> Vec<i64> {
            t.into_data().convert::<i64>().try_to_vec().unwrap()
        };
        let bools = |t: Tensor<2, Bool>| -> Vec<bool> { t.into_data().try_to_vec().unwrap() };
        // Source cut to 3 words + EOS.
        assert_eq!(ints(batch.source), vec![7, 8, 9, 3, 7, 3, 0, 0]);
        assert_eq!(
            bools(batch.source_valid),
            vec![true, true, true, true, true, true, false, false]
        );
        assert_eq!(ints(batch.target_in), vec![2, 20, 0, 2, 21, 22]);
        assert_eq!(ints(batch.target_out), vec![20, 3, 0, 21, 22, 3]);
        assert_eq!(
            bools(batch.target_valid),
            vec![true, true, false, true, true, true]
        );
    }

    #[test]
    fn the_bible_splits_by_whole_books_and_bad_files_are_named() {
        let corpus = kjv_rv1909().unwrap();
        assert_eq!(corpus.pairs.len(), 31_084);
        let split = split_bible_by_books(&corpus, 20).unwrap();
        let slot = |p: &SentencePair| {
            let (t, n) = p.id.split_once('-').unwrap();
            (t.to_string(), n.parse::<usize>().unwrap())
        };
        assert!(
            split
                .test
                .iter()
                .all(|p| slot(p).0 == "nt" && slot(p).1 >= 4912)
        );
        assert!(
            split
                .valid
                .iter()
                .all(|p| slot(p).0 == "ot" && slot(p).1 >= 22988)
        );
        assert!(split.train.iter().all(|p| match slot(p) {
            (t, n) if t == "ot" => n < 22988,
            (_, n) => n < 4912,
        }));
        assert!(split.train.iter().all(|p| p.is_short(20)));
        let total = split.train.len() + split.valid.len() + split.test.len();
        assert_eq!(
            total,
            corpus.pairs.iter().filter(|p| p.is_short(20)).count()
        );
        assert!(
            split.test.len() > 500 && split.valid.len() > 200,
            "{} {}",
            split.test.len(),
            split.valid.len()
        );

        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("pairs.tsv");
        std::fs::write(&bad, "a-1\tone\tuno\na-2\ttwo\n").unwrap();
        let err = ParallelCorpus::load(&bad).unwrap_err().to_string();
        assert!(
            err.contains("pairs.tsv:2") && err.contains("expected 3"),
            "{err}"
        );
        std::fs::write(&bad, "a-1\tone\tuno\n").unwrap();
        let other = ParallelCorpus::load(&bad).unwrap();
        let err = split_bible_by_books(&other, 20).unwrap_err().to_string();
        assert!(err.contains("ot-22988"), "{err}");
    }
}
