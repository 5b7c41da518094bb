//! DP-SGD on MNIST, Abadi et al.'s (2016) setting without their PCA: an MLP 784-1000-10 on normalised
//! pixels, lots Poisson-sampled with q = 600 / 60,000, every example's gradient clipped to C = 4, noise σ·C,
//! SGD; after every epoch the accuracy on a validation split (5,000 training images held out, seeded) and ε
//! at δ = 1e-5 from the RDP accountant, and the test accuracy once, at the end — so settings are chosen on
//! validation data. It first times a DP-SGD step against a plain SGD step on the same lot (interleaved,
//! medians of 10).
//!
//! `cargo run --release -p kiln-privacy --example dp_mnist -- [epochs] [sigma] [lr]` (defaults 5, 4.0, 0.05).

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use kiln_data::{ImageBatcher, ImageFolder, PixelNormalizer, train_valid_split};
use kiln_models::{Mlp, MlpConfig};
use kiln_privacy::{DpSgd, RdpAccountant};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let epochs: usize = args.first().map_or(Ok(5), |a| a.parse())?;
    let sigma: f32 = args.get(1).map_or(Ok(4.0), |a| a.parse())?;
    let lr: f32 = args.get(2).map_or(Ok(0.05), |a| a.parse())?;
    let (lot, clip, delta) = (600usize, 4.0f32, 1e-5);
    let folder = ImageFolder::mnist()?;
    let split = train_valid_split(folder.train.len(), 1.0 / 12.0, 42)?;
    let train = folder.train.subset(&split.train);
    let valid_items: Vec<_> = split
        .valid
        .iter()
        .map(|&i| folder.train.get(i))
        .collect::<Result<_, _>>()?;
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);
    let device = Device::flex().autodiff();
    device.seed(1);
    let mut model = MlpConfig::new(784, vec![1000], 10).init(&device)?;
    let n = train.len();
    let q = lot as f64 / n as f64;
    let mut rng = StdRng::seed_from_u64(1);
    let batch =
        |indices: &[usize]| -> Result<(Tensor<2>, Tensor<1, Int>), Box<dyn std::error::Error>> {
            let items = indices
                .iter()
                .map(|&i| folder.train.get(i))
                .collect::<Result<Vec<_>, _>>()?;
            let b = batcher.batch(items, &device);
            let k = b.images.dims()[0];
            Ok((b.images.reshape([k, 784]), b.labels))
        };
    let dp = DpSgd {
        clip_norm: clip,
        noise_multiplier: sigma,
        lr,
    };
    // Cost of a step: DP-SGD (two passes, clipping, noise) against SGD on the same lot.
    let fixed: Vec<usize> = (0..lot).collect();
    let (x, y) = batch(&fixed)?;
    let (mut dp_times, mut sgd_times) = (Vec::new(), Vec::new());
    let mut sgd = SgdConfig::new().init();
    for _ in 0..10 {
        let started = Instant::now();
        let _ = dp.step(model.clone(), x.clone(), y.clone(), lot as f32, &mut rng)?;
        dp_times.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let loss = -log_softmax(model.forward(x.clone()), 1)
            .gather(1, y.clone().reshape([lot, 1]))
            .mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let stepped = sgd.step(f64::from(lr), model.clone(), grads);
        let _ = stepped.output.weight.val().into_data();
        sgd_times.push(started.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (dp_ms, sgd_ms) = (1e3 * median(&mut dp_times), 1e3 * median(&mut sgd_times));
    println!(
        "step on a lot of {lot}: DP-SGD {dp_ms:.1} ms, SGD {sgd_ms:.1} ms ({:.2}×)",
        dp_ms / sgd_ms
    );
    let mut accountant = RdpAccountant::new();
    let steps_per_epoch = n / lot;
    let test_items: Vec<_> = (0..folder.test.len())
        .map(|i| folder.test.get(i))
        .collect::<Result<_, _>>()?;
    for epoch in 1..=epochs {
        let started = Instant::now();
        let mut clipped = 0usize;
        let mut seen = 0usize;
        for _ in 0..steps_per_epoch {
            let chosen: Vec<usize> = (0..n).filter(|_| rng.random::<f64>() < q).collect();
            if chosen.is_empty() {
                continue;
            }
            let (x, y) = batch(&chosen)?;
            let (next, report) = dp.step(model, x, y, lot as f32, &mut rng)?;
            model = next;
            clipped += report.clipped;
            seen += chosen.len();
        }
        accountant.compose_poisson_gaussian(q, f64::from(sigma), steps_per_epoch as u64)?;
        let (epsilon, _) = accountant.epsilon(delta)?;
        let accuracy = accuracy_on(&model.valid(), &batcher, &valid_items);
        println!(
            "epoch {epoch}: validation accuracy {:.2}%, ε = {epsilon:.3} at δ = {delta}, {:.0}% of gradients clipped, {:.0} s",
            100.0 * accuracy,
            100.0 * clipped as f64 / seen.max(1) as f64,
            started.elapsed().as_secs_f64()
        );
    }
    let (epsilon, _) = accountant.epsilon(delta)?;
    println!(
        "after {epochs} epochs: test accuracy {:.2}% at ε = {epsilon:.3} (δ = {delta}), σ = {sigma}, lr = {lr}",
        100.0 * accuracy_on(&model.valid(), &batcher, &test_items)
    );
    Ok(())
}

fn accuracy_on(model: &Mlp, batcher: &ImageBatcher, items: &[kiln_data::ImageItem]) -> f64 {
    let device = model.output.weight.val().device();
    let mut right = 0usize;
    for chunk in items.chunks(1000) {
        let b = batcher.batch(chunk.to_vec(), &device);
        let k = b.images.dims()[0];
        let predicted = model
            .forward(b.images.reshape([k, 784]))
            .argmax(1)
            .reshape([k]);
        right += predicted.equal(b.labels).int().sum().into_scalar::<i64>() as usize;
    }
    right as f64 / items.len() as f64
}
