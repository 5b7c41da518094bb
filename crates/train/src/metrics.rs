//! The metrics burn-train lacks, as burn-train [`Metric`]s, so that validation (inside `fit`) and test
//! evaluation ([`crate::evaluate`]) use the same code: the item-weighted mean loss, RMSE and R² of a
//! regressor, MRR and Hits@k of a link predictor, and corpus BLEU. Accuracy and perplexity are burn's own
//! ([`AccuracyMetric`](burn::train::metric::AccuracyMetric), [`PerplexityMetric`](burn::train::metric::PerplexityMetric), with the pad token for
//! sequence models).
//!
//! Each metric accumulates exact sums over the whole split and divides once at the end (burn's
//! `LossMetric` instead weights each batch's mean loss by one, so a short last batch counts as much as a
//! full one).

use crate::bleu::corpus_bleu;
use burn::prelude::*;
use burn::tensor::TensorReadError;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};
use kiln_core::PAD_ID;
use std::sync::Arc;

/// Name of [`MeanLossMetric`] (also burn's loss metric's, so early stopping and `metrics.csv` keep it).
pub const LOSS: &str = "Loss";
/// Name of burn's accuracy metric (in percent).
pub const ACCURACY: &str = "Accuracy";
/// Name of burn's perplexity metric.
pub const PERPLEXITY: &str = "Perplexity";
/// Name of [`ItemCountMetric`].
pub const ITEMS: &str = "Items";
/// Name of [`RmseMetric`].
pub const RMSE: &str = "RMSE";
/// Name of [`R2Metric`].
pub const R2: &str = "R2";
/// Name of [`MrrMetric`].
pub const MRR: &str = "MRR";
/// Name of [`CorpusBleuMetric`].
pub const BLEU: &str = "BLEU";

/// Name of [`HitsAtKMetric`] for `k`.
pub fn hits_at(k: usize) -> String {
    format!("Hits@{k}")
}

/// How many items a batch's mean loss averages over.
#[derive(Debug, Clone)]
enum Items {
    /// A known count (the rows of a classification or regression batch).
    Count(usize),
    /// The real (non-[`PAD_ID`]) steps of these targets, `[batch, steps]`.
    RealTokens(Box<Tensor<2, Int>>),
}

/// Input of [`MeanLossMetric`] and [`ItemCountMetric`]: a batch's mean loss and what it averages over.
#[derive(Debug, Clone)]
pub struct MeanLossInput {
    loss: Tensor<1>,
    items: Items,
}

impl MeanLossInput {
    /// A mean loss over `items` items.
    pub fn new(loss: Tensor<1>, items: usize) -> Self {
        Self {
            loss,
            items: Items::Count(items),
        }
    }

    /// A mean loss over the real steps of `targets` (`[batch, steps]`, [`PAD_ID`] on padding).
    pub fn tokens(loss: Tensor<1>, targets: Tensor<2, Int>) -> Self {
        Self {
            loss,
            items: Items::RealTokens(Box::new(targets)),
        }
    }

    fn count(&self) -> Result<usize, TensorReadError> {
        Ok(match &self.items {
            Items::Count(n) => *n,
            Items::RealTokens(targets) => targets
                .clone()
                .not_equal_elem(PAD_ID as i64)
                .int()
                .sum()
                .try_into_scalar::<i64>()? as usize,
        })
    }
}

fn numeric(higher_is_better: bool) -> MetricAttributes {
    NumericAttributes {
        unit: None,
        higher_is_better,
    }
    .into()
}

/// The mean loss per item over a split: `Σ loss_b·n_b / Σ n_b` (per real token for sequence models, so
/// nats per character for a character model).
#[derive(Clone, Default)]
pub struct MeanLossMetric {
    state: NumericMetricState,
}

impl MeanLossMetric {
    /// An empty metric.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Metric for MeanLossMetric {
    type Input = MeanLossInput;

    fn name(&self) -> MetricName {
        Arc::new(LOSS.to_string())
    }

    fn attributes(&self) -> MetricAttributes {
        numeric(false)
    }

    fn update(
        &mut self,
        input: &MeanLossInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let loss = input.loss.clone().mean().try_into_scalar::<f64>()?;
        self.state.update(loss, input.count()?);
        Ok(self
            .state
            .compute_update(FormatOptions::new(self.name()).precision(4)))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self
            .state
            .compute_final(FormatOptions::new(self.name()).precision(4)))
    }

    fn clear(&mut self) {
        self.state.reset();
    }
}

impl Numeric for MeanLossMetric {
    fn value(&self) -> Option<NumericEntry> {
        Some(self.state.current_value())
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Some(self.state.running_value())
    }

    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
    }
}

/// What a split-wide metric accumulates: exact sums over every batch of a split, divided once at the
/// end (never a mean of per-batch ratios). [`SplitMetric`] makes one a burn-train [`Metric`] +
/// [`Numeric`].
pub trait SplitSum: Clone + Send + Sync {
    /// The metric's input.
    type Input;
    /// The metric's name (one of this module's constants).
    fn name(&self) -> String;
    /// Whether larger values are better.
    fn higher_is_better(&self) -> bool;
    /// Adds one batch.
    fn add(&mut self, input: &Self::Input) -> Result<(), TensorReadError>;
    /// The value over the batches added so far.
    fn value(&self) -> f64;
    /// Whether [`value`](Self::value) is cheap enough to log after every batch (corpus BLEU is not).
    fn per_batch(&self) -> bool {
        true
    }
    /// Forgets every batch.
    fn clear(&mut self);
}

/// A burn-train metric over a [`SplitSum`].
#[derive(Clone)]
pub struct SplitMetric<S>(S);

impl<S: SplitSum> SplitMetric<S> {
    /// The metric over `sums` (empty).
    pub fn new(sums: S) -> Self {
        Self(sums)
    }
}

/// The entry logged for a metric whose value is `value`.
fn entry(value: f64) -> SerializedEntry {
    SerializedEntry::new(
        format!("{value:.4}"),
        NumericEntry::Value(value).serialize(),
    )
}

impl<S: SplitSum> Metric for SplitMetric<S> {
    type Input = S::Input;

    fn name(&self) -> MetricName {
        Arc::new(self.0.name())
    }

    fn attributes(&self) -> MetricAttributes {
        numeric(self.0.higher_is_better())
    }

    fn update(
        &mut self,
        input: &S::Input,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.0.add(input)?;
        Ok(if self.0.per_batch() {
            entry(self.0.value())
        } else {
            SerializedEntry::not_available(None)
        })
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(entry(self.0.value()))
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl<S: SplitSum> Numeric for SplitMetric<S> {
    fn value(&self) -> Option<NumericEntry> {
        self.0
            .per_batch()
            .then(|| NumericEntry::Value(self.0.value()))
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Numeric::value(self)
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.0.value())
    }
}

/// The number of items a split holds (rows, or real tokens of a sequence model): the denominator of its
/// mean loss. Named [`ITEMS`].
#[derive(Debug, Clone, Default)]
pub struct ItemCount(usize);

impl SplitSum for ItemCount {
    type Input = MeanLossInput;

    fn name(&self) -> String {
        ITEMS.into()
    }

    fn higher_is_better(&self) -> bool {
        true
    }

    fn add(&mut self, input: &MeanLossInput) -> Result<(), TensorReadError> {
        self.0 += input.count()?;
        Ok(())
    }

    fn value(&self) -> f64 {
        self.0 as f64
    }

    fn clear(&mut self) {
        self.0 = 0;
    }
}

/// [`ItemCount`] as a metric.
pub type ItemCountMetric = SplitMetric<ItemCount>;

impl ItemCountMetric {
    /// An empty count.
    pub fn items() -> Self {
        Self::new(ItemCount::default())
    }
}

/// Input of [`RmseMetric`] and [`R2Metric`]: a regressor's predictions and targets, both
/// `[batch, outputs]`, in model units.
#[derive(Debug, Clone)]
pub struct RegressionInput {
    output: Tensor<2>,
    targets: Tensor<2>,
}

impl RegressionInput {
    /// Predictions and targets of one batch.
    pub fn new(output: Tensor<2>, targets: Tensor<2>) -> Self {
        Self { output, targets }
    }

    fn squared_error(&self) -> Result<f64, TensorReadError> {
        (self.output.clone() - self.targets.clone())
            .square()
            .sum()
            .try_into_scalar::<f64>()
    }
}

/// Root mean squared error over a split, multiplied by `scale` (the target standardiser's std) so that
/// it is in the data's own units. Named [`RMSE`].
#[derive(Debug, Clone)]
pub struct Rmse {
    scale: f64,
    sse: f64,
    rows: usize,
}

impl SplitSum for Rmse {
    type Input = RegressionInput;

    fn name(&self) -> String {
        RMSE.into()
    }

    fn higher_is_better(&self) -> bool {
        false
    }

    fn add(&mut self, input: &RegressionInput) -> Result<(), TensorReadError> {
        self.sse += input.squared_error()?;
        self.rows += input.targets.dims()[0];
        Ok(())
    }

    fn value(&self) -> f64 {
        (self.sse / self.rows as f64).sqrt() * self.scale
    }

    fn clear(&mut self) {
        (self.sse, self.rows) = (0.0, 0);
    }
}

/// [`Rmse`] as a metric.
pub type RmseMetric = SplitMetric<Rmse>;

impl RmseMetric {
    /// RMSE reported in units of `scale` × model units (1 when the targets were not standardised).
    pub fn scaled(scale: f64) -> Self {
        Self::new(Rmse {
            scale,
            sse: 0.0,
            rows: 0,
        })
    }
}

/// Coefficient of determination over a split, `1 − SSE / SST`, SST about the split's own mean (as
/// scikit-learn's `r2_score`). Units do not matter. Named [`R2`].
#[derive(Debug, Clone, Default)]
pub struct RSquared {
    sse: f64,
    target_sum: f64,
    target_sq_sum: f64,
    rows: usize,
}

impl SplitSum for RSquared {
    type Input = RegressionInput;

    fn name(&self) -> String {
        R2.into()
    }

    fn higher_is_better(&self) -> bool {
        true
    }

    fn add(&mut self, input: &RegressionInput) -> Result<(), TensorReadError> {
        self.sse += input.squared_error()?;
        self.target_sum += input.targets.clone().sum().try_into_scalar::<f64>()?;
        self.target_sq_sum += input
            .targets
            .clone()
            .square()
            .sum()
            .try_into_scalar::<f64>()?;
        self.rows += input.targets.dims()[0];
        Ok(())
    }

    fn value(&self) -> f64 {
        let n = self.rows.max(1) as f64;
        let sst = self.target_sq_sum - self.target_sum * self.target_sum / n;
        1.0 - self.sse / sst
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// [`RSquared`] as a metric.
pub type R2Metric = SplitMetric<RSquared>;

impl R2Metric {
    /// An empty metric.
    pub fn r2() -> Self {
        Self::new(RSquared::default())
    }
}

/// Input of [`MrrMetric`] and [`HitsAtKMetric`]: the (filtered) ranks of the true answers of a batch of
/// link-prediction queries, 1 for the best; ties may give half ranks.
#[derive(Debug, Clone)]
pub struct RankInput {
    ranks: Vec<f64>,
}

impl RankInput {
    /// The ranks of a batch of queries.
    pub fn new(ranks: Vec<f64>) -> Self {
        Self { ranks }
    }
}

impl Adaptor<RankInput> for RankInput {
    fn adapt(&self) -> RankInput {
        self.clone()
    }
}

/// A mean over ranked queries of `score(rank)`: the reciprocal rank for [`MRR`], a hit within the top
/// `k` for Hits@k ([`hits_at`]).
#[derive(Debug, Clone)]
pub struct RankMean {
    hits_within: Option<usize>,
    sum: f64,
    queries: usize,
}

impl RankMean {
    fn score(&self, rank: f64) -> f64 {
        match self.hits_within {
            None => 1.0 / rank,
            Some(k) if rank <= k as f64 => 1.0,
            Some(_) => 0.0,
        }
    }
}

impl SplitSum for RankMean {
    type Input = RankInput;

    fn name(&self) -> String {
        self.hits_within.map_or(MRR.into(), hits_at)
    }

    fn higher_is_better(&self) -> bool {
        true
    }

    fn add(&mut self, input: &RankInput) -> Result<(), TensorReadError> {
        for &r in &input.ranks {
            self.sum += self.score(r);
        }
        self.queries += input.ranks.len();
        Ok(())
    }

    fn value(&self) -> f64 {
        self.sum / self.queries as f64
    }

    fn clear(&mut self) {
        (self.sum, self.queries) = (0.0, 0);
    }
}

/// Mean reciprocal rank over the queries of a split.
pub type MrrMetric = SplitMetric<RankMean>;
/// The fraction of queries whose answer ranks within the top `k` (the same type as [`MrrMetric`]).
pub type HitsAtKMetric = SplitMetric<RankMean>;

impl SplitMetric<RankMean> {
    /// Mean reciprocal rank.
    pub fn mrr() -> Self {
        Self::new(RankMean {
            hits_within: None,
            sum: 0.0,
            queries: 0,
        })
    }

    /// Hits@`k`.
    pub fn hits_at(k: usize) -> Self {
        Self::new(RankMean {
            hits_within: Some(k),
            sum: 0.0,
            queries: 0,
        })
    }
}

/// Input of [`CorpusBleuMetric`]: detokenised hypotheses and their references, one each per sentence.
#[derive(Debug, Clone)]
pub struct TranslationInput {
    hypotheses: Vec<String>,
    references: Vec<String>,
}

impl TranslationInput {
    /// A batch of translations and their references (equal lengths).
    pub fn new(hypotheses: Vec<String>, references: Vec<String>) -> Self {
        Self {
            hypotheses,
            references,
        }
    }
}

impl Adaptor<TranslationInput> for TranslationInput {
    fn adapt(&self) -> TranslationInput {
        self.clone()
    }
}

/// Corpus BLEU (sacreBLEU's `13a` tokenisation, one reference) over a split: n-gram counts summed over
/// every sentence before the geometric mean, never a mean of per-batch scores (burn's `BleuMetric`
/// averages those, which is a different number). Named [`BLEU`].
#[derive(Debug, Clone, Default)]
pub struct CorpusBleu {
    hypotheses: Vec<String>,
    references: Vec<String>,
}

impl SplitSum for CorpusBleu {
    type Input = TranslationInput;

    fn name(&self) -> String {
        BLEU.into()
    }

    fn higher_is_better(&self) -> bool {
        true
    }

    fn add(&mut self, input: &TranslationInput) -> Result<(), TensorReadError> {
        self.hypotheses.extend(input.hypotheses.iter().cloned());
        self.references.extend(input.references.iter().cloned());
        Ok(())
    }

    fn value(&self) -> f64 {
        corpus_bleu(&self.hypotheses, &self.references).score
    }

    fn per_batch(&self) -> bool {
        false
    }

    fn clear(&mut self) {
        self.hypotheses.clear();
        self.references.clear();
    }
}

/// [`CorpusBleu`] as a metric.
pub type CorpusBleuMetric = SplitMetric<CorpusBleu>;

/// Filtered link-prediction figures of some queries' ranks: [`MRR`] and Hits@1, @3 and @10 (named by
/// [`hits_at`]), with [`ITEMS`] the number of queries. Pass the ranks in batches in any grouping: the
/// figures are means over every query.
pub fn rank_evaluation(batches: &[&[f64]]) -> Result<crate::Evaluation, crate::TrainError> {
    let mut metrics = crate::Metrics::<RankInput>::new()
        .with(MrrMetric::mrr())
        .with(HitsAtKMetric::hits_at(1))
        .with(HitsAtKMetric::hits_at(3))
        .with(HitsAtKMetric::hits_at(10))
        .with(QueryCountMetric::new(QueryCount::default()));
    let total = batches.iter().map(|b| b.len()).sum();
    let mut done = 0;
    for batch in batches {
        done += batch.len();
        let progress = burn::data::dataloader::Progress {
            items_processed: done,
            items_total: total,
            unit: Some("queries".into()),
        };
        metrics.update(&RankInput::new(batch.to_vec()), progress)?;
    }
    metrics.finish()
}

/// The number of ranked queries, reported as [`ITEMS`].
#[derive(Debug, Clone, Default)]
struct QueryCount(usize);

impl SplitSum for QueryCount {
    type Input = RankInput;

    fn name(&self) -> String {
        ITEMS.into()
    }

    fn higher_is_better(&self) -> bool {
        true
    }

    fn add(&mut self, input: &RankInput) -> Result<(), TensorReadError> {
        self.0 += input.ranks.len();
        Ok(())
    }

    fn value(&self) -> f64 {
        self.0 as f64
    }

    fn clear(&mut self) {
        self.0 = 0;
    }
}

type QueryCountMetric = SplitMetric<QueryCount>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrr_and_hits_are_means_over_queries_of_any_batching() {
        // Ranks 2 and 4 (one tie gives 3.5 elsewhere): MRR (1/2 + 1/4 + 1/3.5 + 1) / 4.
        let e = rank_evaluation(&[&[2.0, 4.0], &[3.5], &[1.0]]).unwrap();
        let mrr = (0.5 + 0.25 + 1.0 / 3.5 + 1.0) / 4.0;
        assert!((e.get(MRR).unwrap() - mrr).abs() < 1e-12);
        assert_eq!(e.get(&hits_at(1)).unwrap(), 0.25);
        assert_eq!(e.get(&hits_at(3)).unwrap(), 0.5);
        assert_eq!(e.get(&hits_at(10)).unwrap(), 1.0);
        assert_eq!(e.items().unwrap(), 4);
        let one = rank_evaluation(&[&[2.0, 4.0, 3.5, 1.0]]).unwrap();
        assert_eq!(one, e);
    }

    #[test]
    fn corpus_bleu_pools_ngrams_across_batches() {
        let hyps = ["the cat sat on the mat", "a dog barked"];
        let refs = ["the cat sat on a mat", "the dog barked loudly"];
        let mut metric = CorpusBleuMetric::new(CorpusBleu::default());
        let metadata = MetricMetadata {
            progress: burn::data::dataloader::Progress {
                items_processed: 1,
                items_total: 2,
                unit: None,
            },
            iteration: Some(1),
            lr: None,
        };
        for (h, r) in hyps.iter().zip(refs) {
            let input = TranslationInput::new(vec![h.to_string()], vec![r.to_string()]);
            metric.update(&input, &metadata).unwrap();
        }
        metric.compute().unwrap();
        let pooled = corpus_bleu(&hyps.map(String::from), &refs.map(String::from)).score;
        assert_eq!(metric.final_value().current(), pooled);
        // Not the mean of the two sentences' own scores.
        let mean = (corpus_bleu(&[hyps[0].into()], &[refs[0].into()]).score
            + corpus_bleu(&[hyps[1].into()], &[refs[1].into()]).score)
            / 2.0;
        assert!((pooled - mean).abs() > 1.0, "{pooled} vs {mean}");
    }
}
