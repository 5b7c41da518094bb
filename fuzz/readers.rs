//! What each fuzz target does with its bytes: writes them where a user's file would be and reads that file
//! with the reader a run calls. Shared by the fuzz targets (`fuzz/fuzz_targets/`, through `#[path]`) and by
//! the replay of the committed corpus (`crates/models/tests/fuzz_corpus.rs`), so both make the same calls.
//! A reader may refuse the bytes with an error; it must never panic.

use burn::nn::attention::MultiHeadAttentionConfig;
use burn::prelude::*;
use kiln_data::idx::IdxArray;
use kiln_data::tabular::Table;
use kiln_data::{CharCorpus, ImageDataset, KnowledgeGraph, ParallelCorpus};
use kiln_models::recurrent::load_torch_recurrent;
use kiln_models::transformer::load_torch_mha;
use kiln_models::{CellKind, RecurrentConfig};
use std::path::{Path, PathBuf};

/// The fuzz targets, by name.
pub const TARGETS: [&str; 5] = ["idx", "table", "triples", "text", "safetensors"];

/// Runs the target `name` on `bytes`.
pub fn run(name: &str, bytes: &[u8]) {
    match name {
        "idx" => idx(bytes),
        "table" => table(bytes),
        "triples" => triples(bytes),
        "text" => text(bytes),
        "safetensors" => safetensors(bytes),
        other => panic!("no fuzz target `{other}`"),
    }
}

/// A scratch folder of this process and thread (the replay test runs targets on several threads).
fn scratch(name: &str) -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    let dir =
        std::env::temp_dir().join(format!("kiln-fuzz-{}-{thread}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder in the temporary folder");
    dir
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("a file in the scratch folder");
}

/// `bytes` cut at its first `n - 1` bytes 0xFF (never part of UTF-8 text) into `n` parts (empty where there
/// are fewer).
fn parts(bytes: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = bytes.splitn(n, |&b| b == 0xFF).collect();
    out.resize(n, &[]);
    out
}

/// `bytes` as two binary files: the first two bytes (little-endian) give the first file's length.
fn two_files(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes {
        [a, b, rest @ ..] => rest.split_at((u16::from_le_bytes([*a, *b]) as usize).min(rest.len())),
        _ => (bytes, &[]),
    }
}

/// IDX images and labels (each optionally gzipped), as `ImageFolder` reads them, and the raw parser.
pub fn idx(bytes: &[u8]) {
    let dir = scratch("idx");
    let (image_bytes, label_bytes) = two_files(bytes);
    let (images, labels) = (dir.join("images-idx3-ubyte"), dir.join("labels-idx1-ubyte"));
    write(&images, image_bytes);
    write(&labels, label_bytes);
    let _ = ImageDataset::from_idx(&images, &labels);
    for rank in [1, 3] {
        let _ = IdxArray::parse(bytes, rank, &images);
    }
}

/// A CSV and a TSV table with a header, and its regression data on the last column.
pub fn table(bytes: &[u8]) {
    let dir = scratch("table");
    for name in ["t.csv", "t.tsv"] {
        let path = dir.join(name);
        write(&path, bytes);
        if let Ok(table) = Table::read(&path)
            && let Some(last) = table.columns.last().cloned()
        {
            let _ = table.regression(&last);
        }
    }
}

/// A knowledge graph's train, valid and test triple files.
pub fn triples(bytes: &[u8]) {
    let dir = scratch("triples");
    for (name, part) in ["train.txt", "valid.txt", "test.txt"]
        .iter()
        .zip(parts(bytes, 3))
    {
        write(&dir.join(name), part);
    }
    if let Ok(graph) = KnowledgeGraph::load(&dir) {
        let _ = graph.summary();
    }
}

/// A text file as a character corpus, and as a sentence-pair file.
pub fn text(bytes: &[u8]) {
    let dir = scratch("text");
    let path = dir.join("corpus.txt");
    write(&path, bytes);
    let _ = CharCorpus::load(&path, 0.9, 0.05);
    let _ = ParallelCorpus::load(&path);
}

/// A PyTorch `state_dict` in safetensors, loaded into a multi-head attention and into an LSTM.
pub fn safetensors(bytes: &[u8]) {
    let dir = scratch("safetensors");
    let path = dir.join("weights.safetensors");
    write(&path, bytes);
    let device = Device::flex();
    let mut mha = MultiHeadAttentionConfig::new(8, 2).init(&device);
    let _ = load_torch_mha(&mut mha, &path, "");
    if let Ok(mut lstm) = RecurrentConfig::new(CellKind::Lstm, 3, 4).init(&device) {
        let _ = load_torch_recurrent(&mut lstm, &path, "");
    }
}
