//! `cargo xtask bench`: training throughput of the MLPs, CNNs and recurrent classifiers on real MNIST batches
//! and of the Transformer language model on real Shakespeare windows, per CPU backend.
//!
//! A hand-written loop (forward, cross-entropy, backward, Adam step) over batches prepared in advance, so
//! that it times the same work as `scripts/bench_pytorch.py` does for PyTorch.

use anyhow::Context;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use kiln::data::{
    ImageBatch, ImageBatcher, ImageFolder, ImageItem, PixelNormalizer, TokenBatch, TokenBatcher,
    TokenSequence, TokenWindows,
};
use kiln::models::{CellKind, CnnConfig, MlpConfig, RecurrentConfig, SequenceClassifierConfig};
use kiln::recipes::{TRANSFORMER_CONTEXT, transformer_lm_config};
use kiln::train::{DeviceChoice, StepOutput, Supervised};
use kiln_train::ClassificationOutput;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// One measured workload.
#[derive(Debug, Serialize)]
pub struct Figure {
    /// The device (`flex`, `ndarray`).
    pub device: String,
    /// The network's name ([`Network::name`]).
    pub network: String,
    /// Samples per step.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// Training samples per second over the timed steps.
    pub samples_per_second: f64,
    /// Milliseconds per timed step.
    pub ms_per_step: f64,
    /// The loss of the last step.
    pub final_loss: f32,
}

/// A network measured.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Network {
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
    /// Samples per step: `batch` for the image networks, [`LM_BATCH`] windows for the language model.
    pub fn batch(self, batch: usize) -> usize {
        match self {
            Self::TransformerLm => LM_BATCH,
            _ => batch,
        }
    }

    /// Whether `scripts/bench_pytorch.py` has the same network (it has all but [`Network::BurnLstm`]).
    pub fn in_pytorch(self) -> bool {
        self != Self::BurnLstm
    }

    /// The name printed and written, shared with `scripts/bench_pytorch.py`.
    pub fn name(self) -> String {
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
fn measure<M>(model: M, batches: &[M::Batch], steps: usize) -> (f32, f64)
where
    M: Supervised + Send,
    M::Batch: Clone + Sync + Send,
{
    // The learner's Adam (burn's, fused into one pass per parameter on flex).
    let mut optim = kiln_train::OptimizerConfig::adam().init(None);
    // The model moves through each step (as in the learner), so the optimizer may update buffers in place.
    let mut run = |n: usize, mut model: M| {
        let mut last = None;
        for i in 0..n {
            let out = model.forward_step(batches[i % batches.len()].clone());
            let loss = out.loss();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
            last = Some(out.loss());
        }
        // Reading the last loss waits for every queued operation to finish.
        (model, last.map_or(f32::NAN, |l| l.into_scalar::<f32>()))
    };
    // On the compute pool, as the learner runs its loop.
    let mut go = |n: usize, model: M| kiln_train::compute_pool::on_compute_pool(|| run(n, model));
    let (model, _) = go(WARMUP_STEPS, model);
    let started = Instant::now();
    let (_, loss) = go(steps, model);
    (loss, started.elapsed().as_secs_f64())
}
const WARMUP_STEPS: usize = 20;
const DISTINCT_BATCHES: usize = 50;

/// The data every workload trains on, prepared once: [`DISTINCT_BATCHES`] MNIST batches and as many
/// Shakespeare batches of [`LM_BATCH`] windows.
pub struct Workloads {
    images: Vec<ImageItem>,
    batcher: ImageBatcher,
    windows: Vec<TokenSequence>,
    vocab: usize,
    batch: usize,
}

impl Workloads {
    /// Reads the vendored MNIST and Shakespeare and cuts `batch`-sized image batches.
    pub fn load(batch: usize) -> anyhow::Result<Self> {
        let mnist = ImageFolder::mnist()?;
        let images: Vec<_> = (0..DISTINCT_BATCHES * batch)
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
        Ok(Self {
            images,
            batcher,
            windows,
            vocab: shakespeare.vocab.len(),
            batch,
        })
    }

    /// Trains `network` for warm-up and `steps` timed steps on `choice` and returns its figure.
    pub fn measure(
        &self,
        network: Network,
        choice: DeviceChoice,
        steps: usize,
    ) -> anyhow::Result<Figure> {
        let device = choice.device().autodiff();
        device.seed(0);
        let image_batches = || -> Vec<ImageBatch> {
            self.images
                .chunks(self.batch)
                .map(|c| self.batcher.batch(c.to_vec(), &device))
                .collect()
        };
        let (loss, seconds) = match network {
            Network::Mlp(hidden) => {
                let model = MlpConfig::new(784, hidden.to_vec(), 10).init(&device)?;
                measure(model, &image_batches(), steps)
            }
            Network::Cnn(lenet) => {
                let config = if lenet {
                    CnnConfig::lenet5(28, 28, 10)
                } else {
                    CnnConfig::new(1, 28, 28, 10)
                };
                measure(config.init(&device)?, &image_batches(), steps)
            }
            Network::Recurrent(cell) => {
                let config = SequenceClassifierConfig::new(RecurrentConfig::new(cell, 28, 128), 10);
                measure(config.init(&device)?, &image_batches(), steps)
            }
            Network::BurnLstm => {
                let model = BurnLstmClassifier {
                    lstm: LstmConfig::new(28, 128, true).init(&device),
                    output: LinearConfig::new(128, 10).init(&device),
                };
                measure(model, &image_batches(), steps)
            }
            Network::TransformerLm => {
                let batches: Vec<TokenBatch> = self
                    .windows
                    .chunks(LM_BATCH)
                    .map(|c| TokenBatcher.batch(c.to_vec(), &device))
                    .collect();
                let config = transformer_lm_config(self.vocab);
                measure(config.init(&device)?, &batches, steps)
            }
        };
        let batch = network.batch(self.batch);
        Ok(Figure {
            device: choice.to_string(),
            network: network.name(),
            batch,
            steps,
            samples_per_second: (steps * batch) as f64 / seconds,
            ms_per_step: 1000.0 * seconds / steps as f64,
            final_loss: loss,
        })
    }
}

impl Figure {
    /// One line: device, network, batch, samples/s, ms a step and the final loss.
    pub fn line(&self) -> String {
        format!(
            "{:<8} {:<30} batch {:>4}: {:>9.0} samples/s ({:.2} ms/step, final loss {:.3})",
            self.device,
            self.network,
            self.batch,
            self.samples_per_second,
            self.ms_per_step,
            self.final_loss
        )
    }
}

/// The networks of [`NETWORKS`] whose name contains `only` (all of them without it).
pub fn chosen(only: Option<&str>) -> impl Iterator<Item = Network> {
    NETWORKS
        .into_iter()
        .filter(move |n| only.is_none_or(|text| n.name().contains(text)))
}

/// Measures every network of [`NETWORKS`] (or those whose name contains `only`) on each device.
pub fn run(
    devices: &[DeviceChoice],
    batch: usize,
    steps: usize,
    out: &Path,
    only: Option<&str>,
) -> anyhow::Result<()> {
    let workloads = Workloads::load(batch)?;
    let mut figures = Vec::new();
    for &choice in devices {
        for network in chosen(only) {
            let fig = workloads.measure(network, choice, steps)?;
            println!("{}", fig.line());
            figures.push(fig);
        }
    }
    write_json(out, &figures)
}

/// Writes `value` as pretty JSON to `out`, creating its folder.
pub fn write_json(out: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    kiln::core::files::write_atomic(out, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}
