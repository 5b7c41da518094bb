//! `cargo xtask federated`: McMahan et al.'s (2017) MNIST experiments with `kiln-federated` — 100 clients,
//! C = 0.1, the 2NN and the CNN, IID and pathological non-IID shards — each row beside the paper's
//! rounds to the target accuracy; FedProx against FedAvg with 50% stragglers; the other server strategies
//! on Dirichlet(0.5) label skew; DP-FedAvg with its ε. Writes `reports/federated/report.{md,json}` and the
//! accuracy-against-round curves.
//!
//! Learning rates are chosen on validation data: before the runs, each model trains for a few rounds
//! with every rate of a small grid on 50,000 training images spread over the 100 clients, scored on the
//! 10,000 held out; the best rate is used for every row of that model (McMahan et al. tuned per row on
//! test accuracy; they note the best rates vary little between rows).

use anyhow::Context;
use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use kiln::data::{ImageBatch, ImageBatcher, ImageDataset, ImageFolder, ImageItem, PixelNormalizer};
use kiln::models::{CnnConfig, MlpConfig};
use kiln::train::DeviceChoice;
use kiln_core::{ClassificationOutput, Supervised};
use kiln_federated::{
    DpFedAvg, Evaluated, FedAdaptive, FedAvg, FederatedConfig, Federation, LocalTraining, Median,
    Partition, RoundRecord, StragglerPolicy, Strategy, TrimmedMean,
};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// One run: `report.json`'s row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FederatedRecord {
    /// `fedavg`, `fedprox`, `fedadam`, `fedyogi`, `median`, `trimmed_mean_0.1`, `dp_fedavg`.
    pub algorithm: String,
    /// `iid`, `pathological_non_iid`, `dirichlet_0.5`.
    pub partition: String,
    /// `2nn` or `cnn`.
    pub model: String,
    /// Clients in the federation.
    pub clients: usize,
    /// Share C of them sampled each round.
    pub fraction: f64,
    /// Local epochs E.
    pub local_epochs: usize,
    /// Local batch size B.
    pub batch: usize,
    /// The client learning rate (chosen on validation data).
    pub lr: f64,
    /// Share of each round's clients that straggled.
    pub stragglers: f64,
    /// FedProx's μ (0 for the others).
    pub proximal_mu: f32,
    /// Test accuracy the rounds are counted to (for `dp_sgd`: the paper's accuracy at its ε).
    pub target: f64,
    /// First round whose test accuracy reached the target (`null`: never, within the rounds run; for
    /// `dp_sgd`, rounds are epochs and the accuracy is the validation split's).
    pub rounds_to_target: Option<usize>,
    /// McMahan et al.'s rounds for the same setting (`null` where the paper has no such row).
    pub paper_rounds: Option<usize>,
    /// Test accuracy after the last round run.
    pub final_accuracy: f64,
    /// Rounds run.
    pub rounds: usize,
    /// ε spent (DP-FedAvg), at `delta`.
    pub epsilon: Option<f64>,
    /// δ of `epsilon`.
    pub delta: Option<f64>,
    /// The ε the run was allowed (DP-SGD rows).
    pub epsilon_budget: Option<f64>,
    /// The noise multiplier z or σ (DP-FedAvg and DP-SGD rows).
    pub noise_multiplier: Option<f64>,
    /// Wall-clock seconds of training (without evaluation).
    pub seconds: f64,
    /// Test accuracy after every round.
    pub curve: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
struct FederatedReport {
    runs: Vec<FederatedRecord>,
    learning_rates: Vec<LrChoice>,
    /// Seconds the whole run took.
    #[serde(default)]
    seconds: f64,
    /// A `--quick` smoke run.
    #[serde(default)]
    quick: bool,
}

/// A learning rate tried on validation data.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LrChoice {
    model: String,
    lr: f64,
    rounds: usize,
    validation_accuracy: f64,
    chosen: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Net {
    TwoNn,
    Cnn,
}

impl Net {
    fn name(self) -> &'static str {
        match self {
            Net::TwoNn => "2nn",
            Net::Cnn => "cnn",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Split {
    Iid,
    Pathological,
    Dirichlet(f64),
}

impl Split {
    fn name(self) -> String {
        match self {
            Split::Iid => "iid".into(),
            Split::Pathological => "pathological_non_iid".into(),
            Split::Dirichlet(a) => format!("dirichlet_{a}"),
        }
    }

    fn make(self, labels: &[usize], clients: usize, seed: u64) -> anyhow::Result<Partition> {
        Ok(match self {
            Split::Iid => Partition::iid(labels.len(), clients, seed)?,
            Split::Pathological => Partition::pathological_non_iid(labels, clients, 2, seed)?,
            Split::Dirichlet(alpha) => Partition::dirichlet(labels, clients, alpha, 10, seed)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Server {
    FedAvg,
    FedProx { mu: f32 },
    FedAdam,
    FedYogi,
    Median,
    TrimmedMean,
    DpFedAvg { clip: f32, z: f64 },
}

/// One row to run.
#[derive(Debug, Clone, Copy)]
struct Experiment {
    server: Server,
    split: Split,
    net: Net,
    epochs: usize,
    batch: usize,
    target: f64,
    paper: Option<usize>,
    max_rounds: usize,
    stop_at_target: bool,
    stragglers: f64,
    /// Clients in the federation (0: the run's default, 100 or 10 for `--quick`).
    clients: usize,
}

fn plan(quick: bool) -> Vec<Experiment> {
    let row = |server, split, net, epochs, target, paper, max_rounds, stop_at_target| Experiment {
        server,
        split,
        net,
        epochs,
        batch: 10,
        target,
        paper,
        max_rounds,
        stop_at_target,
        stragglers: 0.0,
        clients: 0,
    };
    if quick {
        return vec![
            row(
                Server::FedAvg,
                Split::Iid,
                Net::TwoNn,
                1,
                0.97,
                Some(87),
                3,
                false,
            ),
            row(
                Server::FedAvg,
                Split::Pathological,
                Net::Cnn,
                1,
                0.99,
                None,
                2,
                false,
            ),
            Experiment {
                stragglers: 0.5,
                ..row(
                    Server::FedProx { mu: 0.01 },
                    Split::Pathological,
                    Net::TwoNn,
                    2,
                    0.97,
                    None,
                    2,
                    false,
                )
            },
            row(
                Server::FedYogi,
                Split::Dirichlet(0.5),
                Net::TwoNn,
                1,
                0.97,
                None,
                2,
                false,
            ),
            Experiment {
                clients: 100,
                ..row(
                    Server::DpFedAvg { clip: 0.5, z: 1.0 },
                    Split::Iid,
                    Net::TwoNn,
                    1,
                    0.97,
                    None,
                    2,
                    false,
                )
            },
        ];
    }
    // Paper figures: Table 1 (C = 0.1, E = 1, B = 10: 2NN IID 87, non-IID 664) and Table 2 (CNN,
    // E = 5, B = 10, IID 20); the paper has no 2NN row with E = 5.
    let mut rows = vec![
        row(
            Server::FedAvg,
            Split::Iid,
            Net::TwoNn,
            1,
            0.97,
            Some(87),
            300,
            true,
        ),
        row(
            Server::FedAvg,
            Split::Iid,
            Net::TwoNn,
            5,
            0.97,
            None,
            300,
            true,
        ),
        row(
            Server::FedAvg,
            Split::Pathological,
            Net::TwoNn,
            1,
            0.97,
            Some(664),
            1200,
            true,
        ),
        row(
            Server::FedAvg,
            Split::Pathological,
            Net::TwoNn,
            5,
            0.97,
            None,
            1200,
            true,
        ),
        row(
            Server::FedAvg,
            Split::Iid,
            Net::Cnn,
            5,
            0.99,
            Some(20),
            60,
            true,
        ),
    ];
    for server in [Server::FedAvg, Server::FedProx { mu: 0.01 }] {
        rows.push(Experiment {
            stragglers: 0.5,
            ..row(
                server,
                Split::Pathological,
                Net::TwoNn,
                5,
                0.97,
                None,
                200,
                false,
            )
        });
    }
    for server in [
        Server::FedAvg,
        Server::FedAdam,
        Server::FedYogi,
        Server::Median,
        Server::TrimmedMean,
    ] {
        rows.push(row(
            server,
            Split::Dirichlet(0.5),
            Net::TwoNn,
            1,
            0.97,
            None,
            100,
            false,
        ));
    }
    // User-level DP needs many clients a round (McMahan et al. 2018 sampled 100 of 763,430 users): the
    // noise on the mean falls as 1 / (clients per round). 1,000 clients of 60 images, 100 a round.
    rows.push(Experiment {
        clients: 1000,
        ..row(
            Server::DpFedAvg { clip: 0.5, z: 1.0 },
            Split::Iid,
            Net::TwoNn,
            1,
            0.97,
            None,
            100,
            false,
        )
    });
    rows
}

/// MNIST as the runs use it: training images and labels, test batches on the plain device.
struct Mnist {
    train: ImageDataset,
    labels: Vec<usize>,
    batcher: ImageBatcher,
}

/// Accuracy of `model` over pre-built batches.
fn accuracy<M>(model: &M, batches: &[ImageBatch]) -> Result<f64, String>
where
    M: Supervised<Batch = ImageBatch, Output = ClassificationOutput>,
{
    let model = model.valid();
    let (mut right, mut total) = (0i64, 0usize);
    for b in batches {
        let out = model.forward_step(b.clone());
        let n = b.labels.dims()[0];
        let predicted = out.output.argmax(1).reshape([n]);
        right += predicted
            .equal(b.labels.clone())
            .int()
            .sum()
            .into_scalar::<i64>();
        total += n;
    }
    if total == 0 {
        return Err("no examples to score".into());
    }
    Ok(right as f64 / total as f64)
}

fn batches_of(
    dataset: &ImageDataset,
    batcher: &ImageBatcher,
    device: &Device,
) -> anyhow::Result<Vec<ImageBatch>> {
    use burn::data::dataset::Dataset;
    let items: Vec<_> = (0..dataset.len())
        .map(|i| dataset.get(i))
        .collect::<Result<_, _>>()?;
    Ok(items
        .chunks(1000)
        .map(|c| batcher.batch(c.to_vec(), device))
        .collect())
}

fn strategy(server: Server, clients: usize, per_round: usize) -> anyhow::Result<Box<dyn Strategy>> {
    Ok(match server {
        Server::FedAvg | Server::FedProx { .. } => Box::new(FedAvg),
        // Reddi et al.'s β₁ = 0.9, β₂ = 0.99; η and τ from their grids' usual optimum for vision tasks.
        Server::FedAdam => Box::new(FedAdaptive::adam(0.01, 0.9, 0.99, 1e-3)?),
        Server::FedYogi => Box::new(FedAdaptive::yogi(0.01, 0.9, 0.99, 1e-3)?),
        Server::Median => Box::new(Median),
        Server::TrimmedMean => Box::new(TrimmedMean::new(0.1)?),
        Server::DpFedAvg { clip, z } => {
            Box::new(DpFedAvg::new(FedAvg, clip, z, per_round, clients, 1e-5)?)
        }
    })
}

fn algorithm_name(server: Server, strategy: &dyn Strategy) -> String {
    match server {
        Server::FedProx { .. } => "fedprox".into(),
        Server::DpFedAvg { .. } => "dp_fedavg".into(),
        _ => strategy.name(),
    }
}

/// Runs `experiment` from a fresh model (seeded), scoring on `score` after every round.
#[allow(clippy::too_many_arguments)]
fn run_one(
    experiment: &Experiment,
    data: &Mnist,
    dataset: &ImageDataset,
    labels: &[usize],
    score: &[ImageBatch],
    lr: f64,
    device: &Device,
) -> anyhow::Result<(Vec<RoundRecord>, Option<f64>, String)> {
    let clients = experiment.clients;
    let partition = experiment.split.make(labels, clients, 7)?;
    let federation = Federation::new(dataset, &data.batcher, &partition, device.clone())?;
    let mu = match experiment.server {
        Server::FedProx { mu } => mu,
        _ => 0.0,
    };
    let mut config = FederatedConfig::new(
        experiment.max_rounds,
        LocalTraining::sgd(experiment.epochs, experiment.batch, lr).with_proximal_mu(mu),
        11,
    );
    config.stragglers = experiment.stragglers;
    config.straggler_policy = match experiment.server {
        Server::FedProx { .. } => StragglerPolicy::Partial,
        _ => StragglerPolicy::Drop,
    };
    let per_round = ((config.fraction * clients as f64).round() as usize).clamp(1, clients);
    let mut server = strategy(experiment.server, clients, per_round)?;
    let name = algorithm_name(experiment.server, server.as_ref());
    let stop_at = experiment.stop_at_target.then_some(experiment.target);
    device.seed(3);
    let records = match experiment.net {
        Net::TwoNn => {
            let model = MlpConfig::new(784, vec![200, 200], 10).init(device)?;
            federate(&federation, model, server.as_mut(), &config, score, stop_at)?
        }
        Net::Cnn => {
            let model = CnnConfig::new(1, 28, 28, 10)
                .with_channels(vec![32, 64])
                .with_kernel_sizes(vec![5, 5])
                .with_paddings(vec![2, 2])
                .with_hidden(vec![512])
                .init(device)?;
            federate(&federation, model, server.as_mut(), &config, score, stop_at)?
        }
    };
    Ok((records, server.privacy().map(|(e, _)| e), name))
}

/// Runs `federation` from `model`, scoring on `score` after every round and stopping once the accuracy
/// reaches `stop_at` (if given).
fn federate<M>(
    federation: &Federation<'_, ImageItem, ImageDataset, ImageBatcher>,
    model: M,
    server: &mut dyn Strategy,
    config: &FederatedConfig,
    score: &[ImageBatch],
    stop_at: Option<f64>,
) -> anyhow::Result<Vec<RoundRecord>>
where
    M: Supervised<Batch = ImageBatch, Output = ClassificationOutput> + Send + Sync,
{
    let (_, records) = federation.run(model, server, config, |_, m| {
        let accuracy = accuracy(m, score)?;
        Ok(Evaluated {
            accuracy,
            stop: stop_at.is_some_and(|target| accuracy >= target),
        })
    })?;
    Ok(records)
}

/// Picks each model's client learning rate on a validation split.
fn choose_lr(
    net: Net,
    data: &Mnist,
    quick: bool,
    device: &Device,
) -> anyhow::Result<(f64, Vec<LrChoice>)> {
    let (train_idx, valid_idx): (Vec<usize>, Vec<usize>) = {
        let split = kiln::data::train_valid_split(data.train.len(), 1.0 / 6.0, 5)?;
        (split.train, split.valid)
    };
    let train = data.train.subset(&train_idx);
    let valid = batches_of(
        &data.train.subset(&valid_idx),
        &data.batcher,
        &device.clone().inner(),
    )?;
    let labels: Vec<usize> = train_idx.iter().map(|&i| data.labels[i]).collect();
    let (grid, rounds, epochs): (&[f64], usize, usize) = match (net, quick) {
        (_, true) => (&[0.05, 0.1], 1, 1),
        (Net::TwoNn, false) => (&[0.02, 0.05, 0.1, 0.2], 20, 1),
        (Net::Cnn, false) => (&[0.05, 0.1, 0.2], 2, 5),
    };
    let clients = if quick { 10 } else { 100 };
    let mut tried = Vec::new();
    for &lr in grid {
        let experiment = Experiment {
            server: Server::FedAvg,
            split: Split::Iid,
            net,
            epochs,
            batch: 10,
            target: 1.0,
            paper: None,
            max_rounds: rounds,
            stop_at_target: false,
            stragglers: 0.0,
            clients,
        };
        let (records, _, _) = run_one(&experiment, data, &train, &labels, &valid, lr, device)?;
        let last = records.last().map_or(0.0, |r| r.accuracy);
        println!(
            "  {} lr {lr}: validation accuracy {:.4} after {rounds} rounds",
            net.name(),
            last
        );
        tried.push(LrChoice {
            model: net.name().into(),
            lr,
            rounds,
            validation_accuracy: last,
            chosen: false,
        });
    }
    let best = tried
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.validation_accuracy.total_cmp(&b.1.validation_accuracy))
        .map(|(i, _)| i)
        .context("an empty learning-rate grid")?;
    tried[best].chosen = true;
    Ok((tried[best].lr, tried))
}

/// DP-SGD (Abadi et al. 2016) on MNIST at three privacy budgets: a private 60-dimensional PCA
/// (`kiln_privacy::dp_pca`, noise σ = 16), an MLP with 1,000 hidden units, lots of 600, C = 4,
/// SGD with lr 0.05, as many epochs (up to 60) as keep ε (PCA and SGD composed) within the budget. The
/// noise multipliers are the paper's (4 for ε ≈ 0.5, 2 for 2, 1 for 8); the scale 50 and the learning
/// rate were chosen on validation accuracy (see the README).
fn dp_sgd_rows(quick: bool) -> anyhow::Result<Vec<FederatedRecord>> {
    use kiln_privacy::{
        DpSgd, DpTraining, Features, RdpAccountant, accuracy, dp_pca, train_dp_sgd,
    };
    use rand::SeedableRng;
    let folder = ImageFolder::mnist()?;
    let features = |images: &ImageDataset, indices: &[usize]| -> anyhow::Result<Features> {
        Ok(Features::from_images(images, indices)?)
    };
    let n_train = if quick { 3_000 } else { folder.train.len() };
    let split = kiln::data::train_valid_split(n_train, 1.0 / 12.0, 42)?;
    let train = features(&folder.train, &split.train)?;
    let valid = features(&folder.train, &split.valid)?;
    let test_n = if quick { 500 } else { folder.test.len() };
    let test = features(&folder.test, &(0..test_n).collect::<Vec<_>>())?;
    let plain = Device::flex();
    let (delta, pca_sigma, lot) = (1e-5, 16.0, if quick { 100 } else { 600 });
    let max_epochs = if quick { 2 } else { 60 };
    let mut rows = Vec::new();
    for (budget, sigma, paper) in [(0.5, 4.0f32, 0.90), (2.0, 2.0, 0.95), (8.0, 1.0, 0.97)] {
        let started = Instant::now();
        // Epochs: as many as keep the composed ε within the budget (worked out before training).
        let q = lot as f64 / train.len() as f64;
        let steps = (train.len() / lot) as u64;
        let mut probe = RdpAccountant::new();
        probe.compose_poisson_gaussian(1.0, pca_sigma, 1)?;
        let mut epochs = 0;
        while epochs < max_epochs {
            probe.compose_poisson_gaussian(q, f64::from(sigma), steps)?;
            if probe.epsilon(delta)?.0 > budget {
                break;
            }
            epochs += 1;
        }
        if epochs == 0 {
            println!("dp_sgd ε ≤ {budget}: not one epoch fits the budget");
            continue;
        }
        let mut accountant = RdpAccountant::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let projection = dp_pca(&train, 60, pca_sigma, &mut accountant, &mut rng, &plain)?;
        let project = |f: &Features| -> anyhow::Result<Features> {
            Ok(projection.apply(f, &plain)?.scaled(50.0))
        };
        let (p_train, p_valid, p_test) = (project(&train)?, project(&valid)?, project(&test)?);
        let device = Device::flex().autodiff();
        device.seed(1);
        let model = MlpConfig::new(60, vec![1000], 10).init(&device)?;
        let config = DpTraining {
            epochs,
            lot,
            step: DpSgd {
                clip_norm: 4.0,
                noise_multiplier: sigma,
                lr: 0.05,
            },
            delta,
            seed: 1,
        };
        let (model, history) =
            train_dp_sgd(model, &p_train, &p_valid, &config, &mut accountant, |_| {})?;
        let epsilon = accountant.epsilon(delta)?.0;
        let test_accuracy = accuracy(&model, &p_test)?;
        let curve: Vec<f64> = history.iter().map(|e| e.validation_accuracy).collect();
        println!(
            "dp_sgd ε ≤ {budget} (σ = {sigma}, {epochs} epochs): test accuracy {test_accuracy:.4} at ε = {epsilon:.3} (paper {paper})"
        );
        rows.push(FederatedRecord {
            algorithm: "dp_sgd".into(),
            partition: "centralized".into(),
            model: "pca60_1000".into(),
            clients: 1,
            fraction: q,
            local_epochs: epochs,
            batch: lot,
            lr: 0.05,
            stragglers: 0.0,
            proximal_mu: 0.0,
            target: paper,
            rounds_to_target: curve.iter().position(|&a| a >= paper).map(|i| i + 1),
            paper_rounds: None,
            final_accuracy: test_accuracy,
            rounds: epochs,
            epsilon: Some(epsilon),
            delta: Some(delta),
            epsilon_budget: Some(budget),
            noise_multiplier: Some(f64::from(sigma)),
            seconds: started.elapsed().as_secs_f64(),
            curve,
        });
    }
    Ok(rows)
}

/// Runs the plan and writes the report into `out`.
pub fn run(device: DeviceChoice, quick: bool, out: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let device = device.device().autodiff();
    let folder = ImageFolder::mnist()?;
    let (train, test) = if quick {
        (folder.train.take(2_000), folder.test.take(500))
    } else {
        (folder.train, folder.test)
    };
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);
    let labels: Vec<usize> = (0..train.len())
        .map(|i| usize::from(train.label(i)))
        .collect();
    let data = Mnist {
        train,
        labels,
        batcher,
    };
    let test_batches = batches_of(&test, &data.batcher, &device.clone().inner())?;
    let clients = if quick { 10 } else { 100 };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut learning_rates = Vec::new();
    let mut lr_of = |net: Net| -> anyhow::Result<f64> {
        if let Some(c) = learning_rates
            .iter()
            .find(|c: &&LrChoice| c.model == net.name() && c.chosen)
        {
            return Ok(c.lr);
        }
        println!(
            "choosing the {} learning rate on validation data",
            net.name()
        );
        let (lr, tried) = choose_lr(net, &data, quick, &device)?;
        learning_rates.extend(tried);
        Ok(lr)
    };
    let mut runs = Vec::new();
    for mut experiment in plan(quick) {
        if experiment.clients == 0 {
            experiment.clients = clients;
        }
        let lr = lr_of(experiment.net)?;
        let (records, epsilon, algorithm) = run_one(
            &experiment,
            &data,
            &data.train,
            &data.labels,
            &test_batches,
            lr,
            &device,
        )?;
        let curve: Vec<f64> = records.iter().map(|r| r.accuracy).collect();
        let record = FederatedRecord {
            algorithm,
            partition: experiment.split.name(),
            model: experiment.net.name().into(),
            clients: experiment.clients,
            fraction: 0.1,
            local_epochs: experiment.epochs,
            batch: experiment.batch,
            lr,
            stragglers: experiment.stragglers,
            proximal_mu: match experiment.server {
                Server::FedProx { mu } => mu,
                _ => 0.0,
            },
            target: experiment.target,
            rounds_to_target: curve
                .iter()
                .position(|&a| a >= experiment.target)
                .map(|i| i + 1),
            paper_rounds: experiment.paper,
            final_accuracy: curve.last().copied().unwrap_or(0.0),
            rounds: records.len(),
            epsilon,
            delta: epsilon.map(|_| 1e-5),
            epsilon_budget: None,
            noise_multiplier: match experiment.server {
                Server::DpFedAvg { z, .. } => Some(z),
                _ => None,
            },
            seconds: records.iter().map(|r| r.seconds).sum(),
            curve,
        };
        println!(
            "{} {} {} E={} B={} stragglers {:.0}%: {} rounds, final accuracy {:.4}, rounds to {:.0}%: {} (paper {}), {:.0} s{}",
            record.algorithm,
            record.partition,
            record.model,
            record.local_epochs,
            record.batch,
            100.0 * record.stragglers,
            record.rounds,
            record.final_accuracy,
            100.0 * record.target,
            record
                .rounds_to_target
                .map_or("not reached".into(), |r| r.to_string()),
            record.paper_rounds.map_or("—".into(), |r| r.to_string()),
            record.seconds,
            record
                .epsilon
                .map_or(String::new(), |e| format!(", ε = {e:.2}")),
        );
        runs.push(record);
    }
    runs.extend(dp_sgd_rows(quick)?);
    let report = FederatedReport {
        runs,
        learning_rates,
        seconds: started.elapsed().as_secs_f64(),
        quick,
    };
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    write_markdown(&report, out)?;
    println!("wrote {}", out.join("report.md").display());
    Ok(())
}

/// Writes `report.md` and the curves again from the `report.json` in `out` (no training).
pub fn replot(out: &Path) -> anyhow::Result<()> {
    let path = out.join("report.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let report: FederatedReport =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    write_markdown(&report, out)?;
    println!("wrote {}", out.join("report.md").display());
    Ok(())
}

fn write_markdown(report: &FederatedReport, out: &Path) -> anyhow::Result<()> {
    let (seconds, quick) = (report.seconds, report.quick);
    let mut md = String::new();
    writeln!(md, "# Kiln — federated learning report\n")?;
    if quick {
        writeln!(
            md,
            "**A `--quick` smoke run (10 clients on 2,000 images, a few rounds): not the paper's setting.**\n"
        )?;
    }
    writeln!(
        md,
        "MNIST, {} clients (unless the table says otherwise), C = 0.1, client SGD; rounds until the test accuracy first reaches the target, \
         beside McMahan et al. (2017: Table 1 for the 2NN at E = 1, Table 2 for the CNN). Rows with \
         stragglers or other servers run a fixed number of rounds. The whole run took {seconds:.0} s.\n",
        report.runs.first().map_or(0, |r| r.clients)
    )?;
    writeln!(
        md,
        "| algorithm | partition | model | clients | E | B | lr | stragglers | target | rounds to target | paper | final accuracy | rounds | ε (δ = 1e-5) | seconds |"
    )?;
    writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    for r in report.runs.iter().filter(|r| r.algorithm != "dp_sgd") {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0}% | {:.0}% | {} | {} | {:.2}% | {} | {} | {:.0} |",
            r.algorithm,
            r.partition,
            r.model,
            r.clients,
            r.local_epochs,
            r.batch,
            r.lr,
            100.0 * r.stragglers,
            100.0 * r.target,
            r.rounds_to_target
                .map_or("not reached".into(), |v| v.to_string()),
            r.paper_rounds.map_or("—".into(), |v| v.to_string()),
            100.0 * r.final_accuracy,
            r.rounds,
            r.epsilon.map_or("—".into(), |e| format!("{e:.2}")),
            r.seconds,
        )?;
    }
    writeln!(
        md,
        "\nDP-SGD (Abadi et al. 2016) on MNIST, δ = 1e-5: a private 60-dimensional PCA (noise σ = 16), an \
         MLP with 1,000 hidden units, lots of 600, C = 4, lr 0.05, as many epochs (at most 60) as keep ε — PCA \
         and SGD composed by the RDP accountant — within the budget; the test accuracy once, at the end:\n"
    )?;
    writeln!(
        md,
        "| ε budget | σ | epochs | ε spent | test accuracy | Abadi et al. |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    for r in report.runs.iter().filter(|r| r.algorithm == "dp_sgd") {
        writeln!(
            md,
            "| {} | {} | {} | {:.3} | {:.2}% | {:.0}% |",
            r.epsilon_budget.unwrap_or(f64::NAN),
            r.noise_multiplier.unwrap_or(f64::NAN),
            r.rounds,
            r.epsilon.unwrap_or(f64::NAN),
            100.0 * r.final_accuracy,
            100.0 * r.target
        )?;
    }
    writeln!(
        md,
        "\nLearning rates tried on validation data (50,000 training images over the clients, 10,000 held out; IID, B = 10):\n"
    )?;
    writeln!(md, "| model | lr | rounds | validation accuracy | chosen |")?;
    writeln!(md, "|---|---|---|---|---|")?;
    for c in &report.learning_rates {
        writeln!(
            md,
            "| {} | {} | {} | {:.2}% | {} |",
            c.model,
            c.lr,
            c.rounds,
            100.0 * c.validation_accuracy,
            if c.chosen { "yes" } else { "" }
        )?;
    }
    type Pick = fn(&FederatedRecord) -> bool;
    let plots: [(&str, &str, Pick); 3] = [
        (
            "curves_mcmahan.png",
            "McMahan et al.'s settings (FedAvg, C = 0.1, B = 10)",
            |r| {
                r.algorithm == "fedavg"
                    && r.stragglers == 0.0
                    && !r.partition.starts_with("dirichlet")
            },
        ),
        (
            "curves_stragglers.png",
            "Pathological non-IID 2NN, E = 5, 50% stragglers",
            |r| r.stragglers > 0.0,
        ),
        (
            "curves_strategies.png",
            "Server strategies (Dirichlet 0.5) and DP-FedAvg, 2NN",
            |r| r.partition.starts_with("dirichlet") || r.algorithm == "dp_fedavg",
        ),
    ];
    for (file, title, pick) in plots {
        let series: Vec<(String, Vec<(f64, f64)>)> = report
            .runs
            .iter()
            .filter(|r| r.algorithm != "dp_sgd" && pick(r))
            .map(|r| {
                (
                    format!(
                        "{} {} {} E={}{}",
                        r.algorithm,
                        r.model,
                        r.partition,
                        r.local_epochs,
                        if r.stragglers > 0.0 {
                            " 50% stragglers"
                        } else {
                            ""
                        }
                    ),
                    r.curve
                        .iter()
                        .enumerate()
                        .map(|(i, &a)| ((i + 1) as f64, a))
                        .collect(),
                )
            })
            .collect();
        if series.is_empty() {
            continue;
        }
        let rounds = series.iter().map(|s| s.1.len()).max().unwrap_or(1) as f64;
        let low = series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .fold(1.0f64, f64::min)
            .max(0.5);
        kiln::train::curves::plot_lines(
            &series,
            title,
            ("round", "test accuracy"),
            (0.0..rounds + 1.0, (low - 0.01)..1.0),
            false,
            &out.join(file),
        )?;
        writeln!(md, "\n![{title}]({file})")?;
    }
    std::fs::write(out.join("report.md"), md)?;
    Ok(())
}
