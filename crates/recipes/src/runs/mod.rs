//! Running a recipe: its data loaded and checked, its model built from its hyper-parameters, trained by the
//! learner, scored on the test split, and its weights, settings and recipe saved in the run folder. One
//! module per family of data.

mod graph;
mod images;
mod language;
mod tabular;
mod translation;

pub use graph::kg_embedding;
pub use images::image_classifier;
pub use language::char_language_model;
pub use tabular::linear_regression;
pub use translation::{copy_source, translation, translation_split};

use crate::model_name::ModelName;
use crate::recipe::{DataSource, Hyper, Recipe};
use anyhow::Context;
use burn::module::Module;
use kiln_data::{CharCorpus, ImageFolder, KnowledgeGraph, ParallelCorpus, tabular::Table};
use kiln_models::persist::{save_config, save_weights};
use kiln_train::{Dashboard, DataParallel, DeviceChoice, RunOptions, RunRecord, TrainingConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where and how a recipe runs: the device and the run folder, and the recipe's seed, smoke-run flag and
/// augmentation (see [`RunSettings::for_recipe`]).
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The device to train on.
    pub device: DeviceChoice,
    /// The run folder (checkpoints, metrics, curves, weights).
    pub run_dir: PathBuf,
    /// Overrides the recipe's number of epochs.
    pub epochs: Option<usize>,
    /// A smoke run: a small subset and one or two epochs.
    pub quick: bool,
    /// Progress display.
    pub dashboard: Dashboard,
    /// Continue from the run folder's last checkpoint.
    pub resume: bool,
    /// Seed of splits, initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Augment training images on the fly (image classifiers only): shifts of ±2 px, rotations of ±10°,
    /// noise σ 0.05; validation and test images are never augmented.
    pub augment: bool,
    /// The ranks of a data-parallel run this process is one of (`None`: it trains alone). Give the
    /// ranks other than 0 a scratch `run_dir`.
    pub data_parallel: Option<DataParallel>,
    /// Devices to train on together with burn's distributed data parallel (CUDA); empty: `device` alone.
    pub devices: Vec<DeviceChoice>,
}

/// What a recipe produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The recipe's registry name.
    pub recipe: String,
    /// The headline result, as written to `report.json`.
    pub record: RunRecord,
    /// The run folder.
    pub run_dir: PathBuf,
    /// Further figures for the Markdown report (name, value).
    pub details: Vec<(String, String)>,
    /// The reference the headline value is judged against, where there is one computed on the same
    /// split (the closed-form least-squares test R² for linear regression).
    pub reference: Option<f64>,
    /// Longer texts for the Markdown report (title, text): generated samples of language models.
    pub texts: Vec<(String, String)>,
    /// Further headline figures of the same run, each its own `report.json` entry (Hits@10 beside the
    /// MRR of knowledge-graph embeddings).
    pub more_records: Vec<RunRecord>,
}

impl RunSummary {
    /// The run's `report.json` entries: the headline record, then the others.
    pub fn records(&self) -> Vec<RunRecord> {
        std::iter::once(self.record.clone())
            .chain(self.more_records.iter().cloned())
            .collect()
    }
}

impl RunSettings {
    /// The settings of a run of `recipe` on `device` into `run_dir`.
    pub fn for_recipe(
        recipe: &Recipe,
        device: DeviceChoice,
        run_dir: PathBuf,
        dashboard: Dashboard,
        resume: bool,
    ) -> Self {
        Self {
            device,
            run_dir,
            epochs: None,
            quick: recipe.smoke,
            dashboard,
            resume,
            seed: recipe.seed,
            augment: recipe.augment,
            data_parallel: None,
            devices: Vec::new(),
        }
    }
}

/// The training settings of a run: the recipe's, with its smoke-run epochs in a smoke run, the settings'
/// epochs where they override, and the settings' seed.
fn training_config(recipe: &Recipe, settings: &RunSettings) -> TrainingConfig {
    let mut config = recipe.training.clone();
    config.seed = settings.seed;
    if settings.quick {
        config.epochs = recipe.quick.epochs;
    }
    if let Some(epochs) = settings.epochs {
        config.epochs = epochs;
    }
    config
}

/// `items` cut to `keep` in a smoke run.
fn smoke_cut(settings: &RunSettings, keep: Option<usize>, items: usize) -> usize {
    match (settings.quick, keep) {
        (true, Some(k)) => items.min(k),
        _ => items,
    }
}

/// Runs `recipe`: checks it, loads its data, saves it as `recipe.json` in the run folder, trains and
/// scores. `settings` should come from [`RunSettings::for_recipe`].
pub fn run(recipe: &Recipe, settings: &RunSettings) -> anyhow::Result<RunSummary> {
    recipe.check()?;
    let name = recipe.dataset_name();
    let unknown = |kind: &str, vendored: &str, known: &str| {
        anyhow::anyhow!(
            "recipe `{}`: no vendored {kind} named `{vendored}` (vendored: {known}); give a path instead",
            recipe.name
        )
    };
    let save_recipe = || -> anyhow::Result<()> {
        std::fs::create_dir_all(&settings.run_dir)
            .with_context(|| settings.run_dir.display().to_string())?;
        kiln_core::files::write_atomic(settings.run_dir.join("recipe.json"), recipe.to_json())?;
        Ok(())
    };
    match &recipe.hyper {
        Hyper::LinearRegression => {
            let data = match &recipe.dataset {
                DataSource::Vendored(v) if v == "diabetes" => kiln_data::tabular::diabetes()?,
                DataSource::Vendored(v) => return Err(unknown("table", v, "diabetes")),
                DataSource::Path { path, target } => {
                    let table = Table::read(path)?;
                    let target = match target {
                        Some(t) => t.clone(),
                        None => table.columns.last().cloned().with_context(|| {
                            format!("{}: the table has no columns", path.display())
                        })?,
                    };
                    table.regression(&target)?
                }
            };
            save_recipe()?;
            linear_regression(recipe, &data, &name, settings)
        }
        Hyper::KgEmbedding { .. } => {
            let graph = match &recipe.dataset {
                // An unknown name is a missing-folder error naming the vendored graphs.
                DataSource::Vendored(v) => kiln_data::kg::vendored(v)?,
                DataSource::Path { path, .. } => KnowledgeGraph::load(path)?,
            };
            save_recipe()?;
            kg_embedding(recipe, &graph, &name, settings)
        }
        Hyper::Translation { .. } | Hyper::CopySource { .. } => {
            let corpus = match &recipe.dataset {
                DataSource::Vendored(v) if v == "kjv_rv1909" => kiln_data::parallel::kjv_rv1909()?,
                DataSource::Vendored(v) => return Err(unknown("pair file", v, "kjv_rv1909")),
                DataSource::Path { path, .. } => ParallelCorpus::load(path)?,
            };
            save_recipe()?;
            if recipe.model == ModelName::CopySource {
                copy_source(recipe, &corpus, &name, settings)
            } else {
                translation(recipe, &corpus, &name, settings)
            }
        }
        Hyper::CharLm { .. } | Hyper::TransformerLm { .. } => {
            let corpus = match &recipe.dataset {
                DataSource::Vendored(v) if v == "shakespeare" => kiln_data::text::shakespeare()?,
                DataSource::Vendored(v) => return Err(unknown("text", v, "shakespeare")),
                DataSource::Path { path, .. } => CharCorpus::load(path, 0.9, 0.05)?,
            };
            save_recipe()?;
            char_language_model(recipe, &corpus, &name, settings)
        }
        Hyper::LogisticRegression
        | Hyper::Mlp { .. }
        | Hyper::Cnn { .. }
        | Hyper::RowClassifier { .. }
        | Hyper::RowTransformer { .. } => {
            let folder = match &recipe.dataset {
                DataSource::Vendored(v) if v == "mnist" || v == "seq_mnist" => {
                    ImageFolder::mnist()?
                }
                DataSource::Vendored(v) => return Err(unknown("images", v, "mnist, seq_mnist")),
                DataSource::Path { path, .. } => ImageFolder::load(path)?,
            };
            save_recipe()?;
            image_classifier(recipe, &folder, &name, settings)
        }
    }
}

impl RunSummary {
    /// The curves image of the run.
    pub fn curves(&self) -> PathBuf {
        self.run_dir.join("curves.png")
    }
}

/// Snake-case name of a user's dataset path (its file stem or folder name).
pub fn dataset_name(path: &Path) -> String {
    let raw = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "dataset".into());
    let stem = raw.split('.').next().unwrap_or(&raw).to_string();
    let snake: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if snake.is_empty() {
        "dataset".into()
    } else {
        snake
    }
}

fn run_options(settings: &RunSettings, model: &str, dataset: &str) -> RunOptions {
    RunOptions {
        dir: settings.run_dir.clone(),
        device: settings.device.device(),
        dashboard: settings.dashboard,
        resume: settings.resume,
        label: format!("{model} on {dataset}"),
        data_parallel: settings.data_parallel.clone(),
        devices: settings.devices.iter().map(|d| d.device()).collect(),
    }
}

fn save_run<M: Module, C: burn::config::Config>(
    model: &M,
    model_config: &C,
    config: &TrainingConfig,
    settings: &RunSettings,
) -> anyhow::Result<()> {
    save_weights(model, &settings.run_dir.join("model.bpk"))?;
    save_config(model_config, &settings.run_dir.join("model.json"))?;
    kiln_core::files::write_atomic(
        settings.run_dir.join("training.json"),
        serde_json_string(config)?,
    )?;
    Ok(())
}

fn serde_json_string<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// Tells apart runs of one model on one dataset: a smoke run, and the augmentation ablation of image
/// classifiers that augment (the CNN in `train-all`).
fn variant(model: ModelName, settings: &RunSettings) -> Option<String> {
    let mut parts = Vec::new();
    if settings.quick {
        parts.push("quick");
    }
    // Linear regression has no images to augment, so `augment` says nothing about its run.
    if model == ModelName::Cnn || (settings.augment && model != ModelName::LinearRegression) {
        parts.push(if settings.augment {
            "augmented"
        } else {
            "no_augmentation"
        });
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn record<M>(
    model: ModelName,
    dataset: &str,
    settings: &RunSettings,
    metric: &str,
    value: f64,
    outcome: &kiln_train::FitOutcome<M>,
) -> RunRecord
where
    M: Module,
{
    RunRecord {
        model: model.as_str().into(),
        dataset: dataset.into(),
        device: settings.device.to_string(),
        metric: metric.into(),
        value,
        params: outcome.model.num_params(),
        epochs: outcome.epochs,
        train_seconds: outcome.train_seconds,
        variant: variant(model, settings),
        ranks: settings
            .data_parallel
            .as_ref()
            .map_or(1, DataParallel::size),
    }
}
