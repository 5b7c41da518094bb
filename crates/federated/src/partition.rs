//! How a dataset is split among clients: each client's example indices.
//!
//! - [`Partition::iid`]: a seeded shuffle cut into equal shards.
//! - [`Partition::pathological_non_iid`]: McMahan et al. (2017) — examples sorted by label, cut into
//!   `clients × shards_per_client` shards of equal size, each client given `shards_per_client` of them at
//!   random (for MNIST: 200 shards of 300, two per client, so most clients see two digits).
//! - [`Partition::dirichlet`]: label skew — for every class, its examples shared among the clients in
//!   proportions drawn from Dirichlet(α, …, α) (Hsu et al. 2019); small α, few classes per client.
//! - [`Partition::unbalanced`]: IID labels, client sizes proportional to log-normal(0, σ²) draws.

use crate::{FederatedError, setting};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Gamma, LogNormal};

/// Each client's example indices into one dataset; clients are disjoint and together cover the examples
/// they were made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    clients: Vec<Vec<usize>>,
}

fn check_clients(clients: usize, examples: usize) -> Result<(), FederatedError> {
    if clients == 0 {
        return Err(setting("clients", clients, "at least one client"));
    }
    if examples < clients {
        return Err(FederatedError::Partition(format!(
            "{examples} examples cannot give each of {clients} clients one"
        )));
    }
    Ok(())
}

impl Partition {
    /// A partition from explicit index lists (refused if a client is empty or an index repeats).
    pub fn from_clients(clients: Vec<Vec<usize>>) -> Result<Self, FederatedError> {
        if clients.is_empty() {
            return Err(setting("clients", 0, "at least one client"));
        }
        let mut seen = std::collections::HashSet::new();
        for (c, indices) in clients.iter().enumerate() {
            if indices.is_empty() {
                return Err(FederatedError::Partition(format!(
                    "client {c} has no examples"
                )));
            }
            if let Some(i) = indices.iter().find(|&&i| !seen.insert(i)) {
                return Err(FederatedError::Partition(format!(
                    "example {i} is given to client {c} and to an earlier one"
                )));
            }
        }
        Ok(Self { clients })
    }

    /// `examples` shuffled with `seed` and cut into `clients` shards whose sizes differ by at most one.
    pub fn iid(examples: usize, clients: usize, seed: u64) -> Result<Self, FederatedError> {
        check_clients(clients, examples)?;
        let mut order: Vec<usize> = (0..examples).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let (base, extra) = (examples / clients, examples % clients);
        let mut out = Vec::with_capacity(clients);
        let mut start = 0;
        for c in 0..clients {
            let len = base + usize::from(c < extra);
            out.push(order[start..start + len].to_vec());
            start += len;
        }
        Self::from_clients(out)
    }

    /// McMahan et al.'s pathological non-IID split of examples with `labels`: sorted by label (ties in a
    /// seeded random order), cut into `clients · shards_per_client` equal shards (a remainder of fewer
    /// examples than one shard is left out), and each client given `shards_per_client` shards drawn at
    /// random without replacement.
    pub fn pathological_non_iid(
        labels: &[usize],
        clients: usize,
        shards_per_client: usize,
        seed: u64,
    ) -> Result<Self, FederatedError> {
        if shards_per_client == 0 {
            return Err(setting("shards_per_client", 0, "at least one shard each"));
        }
        let shards = clients * shards_per_client;
        check_clients(clients, labels.len())?;
        let shard_size = labels.len() / shards;
        if shard_size == 0 {
            return Err(FederatedError::Partition(format!(
                "{} examples cannot fill {shards} shards",
                labels.len()
            )));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.shuffle(&mut rng);
        order.sort_by_key(|&i| labels[i]); // stable: ties keep the shuffled order
        let mut shard_ids: Vec<usize> = (0..shards).collect();
        shard_ids.shuffle(&mut rng);
        let out = shard_ids
            .chunks(shards_per_client)
            .map(|own| {
                own.iter()
                    .flat_map(|&s| order[s * shard_size..(s + 1) * shard_size].iter().copied())
                    .collect()
            })
            .collect();
        Self::from_clients(out)
    }

    /// Label skew: for each class, its examples (in a seeded random order) shared among the clients in
    /// proportions drawn from Dirichlet(`alpha`). Draws are repeated (up to 100 times) until every client
    /// has at least `min_examples`.
    pub fn dirichlet(
        labels: &[usize],
        clients: usize,
        alpha: f64,
        min_examples: usize,
        seed: u64,
    ) -> Result<Self, FederatedError> {
        check_clients(clients, labels.len())?;
        if !(alpha > 0.0 && alpha.is_finite()) {
            return Err(setting("alpha", alpha, "a finite concentration > 0"));
        }
        if min_examples.max(1) * clients > labels.len() {
            return Err(FederatedError::Partition(format!(
                "{} examples cannot give {clients} clients {min_examples} each",
                labels.len()
            )));
        }
        let gamma = Gamma::new(alpha, 1.0).map_err(|e| setting("alpha", alpha, e.to_string()))?;
        let classes = labels.iter().max().map_or(0, |&m| m + 1);
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..100 {
            let mut out = vec![Vec::new(); clients];
            for class in 0..classes {
                let mut members: Vec<usize> =
                    (0..labels.len()).filter(|&i| labels[i] == class).collect();
                members.shuffle(&mut rng);
                let draws: Vec<f64> = (0..clients).map(|_| gamma.sample(&mut rng)).collect();
                let total: f64 = draws.iter().sum();
                // Cumulative proportions → cut points, so every member goes to exactly one client.
                let mut cumulative = 0.0;
                let mut start = 0;
                for (c, d) in draws.iter().enumerate() {
                    cumulative += d / total;
                    let end = if c + 1 == clients {
                        members.len()
                    } else {
                        ((cumulative * members.len() as f64).round() as usize).min(members.len())
                    };
                    out[c].extend_from_slice(&members[start..end.max(start)]);
                    start = end.max(start);
                }
            }
            if out.iter().all(|c| c.len() >= min_examples.max(1)) {
                return Self::from_clients(out);
            }
        }
        Err(FederatedError::Partition(format!(
            "100 Dirichlet({alpha}) draws all left a client with fewer than {min_examples} examples"
        )))
    }

    /// IID labels, unbalanced sizes: client sizes proportional to log-normal(0, `sigma`²) draws, each at
    /// least one example, the examples shuffled with `seed`.
    pub fn unbalanced(
        examples: usize,
        clients: usize,
        sigma: f64,
        seed: u64,
    ) -> Result<Self, FederatedError> {
        check_clients(clients, examples)?;
        if !(sigma >= 0.0 && sigma.is_finite()) {
            return Err(setting("sigma", sigma, "a finite spread ≥ 0"));
        }
        let spread =
            LogNormal::new(0.0, sigma).map_err(|e| setting("sigma", sigma, e.to_string()))?;
        let mut rng = StdRng::seed_from_u64(seed);
        let draws: Vec<f64> = (0..clients).map(|_| spread.sample(&mut rng)).collect();
        let total: f64 = draws.iter().sum();
        // One example each, the rest by the draws' proportions (largest remainders get the leftovers).
        let free = examples - clients;
        let shares: Vec<f64> = draws.iter().map(|d| d / total * free as f64).collect();
        let mut sizes: Vec<usize> = shares.iter().map(|s| 1 + s.floor() as usize).collect();
        let mut left = examples - sizes.iter().sum::<usize>();
        let mut by_remainder: Vec<usize> = (0..clients).collect();
        by_remainder.sort_by(|&a, &b| (shares[b].fract()).total_cmp(&shares[a].fract()));
        for &c in by_remainder.iter().cycle() {
            if left == 0 {
                break;
            }
            sizes[c] += 1;
            left -= 1;
        }
        let mut order: Vec<usize> = (0..examples).collect();
        order.shuffle(&mut rng);
        let mut out = Vec::with_capacity(clients);
        let mut start = 0;
        for size in sizes {
            out.push(order[start..start + size].to_vec());
            start += size;
        }
        Self::from_clients(out)
    }

    /// How many clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether there are no clients (never, for a partition built by this type).
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Client `c`'s example indices.
    pub fn client(&self, c: usize) -> &[usize] {
        &self.clients[c]
    }

    /// Every client's example indices.
    pub fn clients(&self) -> &[Vec<usize>] {
        &self.clients
    }

    /// How many examples of each class every client holds (`[client][class]`; labels of `classes` or
    /// more, and indices outside `labels`, are not counted).
    pub fn label_counts(&self, labels: &[usize], classes: usize) -> Vec<Vec<usize>> {
        self.clients
            .iter()
            .map(|indices| {
                let mut counts = vec![0; classes];
                for &i in indices {
                    if let Some(count) = labels.get(i).and_then(|&l| counts.get_mut(l)) {
                        *count += 1;
                    }
                }
                counts
            })
            .collect()
    }
}
