//! The server's side of a round: from the global parameters and the updates the sampled clients sent
//! (each `local − global`, as flat vectors), the next global parameters.

use crate::{FederatedError, setting};
use kiln_privacy::RdpAccountant;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

/// What one client sent back after local training.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientUpdate {
    /// The client's index in the partition.
    pub client: usize,
    /// Examples it trained on (FedAvg's weight).
    pub examples: usize,
    /// Its parameters after local training minus the global ones it started from.
    pub delta: Vec<f32>,
}

/// A server aggregation rule.
pub trait Strategy: Send {
    /// The name the report uses (`fedavg`, `fedadam`, …).
    fn name(&self) -> String;

    /// The next global parameters from `global` and the round's `updates` (at least one). `rng` is the
    /// round's server-side random stream (for strategies that add noise).
    fn aggregate(
        &mut self,
        global: &[f32],
        updates: &[ClientUpdate],
        rng: &mut StdRng,
    ) -> Result<Vec<f32>, FederatedError>;

    /// The privacy spent so far, (ε, δ), if this strategy gives a guarantee.
    fn privacy(&self) -> Option<(f64, f64)> {
        None
    }
}

fn check_updates(global: &[f32], updates: &[ClientUpdate]) -> Result<(), FederatedError> {
    if updates.is_empty() {
        return Err(FederatedError::Aggregation(
            "no client reported this round".into(),
        ));
    }
    if let Some(u) = updates.iter().find(|u| u.delta.len() != global.len()) {
        return Err(FederatedError::Aggregation(format!(
            "client {} sent {} values for a model of {}",
            u.client,
            u.delta.len(),
            global.len()
        )));
    }
    if let Some(u) = updates
        .iter()
        .find(|u| u.delta.iter().any(|v| !v.is_finite()))
    {
        return Err(FederatedError::Aggregation(format!(
            "client {}'s update holds NaN or infinite values (its local training diverged: lower the \
             learning rate)",
            u.client
        )));
    }
    Ok(())
}

/// The mean of the updates weighted by their examples (McMahan et al.'s n_k / n), in f64.
pub fn weighted_mean(updates: &[ClientUpdate]) -> Vec<f32> {
    let total: f64 = updates.iter().map(|u| u.examples as f64).sum();
    let len = updates.first().map_or(0, |u| u.delta.len());
    let mut mean = vec![0.0f64; len];
    for u in updates {
        let w = if total > 0.0 {
            u.examples as f64 / total
        } else {
            1.0 / updates.len() as f64
        };
        for (m, &d) in mean.iter_mut().zip(&u.delta) {
            *m += w * f64::from(d);
        }
    }
    mean.into_iter().map(|m| m as f32).collect()
}

/// FedAvg (McMahan et al. 2017): the global model plus the example-weighted mean of the updates.
/// FedProx (Li et al. 2020) aggregates the same way; its difference is the clients' proximal term
/// ([`crate::LocalTraining::proximal_mu`]) and keeping stragglers' partial work.
#[derive(Debug, Clone, Copy, Default)]
pub struct FedAvg;

impl Strategy for FedAvg {
    fn name(&self) -> String {
        "fedavg".into()
    }

    fn aggregate(
        &mut self,
        global: &[f32],
        updates: &[ClientUpdate],
        _rng: &mut StdRng,
    ) -> Result<Vec<f32>, FederatedError> {
        check_updates(global, updates)?;
        let mean = weighted_mean(updates);
        Ok(global.iter().zip(&mean).map(|(g, d)| g + d).collect())
    }
}

/// The adaptive server optimizers of Reddi et al. (2021, Algorithm 2), FedAdam and FedYogi: the weighted
/// mean update Δ is a pseudo-gradient; m ← β₁m + (1 − β₁)Δ; v ← β₂v + (1 − β₂)Δ² (Adam) or
/// v ← v − (1 − β₂)Δ²·sign(v − Δ²) (Yogi); x ← x + η·m / (√v + τ).
#[derive(Debug, Clone)]
pub struct FedAdaptive {
    yogi: bool,
    lr: f32,
    beta_1: f32,
    beta_2: f32,
    tau: f32,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl FedAdaptive {
    /// FedAdam with server learning rate η, moments β₁ and β₂ and adaptivity τ (Reddi et al. use
    /// β₁ = 0.9, β₂ = 0.99 and tune η and τ, with τ around 1e-3).
    pub fn adam(lr: f32, beta_1: f32, beta_2: f32, tau: f32) -> Result<Self, FederatedError> {
        Self::new(false, lr, beta_1, beta_2, tau)
    }

    /// FedYogi, with the same settings as [`Self::adam`].
    pub fn yogi(lr: f32, beta_1: f32, beta_2: f32, tau: f32) -> Result<Self, FederatedError> {
        Self::new(true, lr, beta_1, beta_2, tau)
    }

    fn new(
        yogi: bool,
        lr: f32,
        beta_1: f32,
        beta_2: f32,
        tau: f32,
    ) -> Result<Self, FederatedError> {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(setting("server_lr", lr, "a finite rate > 0"));
        }
        if !(0.0..1.0).contains(&beta_1) || !(0.0..1.0).contains(&beta_2) {
            return Err(setting(
                "beta_1, beta_2",
                format!("{beta_1}, {beta_2}"),
                "both in [0, 1)",
            ));
        }
        if !(tau > 0.0 && tau.is_finite()) {
            return Err(setting("tau", tau, "a finite adaptivity > 0"));
        }
        Ok(Self {
            yogi,
            lr,
            beta_1,
            beta_2,
            tau,
            m: Vec::new(),
            v: Vec::new(),
        })
    }
}

impl Strategy for FedAdaptive {
    fn name(&self) -> String {
        if self.yogi { "fedyogi" } else { "fedadam" }.into()
    }

    fn aggregate(
        &mut self,
        global: &[f32],
        updates: &[ClientUpdate],
        _rng: &mut StdRng,
    ) -> Result<Vec<f32>, FederatedError> {
        check_updates(global, updates)?;
        let delta = weighted_mean(updates);
        if self.m.len() != global.len() {
            // Reddi et al. start v at τ², m at 0.
            self.m = vec![0.0; global.len()];
            self.v = vec![self.tau * self.tau; global.len()];
        }
        let (b1, b2) = (self.beta_1, self.beta_2);
        let mut out = Vec::with_capacity(global.len());
        for i in 0..global.len() {
            let d = delta[i];
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * d;
            let d2 = d * d;
            self.v[i] = if self.yogi {
                self.v[i] - (1.0 - b2) * d2 * (self.v[i] - d2).signum()
            } else {
                b2 * self.v[i] + (1.0 - b2) * d2
            };
            out.push(global[i] + self.lr * self.m[i] / (self.v[i].sqrt() + self.tau));
        }
        Ok(out)
    }
}

/// `global` plus, for every coordinate, `reduce` of the updates' values there, sorted in ascending order.
fn coordinate_wise(
    global: &[f32],
    updates: &[ClientUpdate],
    reduce: impl Fn(&[f32]) -> f32,
) -> Vec<f32> {
    let mut column = vec![0.0f32; updates.len()];
    (0..global.len())
        .map(|i| {
            for (c, u) in column.iter_mut().zip(updates) {
                *c = u.delta[i];
            }
            column.sort_unstable_by(f32::total_cmp);
            global[i] + reduce(&column)
        })
        .collect()
}

/// Coordinate-wise median of the updates (Yin et al. 2018), unweighted: robust to a minority of clients
/// sending arbitrary values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Median;

impl Strategy for Median {
    fn name(&self) -> String {
        "median".into()
    }

    fn aggregate(
        &mut self,
        global: &[f32],
        updates: &[ClientUpdate],
        _rng: &mut StdRng,
    ) -> Result<Vec<f32>, FederatedError> {
        check_updates(global, updates)?;
        Ok(coordinate_wise(global, updates, |column| {
            let k = column.len();
            if k % 2 == 1 {
                column[k / 2]
            } else {
                0.5 * (column[k / 2 - 1] + column[k / 2])
            }
        }))
    }
}

/// Coordinate-wise trimmed mean (Yin et al. 2018): per coordinate, the `trim` share of the updates with
/// the largest and as many with the smallest values are dropped, the rest averaged (unweighted).
#[derive(Debug, Clone, Copy)]
pub struct TrimmedMean {
    trim: f64,
}

impl TrimmedMean {
    /// Drops `trim` ∈ [0, 0.5) of the updates at each end of every coordinate.
    pub fn new(trim: f64) -> Result<Self, FederatedError> {
        if !(0.0..0.5).contains(&trim) {
            return Err(setting("trim", trim, "a share in [0, 0.5)"));
        }
        Ok(Self { trim })
    }
}

impl Strategy for TrimmedMean {
    fn name(&self) -> String {
        format!("trimmed_mean_{}", self.trim)
    }

    fn aggregate(
        &mut self,
        global: &[f32],
        updates: &[ClientUpdate],
        _rng: &mut StdRng,
    ) -> Result<Vec<f32>, FederatedError> {
        check_updates(global, updates)?;
        let k = updates.len();
        let cut = (self.trim * k as f64).floor() as usize;
        let kept = (k - 2 * cut) as f64;
        Ok(coordinate_wise(global, updates, |column| {
            let sum: f64 = column[cut..k - cut].iter().map(|&v| f64::from(v)).sum();
            (sum / kept) as f32
        }))
    }
}

/// DP-FedAvg (McMahan et al. 2018, user-level differential privacy), wrapping any strategy: each client's
/// update is clipped to L2 norm `clip`; the clipped updates are summed, N(0, (z·clip)²) noise is added to
/// every coordinate, and the sum is divided by the expected number of clients a round (the fixed
/// denominator `q·K` of their estimator, so one client's influence is bounded by `clip / (qK)`); the
/// inner strategy then applies that noised mean as the round's one update. The accountant composes the
/// sampled Gaussian mechanism with sampling rate `q` (the client fraction) once per round; as in McMahan
/// et al. the clients are taken to be Poisson-sampled, while the simulation samples a fixed number.
pub struct DpFedAvg<S> {
    inner: S,
    clip: f32,
    noise_multiplier: f64,
    sampling_rate: f64,
    expected_clients: f64,
    delta: f64,
    accountant: RdpAccountant,
    epsilon: f64,
}

impl<S: Strategy> DpFedAvg<S> {
    /// Wraps `inner`: updates clipped to `clip`, noise multiplier `z`, `clients_per_round` expected of
    /// `clients` in all, ε reported at `delta`.
    pub fn new(
        inner: S,
        clip: f32,
        noise_multiplier: f64,
        clients_per_round: usize,
        clients: usize,
        delta: f64,
    ) -> Result<Self, FederatedError> {
        if !(clip > 0.0 && clip.is_finite()) {
            return Err(setting("clip", clip, "a finite norm > 0"));
        }
        if !(noise_multiplier >= 0.0 && noise_multiplier.is_finite()) {
            return Err(setting(
                "noise_multiplier",
                noise_multiplier,
                "finite and ≥ 0",
            ));
        }
        if clients_per_round == 0 || clients_per_round > clients {
            return Err(setting(
                "clients_per_round",
                clients_per_round,
                format!("between 1 and the {clients} clients"),
            ));
        }
        if !(delta > 0.0 && delta < 1.0) {
            return Err(setting("delta", delta, "in (0, 1)"));
        }
        Ok(Self {
            inner,
            clip,
            noise_multiplier,
            sampling_rate: clients_per_round as f64 / clients as f64,
            expected_clients: clients_per_round as f64,
            delta,
            accountant: RdpAccountant::new(),
            epsilon: 0.0,
        })
    }
}

impl<S: Strategy> Strategy for DpFedAvg<S> {
    fn name(&self) -> String {
        format!("dp_{}", self.inner.name())
    }

    fn aggregate(
        &mut self,
        global: &[f32],
        updates: &[ClientUpdate],
        rng: &mut StdRng,
    ) -> Result<Vec<f32>, FederatedError> {
        check_updates(global, updates)?;
        let mut sum = vec![0.0f64; global.len()];
        for u in updates {
            let norm = u
                .delta
                .iter()
                .map(|&d| f64::from(d) * f64::from(d))
                .sum::<f64>()
                .sqrt();
            let factor = (f64::from(self.clip) / norm.max(1e-12)).min(1.0);
            for (s, &d) in sum.iter_mut().zip(&u.delta) {
                *s += factor * f64::from(d);
            }
        }
        let std = self.noise_multiplier * f64::from(self.clip);
        let noise = (std > 0.0)
            .then(|| Normal::new(0.0, std))
            .transpose()
            .map_err(|e| setting("noise_multiplier", self.noise_multiplier, e.to_string()))?;
        let mean: Vec<f32> = sum
            .into_iter()
            .map(|s| {
                let noisy = s + noise.map_or(0.0, |n| n.sample(rng));
                (noisy / self.expected_clients) as f32
            })
            .collect();
        self.accountant
            .compose_poisson_gaussian(self.sampling_rate, self.noise_multiplier, 1)?;
        self.epsilon = self.accountant.epsilon(self.delta)?.0;
        let noised = ClientUpdate {
            client: usize::MAX,
            examples: 1,
            delta: mean,
        };
        self.inner.aggregate(global, &[noised], rng)
    }

    fn privacy(&self) -> Option<(f64, f64)> {
        Some((self.epsilon, self.delta))
    }
}
