//! burn's Adam and AdamW with each parameter's update as one pass over memory on flex.
//!
//! burn updates a parameter with about fifteen generic tensor ops (each a full pass and a fresh buffer); on
//! flex [`kiln_kernels::adam`] does the same arithmetic in one pass, in place. The state is burn's own
//! (`AdamState` / `AdamWState`), so checkpoints are interchangeable with burn's optimizers, and on every
//! other backend, dtype or device the step is burn's.

use burn::optim::{
    AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate,
    Optimizer,
};
use burn::prelude::*;
use kiln_kernels::adam::{AdamStep, Rule, adam_step};
use kiln_kernels::on_flex_f32;

/// burn's default ε for Adam and AdamW (PyTorch's is 1e-8); Kiln's optimizers have always used it.
const EPSILON: f32 = 1e-5;

/// The fused step's settings: the update rule (with its decay) and the moments' decays.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Kernel {
    rule: Rule,
    beta_1: f32,
    beta_2: f32,
}

impl Kernel {
    /// Whether the fused step applies: every tensor f32 on flex, and no AMSGrad maximum.
    fn applies<const D: usize>(
        tensor: &Tensor<D>,
        grad: &Tensor<D>,
        state: Option<&AdaptiveMomentumState<D>>,
    ) -> bool {
        let moments_on_flex = state.is_none_or(|s| {
            s.max_moment_2.is_none() && on_flex_f32(&s.moment_1) && on_flex_f32(&s.moment_2)
        });
        on_flex_f32(tensor) && on_flex_f32(grad) && moments_on_flex
    }

    /// The fused step. Takes every tensor by value, so that buffers nothing else holds are updated in place.
    fn fused<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdaptiveMomentumState<D>>,
    ) -> (Tensor<D>, AdaptiveMomentumState<D>) {
        let time = state.as_ref().map_or(0, |s| s.time) + 1;
        let moments = state.map(|s| (s.moment_1, s.moment_2));
        let step = AdamStep {
            rule: self.rule,
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: EPSILON,
            time,
        };
        let (param, moment_1, moment_2) = adam_step(tensor, grad, moments, step);
        (param, AdaptiveMomentumState::new(time, moment_1, moment_2))
    }
}

/// burn's `Adam` (coupled L2 decay, no AMSGrad), fused on flex.
#[derive(Clone)]
pub struct FusedAdam {
    kernel: Kernel,
    burn: burn::optim::Adam,
}

impl FusedAdam {
    /// Adam with burn's ε (1e-5) and these decays; `weight_decay` 0 means none.
    pub fn new(beta_1: f32, beta_2: f32, weight_decay: f32) -> Self {
        let config = AdamConfig::new()
            .with_epsilon(EPSILON)
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_weight_decay(
                (weight_decay != 0.0)
                    .then(|| burn::optim::decay::WeightDecayConfig::new(weight_decay)),
            );
        Self {
            kernel: Kernel {
                rule: Rule::Adam { weight_decay },
                beta_1,
                beta_2,
            },
            burn: config.build(),
        }
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        if !Kernel::applies(&tensor, &grad, state.as_ref().map(|s| &s.momentum)) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let momentum = state.map(|s| s.momentum);
        let (param, momentum) = self.kernel.fused(lr, tensor, grad, momentum);
        (param, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: AdamState<D>, device: &Device) -> AdamState<D> {
        <burn::optim::Adam as Optimizer>::to_device(state, device)
    }
}

/// burn's `AdamW` (decoupled decay, no AMSGrad, no cautious decay), fused on flex.
#[derive(Clone)]
pub struct FusedAdamW {
    kernel: Kernel,
    burn: AdamW,
}

impl FusedAdamW {
    /// AdamW with burn's ε (1e-5), these decays and decoupled weight decay.
    pub fn new(beta_1: f32, beta_2: f32, weight_decay: f32) -> Self {
        let config = AdamWConfig::new()
            .with_epsilon(EPSILON)
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_weight_decay(weight_decay);
        Self {
            kernel: Kernel {
                rule: Rule::AdamW { weight_decay },
                beta_1,
                beta_2,
            },
            burn: config.build(),
        }
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> (Tensor<D>, Option<AdamWState<D>>) {
        if !Kernel::applies(&tensor, &grad, state.as_ref().map(|s| &s.momentum)) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let momentum = state.map(|s| s.momentum);
        let (param, momentum) = self.kernel.fused(lr, tensor, grad, momentum);
        (param, Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(state: AdamWState<D>, device: &Device) -> AdamWState<D> {
        <AdamW as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, ModuleOptimizer};

    /// A few steps of `fused` and `reference` from the same start on flex; the weights stay equal.
    fn same_trajectory(fused: ModuleOptimizer, reference: ModuleOptimizer) {
        let device = Device::flex().autodiff();
        let start: Linear = LinearConfig::new(37, 19).init(&device);
        let x = Tensor::<2>::random([5, 37], burn::tensor::Distribution::Default, &device);
        let (mut fused, mut reference) = (fused, reference);
        let (mut a, mut b) = (start.clone(), start);
        for step in 0..4 {
            let lr = 1e-2 / (step + 1) as f64;
            let grads_a =
                GradientsParams::from_grads(a.forward(x.clone()).sin().sum().backward(), &a);
            let grads_b =
                GradientsParams::from_grads(b.forward(x.clone()).sin().sum().backward(), &b);
            a = fused.step(lr, a, grads_a);
            b = reference.step(lr, b, grads_b);
        }
        let (wa, wb) = (a.weight.val().into_data(), b.weight.val().into_data());
        wa.assert_approx_eq::<f32>(&wb, burn::tensor::Tolerance::absolute(1e-6));
    }

    #[test]
    fn fused_adam_follows_burns_adam() {
        same_trajectory(
            ModuleOptimizer::from(FusedAdam::new(0.9, 0.999, 0.0)),
            AdamConfig::new().init(),
        );
        same_trajectory(
            ModuleOptimizer::from(FusedAdam::new(0.8, 0.99, 0.05)),
            AdamConfig::new()
                .with_beta_1(0.8)
                .with_beta_2(0.99)
                .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(0.05)))
                .init(),
        );
    }

    #[test]
    fn fused_adamw_follows_burns_adamw() {
        same_trajectory(
            ModuleOptimizer::from(FusedAdamW::new(0.9, 0.98, 0.01)),
            AdamWConfig::new()
                .with_beta_2(0.98)
                .with_weight_decay(0.01)
                .init(),
        );
        same_trajectory(
            ModuleOptimizer::from(FusedAdamW::new(0.9, 0.999, 0.0)),
            AdamWConfig::new().with_weight_decay(0.0).init(),
        );
    }

    #[test]
    #[allow(deprecated)] // ndarray stands for any backend without the fused step
    fn the_fused_step_is_taken_on_flex_and_only_there() {
        let flex = Tensor::<2>::ones([3, 2], &Device::flex());
        assert!(Kernel::applies(&flex, &flex, None));
        let ndarray = Tensor::<2>::ones([3, 2], &Device::ndarray());
        assert!(!Kernel::applies(&ndarray, &ndarray, None));
        let mut amsgrad = AdaptiveMomentumState::new(1, flex.clone(), flex.clone());
        amsgrad.max_moment_2 = Some(flex.clone());
        assert!(!Kernel::applies(&flex, &flex, Some(&amsgrad)));
    }

    #[test]
    fn fused_state_resumes_in_burns_adam() {
        // A checkpoint of the fused optimizer loads into burn's and continues identically.
        let device = Device::flex().autodiff();
        let mut model: Linear = LinearConfig::new(8, 3).init(&device);
        let x = Tensor::<2>::ones([2, 8], &device);
        let grads =
            |m: &Linear| GradientsParams::from_grads(m.forward(x.clone()).sum().backward(), m);
        let mut fused = ModuleOptimizer::from(FusedAdam::new(0.9, 0.999, 0.0));
        for _ in 0..2 {
            let g = grads(&model);
            model = fused.step(1e-2, model, g);
        }
        let bytes = fused.into_bytes().expect("fused state serialises");
        let mut burn_adam = AdamConfig::new()
            .init()
            .from_bytes(bytes)
            .expect("burn reads it");
        let a = fused.step(1e-2, model.clone(), grads(&model));
        let b = burn_adam.step(1e-2, model.clone(), grads(&model));
        a.weight.val().into_data().assert_approx_eq::<f32>(
            &b.weight.val().into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
    }
}
