//! The rounds of a simulated federation: sample clients, train them (in parallel), aggregate, evaluate.

use crate::client::{LocalTraining, local_batches, train_client};
use crate::partition::Partition;
use crate::strategy::{ClientUpdate, Strategy};
use crate::{FederatedError, setting, stream};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use kiln_core::Supervised;
use kiln_core::params::{parameter_values, with_parameter_values};
use rand::Rng;
use rand::seq::index::sample;
use rayon::prelude::*;
use serde::Serialize;
use std::marker::PhantomData;
use std::time::Instant;

/// The generator of client `client`'s local shuffles in `round` (1-based) of a run seeded with `seed`
/// (what [`local_batches`] draws from), so that a caller can repeat a client's batches.
pub fn local_shuffle_rng(seed: u64, round: usize, client: usize) -> rand::rngs::StdRng {
    stream(seed, 3, round as u64, client as u64)
}

/// What happens to the sampled clients that do not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StragglerPolicy {
    /// They send nothing and the round goes on without them (FedAvg's handling in Li et al. 2020).
    Drop,
    /// They send what they managed: a number of local epochs drawn uniformly from 1 to E (FedProx's).
    Partial,
}

/// The rounds' settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FederatedConfig {
    /// Rounds at most (a run may stop earlier, see [`Evaluated::stop`]).
    pub rounds: usize,
    /// Fraction C of the clients sampled each round (at least one client is).
    pub fraction: f64,
    /// Each client's local training.
    pub local: LocalTraining,
    /// Share of each round's sampled clients that straggle.
    pub stragglers: f64,
    /// What stragglers do.
    pub straggler_policy: StragglerPolicy,
    /// Seed of every draw: client sampling, stragglers, local shuffles, server noise.
    pub seed: u64,
    /// Train a round's clients in parallel on rayon's pool (the result does not depend on it).
    pub parallel: bool,
}

impl FederatedConfig {
    /// FedAvg's defaults around `local`: C = 0.1, no stragglers, parallel clients.
    pub fn new(rounds: usize, local: LocalTraining, seed: u64) -> Self {
        Self {
            rounds,
            fraction: 0.1,
            local,
            stragglers: 0.0,
            straggler_policy: StragglerPolicy::Drop,
            seed,
            parallel: true,
        }
    }

    fn check(&self) -> Result<(), FederatedError> {
        self.local.check()?;
        if self.rounds == 0 {
            return Err(setting("rounds", 0, "at least one round"));
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(setting("fraction", self.fraction, "a share in (0, 1]"));
        }
        if !(0.0..1.0).contains(&self.stragglers) {
            return Err(setting(
                "stragglers",
                self.stragglers,
                "a share in [0, 1): some client must report",
            ));
        }
        Ok(())
    }
}

/// What the caller's evaluation says after a round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluated {
    /// The figure recorded for the round (test accuracy, say).
    pub accuracy: f64,
    /// End the run after this round.
    pub stop: bool,
}

/// One round of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRecord {
    /// 1-based round.
    pub round: usize,
    /// The evaluation's figure after the round.
    pub accuracy: f64,
    /// Clients sampled.
    pub sampled: usize,
    /// Clients whose update was aggregated.
    pub reported: usize,
    /// Seconds the round took (training and aggregation, not evaluation).
    pub seconds: f64,
    /// ε spent so far, for a differentially private strategy.
    pub epsilon: Option<f64>,
}

/// A federation: a dataset, its partition among clients, and how examples become batches.
pub struct Federation<'a, I, D: ?Sized, B> {
    dataset: &'a D,
    batcher: &'a B,
    partition: &'a Partition,
    device: Device,
    _item: PhantomData<fn() -> I>,
}

impl<'a, I, D, B> Federation<'a, I, D, B>
where
    D: Dataset<I> + Sync + ?Sized,
    B: Sync,
    I: Send,
{
    /// Clients of `partition` holding examples of `dataset`, batched by `batcher` on `device` (an
    /// autodiff device). Refuses a partition that names examples outside the dataset.
    pub fn new(
        dataset: &'a D,
        batcher: &'a B,
        partition: &'a Partition,
        device: Device,
    ) -> Result<Self, FederatedError> {
        let n = dataset.len();
        for (c, indices) in partition.clients().iter().enumerate() {
            if let Some(i) = indices.iter().find(|&&i| i >= n) {
                return Err(FederatedError::Partition(format!(
                    "client {c} holds example {i}, outside the dataset of {n}"
                )));
            }
        }
        Ok(Self {
            dataset,
            batcher,
            partition,
            device,
            _item: PhantomData,
        })
    }

    /// Runs `config.rounds` rounds of `strategy` from `model`, calling `evaluate(round, &global)` after each;
    /// returns the final global model and every round's record. The first client's first batch is checked
    /// against the model before any training.
    pub fn run<M>(
        &self,
        model: M,
        strategy: &mut dyn Strategy,
        config: &FederatedConfig,
        mut evaluate: impl FnMut(usize, &M) -> Result<Evaluated, String>,
    ) -> Result<(M, Vec<RoundRecord>), FederatedError>
    where
        M: Supervised + Send + Sync,
        B: Batcher<I, M::Batch>,
    {
        config.check()?;
        self.check_first_batch(&model, config)?;
        let clients = self.partition.len();
        let per_round = ((config.fraction * clients as f64).round() as usize).clamp(1, clients);
        let mut global = parameter_values(&model)?;
        let mut model = model;
        let mut records = Vec::with_capacity(config.rounds);
        for round in 1..=config.rounds {
            let started = Instant::now();
            let r = round as u64;
            let mut chosen: Vec<usize> =
                sample(&mut stream(config.seed, 1, r, 0), clients, per_round).into_vec();
            chosen.sort_unstable();
            let stragglers = ((config.stragglers * per_round as f64).round() as usize)
                .min(per_round.saturating_sub(1));
            let slow: Vec<usize> = sample(&mut stream(config.seed, 2, r, 0), per_round, stragglers)
                .iter()
                .map(|k| chosen[k])
                .collect();
            let work: Vec<(usize, usize)> = chosen
                .iter()
                .filter_map(|&c| {
                    if !slow.contains(&c) {
                        return Some((c, config.local.epochs));
                    }
                    match config.straggler_policy {
                        StragglerPolicy::Drop => None,
                        StragglerPolicy::Partial => Some((
                            c,
                            stream(config.seed, 4, r, c as u64)
                                .random_range(1..=config.local.epochs),
                        )),
                    }
                })
                .collect();
            let train = |&(c, epochs): &(usize, usize)| -> Result<ClientUpdate, FederatedError> {
                let indices = self.partition.client(c);
                let mut rng = local_shuffle_rng(config.seed, round, c);
                let batches = local_batches(indices, epochs, config.local.batch_size, &mut rng);
                let local = train_client(
                    &model,
                    self.dataset,
                    self.batcher,
                    &self.device,
                    &batches,
                    &config.local,
                    c,
                )?;
                let values = parameter_values(&local)?;
                Ok(ClientUpdate {
                    client: c,
                    examples: indices.len() * epochs / config.local.epochs.max(1),
                    delta: values.iter().zip(&global).map(|(l, g)| l - g).collect(),
                })
            };
            let updates: Vec<ClientUpdate> = if config.parallel {
                work.par_iter().map(train).collect::<Result<_, _>>()?
            } else {
                work.iter().map(train).collect::<Result<_, _>>()?
            };
            global = strategy.aggregate(&global, &updates, &mut stream(config.seed, 5, r, 0))?;
            model = with_parameter_values(model, &global)?;
            let seconds = started.elapsed().as_secs_f64();
            let evaluated = evaluate(round, &model)
                .map_err(|message| FederatedError::Evaluation { round, message })?;
            records.push(RoundRecord {
                round,
                accuracy: evaluated.accuracy,
                sampled: per_round,
                reported: updates.len(),
                seconds,
                epsilon: strategy.privacy().map(|(e, _)| e),
            });
            if evaluated.stop {
                break;
            }
        }
        Ok((model, records))
    }

    fn check_first_batch<M>(
        &self,
        model: &M,
        config: &FederatedConfig,
    ) -> Result<(), FederatedError>
    where
        M: Supervised,
        B: Batcher<I, M::Batch>,
    {
        let indices = self.partition.client(0);
        let take = indices.len().min(config.local.batch_size);
        let items = indices[..take]
            .iter()
            .map(|&i| self.dataset.get(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FederatedError::Partition(format!("client 0: {e}")))?;
        let batch = self.batcher.batch(items, &self.device);
        model
            .check_batch(&batch)
            .map_err(|source| FederatedError::Batch { client: 0, source })
    }
}
