//! `cargo xtask bench`: training throughput of MLPs on real MNIST batches, per CPU backend.
//!
//! A hand-written loop (forward, cross-entropy, backward, Adam step) over batches prepared in advance, so
//! that it times the same work as `scripts/bench_pytorch.py` does for PyTorch.

use burn::data::dataloader::batcher::Batcher;
use burn::optim::{AdamConfig, GradientsParams};
use kiln::data::{ImageBatch, ImageBatcher, ImageFolder, PixelNormalizer};
use kiln::models::MlpConfig;
use kiln::train::{DeviceChoice, Supervised};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// One measured workload.
#[derive(Debug, Serialize)]
struct Figure {
    device: String,
    network: String,
    batch: usize,
    steps: usize,
    samples_per_second: f64,
    ms_per_step: f64,
}

/// The networks measured: the one PyTorch's figures in the notes use, and train-all's MLP.
const NETWORKS: [&[usize]; 2] = [&[256, 128], &[512, 256]];
const WARMUP_STEPS: usize = 20;
const DISTINCT_BATCHES: usize = 50;

pub fn run(devices: &[DeviceChoice], batch: usize, steps: usize, out: &Path) -> anyhow::Result<()> {
    let mnist = ImageFolder::mnist()?;
    let items: Vec<_> = (0..DISTINCT_BATCHES * batch)
        .map(|i| burn::data::dataset::Dataset::get(&mnist.train, i))
        .collect::<Result<_, _>>()?;
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&mnist.train.take(10_000)), 28, 28);
    let mut figures = Vec::new();
    for &choice in devices {
        let device = choice.device().autodiff();
        let batches: Vec<ImageBatch> = items
            .chunks(batch)
            .map(|c| batcher.batch(c.to_vec(), &device))
            .collect();
        for hidden in NETWORKS {
            device.seed(0);
            let mut model = MlpConfig::new(784, hidden.to_vec(), 10).init(&device)?;
            let mut optim = AdamConfig::new().init();
            let mut run_steps = |n: usize, model: &mut kiln::models::Mlp| {
                let mut last = None;
                for i in 0..n {
                    let out = model.forward_step(batches[i % batches.len()].clone());
                    let grads = GradientsParams::from_grads(out.loss.backward(), &*model);
                    *model = optim.step(1e-3, model.clone(), grads);
                    last = Some(out.loss);
                }
                // Reading the last loss waits for every queued operation to finish.
                last.map(|l| l.into_scalar::<f32>())
            };
            run_steps(WARMUP_STEPS, &mut model);
            let started = Instant::now();
            let loss = run_steps(steps, &mut model);
            let seconds = started.elapsed().as_secs_f64();
            let network = format!(
                "784-{}-10",
                hidden
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join("-")
            );
            let fig = Figure {
                device: choice.to_string(),
                network,
                batch,
                steps,
                samples_per_second: (steps * batch) as f64 / seconds,
                ms_per_step: 1000.0 * seconds / steps as f64,
            };
            println!(
                "{:<8} MLP {:<14} batch {:>4}: {:>9.0} samples/s ({:.2} ms/step, final loss {:.3})",
                fig.device,
                fig.network,
                batch,
                fig.samples_per_second,
                fig.ms_per_step,
                loss.unwrap_or(f32::NAN)
            );
            figures.push(fig);
        }
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&figures)? + "\n")?;
    println!("wrote {}", out.display());
    Ok(())
}
