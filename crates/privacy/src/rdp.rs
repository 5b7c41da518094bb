//! The Rényi-DP accountant of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar & Zhang 2019,
//! "Rényi Differential Privacy of the Sampled Gaussian Mechanism", §3.3), written as `dp-accounting`
//! computes it: log A_α by the binomial sum for integer orders and by the two erfc-weighted series for
//! fractional ones, RDP = steps · log A_α / (α − 1), and ε from the conversion of Balle et al. (2020,
//! Proposition 12): ε = min over α of RDP(α) + log(1 − 1/α) − log(δ·α)/(α − 1).
//!
//! Written by hand: no maintained Rust crate implements an RDP accountant.

use crate::PrivacyError;

/// `dp-accounting`'s default orders: 1.1, 1.2, …, 10.9, then 11, 12, …, 63, and 128, 256, 512, 1024.
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
    orders.extend((11..64).map(f64::from));
    orders.extend([128.0, 256.0, 512.0, 1024.0]);
    orders
}

/// Privacy spent so far, as RDP at a fixed set of orders.
#[derive(Debug, Clone, PartialEq)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self::new()
    }
}

impl RdpAccountant {
    /// An accountant at [`default_orders`] that has spent nothing.
    pub fn new() -> Self {
        let orders = default_orders();
        let rdp = vec![0.0; orders.len()];
        Self { orders, rdp }
    }

    /// An accountant at the given orders (each finite and above 1).
    pub fn with_orders(orders: Vec<f64>) -> Result<Self, PrivacyError> {
        if let Some(&bad) = orders.iter().find(|a| !(a.is_finite() && **a > 1.0)) {
            return Err(PrivacyError::Order(bad));
        }
        let rdp = vec![0.0; orders.len()];
        Ok(Self { orders, rdp })
    }

    /// Accounts for `steps` steps of the Gaussian mechanism with noise `noise_multiplier` × sensitivity,
    /// applied to a Poisson sample of each record with probability `sampling_rate`.
    pub fn compose_poisson_gaussian(
        &mut self,
        sampling_rate: f64,
        noise_multiplier: f64,
        steps: u64,
    ) -> Result<(), PrivacyError> {
        if !(0.0..=1.0).contains(&sampling_rate) {
            return Err(PrivacyError::SamplingRate(sampling_rate));
        }
        if !(noise_multiplier.is_finite() && noise_multiplier >= 0.0) {
            return Err(PrivacyError::NoiseMultiplier(noise_multiplier));
        }
        for (rdp, &alpha) in self.rdp.iter_mut().zip(&self.orders) {
            *rdp += steps as f64 * poisson_gaussian_rdp(sampling_rate, noise_multiplier, alpha);
        }
        Ok(())
    }

    /// The smallest ε over the orders such that what was spent is (ε, δ)-DP, with the order that gives it.
    pub fn epsilon(&self, delta: f64) -> Result<(f64, f64), PrivacyError> {
        if !(delta > 0.0 && delta < 1.0) {
            return Err(PrivacyError::Delta(delta));
        }
        let mut best = (
            f64::INFINITY,
            self.orders.first().copied().unwrap_or(f64::NAN),
        );
        for (&alpha, &r) in self.orders.iter().zip(&self.rdp) {
            let epsilon = if r < 0.0 || delta * delta + (-r).exp_m1() > 0.0 {
                // Bounded through the KL divergence: δ ≤ sqrt(1 − exp(−KL)).
                0.0
            } else if alpha > 1.01 {
                r + (-1.0 / alpha).ln_1p() - (delta * alpha).ln() / (alpha - 1.0)
            } else {
                f64::INFINITY
            };
            if epsilon < best.0 {
                best = (epsilon, alpha);
            }
        }
        Ok((best.0.max(0.0), best.1))
    }
}

/// RDP at order `alpha` of one step of the Poisson-subsampled Gaussian mechanism.
fn poisson_gaussian_rdp(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        0.0
    } else if sigma == 0.0 {
        f64::INFINITY
    } else if q == 1.0 {
        alpha / (2.0 * sigma * sigma)
    } else if alpha.fract() == 0.0 {
        log_a_int(q, sigma, alpha as u64) / (alpha - 1.0)
    } else {
        log_a_frac(q, sigma, alpha) / (alpha - 1.0)
    }
}

/// log(e^x + e^y).
fn log_add(x: f64, y: f64) -> f64 {
    let (a, b) = if x < y { (x, y) } else { (y, x) };
    if a == f64::NEG_INFINITY {
        b
    } else {
        (a - b).exp().ln_1p() + b
    }
}

/// log C(n, k) for real n and k, through log Γ.
fn log_comb(n: f64, k: f64) -> f64 {
    libm::lgamma(n + 1.0) - libm::lgamma(k + 1.0) - libm::lgamma(n - k + 1.0)
}

/// log A_α for integer α (0 < q < 1): log Σ_i C(α, i) q^i (1 − q)^(α−i) exp((i² − i) / 2σ²).
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let (log_q, log_1mq) = (q.ln(), (-q).ln_1p());
    (0..=alpha).fold(f64::NEG_INFINITY, |log_a, i| {
        let i = i as f64;
        let a = alpha as f64;
        let s =
            log_comb(a, i) + i * log_q + (a - i) * log_1mq + (i * i - i) / (2.0 * sigma * sigma);
        log_add(log_a, s)
    })
}

/// Terms of the fractional series before it is given up on (`dp-accounting`'s bound).
const MAX_FRACTIONAL_TERMS: usize = 1000;

/// log A_α for fractional α (0 < q < 1): the integrals over (−∞, z₀] and [z₀, ∞) as two series.
/// An order whose series does not converge is excluded (infinite), as `dp-accounting` does.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let (log_q, log_1mq) = (q.ln(), (-q).ln_1p());
    let (mut last_s0, mut last_s1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let root2_sigma = std::f64::consts::SQRT_2 * sigma;
    for i in 0..MAX_FRACTIONAL_TERMS {
        let i = i as f64;
        let log_coef = log_comb(alpha, i);
        let j = alpha - i;
        let log_t0 = log_coef + i * log_q + j * log_1mq;
        let log_t1 = log_coef + j * log_q + i * log_1mq;
        let log_e0 = 0.5f64.ln() + log_erfc((i - z0) / root2_sigma);
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / root2_sigma);
        let log_s0 = log_t0 + (i * i - i) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        log_a0 = log_add(log_a0, log_s0);
        log_a1 = log_add(log_a1, log_s1);
        let total = log_add(log_a0, log_a1);
        if log_s0 < last_s0 && log_s1 < last_s1 && log_s0.max(log_s1) < total - 30.0 {
            return total;
        }
        last_s0 = log_s0;
        last_s1 = log_s1;
    }
    f64::INFINITY
}

/// log erfc(x), accurate far in the tail (where erfc underflows) through its asymptotic series.
fn log_erfc(x: f64) -> f64 {
    let r = libm::erfc(x);
    if r > 1e-300 {
        return r.ln();
    }
    // erfc(x) ~ exp(−x² − 0.5/x² + 0.625/x⁴ − …) / (x √π) (dp-accounting's Laurent series).
    -std::f64::consts::PI.ln() / 2.0 - x.ln() - x * x - 0.5 / (x * x) + 0.625 / x.powi(4)
        - 37.0 / 24.0 / x.powi(6)
        + 353.0 / 64.0 / x.powi(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_full_batch_step_is_the_gaussian_mechanism() {
        // q = 1: RDP(α) = α / 2σ², so ε(δ) has a closed form at each order.
        let mut a = RdpAccountant::with_orders(vec![2.0, 8.0, 32.0]).unwrap();
        a.compose_poisson_gaussian(1.0, 2.0, 3).unwrap();
        let (eps, order) = a.epsilon(1e-5).unwrap();
        let at = |alpha: f64| {
            3.0 * alpha / 8.0 + (-1.0 / alpha).ln_1p() - (1e-5 * alpha).ln() / (alpha - 1.0)
        };
        let expected = [2.0, 8.0, 32.0]
            .map(at)
            .into_iter()
            .fold(f64::INFINITY, f64::min);
        assert!((eps - expected).abs() < 1e-12, "{eps} against {expected}");
        assert_eq!(order, 8.0);
    }

    #[test]
    fn integer_and_fractional_series_agree_where_they_meet() {
        // The fractional series at α = 5 ± 1e-9 tends to the binomial sum at 5.
        for (q, sigma) in [(0.01, 1.1), (0.1, 2.0), (0.004, 4.0)] {
            let int = log_a_int(q, sigma, 5);
            let frac = log_a_frac(q, sigma, 5.0 + 1e-9);
            assert!(
                (int - frac).abs() < 1e-6 * int.abs().max(1e-12),
                "{int} against {frac}"
            );
        }
    }

    #[test]
    fn nothing_spent_is_zero_and_bad_arguments_are_errors() {
        let mut a = RdpAccountant::new();
        assert_eq!(a.epsilon(1e-5).unwrap().0, 0.0);
        a.compose_poisson_gaussian(0.0, 1.0, 1000).unwrap();
        assert_eq!(a.epsilon(1e-5).unwrap().0, 0.0);
        assert_eq!(
            a.compose_poisson_gaussian(1.5, 1.0, 1),
            Err(PrivacyError::SamplingRate(1.5))
        );
        assert_eq!(
            a.compose_poisson_gaussian(0.1, -1.0, 1),
            Err(PrivacyError::NoiseMultiplier(-1.0))
        );
        assert_eq!(a.epsilon(0.0), Err(PrivacyError::Delta(0.0)));
        assert!(RdpAccountant::with_orders(vec![0.5]).is_err());
        // No noise: no privacy at all.
        a.compose_poisson_gaussian(0.1, 0.0, 1).unwrap();
        assert_eq!(a.epsilon(1e-5).unwrap().0, f64::INFINITY);
    }
}
