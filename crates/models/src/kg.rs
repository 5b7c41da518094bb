//! Knowledge-graph embeddings: TransE (Bordes et al. 2013) and DistMult (Yang et al. 2015), trained with
//! negative sampling, and filtered link-prediction evaluation (MRR, Hits@1/3/10, head and tail).
//!
//! Scores are "higher is more plausible": TransE's is `−‖ĥ + r − t̂‖₁` with entity embeddings scaled to unit
//! L2 norm in the score (Bordes et al. renormalise them after every step; scaling inside the score is the
//! same constraint without a projection step), trained with the margin-ranking loss; DistMult's is
//! `Σ h ⊙ r ⊙ t`, trained with the logistic loss and an L2 penalty on the embeddings of the batch.

use crate::{ModelError, check_shape};
use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, softplus};
use kiln_core::{BatchError, LossOutput, Supervised};
use kiln_data::{Triple, TripleBatch};
use kiln_kernels::kg::TripleScore;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// The scoring function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KgScorer {
    /// `−‖ĥ + r − t̂‖₁`, margin-ranking loss.
    TransE,
    /// `Σ h ⊙ r ⊙ t`, logistic loss.
    DistMult,
}

impl KgScorer {
    /// `transe` or `distmult`.
    pub fn name(self) -> &'static str {
        match self {
            Self::TransE => "transe",
            Self::DistMult => "distmult",
        }
    }
}

/// Configuration of a [`KgEmbedding`].
#[derive(Config, Debug)]
pub struct KgEmbeddingConfig {
    /// The scoring function.
    pub scorer: KgScorer,
    /// Number of entities.
    pub num_entities: usize,
    /// Number of relations.
    pub num_relations: usize,
    /// Embedding size.
    #[config(default = 100)]
    pub dim: usize,
    /// Margin of TransE's ranking loss.
    #[config(default = 1.0)]
    pub margin: f32,
    /// Weight of DistMult's L2 penalty on the batch's embeddings.
    #[config(default = 1e-3)]
    pub l2: f32,
}

impl KgEmbeddingConfig {
    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<KgEmbedding, ModelError> {
        if self.num_entities < 2 || self.num_relations == 0 || self.dim == 0 {
            return Err(ModelError::Config {
                model: self.scorer.name(),
                field: "num_entities, num_relations, dim",
                message: format!(
                    "needs 2+ entities (got {}), 1+ relations (got {}) and a positive dim (got {})",
                    self.num_entities, self.num_relations, self.dim
                ),
            });
        }
        Ok(KgEmbedding {
            entities: EmbeddingConfig::new(self.num_entities, self.dim).init(device),
            relations: EmbeddingConfig::new(self.num_relations, self.dim).init(device),
            scorer: self.scorer,
            margin: self.margin,
            l2: self.l2,
        })
    }
}

/// Entity and relation embeddings with a scoring function.
#[derive(Module, Debug)]
pub struct KgEmbedding {
    /// Entity embeddings, `[entities, dim]`.
    pub entities: Embedding,
    /// Relation embeddings, `[relations, dim]`.
    pub relations: Embedding,
    /// The scoring function.
    #[module(skip)]
    pub scorer: KgScorer,
    /// TransE's margin.
    #[module(skip)]
    pub margin: f32,
    /// DistMult's L2 weight.
    #[module(skip)]
    pub l2: f32,
}

/// Embeddings scaled to unit L2 norm along the last axis.
fn unit<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let norm = x.clone().square().sum_dim(D - 1).sqrt().clamp_min(1e-12);
    x / norm
}

impl KgEmbedding {
    /// Number of entities.
    pub fn num_entities(&self) -> usize {
        self.entities.weight.dims()[0]
    }

    fn lookup(&self, table: &Embedding, ids: Tensor<1, Int>) -> Tensor<2> {
        let n = ids.dims()[0];
        let dim = table.weight.dims()[1];
        table.forward(ids.reshape([1, n])).reshape([n, dim])
    }

    /// Scores of triples given as a `[n, 3]` id tensor (head, relation, tail), `[n]`.
    pub fn try_score(&self, triples: Tensor<2, Int>) -> Result<Tensor<1>, ModelError> {
        let ids = self.triple_ids(&triples)?;
        Ok(self.score_checked(triples, &ids))
    }

    /// The ids of `[n, 3]` triples on the host, flattened, each checked against its table.
    fn triple_ids(&self, triples: &Tensor<2, Int>) -> Result<Arc<[u32]>, ModelError> {
        let model = self.scorer.name();
        check_shape(model, &[None, Some(3)], &triples.dims())?;
        let data = triples.to_data();
        let values = data.iter::<i64>();
        let sizes = [
            ("entity", self.num_entities()),
            ("relation", self.relations.weight.dims()[0]),
            ("entity", self.num_entities()),
        ];
        values
            .enumerate()
            .map(|(i, id)| {
                let (what, size) = sizes[i % 3];
                u32::try_from(id)
                    .ok()
                    .filter(|&id| (id as usize) < size)
                    .ok_or(ModelError::IdOutOfRange {
                        model,
                        what,
                        id,
                        size,
                    })
            })
            .collect()
    }

    /// [`Self::try_score`] of triples whose host `ids` [`Self::triple_ids`] has checked.
    ///
    /// On flex one fused op reads the rows in place ([`kiln_kernels::kg`]); elsewhere the rows are gathered
    /// and combined with generic ops.
    fn score_checked(&self, triples: Tensor<2, Int>, ids: &Arc<[u32]>) -> Tensor<1> {
        let entities = self.entities.weight.val();
        let relations = self.relations.weight.val();
        if kiln_kernels::on_flex_f32(&entities) && kiln_kernels::on_flex_f32(&relations) {
            return match self.scorer {
                // Scaling the table's rows equals scaling each looked-up row, on 10² rows, not 10⁴.
                KgScorer::TransE => kiln_kernels::kg::triple_scores(
                    unit(entities),
                    relations,
                    ids.clone(),
                    TripleScore::NegativeL1Translation,
                ),
                KgScorer::DistMult => kiln_kernels::kg::triple_scores(
                    entities,
                    relations,
                    ids.clone(),
                    TripleScore::Trilinear,
                ),
            };
        }
        let n = triples.dims()[0];
        let column = |c: usize| triples.clone().slice([0..n, c..c + 1]).reshape([n]);
        let h = self.lookup(&self.entities, column(0));
        let r = self.lookup(&self.relations, column(1));
        let t = self.lookup(&self.entities, column(2));
        match self.scorer {
            KgScorer::TransE => (unit(h) + r - unit(t)).abs().sum_dim(1).reshape([n]).neg(),
            KgScorer::DistMult => (h * r * t).sum_dim(1).reshape([n]),
        }
    }

    /// DistMult's L2 penalty on the rows of the triples `ids`: the mean square of the head rows, plus that of
    /// the relation rows, plus that of the tail rows. Computed as each table row's squared norm weighted by
    /// how often the triples use it, which equals the means of the gathered rows without gathering them.
    fn row_penalty(&self, ids: &[u32]) -> Tensor<1> {
        let entities = self.entities.weight.val();
        let relations = self.relations.weight.val();
        let [num_entities, dim] = entities.dims();
        let num_relations = relations.dims()[0];
        let mut entity_uses = vec![0.0f32; num_entities];
        let mut relation_uses = vec![0.0f32; num_relations];
        for t in ids.chunks_exact(3) {
            entity_uses[t[0] as usize] += 1.0;
            relation_uses[t[1] as usize] += 1.0;
            entity_uses[t[2] as usize] += 1.0;
        }
        let device = entities.device();
        let weighted = |table: Tensor<2>, uses: Vec<f32>| {
            let rows = uses.len();
            let uses = Tensor::<1>::from_data(TensorData::new(uses, [rows]), &device);
            (table.square().sum_dim(1).reshape([rows]) * uses).sum()
        };
        let triples = (ids.len() / 3).max(1);
        (weighted(entities, entity_uses) + weighted(relations, relation_uses))
            / (triples * dim) as f32
    }

    /// Scores of every entity as the tail of `(head, relation, ?)` (or, with `predict_head`, as the head of
    /// `(?, relation, tail)`) for each of the `n` queries, `[n, entities]`. `known` is the entity
    /// that stays fixed and `relations` the relation, each `[n]`.
    pub fn score_candidates(
        &self,
        known: Tensor<1, Int>,
        relations: Tensor<1, Int>,
        predict_head: bool,
    ) -> Tensor<2> {
        let n = known.dims()[0];
        let e = self.lookup(&self.entities, known);
        let r = self.lookup(&self.relations, relations);
        let all = self.entities.weight.val();
        let [num, dim] = all.dims();
        match self.scorer {
            KgScorer::TransE => {
                // Tail: ĥ + r − t̂ for every t̂; head: ĥ + r − t̂ = −(t̂ − r − ĥ) for every ĥ.
                let query = if predict_head {
                    unit(e) - r
                } else {
                    unit(e) + r
                };
                let diff = query.reshape([n, 1, dim]) - unit(all).reshape([1, num, dim]);
                diff.abs().sum_dim(2).reshape([n, num]).neg()
            }
            // Σ h r t is symmetric in h and t.
            KgScorer::DistMult => (e * r).matmul(all.transpose()),
        }
    }
}

impl Supervised for KgEmbedding {
    type Batch = TripleBatch;
    type Output = LossOutput;

    fn check_batch(&self, batch: &TripleBatch) -> Result<(), BatchError> {
        self.triple_ids(&batch.positives)?;
        self.triple_ids(&batch.negatives)?;
        Ok(())
    }

    fn forward_step(&self, batch: TripleBatch) -> LossOutput {
        let n = batch.positives.dims()[0];
        let k = batch.negatives.dims()[0] / n.max(1);
        let checked = |triples: &Tensor<2, Int>| {
            self.triple_ids(triples)
                .unwrap_or_else(|e| panic!("a triple batch the model cannot score: {e}"))
        };
        let (pos_ids, neg_ids) = (checked(&batch.positives), checked(&batch.negatives));
        let pos = self.score_checked(batch.positives, &pos_ids);
        let neg = self.score_checked(batch.negatives, &neg_ids);
        let loss = match self.scorer {
            KgScorer::TransE => {
                // Each negative against its own positive.
                let pos = pos.reshape([n, 1]).expand([n, k]).reshape([n * k]);
                relu(neg - pos + self.margin).mean()
            }
            KgScorer::DistMult => {
                let data = (softplus(pos.neg(), 1.0).sum() + softplus(neg, 1.0).sum())
                    / (n + n * k) as f32;
                let all: Vec<u32> = pos_ids.iter().chain(neg_ids.iter()).copied().collect();
                data + self.row_penalty(&all) * self.l2
            }
        };
        LossOutput {
            loss: loss.reshape([1]),
            items: n,
        }
    }
}

/// The filtered ranks of the true answers of link-prediction queries (1 for the best; ties count half),
/// in the order of the triples asked about. The learner's rank metrics (`kiln_train::metrics`: MRR,
/// Hits@k) turn them into figures.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LinkRanks {
    /// Ranks of the tail queries `(h, r, ?)`.
    pub tail: Vec<f64>,
    /// Ranks of the head queries `(?, r, t)`.
    pub head: Vec<f64>,
}

impl LinkRanks {
    /// Every query's rank: the tail queries', then the head queries'.
    pub fn all(&self) -> Vec<f64> {
        self.tail.iter().chain(&self.head).copied().collect()
    }
}

/// The filtered rank of candidate `answer` among `scores` (higher is better): 1 + the number of other
/// candidates scoring higher, not counting those in `filtered` (the other known answers); ties count half
/// (the mean of the optimistic and pessimistic ranks).
pub fn filtered_rank(scores: &[f32], answer: usize, filtered: &HashSet<u32>) -> f64 {
    let target = scores[answer];
    let (mut higher, mut equal) = (0usize, 0usize);
    for (i, &s) in scores.iter().enumerate() {
        if i == answer || filtered.contains(&(i as u32)) {
            continue;
        }
        if s > target {
            higher += 1;
        } else if s == target {
            equal += 1;
        }
    }
    1.0 + higher as f64 + equal as f64 / 2.0
}

/// Ranks every triple of `triples` against all entities, as tail and as head, removing the other known true
/// triples (`known`: usually train ∪ valid ∪ test) from the candidates.
pub fn link_prediction_ranks(
    model: &KgEmbedding,
    triples: &[Triple],
    known: &HashSet<Triple>,
    device: &Device,
) -> Result<LinkRanks, ModelError> {
    let num = model.num_entities();
    let mut tail_ranks = Vec::with_capacity(triples.len());
    let mut head_ranks = Vec::with_capacity(triples.len());
    for chunk in triples.chunks(256) {
        let ids = |f: fn(&Triple) -> u32| {
            Tensor::<1, Int>::from_data(
                TensorData::new(
                    chunk.iter().map(|t| f(t) as i64).collect::<Vec<_>>(),
                    [chunk.len()],
                ),
                device,
            )
        };
        for predict_head in [false, true] {
            let fixed = if predict_head {
                ids(|t| t.tail)
            } else {
                ids(|t| t.head)
            };
            let scores: Vec<f32> = model
                .score_candidates(fixed, ids(|t| t.relation), predict_head)
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .map_err(|e| ModelError::ReadBack {
                    model: model.scorer.name(),
                    what: "scores",
                    message: format!("{e:?}"),
                })?;
            for (row, t) in chunk.iter().enumerate() {
                let row_scores = &scores[row * num..(row + 1) * num];
                let (answer, filtered): (usize, HashSet<u32>) = if predict_head {
                    let others = (0..num as u32)
                        .filter(|&h| h != t.head && known.contains(&Triple { head: h, ..*t }))
                        .collect();
                    (t.head as usize, others)
                } else {
                    let others = (0..num as u32)
                        .filter(|&x| x != t.tail && known.contains(&Triple { tail: x, ..*t }))
                        .collect();
                    (t.tail as usize, others)
                };
                let rank = filtered_rank(row_scores, answer, &filtered);
                if predict_head {
                    head_ranks.push(rank);
                } else {
                    tail_ranks.push(rank);
                }
            }
        }
    }
    Ok(LinkRanks {
        tail: tail_ranks,
        head: head_ranks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;

    #[test]
    fn filtered_rank_skips_other_answers_and_splits_ties() {
        let scores = [0.9, 0.5, 0.7, 0.5, 0.1];
        assert_eq!(
            filtered_rank(&scores, 1, &HashSet::new()),
            3.5,
            "0.9, 0.7 above; one tie"
        );
        assert_eq!(filtered_rank(&scores, 1, &HashSet::from([0, 3])), 2.0);
        assert_eq!(filtered_rank(&scores, 0, &HashSet::new()), 1.0);
        assert_eq!(filtered_rank(&scores, 4, &HashSet::new()), 5.0);
    }

    /// A tiny graph whose DistMult scores are set by hand, so that every rank is known.
    #[test]
    fn link_prediction_on_a_hand_made_graph_gives_the_known_ranks() {
        let device = Device::flex();
        let mut model = KgEmbeddingConfig::new(KgScorer::DistMult, 4, 1)
            .with_dim(2)
            .init(&device)
            .unwrap();
        // score(h, 0, t) = x_h · x_t with x = [[1,0],[2,0],[3,0],[4,0]] → h·t·1: larger entities score higher.
        model.entities.weight = Param::from_tensor(Tensor::from_data(
            TensorData::from([[1.0f32, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]]),
            &device,
        ));
        model.relations.weight = Param::from_tensor(Tensor::from_data(
            TensorData::from([[1.0f32, 0.0]]),
            &device,
        ));
        let t = |head, tail| Triple {
            head,
            relation: 0,
            tail,
        };
        // Query (0, 0, ?) with answer 1: candidates 3 and 2 score higher → rank 3 unfiltered; 3 is also a
        // known answer, so filtered rank 2. Query (?, 0, 1) with answer 0: 3, 2, 1 score higher → rank 4.
        let test = [t(0, 1)];
        let known = HashSet::from([t(0, 1), t(0, 3)]);
        let ranks = link_prediction_ranks(&model, &test, &known, &device).unwrap();
        assert_eq!(ranks.tail, vec![2.0]);
        assert_eq!(ranks.head, vec![4.0]);
        assert_eq!(ranks.all(), vec![2.0, 4.0]);
    }

    #[test]
    fn transe_scores_candidates_as_it_scores_triples() {
        let device = Device::flex();
        device.seed(4);
        let model = KgEmbeddingConfig::new(KgScorer::TransE, 5, 2)
            .with_dim(3)
            .init(&device)
            .unwrap();
        let all = |h: i64, r: i64, predict_head: bool| -> Vec<f32> {
            let fixed = Tensor::<1, Int>::from_data(TensorData::from([h]), &device);
            let rel = Tensor::<1, Int>::from_data(TensorData::from([r]), &device);
            model
                .score_candidates(fixed, rel, predict_head)
                .into_data()
                .try_to_vec()
                .unwrap()
        };
        let one = |h: i64, r: i64, t: i64| -> f32 {
            let ids = Tensor::<2, Int>::from_data(TensorData::from([[h, r, t]]), &device);
            model.try_score(ids).unwrap().into_scalar()
        };
        let tails = all(1, 1, false);
        let heads = all(2, 0, true);
        for x in 0..5 {
            assert!((tails[x as usize] - one(1, 1, x)).abs() < 1e-5);
            assert!((heads[x as usize] - one(x, 0, 2)).abs() < 1e-5);
        }
        let bad = Tensor::<2, Int>::zeros([2, 2], &device);
        assert!(
            model
                .try_score(bad)
                .unwrap_err()
                .to_string()
                .contains("[_, 3]")
        );
    }

    #[test]
    fn ids_outside_the_tables_are_refused_by_name() {
        let device = Device::flex();
        let model = KgEmbeddingConfig::new(KgScorer::DistMult, 5, 2)
            .with_dim(3)
            .init(&device)
            .unwrap();
        for (row, what) in [
            ([0, 2, 1], "relation id 2"),
            ([5, 0, 1], "entity id 5"),
            ([0, 0, -1], "entity id -1"),
        ] {
            let ids = Tensor::<2, Int>::from_data(TensorData::new(row.to_vec(), [1, 3]), &device);
            let err = model.try_score(ids).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
    }

    #[test]
    fn the_distmult_penalty_equals_the_means_of_the_gathered_rows() {
        let device = Device::flex();
        device.seed(6);
        let model = KgEmbeddingConfig::new(KgScorer::DistMult, 6, 3)
            .with_dim(4)
            .init(&device)
            .unwrap();
        let ids: Vec<u32> = vec![0, 1, 2, 2, 1, 2, 5, 0, 5, 3, 2, 0];
        let column = |c: usize| {
            let col: Vec<i64> = ids.iter().skip(c).step_by(3).map(|&i| i as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(col, [4]), &device)
        };
        let entities = model.entities.weight.val();
        let relations = model.relations.weight.val();
        let gathered = entities.clone().select(0, column(0)).square().mean()
            + relations.select(0, column(1)).square().mean()
            + entities.select(0, column(2)).square().mean();
        let want: f32 = gathered.into_scalar();
        let got: f32 = model.row_penalty(&ids).into_scalar();
        assert!((want - got).abs() < 1e-6, "{got} against {want}");
    }
}
