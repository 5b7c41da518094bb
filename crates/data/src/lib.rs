//! Real datasets for Kiln, read from files in the repository, and what turns them into burn batches.
//!
//! - [`idx`]: the IDX format (MNIST and any other IDX image/label pair), gzipped or raw, checked.
//! - [`image`]: labelled image datasets built from IDX pairs, and the folder layout of MNIST-like data.
//! - [`tabular`]: CSV/TSV tables with a header, and regression datasets taken from them
//!   ([`tabular::diabetes`] is the vendored Efron et al. data).
//! - [`kg`]: knowledge graphs from triple files (the vendored Kinships, UMLS and Nations), vocabularies,
//!   adjacency, degree statistics, known triples for filtered ranking.
//! - [`split`]: seeded train/validation splits; [`normalize`]: statistics from the training split only.
//! - [`batch`]: burn `Batcher`s producing tensors on any device; [`augment`]: on-the-fly image augmentation.
//! - [`text`]: character-level corpora (the vendored Shakespeare), windows, and the padding/masking
//!   [`TokenBatcher`].
//! - [`parallel`]: sentence pairs (the vendored KJV ↔ Reina-Valera 1909 verses, split by whole books), a word
//!   tokenizer with vocabularies from the training split, and the encoder–decoder [`PairBatcher`].
//! - [`synthetic`]: generators for unit tests only, never for reported results.
#![warn(missing_docs)]

pub mod augment;
pub mod batch;
pub mod error;
pub mod idx;
pub mod image;
pub mod kg;
pub mod normalize;
pub mod parallel;
mod read;
pub mod split;
pub mod synthetic;
pub mod tabular;
pub mod text;

pub use augment::{AugmentationConfig, Augmenter};
pub use batch::{ImageBatch, ImageBatcher, TabularBatch, TabularBatcher};
pub use error::DataError;
pub use image::{ImageDataset, ImageFolder, ImageItem};
pub use kg::{KnowledgeGraph, Triple, TripleBatch, TripleBatcher};
pub use normalize::{PixelNormalizer, Standardizer};
pub use parallel::{
    IdPair, PairBatch, PairBatcher, ParallelCorpus, SentencePair, TranslationData, WordVocab,
};
pub use split::train_valid_split;
pub use tabular::{RegressionDataset, RegressionItem, Table};
pub use text::{
    CharCorpus, CharVocab, PAD_ID, TokenBatch, TokenBatcher, TokenSequence, TokenWindows,
    UNKNOWN_ID,
};

use std::path::PathBuf;

/// The repository's `data/` folder, where the vendored datasets live.
///
/// `KILN_DATA_DIR` overrides it; otherwise it is found relative to this crate's sources, which works for
/// every binary, test and example built from the repository.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("KILN_DATA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data"),
    }
}
