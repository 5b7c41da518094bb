//! `fit`: train a [`Supervised`] model with burn-train's `SupervisedTraining`, plus what Kiln adds around
//! it (regularisation, per-epoch CSV and curves, NaN detection, resume checks, best-epoch restore).

use crate::board::{Board, WeightHistograms};
use crate::compute_pool::on_compute_pool;
use crate::data_parallel::{DataParallel, GradientSync};
use crate::epoch_loader::EpochLoader;
use crate::history::{Divergence, EpochCsvLogger, History};
use crate::metrics::MeanLossMetric;
use crate::renderer::QuietRenderer;
use crate::step::{LearnerOutput, Regularized};
use crate::{LrSchedule, OptimizerConfig, Regularization, TrainError, curves};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::{Dataset, InMemDataset};
use burn::module::Module;
use burn::prelude::Device;
use burn::train::logger::FileMetricLogger;
use burn::train::metric::LearningRateMetric;
use burn::train::metric::store::{Aggregate, Direction, Split};
use burn::train::{
    ExecutionStrategy, Learner, MetricEarlyStoppingStrategy, StoppingCondition, SupervisedTraining,
};
use kiln_core::Supervised;
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// How a run is trained. Serialisable, so every run's settings can be saved beside its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Items per step over all ranks (ignored by full-batch gradient descent, which uses the whole
    /// training split): with `N` data-parallel ranks each takes `batch_size / N` of them, so the run
    /// follows the same learning curve whatever `N`. The optimizer steps once every `grad_accumulation`
    /// steps, on `batch_size × grad_accumulation` items.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    #[serde(default)]
    pub schedule: LrSchedule,
    /// L1/L2 penalties on the weights.
    #[serde(default)]
    pub regularization: Regularization,
    /// Stop when the validation loss has not improved for this many epochs.
    #[serde(default)]
    pub early_stopping_patience: Option<usize>,
    /// Seed for weight initialisation and shuffling.
    #[serde(default)]
    pub seed: u64,
    /// Data-loading threads of the validation loader (0: load on the training thread). The training
    /// loader always batches on the training thread ([`crate::epoch_loader`]), so that each epoch's order
    /// depends only on the seed and the epoch.
    #[serde(default)]
    pub num_workers: usize,
    /// Return the weights of the epoch with the lowest validation loss (when its checkpoint was kept)
    /// rather than those of the last epoch.
    #[serde(default = "yes")]
    pub restore_best: bool,
    /// Rescale each parameter's gradient to at most this L2 norm before the step (burn's gradient
    /// clipping; recurrent networks use it against exploding gradients).
    #[serde(default)]
    pub grad_clip_norm: Option<f32>,
    /// Backward passes whose gradients are averaged before each optimizer step (1: none). The learning
    /// rate schedule counts optimizer steps.
    #[serde(default = "one")]
    pub grad_accumulation: usize,
    /// Recompute memory-bound activations in the backward pass instead of keeping them (burn's balanced
    /// autodiff checkpointing). The weights are those of a run without it; whether it saves memory
    /// depends on the backend: on flex, for the Transformer LM at batch 128, it raised peak memory
    /// from about 1.1 to 1.35 GB and time per step by 4% (see README), so it is off by default.
    #[serde(default)]
    pub activation_checkpointing: bool,
}

fn yes() -> bool {
    true
}

fn one() -> usize {
    1
}

impl TrainingConfig {
    /// A config with Adam, a constant rate, no penalty and no early stopping.
    pub fn new(epochs: usize, batch_size: usize, lr: f64) -> Self {
        Self {
            epochs,
            batch_size,
            lr,
            optimizer: OptimizerConfig::adam(),
            schedule: LrSchedule::Constant,
            regularization: Regularization::none(),
            early_stopping_patience: None,
            seed: 42,
            num_workers: 0,
            restore_best: true,
            grad_clip_norm: None,
            grad_accumulation: 1,
            activation_checkpointing: false,
        }
    }

    fn validate(&self) -> Result<(), TrainError> {
        if self.epochs == 0 {
            return Err(TrainError::InvalidConfig(
                "epochs must be at least 1".into(),
            ));
        }
        if self.batch_size == 0 && !self.optimizer.is_full_batch() {
            return Err(TrainError::InvalidConfig(
                "batch_size must be at least 1".into(),
            ));
        }
        if self.grad_accumulation == 0 {
            return Err(TrainError::InvalidConfig(
                "grad_accumulation must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// How training progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dashboard {
    /// burn-train's terminal dashboard when stdout is a terminal, one line per epoch otherwise.
    #[default]
    Auto,
    /// One line per epoch and split.
    Lines,
    /// Nothing.
    Quiet,
}

/// Where and how one run happens.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run folder: checkpoints, burn's metric logs, `metrics.csv`, `curves.png`.
    pub dir: PathBuf,
    /// The (non-autodiff) device to train on.
    pub device: Device,
    /// Progress display.
    pub dashboard: Dashboard,
    /// Continue from the last checkpoint in `dir` if there is one (otherwise start afresh).
    pub resume: bool,
    /// A short name for progress lines and plot titles.
    pub label: String,
    /// The ranks this process trains with, for data-parallel training (`None`: alone). Rank 0 validates,
    /// stops early and writes `dir`; the other ranks should be given scratch folders.
    pub data_parallel: Option<DataParallel>,
    /// Devices of this process to train on together with burn's distributed data parallel strategy
    /// (NCCL all-reduce; CUDA only in burn 0.22.1); empty or one device: `device` alone. `batch_size` is
    /// divided among them, as among ranks.
    pub devices: Vec<Device>,
}

/// The result of [`fit`].
#[derive(Debug)]
pub struct FitOutcome<M> {
    /// The trained model (with `restore_best`, the weights of the best validation epoch), on the plain
    /// device, in inference mode.
    pub model: M,
    /// Epochs run in total, counting those before a resume.
    pub epochs: usize,
    /// The epoch whose weights `model` holds.
    pub best_epoch: Option<usize>,
    /// Seconds spent in this call's training and validation epochs.
    pub train_seconds: f64,
    /// Per-epoch metrics.
    pub history: History,
}

/// Trains `model` on `train`, validating on `valid` after every epoch, with checkpoints in
/// `options.dir/checkpoint`. Writes `metrics.csv` and `curves.png` into `options.dir`.
///
/// Errors: an invalid config, a checkpoint that does not fit the model when resuming, a NaN/infinite
/// loss, or a failure inside burn-train.
pub fn fit<M, I, B, DT, DV>(
    model: M,
    train: DT,
    valid: DV,
    batcher: B,
    config: &TrainingConfig,
    options: &RunOptions,
) -> Result<FitOutcome<M>, TrainError>
where
    M: Supervised,
    M::Output: LearnerOutput,
    M::Batch: Clone + std::fmt::Debug,
    I: Send + Sync + Clone + std::fmt::Debug + 'static,
    B: Batcher<I, M::Batch> + Clone + 'static,
    DT: Dataset<I> + 'static,
    DV: Dataset<I> + 'static,
{
    fit_with_batchers(
        model,
        train,
        valid,
        batcher.clone(),
        batcher,
        config,
        options,
    )
}

/// [`fit`] with one batcher for training and another for validation (e.g. augmentation for training only).
pub fn fit_with_batchers<M, I, B, DT, DV>(
    model: M,
    train: DT,
    valid: DV,
    train_batcher: B,
    valid_batcher: B,
    config: &TrainingConfig,
    options: &RunOptions,
) -> Result<FitOutcome<M>, TrainError>
where
    M: Supervised,
    M::Output: LearnerOutput,
    M::Batch: Clone + std::fmt::Debug,
    I: Send + Sync + Clone + std::fmt::Debug + 'static,
    B: Batcher<I, M::Batch> + Clone + 'static,
    DT: Dataset<I> + 'static,
    DV: Dataset<I> + 'static,
{
    config.validate()?;
    if train.is_empty() || valid.is_empty() {
        return Err(TrainError::InvalidConfig(format!(
            "training ({}) and validation ({}) splits must both hold items",
            train.len(),
            valid.len()
        )));
    }
    let group = options.data_parallel.clone().filter(|g| g.size() > 1);
    let ddp_devices = (options.devices.len() > 1).then(|| options.devices.clone());
    if group.is_some() && ddp_devices.is_some() {
        return Err(TrainError::InvalidConfig(
            "MPI ranks and several devices per process cannot be combined yet: give each rank one device"
                .into(),
        ));
    }
    // Ranks, or devices of burn's DDP: each takes its share of every batch.
    let ranks = group
        .as_ref()
        .map_or(ddp_devices.as_ref().map_or(1, Vec::len), DataParallel::size);
    let is_root = group.as_ref().is_none_or(DataParallel::is_root);
    if train.len() < ranks {
        return Err(TrainError::InvalidConfig(format!(
            "the training split has {} items, fewer than the {ranks} ranks",
            train.len()
        )));
    }
    let shard = train.len() / ranks;
    // Items per step on this rank.
    let batch_size = if config.optimizer.is_full_batch() {
        shard
    } else if !config.batch_size.is_multiple_of(ranks) {
        return Err(TrainError::InvalidConfig(format!(
            "batch_size {} does not divide among {ranks} ranks (it is the batch of all ranks together)",
            config.batch_size
        )));
    } else {
        config.batch_size / ranks
    };
    // Data the model cannot take is refused now, before the first step: inside burn-train's loop it could
    // only panic. The probes batch with clones of the batchers, which restart from their seeds
    // (augmentation, negative sampling), so training sees the batches an unprobed run would.
    check_first_batch(
        &model,
        &train,
        &train_batcher,
        batch_size,
        &options.device,
        "training",
    )?;
    check_first_batch(
        &model,
        &valid,
        &valid_batcher,
        batch_size,
        &options.device,
        "validation",
    )?;
    let dir = &options.dir;
    let checkpoint_dir = dir.join("checkpoint");
    // The model and the batches live on one autodiff device; with activation checkpointing it is the one
    // burn-train trains on. Its strategy must match the parameters' (which `fork` keeps from where they
    // were made, see `Checkpointed`), or the first operation panics.
    let autodiff = if config.activation_checkpointing {
        options.device.clone().autodiff().gradient_checkpointing()
    } else {
        options.device.clone().autodiff()
    };
    // Every rank starts from rank 0's weights.
    let model = match &group {
        Some(g) => g.broadcast_parameters(model),
        None => model,
    };
    let sync =
        (group.is_some() || config.grad_accumulation > 1).then(|| GradientSync::new(group.clone()));
    let mut model = model.fork(&autodiff).train();
    if config.activation_checkpointing {
        model = model.map(&mut Checkpointed);
    }
    let mut wrapped = Regularized {
        model,
        penalty: config.regularization,
        sync,
        histograms: None,
    };
    let resume_from = match (&group, options.resume) {
        (_, false) => None,
        (None, true) => Some(resumable_checkpoint(&wrapped, &checkpoint_dir)?),
        (Some(g), true) => Some(shared_checkpoint(g, &wrapped, &checkpoint_dir)?),
    };
    if resume_from.is_none() && dir.join("metrics.csv").is_file() {
        // A fresh run in the folder of an earlier one (recognised by its `metrics.csv`): drop that run's
        // checkpoints and logs so they cannot be mixed with this one.
        for stale in ["checkpoint", "train", "valid", "tensorboard"] {
            let p = dir.join(stale);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(|e| TrainError::io(&p, e))?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;

    let batches_per_epoch = shard.div_ceil(batch_size);
    let steps_per_epoch = batches_per_epoch.div_ceil(config.grad_accumulation);
    // Each epoch's order and the device's random stream depend on (seed, epoch) alone, so a resumed run
    // trains its remaining epochs exactly as the uninterrupted run did.
    let interrupter_cell = Arc::new(OnceLock::new());
    let mut epoch_loader = EpochLoader::new(
        train,
        train_batcher,
        batch_size,
        config.seed,
        autodiff.clone(),
        resume_from.map_or(1, |epoch| epoch + 1),
    );
    if let Some(g) = &group {
        g.set_exchanges_per_epoch(steps_per_epoch);
        epoch_loader = epoch_loader.sharded(g.clone(), interrupter_cell.clone());
    }
    let train_loader: Arc<dyn DataLoader<M::Batch>> = Arc::new(epoch_loader);
    let first_epoch = resume_from.map_or(1, |epoch| epoch + 1);
    if is_root {
        wrapped.histograms = Some(WeightHistograms::new(dir, steps_per_epoch, first_epoch));
    }
    // Rank 0 alone validates: the others get no validation items.
    let valid_builder = DataLoaderBuilder::new(valid_batcher)
        .batch_size(batch_size)
        .num_workers(config.num_workers)
        .set_device(options.device.clone());
    let valid_loader: Arc<dyn DataLoader<M::Batch>> = if is_root {
        valid_builder.build(valid)
    } else {
        valid_builder.build(InMemDataset::<I>::new(Vec::new()))
    };

    let optimizer = config.optimizer.init(config.grad_clip_norm);
    let scheduler = config
        .schedule
        .init(config.lr, config.epochs, steps_per_epoch)?;

    let terminal = std::io::stdout().is_terminal();
    let print_lines = is_root
        && match options.dashboard {
            Dashboard::Auto => !terminal,
            Dashboard::Lines => true,
            Dashboard::Quiet => false,
        };
    let divergence = Arc::new(Mutex::new(Divergence::default()));
    let step_losses = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    // burn-train's loop runs on a worker of the compute pool, so each parallel op costs no futex round trip
    // (see `compute_pool`); burn-train's builder is not `Send`, so it is built there too.
    let result = on_compute_pool(|| {
        let mut training = SupervisedTraining::new(dir, train_loader, valid_loader)
            .num_epochs(config.epochs)
            .with_default_checkpointers()
            .with_application_logger(None)
            .label(&options.label);
        let interrupter = training.interrupter();
        let _ = interrupter_cell.set(interrupter.clone());
        training = training
            .with_metric_logger(FileMetricLogger::new(dir))
            .with_metric_logger({
                let logger = EpochCsvLogger::new(
                    dir.join("metrics.csv"),
                    resume_from,
                    print_lines,
                    options.label.clone(),
                    interrupter,
                    divergence.clone(),
                )?
                .for_rank(group.clone());
                // Rank 0 alone writes TensorBoard events; steps before a resume are counted.
                if is_root {
                    let first_step = resume_from.unwrap_or(0) * batches_per_epoch;
                    logger.with_board(Board::create(dir), first_step, step_losses.clone())
                } else {
                    logger
                }
            });
        training = <M::Output as LearnerOutput>::register_metrics(training)
            .metric_train_numeric(LearningRateMetric::new());
        if !(is_root && options.dashboard == Dashboard::Auto && terminal) {
            training = training.renderer(Box::new(QuietRenderer));
        }
        if config.grad_accumulation > 1 {
            training = training.grads_accumulation(config.grad_accumulation);
        }
        if config.activation_checkpointing {
            training = training.gradient_checkpointing();
        }
        if let Some(devices) = &ddp_devices {
            let all_reduce_op = burn::tensor::distributed::ReduceOperation::Mean;
            let strategy = ExecutionStrategy::ddp(
                devices.clone(),
                burn::tensor::distributed::DistributedConfig { all_reduce_op },
            );
            training = training.with_training_strategy(strategy.into());
        }
        // Rank 0 alone decides to stop early; the stop word tells the others.
        if let Some(patience) = config.early_stopping_patience.filter(|_| is_root) {
            training = training.early_stopping(MetricEarlyStoppingStrategy::new(
                &MeanLossMetric::new(),
                Aggregate::Mean,
                Direction::Lowest,
                Split::Valid,
                StoppingCondition::NoImprovementSince { n_epochs: patience },
            ));
        }
        if let Some(epoch) = resume_from {
            training = training.checkpoint(epoch);
        }
        Ok::<_, TrainError>(training.launch(Learner::new(wrapped, optimizer, scheduler)))
    })?;
    let train_seconds = started.elapsed().as_secs_f64();

    let non_finite = divergence.lock().ok().and_then(|d| d.non_finite.clone());
    if let Some(g) = &group {
        let failure = match (&non_finite, &result.error) {
            (Some(_), _) => Some("non-finite loss".to_string()),
            (None, Some(e)) => Some(e.to_string()),
            (None, None) => None,
        };
        if g.finish(failure.as_deref()) && failure.is_none() {
            return Err(TrainError::DataParallel {
                rank: g.rank(),
                message: "another rank stopped on an error (see its output)".into(),
            });
        }
    }
    if let Some((epoch, split, value)) = non_finite {
        return Err(TrainError::NonFiniteLoss {
            epoch,
            split,
            value,
        });
    }
    if let Some(error) = result.error {
        return Err(TrainError::Training(error.to_string()));
    }

    let history = History::read(&dir.join("metrics.csv"))?;
    let mut best_epoch = Some(history.last_epoch()).filter(|&e| e > 0);
    let mut trained = result.model.model;
    if let Some(best) = history
        .best_valid_loss_epoch()
        .filter(|_| config.restore_best)
    {
        let path = checkpoint_dir.join(format!("model-{best}.bpk"));
        if path.exists() {
            let best_model = Regularized {
                model: trained.clone(),
                penalty: config.regularization,
                sync: None,
                histograms: None,
            }
            .try_load_file(&path)
            .map_err(|e| TrainError::Checkpoint {
                path: path.clone(),
                message: e.to_string(),
            })?;
            trained = best_model.model;
            best_epoch = Some(best);
        }
    }
    // Each batch's loss at its fraction of an epoch, so that a run of one or two epochs has a curve too.
    let steps: Vec<(f64, f64)> = step_losses
        .lock()
        .map(|l| {
            l.iter()
                .map(|&(step, loss)| (step as f64 / batches_per_epoch as f64, loss))
                .collect()
        })
        .unwrap_or_default();
    curves::plot_history(&history, &steps, &options.label, &dir.join("curves.png"))?;
    Ok(FitOutcome {
        model: trained.fork(&options.device),
        epochs: history.last_epoch(),
        best_epoch,
        train_seconds,
        history,
    })
}

/// Checks the first batch of `data` (at most `batch_size` items, batched by a clone of `batcher` on
/// `device`) against `model` ([`Supervised::check_batch`]).
fn check_first_batch<M, I, B, D>(
    model: &M,
    data: &D,
    batcher: &B,
    batch_size: usize,
    device: &Device,
    split: &'static str,
) -> Result<(), TrainError>
where
    M: Supervised,
    B: Batcher<I, M::Batch> + Clone,
    D: Dataset<I>,
{
    let items: Vec<I> = (0..batch_size.clamp(1, data.len().max(1)))
        .filter_map(|i| data.get(i).ok())
        .collect();
    let batch = batcher.clone().batch(items, device);
    model
        .check_batch(&batch)
        .map_err(|source| TrainError::Batch { split, source })
}

/// The epoch to resume from: the newest whose model, optimizer and scheduler checkpoints all load (burn-train
/// panics on one that does not, without naming it). A newer one that does not load (a run killed while
/// writing it) is passed over with a note, so a crash loses at most that epoch; if none loads, the error
/// names the newest unreadable file.
fn resumable_checkpoint<M: Module>(model: &M, dir: &Path) -> Result<usize, TrainError> {
    let Some(newest) = last_checkpoint(dir) else {
        return Err(TrainError::NothingToResume {
            dir: dir.to_path_buf(),
        });
    };
    let mut first_error: Option<(PathBuf, String)> = None;
    for epoch in (1..=newest).rev() {
        let path = |name: &str| dir.join(format!("{name}-{epoch}.bpk"));
        let loaded = model
            .clone()
            .try_load_file(path("model"))
            .map(drop)
            .map_err(|e| (path("model"), e.to_string()))
            .and_then(|()| {
                burn::optim::OptimizerRecord::load(path("optim"))
                    .map(drop)
                    .map_err(|e| (path("optim"), e.to_string()))
            })
            .and_then(|()| {
                burn::lr_scheduler::LrSchedulerRecord::load(path("scheduler"))
                    .map(drop)
                    .map_err(|e| (path("scheduler"), e.to_string()))
            });
        match loaded {
            Ok(()) => {
                if let Some((path, message)) = &first_error {
                    eprintln!(
                        "note: resuming from epoch {epoch}: {} cannot be read ({message})",
                        path.display()
                    );
                }
                return Ok(epoch);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let (path, message) = first_error.expect("at least one epoch was tried");
    Err(TrainError::Checkpoint { path, message })
}

/// The checkpoint files of one epoch, by burn-train's names.
const CHECKPOINT_PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// [`resumable_checkpoint`] for the ranks of `group`: rank 0 finds the epoch to resume from in its own
/// folder and sends that epoch's checkpoint files, which the other ranks write into `dir`, so that all
/// resume from rank 0's state whether or not they share its file system.
fn shared_checkpoint<M: Module>(
    group: &DataParallel,
    model: &M,
    dir: &Path,
) -> Result<usize, TrainError> {
    let mut message = Vec::new();
    let found = if group.is_root() {
        let found = resumable_checkpoint(model, dir);
        match &found {
            Ok(epoch) => {
                message.push(1u8);
                message.extend((*epoch as u64).to_le_bytes());
                for part in CHECKPOINT_PARTS {
                    let path = dir.join(format!("{part}-{epoch}.bpk"));
                    let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e));
                    let bytes = match bytes {
                        Ok(b) => b,
                        Err(e) => {
                            // Tell the others before failing, or they would wait for the files forever.
                            let mut fail = vec![0u8];
                            fail.extend(e.to_string().into_bytes());
                            group.broadcast_bytes(&mut fail);
                            return Err(e);
                        }
                    };
                    message.extend((bytes.len() as u64).to_le_bytes());
                    message.extend(bytes);
                }
            }
            Err(e) => {
                message.push(0u8);
                message.extend(e.to_string().into_bytes());
            }
        }
        Some(found)
    } else {
        None
    };
    group.broadcast_bytes(&mut message);
    if let Some(found) = found {
        return found;
    }
    let failed = |m: String| TrainError::DataParallel {
        rank: group.rank(),
        message: m,
    };
    match message.split_first() {
        Some((1, rest)) => {
            let (epoch, mut rest) =
                take_u64(rest).ok_or_else(|| failed("a truncated checkpoint message".into()))?;
            std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
            for part in CHECKPOINT_PARTS {
                let (len, tail) = take_u64(rest)
                    .ok_or_else(|| failed("a truncated checkpoint message".into()))?;
                let len = len as usize;
                if tail.len() < len {
                    return Err(failed("a truncated checkpoint message".into()));
                }
                let path = dir.join(format!("{part}-{epoch}.bpk"));
                kiln_core::files::write_atomic(&path, &tail[..len])
                    .map_err(|e| TrainError::io(&path, e))?;
                rest = &tail[len..];
            }
            Ok(epoch as usize)
        }
        Some((_, text)) => Err(failed(format!(
            "rank 0 cannot resume: {}",
            String::from_utf8_lossy(text)
        ))),
        None => Err(failed("an empty checkpoint message from rank 0".into())),
    }
}

/// A little-endian `u64` off the front of `bytes`, and the rest.
fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*head), rest))
}

/// The highest epoch with a model checkpoint in `dir`, if any.
pub fn last_checkpoint(dir: &Path) -> Option<usize> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse()
                .ok()
        })
        .max()
}

/// Marks every parameter for burn's balanced activation checkpointing. burn 0.22.1 keeps a tensor's
/// strategy through `fork` and `to_device`, so a model made on a plain device would stay un-checkpointed
/// (and clash with batches made on the checkpointing device) without this.
struct Checkpointed;

impl burn::module::ModuleMapper for Checkpointed {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::Tensor<D>>,
    ) -> burn::module::Param<burn::Tensor<D>> {
        param.map(|tensor| {
            tensor.with_gradient_checkpointing_strategy(
                burn::tensor::GradientCheckpointingStrategy::Balanced,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_config_round_trips_through_json() {
        let mut c = TrainingConfig::new(7, 32, 0.01);
        c.optimizer = OptimizerConfig::RmsProp {
            alpha: 0.9,
            momentum: 0.5,
            weight_decay: 1e-4,
        };
        c.schedule = LrSchedule::Step {
            every_epochs: 2,
            gamma: 0.5,
        };
        c.regularization = Regularization { l1: 1e-5, l2: 1e-4 };
        c.early_stopping_patience = Some(3);
        c.restore_best = false;
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<TrainingConfig>(&json).unwrap(), c);
        // Optional fields have defaults.
        let minimal: TrainingConfig = serde_json::from_str(
            r#"{"epochs":1,"batch_size":8,"lr":0.1,"optimizer":{"kind":"sgd"}}"#,
        )
        .unwrap();
        assert!(minimal.restore_best && minimal.early_stopping_patience.is_none());
    }

    #[test]
    fn last_checkpoint_finds_the_highest_epoch() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_checkpoint(dir.path()), None);
        for name in ["model-2.bpk", "model-10.bpk", "optim-11.bpk", "model-x.bpk"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(last_checkpoint(dir.path()), Some(10));
    }
}
