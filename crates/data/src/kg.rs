//! Knowledge graphs from triple files (`head<TAB>relation<TAB>tail`, one a line): entity and relation
//! vocabularies, train/validation/test splits of id triples, adjacency, degree statistics, and the sets of
//! known answers that filtered link-prediction evaluation removes from the candidates.

use crate::DataError;
use crate::read::read_text;
use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

/// A fact `(head, relation, tail)` as vocabulary ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Triple {
    /// Head entity id.
    pub head: u32,
    /// Relation id.
    pub relation: u32,
    /// Tail entity id.
    pub tail: u32,
}

/// Names ↔ ids, in order of first appearance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vocabulary {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocabulary {
    /// The id of `name`, adding it if new.
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), id);
        id
    }

    /// The id of `name`, if known.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The name of `id`.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Minimum, maximum, mean and median of the entities' degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DegreeStats {
    /// Smallest degree.
    pub min: usize,
    /// Largest degree.
    pub max: usize,
    /// Mean degree.
    pub mean: f64,
    /// Median degree.
    pub median: f64,
}

/// A knowledge graph with its splits. The vocabularies come from the training triples; validation and
/// test triples naming an entity or relation never seen in training cannot be ranked and are dropped
/// (counted in `dropped`).
#[derive(Debug, Clone)]
pub struct KnowledgeGraph {
    /// Entities.
    pub entities: Vocabulary,
    /// Relations.
    pub relations: Vocabulary,
    /// Training triples.
    pub train: Vec<Triple>,
    /// Validation triples.
    pub valid: Vec<Triple>,
    /// Test triples.
    pub test: Vec<Triple>,
    /// Validation triples dropped for naming an entity or relation unseen in training.
    pub dropped_valid: usize,
    /// Test triples dropped for naming an entity or relation unseen in training (PyKEEN's practice: they
    /// are counted and reported, not ranked with untrained embeddings).
    pub dropped_test: usize,
}

/// Reads `head<TAB>relation<TAB>tail` lines (blank lines skipped) as name triples.
fn read_triples(path: &Path) -> Result<Vec<[String; 3]>, DataError> {
    let text = read_text(path)?;
    let mut triples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        match fields.as_slice() {
            [h, r, t] if !h.is_empty() && !r.is_empty() && !t.is_empty() => {
                triples.push([h.to_string(), r.to_string(), t.to_string()])
            }
            _ => {
                return Err(DataError::FieldCount {
                    path: path.into(),
                    line: i + 1,
                    expected: 3,
                    found: fields.iter().filter(|f| !f.is_empty()).count(),
                });
            }
        }
    }
    if triples.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(triples)
}

impl KnowledgeGraph {
    /// Builds a graph from name triples of the three splits.
    pub fn from_names(train: &[[String; 3]], valid: &[[String; 3]], test: &[[String; 3]]) -> Self {
        let mut entities = Vocabulary::default();
        let mut relations = Vocabulary::default();
        let train = train
            .iter()
            .map(|[h, r, t]| Triple {
                head: entities.intern(h),
                relation: relations.intern(r),
                tail: entities.intern(t),
            })
            .collect();
        // A triple naming something unseen in training is dropped; the counts are what is missing.
        let known = |split: &[[String; 3]]| -> Vec<Triple> {
            split
                .iter()
                .filter_map(|[h, r, t]| {
                    Some(Triple {
                        head: entities.id(h)?,
                        relation: relations.id(r)?,
                        tail: entities.id(t)?,
                    })
                })
                .collect()
        };
        let (kept_valid, kept_test) = (known(valid), known(test));
        let (dropped_valid, dropped_test) =
            (valid.len() - kept_valid.len(), test.len() - kept_test.len());
        let (valid, test) = (kept_valid, kept_test);
        Self {
            entities,
            relations,
            train,
            valid,
            test,
            dropped_valid,
            dropped_test,
        }
    }

    /// Loads `train.txt`, `valid.txt` and `test.txt` (each optionally gzipped as `.txt.gz`) from `dir`.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let split = |name: &str| -> Result<Vec<[String; 3]>, DataError> {
            let plain = dir.join(format!("{name}.txt"));
            let gz = dir.join(format!("{name}.txt.gz"));
            match (plain.is_file(), gz.is_file()) {
                (true, _) => read_triples(&plain),
                (false, true) => read_triples(&gz),
                (false, false) => Err(DataError::MissingFile {
                    dir: dir.into(),
                    wanted: format!("the {name} split"),
                    tried: format!("{name}.txt, {name}.txt.gz"),
                }),
            }
        };
        let graph = Self::from_names(&split("train")?, &split("valid")?, &split("test")?);
        // A split left empty by the dropping would be scored as 0 (or NaN) after training: refuse it now.
        for (name, kept, dropped) in [
            ("valid", graph.valid.len(), graph.dropped_valid),
            ("test", graph.test.len(), graph.dropped_test),
        ] {
            if kept == 0 {
                return Err(DataError::SplitTooSmall {
                    source_name: dir.join(format!("{name}.txt")).display().to_string(),
                    split: name.into(),
                    found: 0,
                    needed: 1,
                    why: format!(
                        "all {dropped} of its triples name an entity or relation unseen in training"
                    ),
                });
            }
        }
        Ok(graph)
    }

    /// Out-going edges of every entity in the training triples: `(relation, tail)` lists, by head id.
    pub fn adjacency(&self) -> Vec<Vec<(u32, u32)>> {
        let mut out = vec![Vec::new(); self.entities.len()];
        for t in &self.train {
            out[t.head as usize].push((t.relation, t.tail));
        }
        out
    }

    /// Degree (in + out, training triples) of every entity, by id.
    pub fn degrees(&self) -> Vec<usize> {
        let mut degree = vec![0; self.entities.len()];
        for t in &self.train {
            degree[t.head as usize] += 1;
            degree[t.tail as usize] += 1;
        }
        degree
    }

    /// Statistics of [`Self::degrees`].
    pub fn degree_stats(&self) -> DegreeStats {
        let mut degrees = self.degrees();
        degrees.sort_unstable();
        let n = degrees.len().max(1);
        let median = match degrees.len() {
            0 => 0.0,
            len if len % 2 == 1 => degrees[len / 2] as f64,
            len => (degrees[len / 2 - 1] + degrees[len / 2]) as f64 / 2.0,
        };
        DegreeStats {
            min: degrees.first().copied().unwrap_or(0),
            max: degrees.last().copied().unwrap_or(0),
            mean: degrees.iter().sum::<usize>() as f64 / n as f64,
            median,
        }
    }

    /// One line describing the graph: sizes of the vocabularies and splits, the validation and test triples
    /// dropped for naming something unseen in training, and training degrees.
    pub fn summary(&self) -> String {
        let stats = self.degree_stats();
        format!(
            "{} entities, {} relations, {}/{}/{} triples ({} validation and {} test triples dropped: unseen \
             in training), degree min {} median {} mean {:.1} max {}",
            self.entities.len(),
            self.relations.len(),
            self.train.len(),
            self.valid.len(),
            self.test.len(),
            self.dropped_valid,
            self.dropped_test,
            stats.min,
            stats.median,
            stats.mean,
            stats.max
        )
    }

    /// Every known true triple (all three splits), for filtered ranking.
    pub fn known(&self) -> HashSet<Triple> {
        self.train
            .iter()
            .chain(&self.valid)
            .chain(&self.test)
            .copied()
            .collect()
    }
}

/// Positive triples and their corrupted negatives, as `[n, 3]` id tensors (columns head, relation, tail).
#[derive(Debug, Clone)]
pub struct TripleBatch {
    /// The true triples, `[batch, 3]`.
    pub positives: Tensor<2, Int>,
    /// `negatives_per_positive` corruptions of each, `[batch · negatives_per_positive, 3]`, row `i · k + j`
    /// corrupting positive `i`.
    pub negatives: Tensor<2, Int>,
}

/// Batches triples with negative sampling: each positive gets `negatives_per_positive` copies whose head or
/// tail (each with probability ½) is replaced by an entity drawn uniformly, from a seeded generator.
#[derive(Debug)]
pub struct TripleBatcher {
    num_entities: usize,
    negatives_per_positive: usize,
    seed: u64,
    rng: Mutex<StdRng>,
}

impl TripleBatcher {
    /// A batcher over `num_entities` entities.
    pub fn new(num_entities: usize, negatives_per_positive: usize, seed: u64) -> Self {
        Self {
            num_entities,
            negatives_per_positive,
            seed,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

impl Clone for TripleBatcher {
    /// A clone restarts from the seed.
    fn clone(&self) -> Self {
        Self::new(self.num_entities, self.negatives_per_positive, self.seed)
    }
}

impl Batcher<Triple, TripleBatch> for TripleBatcher {
    fn batch(&self, items: Vec<Triple>, device: &Device) -> TripleBatch {
        let k = self.negatives_per_positive;
        let mut positives = Vec::with_capacity(items.len() * 3);
        let mut negatives = Vec::with_capacity(items.len() * 3 * k);
        // A poisoned lock only means another batching thread panicked; its generator state is still valid.
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        for t in &items {
            positives.extend([t.head as i64, t.relation as i64, t.tail as i64]);
            for _ in 0..k {
                let other = rng.random_range(0..self.num_entities.max(1)) as i64;
                if rng.random::<bool>() {
                    negatives.extend([other, t.relation as i64, t.tail as i64]);
                } else {
                    negatives.extend([t.head as i64, t.relation as i64, other]);
                }
            }
        }
        let n = items.len();
        TripleBatch {
            positives: Tensor::from_data(TensorData::new(positives, [n, 3]), device),
            negatives: Tensor::from_data(TensorData::new(negatives, [n * k, 3]), device),
        }
    }
}

/// The vendored graph `name` (`kinships`, `umls` or `nations`) from `data/kg/<name>/`.
pub fn vendored(name: &str) -> Result<KnowledgeGraph, DataError> {
    KnowledgeGraph::load(&crate::data_dir().join("kg").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(rows: &[(&str, &str, &str)]) -> Vec<[String; 3]> {
        rows.iter()
            .map(|(h, r, t)| [h.to_string(), r.to_string(), t.to_string()])
            .collect()
    }

    #[test]
    fn a_test_split_of_only_unseen_triples_is_refused_at_loading() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.txt"), "a\tlikes\tb\n").unwrap();
        std::fs::write(dir.path().join("valid.txt"), "b\tlikes\ta\n").unwrap();
        std::fs::write(dir.path().join("test.txt"), "a\tlikes\tz\nq\tlikes\tb\n").unwrap();
        let err = KnowledgeGraph::load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, DataError::SplitTooSmall { split, found: 0, .. } if split == "test"),
            "{err}"
        );
        assert!(
            err.to_string().contains("test.txt") && err.to_string().contains("all 2"),
            "{err}"
        );
    }

    #[test]
    fn vocabularies_adjacency_and_degrees_of_a_small_graph() {
        let g = KnowledgeGraph::from_names(
            &names(&[
                ("a", "likes", "b"),
                ("b", "likes", "c"),
                ("a", "knows", "c"),
            ]),
            &names(&[("c", "likes", "a"), ("z", "likes", "a")]),
            &names(&[("a", "hates", "b")]),
        );
        assert_eq!(g.entities.len(), 3);
        assert_eq!(g.relations.len(), 2);
        assert_eq!(g.valid.len(), 1, "z is unseen in training");
        assert_eq!(g.test.len(), 0, "hates is unseen in training");
        assert_eq!((g.dropped_valid, g.dropped_test), (1, 1));
        assert!(
            g.summary()
                .contains("1 validation and 1 test triples dropped")
        );
        let a = g.entities.id("a").unwrap();
        assert_eq!(g.adjacency()[a as usize].len(), 2);
        assert_eq!(g.degrees(), vec![2, 2, 2]);
        let stats = g.degree_stats();
        assert_eq!(
            (stats.min, stats.max, stats.mean, stats.median),
            (2, 2, 2.0, 2.0)
        );
        assert_eq!(
            g.summary(),
            "3 entities, 2 relations, 3/1/0 triples (1 validation and 1 test triples dropped: unseen in training), degree min 2 median 2 mean 2.0 max 2"
        );
        assert_eq!(g.known().len(), 4);
    }

    #[test]
    fn the_vendored_graphs_load_with_their_published_sizes() {
        for (name, entities, relations, train) in [
            ("kinships", 104, 25, 8544),
            ("umls", 135, 46, 5216),
            ("nations", 14, 55, 1592),
        ] {
            let g = vendored(name).unwrap();
            assert_eq!(g.entities.len(), entities, "{name}");
            assert_eq!(g.relations.len(), relations, "{name}");
            assert_eq!(g.train.len(), train, "{name}");
        }
    }

    #[test]
    fn negatives_corrupt_exactly_one_side_and_are_seeded() {
        let device = Device::flex();
        let triples = vec![
            Triple {
                head: 0,
                relation: 1,
                tail: 2,
            },
            Triple {
                head: 3,
                relation: 0,
                tail: 4,
            },
        ];
        let batcher = TripleBatcher::new(50, 8, 7);
        let batch = batcher.batch(triples.clone(), &device);
        assert_eq!(batch.positives.dims(), [2, 3]);
        assert_eq!(batch.negatives.dims(), [16, 3]);
        let neg: Vec<i64> = batch
            .negatives
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        let (mut heads, mut tails) = (0, 0);
        for (row, n) in neg.chunks(3).enumerate() {
            let p = triples[row / 8];
            assert_eq!(n[1], p.relation as i64, "the relation is kept");
            assert!(
                n[0] == p.head as i64 || n[2] == p.tail as i64,
                "one side is kept"
            );
            heads += usize::from(n[0] != p.head as i64);
            tails += usize::from(n[2] != p.tail as i64);
        }
        assert!(heads > 0 && tails > 0, "both sides get corrupted");
        let again = batcher.clone().batch(triples, &device);
        let again: Vec<i64> = again
            .negatives
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        assert_eq!(neg, again, "a clone restarts from the seed");
    }

    #[test]
    fn a_malformed_line_and_a_missing_split_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.txt"), "a\tr\tb\na\tr\n").unwrap();
        std::fs::write(dir.path().join("valid.txt"), "a\tr\tb\n").unwrap();
        let err = KnowledgeGraph::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("train.txt:2"), "{err}");
        std::fs::write(dir.path().join("train.txt"), "a\tr\tb\n").unwrap();
        let err = KnowledgeGraph::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("test"), "{err}");
    }
}
