//! Federated learning on Kiln's models, simulated on one machine as a researcher runs it: many clients,
//! each holding its own shard of a dataset and training locally with Kiln's optimizers; a server that
//! samples a fraction of them each round and aggregates what they send back.
//!
//! - [`partition`]: IID shards, McMahan et al.'s (2017) pathological non-IID shards (sorted by label, two
//!   shards per client), Dirichlet(α) label skew, and unbalanced (log-normal) client sizes.
//! - [`strategy`]: the server's aggregation behind one trait — FedAvg (weighted by client sizes), FedAdam
//!   and FedYogi (server optimizers, Reddi et al. 2021), coordinate-wise median and trimmed mean (Yin et
//!   al. 2018), and DP-FedAvg (McMahan et al. 2018) as a wrapper around any of them.
//! - [`client`]: local training — E epochs of batches of B with any [`kiln_train::OptimizerConfig`], and
//!   FedProx's proximal term μ/2‖w − w_global‖² (Li et al. 2020).
//! - [`simulation`]: the rounds — client sampling, stragglers (dropped or reporting partial work), clients
//!   of a round trained in parallel on rayon's pool, evaluation, and a seeded run that repeats exactly.
//!
//! Models are any [`kiln_core::Supervised`] module on an autodiff device; the server works on the
//! parameters as flat vectors ([`kiln_core::params`]).
#![warn(missing_docs)]

pub mod client;
pub mod partition;
pub mod simulation;
pub mod strategy;

pub use client::{LocalTraining, local_batches, train_client};
pub use partition::Partition;
pub use simulation::{
    Evaluated, FederatedConfig, Federation, RoundRecord, StragglerPolicy, local_shuffle_rng,
};
pub use strategy::{ClientUpdate, DpFedAvg, FedAdaptive, FedAvg, Median, Strategy, TrimmedMean};

/// What federated training refuses, and why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum FederatedError {
    /// A setting outside its range, named with the value given.
    #[error("{field} = {value}: {reason}")]
    Setting {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        reason: String,
    },
    /// A partition that cannot be made from this data (too few examples, an empty client, ...).
    #[error("partition: {0}")]
    Partition(String),
    /// Updates that do not fit the global model.
    #[error("aggregation: {0}")]
    Aggregation(String),
    /// A client's batch the model cannot take.
    #[error("client {client}: {source}")]
    Batch {
        /// The client.
        client: usize,
        /// The model's reason.
        source: kiln_core::BatchError,
    },
    /// A model's parameters could not be read or set.
    #[error(transparent)]
    Params(#[from] kiln_core::params::ParamsError),
    /// The privacy accountant refused its arguments.
    #[error(transparent)]
    Privacy(#[from] kiln_privacy::PrivacyError),
    /// The caller's evaluation failed.
    #[error("evaluation after round {round}: {message}")]
    Evaluation {
        /// The round.
        round: usize,
        /// Why.
        message: String,
    },
}

pub(crate) fn setting(
    field: &'static str,
    value: impl std::fmt::Display,
    reason: impl Into<String>,
) -> FederatedError {
    FederatedError::Setting {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A generator for one purpose of one round of one client, from the run's seed: the same seed gives the
/// same draws whatever order the clients of a round run in.
pub(crate) fn stream(seed: u64, purpose: u64, round: u64, client: u64) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    // SplitMix64-style mixing, so that neighbouring (round, client) pairs get unrelated seeds.
    let mut z = seed
        ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ round.wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ client.wrapping_mul(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    rand::rngs::StdRng::seed_from_u64(z ^ (z >> 31))
}
