//! `cargo xtask compress`: what pruning, quantization and distillation buy on MNIST, for the MLP and the
//! CNN of `train-all`, measured the same way for every method: test accuracy, non-zero and total
//! parameters, bytes of the saved weights, and inference latency per batch.

use crate::recipes::RunSettings;
use anyhow::Context;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::Module;
use kiln_compress::{
    Distillation, DistillationConfig, Granularity, MagnitudePruner, Norm, PruningScope,
    QatQuantizer, agp_sparsity, prune_cnn_channels, prune_mlp_neurons, ptq_int8, sparsity_report,
};
use kiln_data::{
    ImageBatch, ImageBatcher, ImageDataset, ImageFolder, PixelNormalizer, train_valid_split,
};
use kiln_models::persist::save_weights;
use kiln_models::{CnnConfig, MlpConfig};
use kiln_train::{
    ClassificationOutput, LrSchedule, RunOptions, StepOutput, Supervised, TrainingConfig,
    evaluate_dataset, fit,
};
use serde::{Deserialize, Serialize};

use std::time::Instant;

/// One row of `reports/compress/report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressRecord {
    /// `mlp` or `cnn` (the student, for distillation runs).
    pub model: String,
    /// `baseline`, `prune_unstructured`, `prune_structured`, `ptq_int8`, `qat_int8`, `student_alone`,
    /// `distill` or `pipeline`.
    pub method: String,
    /// Sparsity, scheme or sizes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Test accuracy of the compressed model.
    pub test_accuracy: f64,
    /// Test accuracy of the model it was compressed from (the teacher for `distill`).
    pub baseline_accuracy: f64,
    /// Parameters that are not zero.
    pub params_nonzero: usize,
    /// All parameters.
    pub params_total: usize,
    /// Weights (matrices and kernels, biases and norms left out) that are not zero.
    pub weights_nonzero: usize,
    /// All weights.
    pub weights_total: usize,
    /// Bytes of the saved weights (burnpack).
    pub bytes_on_disk: u64,
    /// Median inference time of a batch of 256 test images, in milliseconds.
    pub latency_ms_per_batch: f64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressReport {
    /// Every run, in order.
    pub runs: Vec<CompressRecord>,
}

/// The MNIST splits and batcher every run shares.
struct Mnist {
    train: ImageDataset,
    valid: ImageDataset,
    test: ImageDataset,
    batcher: ImageBatcher,
}

impl Mnist {
    fn load(quick: bool) -> anyhow::Result<Self> {
        let folder = ImageFolder::mnist()?;
        let (mut full, mut test) = (folder.train.clone(), folder.test.clone());
        if quick {
            full = full.take(3000);
            test = test.take(1000);
        }
        let split = train_valid_split(full.len(), 1.0 / 12.0, 42)?;
        let train = full.subset(&split.train);
        let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);
        Ok(Self {
            valid: full.subset(&split.valid),
            train,
            test,
            batcher,
        })
    }
}

/// Where runs go and how long they train.
struct Bench<'a> {
    settings: &'a RunSettings,
    data: Mnist,
}

impl Bench<'_> {
    fn epochs(&self, full: usize) -> usize {
        if self.settings.quick { 1 } else { full }
    }

    /// Trains `model` for `epochs` with Adam and a cosine schedule from `lr`.
    fn train<M>(&self, model: M, name: &str, epochs: usize, lr: f64) -> anyhow::Result<M>
    where
        M: Supervised<Batch = ImageBatch, Output = ClassificationOutput>,
    {
        let mut config = TrainingConfig::new(self.epochs(epochs), 128, lr);
        config.schedule = LrSchedule::Cosine { min_lr: lr / 100.0 };
        config.seed = self.settings.seed;
        let options = RunOptions {
            dir: self.settings.run_dir.join(name),
            device: self.settings.device.device(),
            dashboard: self.settings.dashboard,
            resume: false,
            label: name.to_string(),
        };
        let outcome = fit(
            model,
            self.data.train.clone(),
            self.data.valid.clone(),
            self.data.batcher.clone(),
            &config,
            &options,
        )?;
        Ok(outcome.model)
    }

    fn accuracy<M>(&self, model: &M) -> anyhow::Result<f64>
    where
        M: Supervised<Batch = ImageBatch, Output = ClassificationOutput>,
    {
        let device = self.settings.device.device();
        Ok(evaluate_dataset(
            model,
            self.data.test.clone(),
            self.data.batcher.clone(),
            1000,
            &device,
            1.0,
        )?
        .accuracy())
    }

    /// Median milliseconds of 20 forward passes over 256 test images (after 3 warm-up passes).
    fn latency<M>(&self, model: &M) -> anyhow::Result<f64>
    where
        M: Supervised<Batch = ImageBatch, Output = ClassificationOutput>,
    {
        let device = self.settings.device.device();
        let items: Vec<_> = (0..256.min(self.data.test.len()))
            .map(|i| self.data.test.get(i))
            .collect::<Result<_, _>>()?;
        let batch = self.data.batcher.batch(items, &device);
        let model = model.valid();
        let mut times = Vec::new();
        for i in 0..23 {
            let started = Instant::now();
            // Reading the loss waits for the whole forward pass.
            let _ = model
                .forward_step(batch.clone())
                .loss()
                .into_scalar::<f32>();
            if i >= 3 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    /// Scores, saves and measures `model` as one report row.
    fn record<M>(
        &self,
        model: &M,
        (name, method, variant): (&str, &str, Option<String>),
        baseline_accuracy: Option<f64>,
    ) -> anyhow::Result<CompressRecord>
    where
        M: Supervised<Batch = ImageBatch, Output = ClassificationOutput>,
    {
        let test_accuracy = self.accuracy(model)?;
        let file = self.settings.run_dir.join("weights").join(format!(
            "{name}-{method}{}.bpk",
            variant
                .as_deref()
                .map(|v| format!("-{}", v.replace([' ', '/', '%', ','], "_")))
                .unwrap_or_default()
        ));
        save_weights(model, &file)?;
        let bytes_on_disk = std::fs::metadata(&file)
            .with_context(|| file.display().to_string())?
            .len();
        let report = sparsity_report(model);
        let params_total: usize = report.iter().map(|l| l.total).sum();
        let params_nonzero = params_total - report.iter().map(|l| l.zeros).sum::<usize>();
        let weights: Vec<_> = report
            .iter()
            .filter(|l| l.path.ends_with("weight"))
            .collect();
        let weights_total: usize = weights.iter().map(|l| l.total).sum();
        let weights_nonzero = weights_total - weights.iter().map(|l| l.zeros).sum::<usize>();
        let record = CompressRecord {
            model: name.into(),
            method: method.into(),
            variant,
            test_accuracy,
            baseline_accuracy: baseline_accuracy.unwrap_or(test_accuracy),
            params_nonzero,
            params_total,
            weights_nonzero,
            weights_total,
            bytes_on_disk,
            latency_ms_per_batch: self.latency(model)?,
        };
        println!(
            "{:<4} {:<19} {:<24} accuracy {:.2}% (baseline {:.2}%), {} of {} weights non-zero, {} bytes, {:.2} ms/batch",
            record.model,
            record.method,
            record.variant.as_deref().unwrap_or(""),
            100.0 * record.test_accuracy,
            100.0 * record.baseline_accuracy,
            record.params_nonzero,
            record.params_total,
            record.bytes_on_disk,
            record.latency_ms_per_batch
        );
        Ok(record)
    }

    /// Iterative magnitude pruning to `target`: `steps` rounds of prune (global threshold, AGP sparsity) then
    /// one epoch of fine-tuning with the masks on; the masks are folded in at the end.
    fn prune_iteratively<M>(
        &self,
        model: M,
        name: &str,
        target: f64,
        steps: usize,
    ) -> anyhow::Result<M>
    where
        M: Supervised<Batch = ImageBatch, Output = ClassificationOutput>,
    {
        let mut model = model;
        for step in 1..=steps {
            let sparsity = agp_sparsity(0.0, target, 0, steps, step);
            let masked =
                MagnitudePruner::new(sparsity, PruningScope::Global)?.prune(model.materialize());
            model = self.train(
                masked,
                &format!("{name}-prune{}-{step}", (target * 100.0).round()),
                1,
                3e-4,
            )?;
        }
        Ok(model.materialize())
    }
}

/// Runs every compression method on the MLP and the CNN and returns the report rows; run folders and the
/// saved weights go under `settings.run_dir`.
pub fn compress_all(settings: &RunSettings) -> anyhow::Result<CompressReport> {
    let bench = Bench {
        settings,
        data: Mnist::load(settings.quick)?,
    };
    let device = settings.device.device();
    let mut runs = Vec::new();

    // The MLP of train-all.
    device.seed(settings.seed);
    let mlp_config = MlpConfig::new(784, vec![512, 256], 10).with_dropout(0.2);
    let mlp = bench.train(mlp_config.init(&device)?, "mlp-baseline", 8, 1e-3)?;
    let base = bench.record(&mlp, ("mlp", "baseline", None), None)?;
    let mlp_accuracy = base.test_accuracy;
    runs.push(base);
    for target in [0.5, 0.9, 0.95] {
        let pruned = bench.prune_iteratively(mlp.clone(), "mlp", target, 3)?;
        let variant = format!("global {:.0}%", 100.0 * target);
        runs.push(bench.record(
            &pruned,
            ("mlp", "prune_unstructured", Some(variant)),
            Some(mlp_accuracy),
        )?);
    }
    for fraction in [0.5, 0.75] {
        let (smaller, sizes) = prune_mlp_neurons(&mlp, fraction, Norm::L2)?;
        let tuned = bench.train(
            smaller,
            &format!("mlp-neurons{}", (fraction * 100.0).round()),
            2,
            3e-4,
        )?;
        let variant = format!(
            "{:.0}% of neurons (784-{}-10)",
            100.0 * fraction,
            join(&sizes)
        );
        runs.push(bench.record(
            &tuned,
            ("mlp", "prune_structured", Some(variant)),
            Some(mlp_accuracy),
        )?);
    }
    for block in [None, Some(32)] {
        let quantized = ptq_int8(mlp.clone(), block);
        let variant = block.map_or("per tensor".to_string(), |b| format!("per block of {b}"));
        runs.push(bench.record(
            &quantized,
            ("mlp", "ptq_int8", Some(variant)),
            Some(mlp_accuracy),
        )?);
    }
    let qat = QatQuantizer {
        granularity: Granularity::PerTensor,
    }
    .prepare(mlp.clone());
    let qat = ptq_int8(bench.train(qat, "mlp-qat", 1, 1e-4)?.materialize(), None);
    runs.push(bench.record(
        &qat,
        ("mlp", "qat_int8", Some("per tensor, 1 epoch".into())),
        Some(mlp_accuracy),
    )?);

    // The CNN of train-all (fewer epochs than train-all's 8).
    device.seed(settings.seed);
    let cnn_config = CnnConfig::new(1, 28, 28, 10).with_dropout(0.25);
    let cnn = bench.train(cnn_config.init(&device)?, "cnn-baseline", 4, 1e-3)?;
    let base = bench.record(&cnn, ("cnn", "baseline", None), None)?;
    let cnn_accuracy = base.test_accuracy;
    runs.push(base);
    let pruned = bench.prune_iteratively(cnn.clone(), "cnn", 0.8, 2)?;
    runs.push(bench.record(
        &pruned,
        ("cnn", "prune_unstructured", Some("global 80%".into())),
        Some(cnn_accuracy),
    )?);
    let (smaller, sizes) = prune_cnn_channels(&cnn, 0.5, Norm::L1)?;
    let tuned = bench.train(smaller, "cnn-channels50", 1, 3e-4)?;
    let variant = format!("50% of channels ({} channels)", join(&sizes));
    runs.push(bench.record(
        &tuned,
        ("cnn", "prune_structured", Some(variant)),
        Some(cnn_accuracy),
    )?);
    runs.push(bench.record(
        &ptq_int8(cnn.clone(), None),
        ("cnn", "ptq_int8", Some("per tensor".into())),
        Some(cnn_accuracy),
    )?);
    let qat = QatQuantizer {
        granularity: Granularity::PerTensor,
    }
    .prepare(cnn.clone());
    let qat = ptq_int8(bench.train(qat, "cnn-qat", 1, 1e-4)?.materialize(), None);
    runs.push(bench.record(
        &qat,
        ("cnn", "qat_int8", Some("per tensor, 1 epoch".into())),
        Some(cnn_accuracy),
    )?);

    // Distillation (Hinton et al. 2015 at our scale): the CNN teaches a small MLP.
    let student_config = MlpConfig::new(784, vec![32], 10);
    device.seed(settings.seed + 1);
    let alone = bench.train(student_config.init(&device)?, "student-alone", 8, 1e-3)?;
    runs.push(bench.record(
        &alone,
        ("mlp", "student_alone", Some("784-32-10".into())),
        Some(cnn_accuracy),
    )?);
    device.seed(settings.seed + 1);
    let config = DistillationConfig::new()
        .with_temperature(4.0)
        .with_alpha(0.9);
    let distilled = Distillation::new(student_config.init(&device)?, cnn.clone(), config)?;
    let distilled = bench.train(distilled, "student-distilled", 8, 1e-3)?;
    let student = distilled.student.clone();
    runs.push(bench.record(
        &student,
        (
            "mlp",
            "distill",
            Some("784-32-10, T 4, α 0.9, CNN teacher".into()),
        ),
        Some(cnn_accuracy),
    )?);

    // The pipeline: distil → prune (80%, fine-tuned with the teacher) → int8.
    let mut pipeline = distilled;
    for step in 1..=2 {
        let sparsity = agp_sparsity(0.0, 0.8, 0, 2, step);
        pipeline.student = MagnitudePruner::new(sparsity, PruningScope::Global)?
            .prune(pipeline.student.materialize());
        pipeline = bench.train(pipeline, &format!("pipeline-prune-{step}"), 1, 3e-4)?;
    }
    let final_student = ptq_int8(pipeline.student.materialize(), None);
    runs.push(bench.record(
        &final_student,
        (
            "mlp",
            "pipeline",
            Some("distil → prune 80% → int8 per tensor".into()),
        ),
        Some(cnn_accuracy),
    )?);
    Ok(CompressReport { runs })
}

fn join(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("-")
}
