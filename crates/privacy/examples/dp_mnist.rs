//! DP-SGD on MNIST in Abadi et al.'s (2016) setting: lots Poisson-sampled with q = 600 / N, every
//! example's gradient clipped to C (4 by default), noise σ·C, SGD, an MLP with 1,000 hidden units — on a 60-dimensional
//! differentially private PCA of the pixels (as the paper) or, with `pca = 0`, on the normalised pixels.
//! After every epoch: the accuracy on a validation split (5,000 training images held out, seeded) and ε at
//! δ = 1e-5 from the RDP accountant (PCA and SGD composed); the test accuracy once, at the end — so
//! settings are chosen on validation data.
//!
//! `cargo run --release -p kiln-privacy --example dp_mnist -- [epochs] [sigma] [lr] [pca] [pca_sigma] [clip]`
//! (defaults 20, 4.0, 0.05, 60, 16.0, 4.0).

use burn::prelude::*;
use kiln_data::{ImageFolder, train_valid_split};
use kiln_models::MlpConfig;
use kiln_privacy::{DpSgd, DpTraining, Features, RdpAccountant, accuracy, dp_pca, train_dp_sgd};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Times a DP-SGD step (two passes, clipping, noise) against a plain SGD step on the same lot of 600
/// (interleaved, medians of 10) and prints both.
fn step_cost(
    model: &kiln_models::Mlp,
    train: &Features,
    dp: &DpSgd,
) -> Result<(), Box<dyn std::error::Error>> {
    use burn::optim::{GradientsParams, SgdConfig};
    use burn::tensor::activation::log_softmax;
    use std::time::Instant;
    let device = model.output.weight.val().device();
    let lot: Vec<usize> = (0..600).collect();
    let (x, y) = train.batch(&lot, &device);
    let mut rng = StdRng::seed_from_u64(3);
    let mut sgd = SgdConfig::new().init();
    let (mut dp_ms, mut sgd_ms) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let started = Instant::now();
        let (stepped, _) = dp.step(model.clone(), x.clone(), y.clone(), 600.0, &mut rng)?;
        let _ = stepped.output.weight.val().into_data();
        dp_ms.push(1e3 * started.elapsed().as_secs_f64());
        let started = Instant::now();
        let loss = -log_softmax(model.forward(x.clone()), 1)
            .gather(1, y.clone().reshape([600, 1]))
            .mean();
        let grads = GradientsParams::from_grads(loss.backward(), model);
        let stepped = sgd.step(f64::from(dp.lr), model.clone(), grads);
        let _ = stepped.output.weight.val().into_data();
        sgd_ms.push(1e3 * started.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, s) = (median(&mut dp_ms), median(&mut sgd_ms));
    println!(
        "step on a lot of 600: DP-SGD {d:.1} ms, SGD {s:.1} ms ({:.2}×)",
        d / s
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let epochs: usize = args.first().map_or(Ok(20), |a| a.parse())?;
    let sigma: f32 = args.get(1).map_or(Ok(4.0), |a| a.parse())?;
    let lr: f32 = args.get(2).map_or(Ok(0.05), |a| a.parse())?;
    let pca: usize = args.get(3).map_or(Ok(60), |a| a.parse())?;
    let pca_sigma: f64 = args.get(4).map_or(Ok(16.0), |a| a.parse())?;
    let clip: f32 = args.get(5).map_or(Ok(4.0), |a| a.parse())?;
    let delta = 1e-5;
    let folder = ImageFolder::mnist()?;
    let split = train_valid_split(folder.train.len(), 1.0 / 12.0, 42)?;
    let mut train = Features::from_images(&folder.train, &split.train)?;
    let mut valid = Features::from_images(&folder.train, &split.valid)?;
    let all: Vec<usize> = (0..folder.test.len()).collect();
    let mut test = Features::from_images(&folder.test, &all)?;
    let plain = Device::flex();
    let mut accountant = RdpAccountant::new();
    let mut rng = StdRng::seed_from_u64(7);
    if pca > 0 {
        let projection = dp_pca(&train, pca, pca_sigma, &mut accountant, &mut rng, &plain)?;
        println!(
            "private PCA to {pca} dimensions (noise σ = {pca_sigma}): ε = {:.3} alone",
            accountant.epsilon(delta)?.0
        );
        // Projections of unit-norm images are small: a fixed scale (50, chosen on validation accuracy
        // against 1 and 20) lets the clip norm bind.
        train = projection.apply(&train, &plain)?.scaled(50.0);
        valid = projection.apply(&valid, &plain)?.scaled(50.0);
        test = projection.apply(&test, &plain)?.scaled(50.0);
    }
    let device = Device::flex().autodiff();
    device.seed(1);
    let model = MlpConfig::new(train.dim, vec![1000], 10).init(&device)?;
    let config = DpTraining {
        epochs,
        lot: 600,
        step: DpSgd {
            clip_norm: clip,
            noise_multiplier: sigma,
            lr,
        },
        delta,
        seed: 1,
    };
    step_cost(&model, &train, &config.step)?;
    let (model, _) = train_dp_sgd(model, &train, &valid, &config, &mut accountant, |e| {
        println!(
            "epoch {}: validation accuracy {:.2}%, ε = {:.3} at δ = {delta}, {:.0}% of gradients clipped, {:.1} s",
            e.epoch,
            100.0 * e.validation_accuracy,
            e.epsilon,
            100.0 * e.clipped,
            e.seconds
        );
    })?;
    println!(
        "after {epochs} epochs: test accuracy {:.2}% at ε = {:.3} (δ = {delta}), σ = {sigma}, lr = {lr}, pca {pca}, C = {clip}",
        100.0 * accuracy(&model, &test)?,
        accountant.epsilon(delta)?.0
    );
    Ok(())
}
