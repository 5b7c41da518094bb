//! `fit`: train a [`Supervised`] model with burn-train's `SupervisedTraining`, plus what Kiln adds around
//! it (regularisation, per-epoch CSV and curves, NaN detection, resume checks, best-epoch restore).

use crate::compute_pool::on_compute_pool;
use crate::epoch_loader::EpochLoader;
use crate::history::{Divergence, EpochCsvLogger, History};
use crate::metrics::MeanLossMetric;
use crate::renderer::QuietRenderer;
use crate::step::{LearnerOutput, Regularized};
use crate::{LrSchedule, OptimizerConfig, Regularization, TrainError, curves};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::prelude::Device;
use burn::train::logger::FileMetricLogger;
use burn::train::metric::store::{Aggregate, Direction, Split};
use burn::train::{Learner, MetricEarlyStoppingStrategy, StoppingCondition, SupervisedTraining};
use kiln_core::Supervised;
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a run is trained. Serialisable, so every run's settings can be saved beside its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Mini-batch size (ignored by full-batch gradient descent, which uses the whole training split).
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
}

fn yes() -> bool {
    true
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
    let batch_size = if config.optimizer.is_full_batch() {
        train.len()
    } else {
        config.batch_size
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
    let autodiff = options.device.clone().autodiff();
    let wrapped = Regularized {
        model: model.fork(&autodiff).train(),
        penalty: config.regularization,
    };
    let resume_from = if options.resume {
        Some(resumable_checkpoint(&wrapped, &checkpoint_dir)?)
    } else {
        None
    };
    if resume_from.is_none() && dir.join("metrics.csv").is_file() {
        // A fresh run in the folder of an earlier one (recognised by its `metrics.csv`): drop that run's
        // checkpoints and logs so they cannot be mixed with this one.
        for stale in ["checkpoint", "train", "valid"] {
            let p = dir.join(stale);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(|e| TrainError::io(&p, e))?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;

    let iters_per_epoch = train.len().div_ceil(batch_size);
    // Each epoch's order and the device's random stream depend on (seed, epoch) alone, so a resumed run
    // trains its remaining epochs exactly as the uninterrupted run did.
    let train_loader: Arc<dyn DataLoader<M::Batch>> = Arc::new(EpochLoader::new(
        train,
        train_batcher,
        batch_size,
        config.seed,
        autodiff.clone(),
        resume_from.map_or(1, |epoch| epoch + 1),
    ));
    let valid_loader: Arc<dyn DataLoader<M::Batch>> = DataLoaderBuilder::new(valid_batcher)
        .batch_size(batch_size)
        .num_workers(config.num_workers)
        .set_device(options.device.clone())
        .build(valid);

    let optimizer = config.optimizer.init(config.grad_clip_norm);
    let scheduler = config
        .schedule
        .init(config.lr, config.epochs, iters_per_epoch)?;

    let terminal = std::io::stdout().is_terminal();
    let print_lines = match options.dashboard {
        Dashboard::Auto => !terminal,
        Dashboard::Lines => true,
        Dashboard::Quiet => false,
    };
    let divergence = Arc::new(Mutex::new(Divergence::default()));
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
        training = training
            .with_metric_logger(FileMetricLogger::new(dir))
            .with_metric_logger(EpochCsvLogger::new(
                dir.join("metrics.csv"),
                resume_from,
                print_lines,
                options.label.clone(),
                interrupter,
                divergence.clone(),
            )?);
        training = <M::Output as LearnerOutput>::register_metrics(training);
        if !(options.dashboard == Dashboard::Auto && terminal) {
            training = training.renderer(Box::new(QuietRenderer));
        }
        if let Some(patience) = config.early_stopping_patience {
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

    if let Some((epoch, split, value)) = divergence.lock().ok().and_then(|d| d.non_finite.clone()) {
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
    curves::plot_history(&history, &options.label, &dir.join("curves.png"))?;
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
