//! `cargo xtask bench`: training throughput of the MLPs, CNNs and recurrent classifiers on real MNIST batches
//! and of the Transformer language model on real Shakespeare windows, per CPU backend.
//!
//! A hand-written loop (forward, cross-entropy, backward, Adam step) over batches prepared in advance, so
//! that it times the same work as `scripts/bench_pytorch.py` does for PyTorch.

use anyhow::Context;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::train::ClassificationOutput;
use kiln::data::{
    ImageBatch, ImageBatcher, ImageFolder, PixelNormalizer, TokenBatch, TokenBatcher, TokenWindows,
};
use kiln::models::{CellKind, CnnConfig, MlpConfig, RecurrentConfig, SequenceClassifierConfig};
use kiln::recipes::{TRANSFORMER_CONTEXT, transformer_lm_config};
use kiln::train::{DeviceChoice, StepOutput, Supervised};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
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

/// A network measured.
#[derive(Clone, Copy)]
enum Network {
    /// An MLP with these hidden sizes.
    Mlp(&'static [usize]),
    /// The seeds' CNN (`false`) or LeNet-5 (`true`).
    Cnn(bool),
    /// A Kiln recurrent classifier, hidden 128, reading the 28 rows as steps (sequential MNIST).
    Recurrent(CellKind),
    /// The same LSTM classifier built on `burn::nn::Lstm`, for comparison.
    BurnLstm,
    /// train-all's Transformer character language model ([`transformer_lm_config`]) on Shakespeare windows
    /// of its context, in batches of [`LM_BATCH`].
    TransformerLm,
}

/// Windows per batch of the Transformer language model, as train-all trains it.
const LM_BATCH: usize = 8;

impl Network {
    fn name(self) -> String {
        match self {
            Self::Mlp(hidden) => format!(
                "MLP 784-{}-10",
                hidden
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join("-")
            ),
            Self::Cnn(false) => "CNN 32c3-64c3-128".into(),
            Self::Cnn(true) => "CNN LeNet-5".into(),
            Self::Recurrent(cell) => format!("{} 28x28 h128", cell.name().to_uppercase()),
            Self::BurnLstm => "burn::nn::Lstm 28x28 h128".into(),
            Self::TransformerLm => "Transformer LM d128 3L ctx128".into(),
        }
    }
}

/// The networks measured: the MLP PyTorch's figures in the notes use, train-all's MLP, the CNNs, the
/// recurrent classifiers and the Transformer language model.
const NETWORKS: [Network; 9] = [
    Network::Mlp(&[256, 128]),
    Network::Mlp(&[512, 256]),
    Network::Cnn(false),
    Network::Cnn(true),
    Network::Recurrent(CellKind::Lstm),
    Network::Recurrent(CellKind::Gru),
    Network::Recurrent(CellKind::Rnn),
    Network::BurnLstm,
    Network::TransformerLm,
];

/// An LSTM classifier on `burn::nn::Lstm` (last step → linear), to compare with Kiln's own LSTM.
#[derive(Module, Debug)]
struct BurnLstmClassifier {
    lstm: Lstm,
    output: Linear,
}

impl Supervised for BurnLstmClassifier {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    fn forward_step(&self, batch: ImageBatch) -> ClassificationOutput {
        let (_, state) = self.lstm.forward(batch.images, None);
        kiln::train::loss::classification_output(self.output.forward(state.hidden), batch.labels)
    }
}

/// Runs warm-up then `steps` timed Adam steps; returns the last loss and the timed seconds.
fn measure<M>(mut model: M, batches: &[M::Batch], steps: usize) -> (f32, f64)
where
    M: Supervised,
    M::Batch: Clone,
{
    let mut optim = AdamConfig::new().init();
    let mut run = |n: usize, model: &mut M| {
        let mut last = None;
        for i in 0..n {
            let out = model.forward_step(batches[i % batches.len()].clone());
            let grads = GradientsParams::from_grads(out.loss().backward(), &*model);
            *model = optim.step(1e-3, model.clone(), grads);
            last = Some(out.loss());
        }
        // Reading the last loss waits for every queued operation to finish.
        last.map_or(f32::NAN, |l| l.into_scalar::<f32>())
    };
    run(WARMUP_STEPS, &mut model);
    let started = Instant::now();
    let loss = run(steps, &mut model);
    (loss, started.elapsed().as_secs_f64())
}
const WARMUP_STEPS: usize = 20;
const DISTINCT_BATCHES: usize = 50;

/// Measures every network of [`NETWORKS`] (or those whose name contains `only`) on each device.
pub fn run(
    devices: &[DeviceChoice],
    batch: usize,
    steps: usize,
    out: &Path,
    only: Option<&str>,
) -> anyhow::Result<()> {
    let mnist = ImageFolder::mnist()?;
    let items: Vec<_> = (0..DISTINCT_BATCHES * batch)
        .map(|i| mnist.train.get(i))
        .collect::<Result<_, _>>()?;
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&mnist.train.take(10_000)), 28, 28);
    let shakespeare = kiln::data::text::shakespeare()?;
    let windows = TokenWindows::new(Arc::clone(&shakespeare.train), TRANSFORMER_CONTEXT)?;
    let windows: Vec<_> = (0..DISTINCT_BATCHES * LM_BATCH)
        .map(|i| {
            windows
                .get(i)
                .context("the Shakespeare training part is too short")
        })
        .collect::<Result<_, _>>()?;
    let mut figures = Vec::new();
    for &choice in devices {
        let device = choice.device().autodiff();
        let batches: Vec<ImageBatch> = items
            .chunks(batch)
            .map(|c| batcher.batch(c.to_vec(), &device))
            .collect();
        let token_batches = |device: &Device| -> Vec<TokenBatch> {
            windows
                .chunks(LM_BATCH)
                .map(|c| TokenBatcher.batch(c.to_vec(), device))
                .collect()
        };
        let chosen = NETWORKS
            .into_iter()
            .filter(|n| only.is_none_or(|text| n.name().contains(text)));
        for network in chosen {
            device.seed(0);
            let (loss, seconds) = match network {
                Network::Mlp(hidden) => {
                    let model = MlpConfig::new(784, hidden.to_vec(), 10).init(&device)?;
                    measure(model, &batches, steps)
                }
                Network::Cnn(lenet) => {
                    let config = if lenet {
                        CnnConfig::lenet5(28, 28, 10)
                    } else {
                        CnnConfig::new(1, 28, 28, 10)
                    };
                    measure(config.init(&device)?, &batches, steps)
                }
                Network::Recurrent(cell) => {
                    let config =
                        SequenceClassifierConfig::new(RecurrentConfig::new(cell, 28, 128), 10);
                    measure(config.init(&device)?, &batches, steps)
                }
                Network::BurnLstm => {
                    let model = BurnLstmClassifier {
                        lstm: LstmConfig::new(28, 128, true).init(&device),
                        output: LinearConfig::new(128, 10).init(&device),
                    };
                    measure(model, &batches, steps)
                }
                Network::TransformerLm => {
                    let config = transformer_lm_config(shakespeare.vocab.len());
                    measure(config.init(&device)?, &token_batches(&device), steps)
                }
            };
            let batch = match network {
                Network::TransformerLm => LM_BATCH,
                _ => batch,
            };
            let fig = Figure {
                device: choice.to_string(),
                network: network.name(),
                batch,
                steps,
                samples_per_second: (steps * batch) as f64 / seconds,
                ms_per_step: 1000.0 * seconds / steps as f64,
            };
            println!(
                "{:<8} {:<22} batch {:>4}: {:>9.0} samples/s ({:.2} ms/step, final loss {:.3})",
                fig.device, fig.network, batch, fig.samples_per_second, fig.ms_per_step, loss
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
