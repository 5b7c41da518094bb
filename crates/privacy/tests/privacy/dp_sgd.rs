//! DP-SGD on the MLP: ghost norms equal each example's own gradient norm; with σ = 0 and no clipping a step
//! is burn's SGD step on the mean loss; clipping bounds what each example moves the weights; the same seed
//! gives the same model; bad settings are errors.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::log_softmax;
use kiln_models::{Mlp, MlpConfig};
use kiln_privacy::{DpSgd, per_example_gradient_norms};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn setup(seed: u64) -> (Device, Mlp, Tensor<2>, Tensor<1, Int>) {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let model = MlpConfig::new(12, vec![7, 5], 4).init(&device).unwrap();
    let x = Tensor::<2>::random([6, 12], Distribution::Normal(0.0, 1.0), &device);
    let labels =
        Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3, 1, 0], [6]), &device);
    (device, model, x, labels)
}

fn mean_loss(model: &Mlp, x: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let n = x.dims()[0];
    (-log_softmax(model.forward(x), 1).gather(1, labels.reshape([n, 1]))).mean()
}

/// Every float parameter, flattened.
fn weights(model: &Mlp) -> Vec<f32> {
    struct All(Vec<f32>);
    impl ModuleVisitor for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0
                .extend(p.val().inner().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut all = All(Vec::new());
    model.visit(&mut all);
    all.0
}

/// The squared norm of every parameter's gradient in `grads`.
fn gradient_norm(model: &Mlp, grads: &burn::tensor::Gradients) -> f32 {
    struct Norm<'a>(&'a burn::tensor::Gradients, f32);
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = p.val().grad(self.0) {
                self.1 += g.powi_scalar(2).sum().into_scalar::<f32>();
            }
        }
    }
    let mut n = Norm(grads, 0.0);
    model.visit(&mut n);
    n.1.sqrt()
}

#[test]
fn ghost_norms_equal_each_examples_own_gradient_norm() {
    let (_, model, x, labels) = setup(1);
    let ghost = per_example_gradient_norms(&model, x.clone(), labels.clone()).unwrap();
    for (i, g) in ghost.iter().enumerate() {
        let xi = x.clone().slice([i..i + 1, 0..12]);
        let li = labels.clone().slice(i..i + 1);
        let grads = mean_loss(&model, xi, li).backward();
        let own = gradient_norm(&model, &grads);
        assert!(
            (g - own).abs() <= 1e-5 * own.max(1.0),
            "example {i}: ghost {g}, own {own}"
        );
    }
}

#[test]
fn without_noise_or_clipping_a_step_is_sgd_on_the_mean_loss() {
    let (_, model, x, labels) = setup(2);
    let dp = DpSgd {
        clip_norm: 1e9,
        noise_multiplier: 0.0,
        lr: 0.1,
    };
    let (stepped, report) = dp
        .step(model.clone(), x.clone(), labels.clone(), 6.0, &mut rng(0))
        .unwrap();
    assert_eq!(report.clipped, 0);
    let mut sgd = SgdConfig::new().init();
    let grads = GradientsParams::from_grads(mean_loss(&model, x, labels).backward(), &model);
    let reference = sgd.step(0.1, model.clone(), grads);
    let (a, b) = (weights(&stepped), weights(&reference));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-6,
        "DP-SGD without noise differs from SGD by {worst}"
    );
    assert_ne!(a, weights(&model), "the step moved the weights");
}

#[test]
fn clipping_bounds_each_examples_pull() {
    let (_, model, x, labels) = setup(3);
    let (clip, lr) = (0.05f32, 1.0f32);
    let dp = DpSgd {
        clip_norm: clip,
        noise_multiplier: 0.0,
        lr,
    };
    let (stepped, report) = dp.step(model.clone(), x, labels, 6.0, &mut rng(0)).unwrap();
    assert!(report.norms.iter().all(|n| *n > clip), "{:?}", report.norms);
    assert_eq!(report.clipped, 6);
    // ‖Δθ‖ = lr · ‖Σ cᵢgᵢ‖ / 6 ≤ lr · 6 · C / 6.
    let moved = weights(&stepped)
        .iter()
        .zip(weights(&model))
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f32>()
        .sqrt();
    assert!(
        moved <= lr * clip * 1.0001,
        "moved {moved}, bound {}",
        lr * clip
    );
    assert!(moved > 0.0);
}

#[test]
fn the_same_seed_gives_the_same_noisy_model() {
    let dp = DpSgd {
        clip_norm: 1.0,
        noise_multiplier: 1.1,
        lr: 0.1,
    };
    let (_, model, x, labels) = setup(4);
    let run = |seed: u64| {
        let (model, x, labels) = (model.clone(), x.clone(), labels.clone());
        weights(&dp.step(model, x, labels, 6.0, &mut rng(seed)).unwrap().0)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn dropout_and_bad_settings_are_errors() {
    let device = Device::flex().autodiff();
    let model = MlpConfig::new(12, vec![7], 4)
        .with_dropout(0.5)
        .init(&device)
        .unwrap();
    let x = Tensor::<2>::zeros([2, 12], &device);
    let labels = Tensor::<1, Int>::zeros([2], &device);
    let dp = DpSgd {
        clip_norm: 1.0,
        noise_multiplier: 1.0,
        lr: 0.1,
    };
    let err = dp
        .step(model, x.clone(), labels.clone(), 2.0, &mut rng(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dropout 0.5"), "{err}");
    let model = MlpConfig::new(12, vec![7], 4).init(&device).unwrap();
    let err = DpSgd {
        clip_norm: 0.0,
        ..dp
    }
    .step(model, x, labels, 2.0, &mut rng(0))
    .unwrap_err()
    .to_string();
    assert!(err.contains("clip_norm > 0"), "{err}");
}
