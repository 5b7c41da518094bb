//! Differential privacy for Kiln. [`DpSgd`] trains the MLP with DP-SGD (Abadi et al. 2016): per-example
//! gradients clipped (by ghost norms, see [`dp_sgd`]) and noised. [`RdpAccountant`] tracks the privacy spent by the Poisson-subsampled
//! Gaussian mechanism — each step of DP-SGD (Abadi et al. 2016) — in Rényi differential privacy (Mironov
//! 2017) and converts it to (ε, δ), with the orders, formulas and conversion of Google's `dp-accounting`
//! (`RdpAccountant`, add-or-remove-one neighbours), so that its ε is the one that library reports.
#![warn(missing_docs)]

pub mod dp_sgd;
pub mod pca;
mod rdp;
pub mod training;

pub use dp_sgd::{DpSgd, DpStep, per_example_gradient_norms};
pub use pca::{Projection, dp_pca};
pub use rdp::{RdpAccountant, default_orders};
pub use training::{DpEpoch, DpTraining, Features, accuracy, train_dp_sgd};

/// Arguments the accountant refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrivacyError {
    /// A sampling rate outside [0, 1].
    #[error("sampling rate {0}: it must lie in [0, 1]")]
    SamplingRate(f64),
    /// A negative or non-finite noise multiplier.
    #[error("noise multiplier {0}: it must be a finite number ≥ 0")]
    NoiseMultiplier(f64),
    /// A δ outside (0, 1).
    #[error("delta {0}: it must lie in (0, 1)")]
    Delta(f64),
    /// An order below 1 or not finite.
    #[error("Rényi order {0}: orders must be finite and above 1")]
    Order(f64),
    /// A model or setting DP-SGD cannot train with, or a read-back that failed.
    #[error("DP-SGD: {0}")]
    Model(String),
}
