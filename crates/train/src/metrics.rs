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

/// A running sum and count with a final ratio: the state of the metrics below, which must divide exact
/// split-wide sums once (not average per-batch ratios).
#[derive(Debug, Clone, Copy, Default)]
struct Ratio {
    sum: f64,
    count: f64,
}

impl Ratio {
    fn value(&self) -> f64 {
        self.sum / self.count
    }
}

/// The entry logged for a metric whose value is `value`.
fn entry(value: f64) -> SerializedEntry {
    SerializedEntry::new(
        format!("{value:.4}"),
        NumericEntry::Value(value).serialize(),
    )
}

/// Implements [`Numeric`] for a metric whose split-wide value is `self.value()`.
macro_rules! numeric_from_value {
    ($metric:ty) => {
        impl Numeric for $metric {
            fn value(&self) -> Option<NumericEntry> {
                Some(NumericEntry::Value(self.current()))
            }

            fn running_value(&self) -> Option<NumericEntry> {
                Some(NumericEntry::Value(self.current()))
            }

            fn final_value(&self) -> NumericEntry {
                NumericEntry::Final(self.current())
            }
        }
    };
}

/// The number of items a split holds (rows, or real tokens of a sequence model): the denominator of its
/// mean loss.
#[derive(Clone, Default)]
pub struct ItemCountMetric {
    items: usize,
}

impl ItemCountMetric {
    /// An empty count.
    pub fn new() -> Self {
        Self::default()
    }

    fn current(&self) -> f64 {
        self.items as f64
    }
}

impl Metric for ItemCountMetric {
    type Input = MeanLossInput;

    fn name(&self) -> MetricName {
        Arc::new(ITEMS.to_string())
    }

    fn attributes(&self) -> MetricAttributes {
        numeric(true)
    }

    fn update(
        &mut self,
        input: &MeanLossInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.items += input.count()?;
        Ok(entry(self.current()))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(entry(self.current()))
    }

    fn clear(&mut self) {
        self.items = 0;
    }
}

numeric_from_value!(ItemCountMetric);

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
/// it is in the data's own units.
#[derive(Clone)]
pub struct RmseMetric {
    scale: f64,
    sse: Ratio,
}

impl RmseMetric {
    /// RMSE reported in units of `scale` × model units (1 when the targets were not standardised).
    pub fn new(scale: f64) -> Self {
        Self {
            scale,
            sse: Ratio::default(),
        }
    }

    fn current(&self) -> f64 {
        self.sse.value().sqrt() * self.scale
    }
}

impl Metric for RmseMetric {
    type Input = RegressionInput;

    fn name(&self) -> MetricName {
        Arc::new(RMSE.to_string())
    }

    fn attributes(&self) -> MetricAttributes {
        numeric(false)
    }

    fn update(
        &mut self,
        input: &RegressionInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.sse.sum += input.squared_error()?;
        self.sse.count += input.targets.dims()[0] as f64;
        Ok(entry(self.current()))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(entry(self.current()))
    }

    fn clear(&mut self) {
        self.sse = Ratio::default();
    }
}

numeric_from_value!(RmseMetric);

/// Coefficient of determination over a split, `1 − SSE / SST`, SST about the split's own mean (as
/// scikit-learn's `r2_score`). Units do not matter.
#[derive(Clone, Default)]
pub struct R2Metric {
    sse: f64,
    target_sum: f64,
    target_sq_sum: f64,
    count: usize,
}

impl R2Metric {
    /// An empty metric.
    pub fn new() -> Self {
        Self::default()
    }

    fn current(&self) -> f64 {
        let n = self.count.max(1) as f64;
        let sst = self.target_sq_sum - self.target_sum * self.target_sum / n;
        1.0 - self.sse / sst
    }
}

impl Metric for R2Metric {
    type Input = RegressionInput;

    fn name(&self) -> MetricName {
        Arc::new(R2.to_string())
    }

    fn attributes(&self) -> MetricAttributes {
        numeric(true)
    }

    fn update(
        &mut self,
        input: &RegressionInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.sse += input.squared_error()?;
        self.target_sum += input.targets.clone().sum().try_into_scalar::<f64>()?;
        self.target_sq_sum += input
            .targets
            .clone()
            .square()
            .sum()
            .try_into_scalar::<f64>()?;
        self.count += input.targets.dims()[0];
        Ok(entry(self.current()))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(entry(self.current()))
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

numeric_from_value!(R2Metric);

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

/// Mean reciprocal rank over the queries of a split.
#[derive(Clone, Default)]
pub struct MrrMetric {
    reciprocal: Ratio,
}

impl MrrMetric {
    /// An empty metric.
    pub fn new() -> Self {
        Self::default()
    }

    fn current(&self) -> f64 {
        self.reciprocal.value()
    }
}

impl Metric for MrrMetric {
    type Input = RankInput;

    fn name(&self) -> MetricName {
        Arc::new(MRR.to_string())
    }

    fn attributes(&self) -> MetricAttributes {
        numeric(true)
    }

    fn update(
        &mut self,
        input: &RankInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        for &r in &input.ranks {
            self.reciprocal.sum += 1.0 / r;
        }
        self.reciprocal.count += input.ranks.len() as f64;
        Ok(entry(self.current()))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(entry(self.current()))
    }

    fn clear(&mut self) {
        self.reciprocal = Ratio::default();
    }
}

numeric_from_value!(MrrMetric);

/// The fraction of queries whose answer ranks within the top `k`.
#[derive(Clone)]
pub struct HitsAtKMetric {
    k: usize,
    hits: Ratio,
}

impl HitsAtKMetric {
    /// Hits@`k`.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            hits: Ratio::default(),
        }
    }

    fn current(&self) -> f64 {
        self.hits.value()
    }
}

impl Metric for HitsAtKMetric {
    type Input = RankInput;

    fn name(&self) -> MetricName {
        Arc::new(hits_at(self.k))
    }

    fn attributes(&self) -> MetricAttributes {
        numeric(true)
    }

    fn update(
        &mut self,
        input: &RankInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let k = self.k as f64;
        for &r in &input.ranks {
            if r <= k {
                self.hits.sum += 1.0;
            }
        }
        self.hits.count += input.ranks.len() as f64;
        Ok(entry(self.current()))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(entry(self.current()))
    }

    fn clear(&mut self) {
        self.hits = Ratio::default();
    }
}

numeric_from_value!(HitsAtKMetric);

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
/// averages those, which is a different number).
#[derive(Clone, Default)]
pub struct CorpusBleuMetric {
    hypotheses: Vec<String>,
    references: Vec<String>,
}

impl CorpusBleuMetric {
    /// An empty corpus.
    pub fn new() -> Self {
        Self::default()
    }

    fn current(&self) -> f64 {
        corpus_bleu(&self.hypotheses, &self.references).score
    }
}

impl Metric for CorpusBleuMetric {
    type Input = TranslationInput;

    fn name(&self) -> MetricName {
        Arc::new(BLEU.to_string())
    }

    fn attributes(&self) -> MetricAttributes {
        numeric(true)
    }

    fn update(
        &mut self,
        input: &TranslationInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.hypotheses.extend(input.hypotheses.iter().cloned());
        self.references.extend(input.references.iter().cloned());
        Ok(SerializedEntry::new(
            SerializedEntry::NOT_AVAILABLE.into(),
            SerializedEntry::NOT_AVAILABLE.into(),
        ))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(entry(self.current()))
    }

    fn clear(&mut self) {
        self.hypotheses.clear();
        self.references.clear();
    }
}

numeric_from_value!(CorpusBleuMetric);

/// Filtered link-prediction figures of some queries' ranks: [`MRR`] and Hits@1, @3 and @10 (named by
/// [`hits_at`]), with [`ITEMS`] the number of queries. Pass the ranks in batches in any grouping: the
/// figures are means over every query.
pub fn rank_evaluation(batches: &[&[f64]]) -> Result<crate::Evaluation, crate::TrainError> {
    let mut metrics = crate::Metrics::<RankInput>::new()
        .with(MrrMetric::new())
        .with(HitsAtKMetric::new(1))
        .with(HitsAtKMetric::new(3))
        .with(HitsAtKMetric::new(10))
        .with(QueryCountMetric::default());
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
#[derive(Clone, Default)]
struct QueryCountMetric {
    queries: usize,
}

impl QueryCountMetric {
    fn current(&self) -> f64 {
        self.queries as f64
    }
}

impl Metric for QueryCountMetric {
    type Input = RankInput;

    fn name(&self) -> MetricName {
        Arc::new(ITEMS.to_string())
    }

    fn update(
        &mut self,
        input: &RankInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.queries += input.ranks.len();
        Ok(entry(self.current()))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(entry(self.current()))
    }

    fn clear(&mut self) {
        self.queries = 0;
    }
}

numeric_from_value!(QueryCountMetric);

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
        let mut metric = CorpusBleuMetric::new();
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
