//! Optimizers and learning-rate schedules chosen by a serde config, built on burn's optimizers.

use crate::TrainError;
use crate::fused_adam::{FusedAdam, FusedAdamW};
use burn::grad_clipping::GradientClippingConfig;
use burn::lr_scheduler::LrScheduler;
use burn::lr_scheduler::LrSchedulerConfig;
use burn::lr_scheduler::constant::ConstantLr;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::exponential::ExponentialLrSchedulerConfig;
use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::lr_scheduler::sequential::SequentialLrSchedulerConfig;
use burn::lr_scheduler::step::StepLrSchedulerConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdaGradConfig, ModuleOptimizer, RmsPropConfig, SgdConfig};
use serde::{Deserialize, Serialize};

/// An optimizer and its settings (the learning rate lives in [`LrSchedule`]'s caller, `TrainingConfig`).
/// `weight_decay` is burn's decoupled-from-the-loss L2 decay; for penalties in the loss use
/// [`crate::Regularization`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// Full-batch gradient descent: plain SGD steps, each over the whole training split (the learner sets
    /// the batch size to the training-set size).
    FullBatchGd {
        /// L2 weight decay.
        #[serde(default)]
        weight_decay: f32,
    },
    /// Mini-batch SGD, with optional (Nesterov) momentum.
    Sgd {
        /// Momentum factor; 0 disables momentum.
        #[serde(default)]
        momentum: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
        /// L2 weight decay.
        #[serde(default)]
        weight_decay: f32,
    },
    /// AdaGrad.
    AdaGrad {
        /// L2 weight decay.
        #[serde(default)]
        weight_decay: f32,
    },
    /// RMSprop (PyTorch's defaults: alpha 0.99, no momentum).
    RmsProp {
        /// Smoothing constant.
        #[serde(default = "default_alpha")]
        alpha: f32,
        /// Momentum factor.
        #[serde(default)]
        momentum: f32,
        /// L2 weight decay.
        #[serde(default)]
        weight_decay: f32,
    },
    /// Adam.
    Adam {
        /// First-moment decay.
        #[serde(default = "default_beta1")]
        beta1: f32,
        /// Second-moment decay.
        #[serde(default = "default_beta2")]
        beta2: f32,
        /// L2 weight decay (coupled, as in PyTorch's `Adam`).
        #[serde(default)]
        weight_decay: f32,
    },
    /// AdamW (decoupled weight decay).
    AdamW {
        /// First-moment decay.
        #[serde(default = "default_beta1")]
        beta1: f32,
        /// Second-moment decay.
        #[serde(default = "default_beta2")]
        beta2: f32,
        /// Decoupled weight decay.
        #[serde(default = "default_adamw_decay")]
        weight_decay: f32,
    },
}

fn default_alpha() -> f32 {
    0.99
}
fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.999
}
fn default_adamw_decay() -> f32 {
    0.01
}

/// `optim` with each gradient clipped as `clip` says (as burn's configs' `init` do).
fn with_clipping(optim: ModuleOptimizer, clip: Option<GradientClippingConfig>) -> ModuleOptimizer {
    match clip {
        Some(clip) => optim.with_grad_clipping(clip.init()),
        None => optim,
    }
}

/// burn's optional weight-decay config from a coefficient (0 = none).
fn decay(weight_decay: f32) -> Option<WeightDecayConfig> {
    (weight_decay != 0.0).then(|| WeightDecayConfig::new(weight_decay))
}

impl OptimizerConfig {
    /// Adam with PyTorch's defaults.
    pub fn adam() -> Self {
        Self::Adam {
            beta1: default_beta1(),
            beta2: default_beta2(),
            weight_decay: 0.0,
        }
    }

    /// Whether every step sees the whole training split.
    pub fn is_full_batch(&self) -> bool {
        matches!(self, Self::FullBatchGd { .. })
    }

    /// Builds burn's optimizer, clipping each gradient to `clip_norm` when given.
    pub fn init(&self, clip_norm: Option<f32>) -> ModuleOptimizer {
        let clip = clip_norm.map(GradientClippingConfig::Norm);
        match *self {
            Self::FullBatchGd { weight_decay } => SgdConfig::new()
                .with_weight_decay(decay(weight_decay))
                .with_gradient_clipping(clip.clone())
                .init(),
            Self::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => SgdConfig::new()
                .with_weight_decay(decay(weight_decay))
                .with_momentum((momentum != 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0)
                        .with_nesterov(nesterov)
                }))
                .with_gradient_clipping(clip.clone())
                .init(),
            Self::AdaGrad { weight_decay } => AdaGradConfig::new()
                .with_weight_decay(decay(weight_decay))
                .with_grad_clipping(clip.clone())
                .init(),
            Self::RmsProp {
                alpha,
                momentum,
                weight_decay,
            } => RmsPropConfig::new()
                .with_alpha(alpha)
                .with_momentum(momentum)
                .with_weight_decay(decay(weight_decay))
                .with_grad_clipping(clip.clone())
                .init(),
            // burn's Adam and AdamW, with the update fused into one pass on flex (`fused_adam`).
            Self::Adam {
                beta1,
                beta2,
                weight_decay,
            } => with_clipping(
                ModuleOptimizer::from(FusedAdam::new(beta1, beta2, weight_decay)),
                clip,
            ),
            Self::AdamW {
                beta1,
                beta2,
                weight_decay,
            } => with_clipping(
                ModuleOptimizer::from(FusedAdamW::new(beta1, beta2, weight_decay)),
                clip,
            ),
        }
    }
}

/// How the learning rate evolves over training. Durations are in epochs; burn's schedulers step once per
/// iteration, so the learner converts them with the number of iterations per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Cosine annealing from the initial rate to `min_lr` over the whole run.
    Cosine {
        /// The final rate.
        #[serde(default)]
        min_lr: f64,
    },
    /// A linear warm-up from `lr / 100` to the rate over the first `warmup_fraction` of the iterations,
    /// then cosine annealing to `min_lr` over the rest (the usual Transformer schedule; burn's sequential
    /// scheduler of a linear and a cosine one).
    WarmupCosine {
        /// Share of all iterations spent warming up, in (0, 1).
        warmup_fraction: f64,
        /// The final rate.
        #[serde(default)]
        min_lr: f64,
    },
    /// Multiply the rate by `gamma` every `every_epochs` epochs.
    Step {
        /// Epochs between decays.
        every_epochs: usize,
        /// Decay factor.
        gamma: f64,
    },
    /// Multiply the rate by `gamma` after every epoch.
    Exponential {
        /// Decay factor per epoch.
        gamma: f64,
    },
}

impl LrSchedule {
    /// Builds burn's scheduler for a run of `epochs` epochs of `iters_per_epoch` iterations.
    pub fn init(
        &self,
        lr: f64,
        epochs: usize,
        iters_per_epoch: usize,
    ) -> Result<ModuleLrScheduler, TrainError> {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(TrainError::InvalidConfig(format!(
                "learning rate must be positive, got {lr}"
            )));
        }
        let iters_per_epoch = iters_per_epoch.max(1);
        let invalid = |e: String| TrainError::InvalidConfig(format!("{self:?}: {e}"));
        Ok(match *self {
            Self::Constant => boxed(ConstantLr::from(lr)),
            Self::Cosine { min_lr } => {
                CosineAnnealingLrSchedulerConfig::new(lr, (epochs * iters_per_epoch).max(1))
                    .with_min_lr(min_lr)
                    .init()
                    .map_err(invalid)?
            }
            Self::WarmupCosine {
                warmup_fraction,
                min_lr,
            } => {
                if !(warmup_fraction > 0.0 && warmup_fraction < 1.0) {
                    return Err(invalid(format!(
                        "warmup_fraction must lie in (0, 1), got {warmup_fraction}"
                    )));
                }
                let total = (epochs * iters_per_epoch).max(2);
                let warmup =
                    ((total as f64 * warmup_fraction).round() as usize).clamp(1, total - 1);
                SequentialLrSchedulerConfig::new(
                    vec![
                        LrSchedulerConfig::Linear(LinearLrSchedulerConfig::new(
                            lr / 100.0,
                            lr,
                            warmup,
                        )),
                        LrSchedulerConfig::Cosine(
                            CosineAnnealingLrSchedulerConfig::new(lr, total - warmup)
                                .with_min_lr(min_lr),
                        ),
                    ],
                    vec![warmup],
                )
                .init()
                .map_err(invalid)?
            }
            Self::Step {
                every_epochs,
                gamma,
            } => StepLrSchedulerConfig::new(lr, every_epochs.max(1) * iters_per_epoch)
                .with_gamma(gamma)
                .init()
                .map_err(invalid)?,
            Self::Exponential { gamma } => {
                // Per-iteration factor whose product over an epoch is `gamma`.
                let per_iter = gamma.powf(1.0 / iters_per_epoch as f64);
                ExponentialLrSchedulerConfig::new(lr, per_iter)
                    .init()
                    .map_err(invalid)?
            }
        })
    }
}

fn boxed<S: LrScheduler + 'static>(s: S) -> ModuleLrScheduler {
    s.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_optimizer_round_trips_through_json_and_builds() {
        let all = [
            OptimizerConfig::FullBatchGd { weight_decay: 0.0 },
            OptimizerConfig::Sgd {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-4,
            },
            OptimizerConfig::AdaGrad { weight_decay: 0.0 },
            OptimizerConfig::RmsProp {
                alpha: 0.99,
                momentum: 0.0,
                weight_decay: 0.0,
            },
            OptimizerConfig::adam(),
            OptimizerConfig::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                weight_decay: 0.01,
            },
        ];
        for o in all {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(
                serde_json::from_str::<OptimizerConfig>(&json).unwrap(),
                o,
                "{json}"
            );
            let _ = o.init(Some(1.0));
        }
        let parsed: OptimizerConfig = serde_json::from_str(r#"{"kind":"adam"}"#).unwrap();
        assert_eq!(parsed, OptimizerConfig::adam());
    }

    #[test]
    fn schedules_decay_and_reject_bad_rates() {
        let mut s = LrSchedule::Step {
            every_epochs: 1,
            gamma: 0.5,
        }
        .init(0.1, 4, 2)
        .unwrap();
        let lrs: Vec<f64> = (0..4).map(|_| s.step().base()).collect();
        assert!(
            (lrs[0] - 0.1).abs() < 1e-12 && (lrs[3] - 0.05).abs() < 1e-12,
            "{lrs:?}"
        );
        assert!(LrSchedule::Constant.init(-1.0, 1, 1).is_err());
        assert!(LrSchedule::Cosine { min_lr: 0.0 }.init(0.01, 3, 5).is_ok());
    }

    #[test]
    fn warmup_rises_to_the_rate_then_anneals() {
        let schedule = LrSchedule::WarmupCosine {
            warmup_fraction: 0.25,
            min_lr: 1e-4,
        };
        let mut s = schedule.init(0.01, 2, 10).unwrap();
        let lrs: Vec<f64> = (0..20).map(|_| s.step().base()).collect();
        assert!((lrs[0] - 1e-4).abs() < 1e-9, "{lrs:?}");
        assert!(lrs[..5].windows(2).all(|w| w[1] > w[0]), "{lrs:?}");
        let peak = lrs.iter().cloned().fold(0.0, f64::max);
        assert!((peak - 0.01).abs() < 1e-9, "{lrs:?}");
        assert!(lrs[5..].windows(2).all(|w| w[1] <= w[0]), "{lrs:?}");
        assert!(lrs[19] < 0.001, "{lrs:?}");
        let json = serde_json::to_string(&schedule).unwrap();
        assert_eq!(serde_json::from_str::<LrSchedule>(&json).unwrap(), schedule);
        let bad = LrSchedule::WarmupCosine {
            warmup_fraction: 1.5,
            min_lr: 0.0,
        };
        let err = bad.init(0.01, 2, 10).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("warmup_fraction")));
    }
}
