//! `cargo xtask explain`: attributions of the MNIST MLP and CNN, measured for faithfulness — the deletion
//! and insertion curves of Petsiuk et al. (2018) against a random attribution, and the model-randomisation
//! sanity check of Adebayo et al. (2018) — written to `reports/explain/report.{md,json}` with heatmaps.

use anyhow::Context;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use kiln::data::{
    ImageBatch, ImageBatcher, ImageDataset, ImageFolder, PixelNormalizer, train_valid_split,
};
use kiln::models::persist::{load_config, load_weights};
use kiln::models::{
    Cnn, CnnConfig, HookedClassifier, Mlp, MlpConfig, SequenceClassifier, SequenceClassifierConfig,
    TransformerClassifier, TransformerClassifierConfig,
};
use kiln::recipes::{self, RunSettings, registry};
use kiln::train::{Dashboard, DeviceChoice};
use kiln_explain::{
    Calibration, ConfusionMatrix, Explainer, Quadrature, Scored, activation_statistics,
    attention_rollout, fit_temperature, gate_saturation, grad_cam, head_mean,
};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// One method on one model: `report.json`'s row.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainRecord {
    /// `mlp` or `cnn`.
    pub model: String,
    /// `saliency`, `input_x_gradient`, `integrated_gradients`, `smoothgrad`, `occlusion`, `grad_cam`.
    pub method: String,
    /// Mean over the images of the target probability as the most important pixels are removed (lower is
    /// more faithful).
    pub deletion_auc: f64,
    /// … as they are revealed on a black image (higher is more faithful).
    pub insertion_auc: f64,
    /// The same for a random attribution of the same images.
    pub random_deletion_auc: f64,
    /// The same for a random attribution of the same images.
    pub random_insertion_auc: f64,
    /// Mean Spearman rank correlation of |attribution| before and after re-initialising every layer (low:
    /// the method depends on what the model learnt).
    pub randomization_rank_correlation: f64,
    /// The same over the pixels that are not black only: black pixels get exactly zero from integrated
    /// gradients and occlusion (both measure the change from a black baseline) in either model, and those
    /// ties alone make the correlation over all pixels high.
    pub randomization_rank_correlation_foreground: f64,
    /// Time per image.
    pub ms_per_image: f64,
}

#[derive(Serialize)]
struct ExplainReport {
    runs: Vec<ExplainRecord>,
    cascade: Vec<CascadeRecord>,
    activations: Vec<ActivationRecord>,
    calibration: Vec<CalibrationRecord>,
    class_maximisation: Vec<ClassMaximisation>,
    gates: Vec<GateRecord>,
}

/// What a model's outputs say about it on the test set: `report.json`'s `calibration` rows.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationRecord {
    /// `mlp` or `cnn`.
    pub model: String,
    /// Test accuracy.
    pub accuracy: f64,
    /// The temperature fitted on the validation split (minimum NLL).
    pub temperature: f64,
    /// Expected calibration error (15 bins) of the test set, before and after temperature scaling.
    pub ece_before: f64,
    /// … after.
    pub ece_after: f64,
    /// Maximum calibration error, before.
    pub mce_before: f64,
    /// … after.
    pub mce_after: f64,
    /// Test NLL, before.
    pub nll_before: f64,
    /// … after.
    pub nll_after: f64,
    /// The five most frequent (truth, prediction) mistakes on the test set.
    pub most_confused: Vec<ConfusedPair>,
}

/// One stage of the model-randomisation cascade: `report.json`'s `cascade` rows.
#[derive(Debug, Clone, Serialize)]
pub struct CascadeRecord {
    /// `mlp` or `cnn`.
    pub model: String,
    /// The method.
    pub method: String,
    /// The lowest layer re-initialised: it and every layer above it are random.
    pub randomised: String,
    /// Mean Spearman's ρ of |attribution| against the trained model's, all pixels.
    pub rank_correlation: f64,
    /// The same over the digit's (non-black) pixels.
    pub rank_correlation_foreground: f64,
}

/// One layer's input statistics: `report.json`'s `activations` rows.
#[derive(Debug, Clone, Serialize)]
pub struct ActivationRecord {
    /// `mlp` or `cnn`.
    pub model: String,
    /// The layer whose input this is.
    pub layer: String,
    /// Units (features or channels).
    pub units: usize,
    /// Mean over every element.
    pub mean: f64,
    /// Standard deviation over every element.
    pub std: f64,
    /// Share of exact zeros.
    pub zero_fraction: f64,
    /// Share of units zero for every test image (dead ReLUs).
    pub dead_fraction: f64,
}

/// Activation maximisation of one model: `report.json`'s `class_maximisation` rows.
#[derive(Debug, Clone, Serialize)]
pub struct ClassMaximisation {
    /// The model.
    pub model: String,
    /// The softmax probability of class c reached by its image, for c = 0…9.
    pub probabilities: Vec<f32>,
}

/// One gate of a recurrent layer over the test set: `report.json`'s `gates` rows.
#[derive(Debug, Clone, Serialize)]
pub struct GateRecord {
    /// The model.
    pub model: String,
    /// The layer, from 0 at the input.
    pub layer: usize,
    /// Whether this is the reverse direction.
    pub reverse: bool,
    /// The gate.
    pub gate: String,
    /// Mean value.
    pub mean: f64,
    /// Share saturated (sigmoid < 0.05 or > 0.95, tanh beyond ±0.95).
    pub saturated_fraction: f64,
}

/// One kind of mistake.
#[derive(Debug, Clone, Serialize)]
pub struct ConfusedPair {
    /// The true digit.
    pub truth: usize,
    /// The digit predicted.
    pub predicted: usize,
    /// How many test images.
    pub count: u64,
}

/// Confidence bins of the reliability diagrams (Guo et al. 2017 use 15).
const CALIBRATION_BINS: usize = 15;

/// Steps of the deletion and insertion curves (784 / 28 = 28 pixels a step).
const CURVE_STEPS: usize = 28;

/// Trains (or, with `quick`, smoke-trains) the MLP, the CNN, the LSTM, the GRU and the Transformer classifier
/// (the last three read MNIST row by row) and explains `images` test digits.
pub fn run(device: DeviceChoice, quick: bool, out: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let folder = ImageFolder::mnist()?;
    let images_n = if quick { 64 } else { 500 };
    let mut runs = Vec::new();
    let mut calibration = Vec::new();
    let mut cascade = Vec::new();
    let mut activations = Vec::new();
    let mut class_probabilities = Vec::new();
    let mut gate_records = Vec::new();
    let mut md = String::new();
    writeln!(md, "# Kiln — explanation report\n")?;
    for (model, recipe_name, epochs) in [
        ("mlp", "mlp-mnist", 3),
        ("cnn", "cnn-mnist", 3),
        ("lstm", "lstm-seq_mnist", 2),
        ("gru", "gru-seq_mnist", 2),
        ("transformer_encoder", "transformer_encoder-seq_mnist", 2),
    ] {
        let mut recipe = registry::find(recipe_name)?;
        recipe.training.epochs = if quick { 1 } else { epochs };
        recipe.training.early_stopping_patience = None;
        let run_dir = Path::new("runs/explain").join(model);
        let mut settings =
            RunSettings::for_recipe(&recipe, device, run_dir.clone(), Dashboard::Lines, false);
        settings.quick = quick;
        let summary = recipes::run(&recipe, &settings)?;
        println!("{model}: test accuracy {:.4}", summary.record.value);
        let normalizer: PixelNormalizer = serde_json::from_str(
            &std::fs::read_to_string(run_dir.join("preprocessing.json"))
                .context("preprocessing.json")?,
        )?;
        let plain = device.device();
        let batcher = ImageBatcher::new(normalizer, 28, 28);
        let items: Vec<_> = (0..images_n)
            .filter_map(|i| folder.test.get(i).ok())
            .collect();
        let targets: Vec<usize> = items.iter().map(|i| i.label as usize).collect();
        let images = batcher.batch(items, &plain).images;
        let black = (0.0 - normalizer.mean) / normalizer.std;
        // The run's own validation split (as `image_classifier` draws it), for the temperature; the whole
        // test set (or the smoke run's part of it) for the calibration it is judged on.
        let mut full_train = folder.train.clone();
        let mut test = folder.test.clone();
        if quick {
            if let Some(n) = recipe.quick.train {
                full_train = full_train.take(n);
            }
            if let Some(n) = recipe.quick.test {
                test = test.take(n);
            }
        }
        let split = train_valid_split(full_train.len(), 1.0 / 12.0, settings.seed)?;
        let held_out = Held {
            valid: batched(&full_train.subset(&split.valid), &batcher, &plain)?,
            test: batched(&test, &batcher, &plain)?,
        };
        let white = (1.0 - normalizer.mean) / normalizer.std;
        let subject = Subject {
            name: model,
            run_dir: &run_dir,
            device: &plain,
            images: &images,
            targets: &targets,
            pixel_range: (black, white),
            held: &held_out,
            out,
        };
        let Explained {
            rows,
            stages,
            outputs,
            layers,
            gates,
            probabilities,
        } = match model {
            "mlp" => subject.explain::<Mlp>()?,
            "cnn" => subject.explain::<Cnn>()?,
            "lstm" | "gru" => subject.explain::<SequenceClassifier>()?,
            _ => subject.explain::<TransformerClassifier>()?,
        };
        writeln!(
            md,
            "## {model} (test accuracy {:.2}% after {} epochs)\n",
            100.0 * summary.record.value,
            summary.record.epochs
        )?;
        writeln!(
            md,
            "| method | deletion AUC ↓ | random | insertion AUC ↑ | random | randomisation ρ ↓ | ρ, digit pixels ↓ | ms / image |\n|---|---|---|---|---|---|---|---|"
        )?;
        for r in &rows {
            writeln!(
                md,
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.1} |",
                r.method,
                r.deletion_auc,
                r.random_deletion_auc,
                r.insertion_auc,
                r.random_insertion_auc,
                r.randomization_rank_correlation,
                r.randomization_rank_correlation_foreground,
                r.ms_per_image
            )?;
        }
        writeln!(
            md,
            "\nHeatmaps of the first 16 digits (|attribution|, each map to its own range):\n"
        )?;
        for r in &rows {
            writeln!(
                md,
                "- {}: ![{}]({model}-{}.png)",
                r.method, r.method, r.method
            )?;
        }
        writeln!(
            md,
            "\nDeletion and insertion curves (mean target probability against the share of pixels \
             removed or revealed):\n\n![deletion]({model}-deletion.png) ![insertion]({model}-insertion.png)\n"
        )?;
        write_cascade(&mut md, &stages)?;
        write_outputs(&mut md, &outputs)?;
        if !layers.is_empty() {
            write_layers(&mut md, &layers)?;
        }
        if !gates.is_empty() {
            write_gates(&mut md, &gates)?;
        }
        gate_records.extend(gates);
        if model == "transformer_encoder" {
            writeln!(
                md,
                "Attention of the last layer to the image rows for the first digit (queries down, keys \
                 across), one map per head and their mean; `attention_rollout` above ranks each image row \
                 by the share of the pooled output that rolls out from it (Abnar & Zuidema 2020, residual \
                 weight 0.5):\n\n![attention]({model}-attention.png)\n"
            )?;
        }
        println!(
            "{model} class maximisation: probabilities {}",
            probabilities
                .iter()
                .map(|p| format!("{p:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        writeln!(
            md,
            "Activation maximisation of each class (gradient ascent on the logit from a black image, 200 steps \
             of 0.1, L2 pull 0.01 towards the start, pixels kept in the image range), digits 0–9; the \
             softmax probability each image reaches: {}.\n\n![classes]({model}-classes.png)\n",
            probabilities
                .iter()
                .enumerate()
                .map(|(c, p)| format!("{c}: {p:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        class_probabilities.push(ClassMaximisation {
            model: model.into(),
            probabilities,
        });
        runs.extend(rows);
        cascade.extend(stages);
        activations.extend(layers);
        calibration.push(outputs);
    }
    writeln!(
        md,
        "{images_n} MNIST test digits per model; deletion sets the most important pixels to black {CURVE_STEPS} \
         steps at a time and insertion reveals them on a black image, scoring the softmax probability of the \
         label (Petsiuk et al. 2018 reveal on a blurred image); the AUC is the curve's mean. The random \
         attribution ranks pixels at random. Randomisation: every layer re-initialised (the end of Adebayo et \
         al.'s cascade, whose stages follow each table), Spearman's ρ of |attribution| per image, averaged, over all pixels and over the digit's \
         (non-black) pixels alone. Calibration: {CALIBRATION_BINS} equal-width bins of the top-label \
         confidence (Guo et al. 2017); the temperature minimises the NLL of the run's validation split and is \
         judged on the test set. Whole run: {:.0} s{}.",
        started.elapsed().as_secs_f64(),
        if quick {
            " (--quick: smoke-trained models, 64 digits)"
        } else {
            ""
        }
    )?;
    std::fs::create_dir_all(out)?;
    kiln::core::files::write_atomic(out.join("report.md"), md)?;
    kiln::core::files::write_atomic(
        out.join("report.json"),
        serde_json::to_string_pretty(&ExplainReport {
            runs,
            cascade,
            activations,
            calibration,
            class_maximisation: class_probabilities,
            gates: gate_records,
        })? + "\n",
    )?;
    println!(
        "wrote {} and {}",
        out.join("report.md").display(),
        out.join("report.json").display()
    );
    Ok(())
}

/// Every method on one model; `stages` are Adebayo et al.'s cascade, the model with its top layer, then its
/// top two, … re-initialised (the last: all of them).
#[allow(clippy::too_many_arguments)]
fn explain_model<M>(
    name: &str,
    trained: &M,
    stages: &[(String, M)],
    device: &Device,
    images: &Tensor<3>,
    targets: &[usize],
    black: f32,
    out: &Path,
) -> anyhow::Result<(Vec<ExplainRecord>, Vec<CascadeRecord>)>
where
    M: kiln::core::Supervised<
            Batch = kiln::data::ImageBatch,
            Output = kiln::core::ClassificationOutput,
        > + burn::module::Module
        + Family,
{
    let explainer = Explainer::new(trained, device);
    let stage_explainers: Vec<Explainer<M>> = stages
        .iter()
        .map(|(_, m)| Explainer::new(m, device))
        .collect();
    let n = images.dims()[0];
    let chunk = 50;
    // Each method as a function of (explainer, images, targets), run in chunks of 50 images.
    type Method<'a, M> =
        Box<dyn Fn(&Explainer<M>, &M, Tensor<3>, &[usize]) -> anyhow::Result<Tensor<3>> + 'a>;
    let mut methods: Vec<(&str, Method<M>)> = vec![
        ("saliency", Box::new(|e, _, x, t| Ok(e.saliency(x, t)?))),
        (
            "input_x_gradient",
            Box::new(|e, _, x, t| Ok(e.input_x_gradient(x, t)?)),
        ),
        (
            "integrated_gradients",
            Box::new(move |e, _, x, t| {
                let b = Tensor::full(x.dims(), black, &x.device());
                Ok(
                    e.integrated_gradients(x, b, t, 32, Quadrature::GaussLegendre)?
                        .attributions,
                )
            }),
        ),
        (
            "smoothgrad",
            Box::new(|e, _, x, t| Ok(e.smoothgrad(x, t, 10, 0.3)?)),
        ),
        (
            "occlusion",
            Box::new(move |e, _, x, t| Ok(e.occlusion(x, t, (4, 4), (4, 4), black)?)),
        ),
    ];
    if trained.as_transformer().is_some() {
        methods.push((
            "attention_rollout",
            Box::new(|_, _, _, _| unreachable!("rollout runs on the Transformer below")),
        ));
    }
    if trained.as_cnn().is_some() {
        methods.push((
            "grad_cam",
            Box::new(|_, _, _, _| unreachable!("Grad-CAM runs on the CNN below")),
        ));
    }
    let pixels = images
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let foreground: Vec<bool> = pixels.iter().map(|&p| p != black).collect();
    let mut rows = Vec::new();
    let mut cascade = Vec::new();
    let mut random_curves: Option<(Vec<f64>, Vec<f64>)> = None;
    let (mut deletion_series, mut insertion_series) = (Vec::new(), Vec::new());
    for (method, f) in &methods {
        let attribute = |e: &Explainer<M>, model: &M| -> anyhow::Result<Vec<f32>> {
            let mut maps = Vec::new();
            for start in (0..n).step_by(chunk) {
                let end = (start + chunk).min(n);
                let x = images.clone().slice([start..end, 0..28, 0..28]);
                let t = &targets[start..end];
                maps.push(if *method == "attention_rollout" {
                    let transformer = model
                        .as_transformer()
                        .context("attention rollout needs the Transformer")?;
                    rollout_rows(transformer, x)?
                } else if *method == "grad_cam" {
                    let cnn = model.as_cnn().context("Grad-CAM needs the CNN")?;
                    let map = grad_cam(cnn, device, x, t, 1)?; // [n, 7, 7]
                    let [k, h, w] = map.dims();
                    // Nearest-neighbour upsampling to the image, as Captum's LayerAttribution.interpolate.
                    map.reshape([k, h, 1, w, 1])
                        .repeat_dim(2, 28 / h)
                        .repeat_dim(4, 28 / w)
                        .reshape([k, 28, 28])
                } else {
                    f(e, model, x, t)?
                });
            }
            Tensor::cat(maps, 0)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))
        };
        let started = Instant::now();
        let a = attribute(&explainer, trained)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0 / n as f64;
        let (mut rho, mut rho_foreground) = (f64::NAN, f64::NAN);
        for ((stage, model), e) in stages.iter().zip(&stage_explainers) {
            let r = attribute(e, model)?;
            (rho, rho_foreground) = rank_correlations(&a, &r, &foreground);
            cascade.push(CascadeRecord {
                model: name.into(),
                method: method.to_string(),
                randomised: stage.clone(),
                rank_correlation: rho,
                rank_correlation_foreground: rho_foreground,
            });
        }
        let (deletion, insertion) = curves(&explainer, images, targets, &a, black, device)?;
        if random_curves.is_none() {
            let noise: Vec<f32> = (0..n * 784).map(|i| pseudo_random(i as u64)).collect();
            random_curves = Some(curves(&explainer, images, targets, &noise, black, device)?);
        }
        let (random_deletion, random_insertion) = random_curves.clone().context("random curves")?;
        deletion_series.push((method.to_string(), fractions(&deletion)));
        insertion_series.push((method.to_string(), fractions(&insertion)));
        let (deletion, insertion) = (auc(&deletion), auc(&insertion));
        let (random_deletion, random_insertion) = (auc(&random_deletion), auc(&random_insertion));
        let grid: Vec<Vec<f32>> = (0..16.min(n))
            .map(|i| abs(&a[i * 784..(i + 1) * 784]))
            .collect();
        let (png, _, _) = grey_grid(&grid, 28, 28, 8)?;
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join(format!("{name}-{method}.png")), png)?;
        println!(
            "{name} {method}: deletion {deletion:.3} (random {random_deletion:.3}), insertion {insertion:.3} \
             (random {random_insertion:.3}), randomisation ρ {rho:.2} (digit pixels {rho_foreground:.2}), \
             {ms:.1} ms/image"
        );
        rows.push(ExplainRecord {
            model: name.into(),
            method: method.to_string(),
            deletion_auc: deletion,
            insertion_auc: insertion,
            random_deletion_auc: random_deletion,
            random_insertion_auc: random_insertion,
            randomization_rank_correlation: rho,
            randomization_rank_correlation_foreground: rho_foreground,
            ms_per_image: ms,
        });
    }
    if let Some((d, i)) = random_curves {
        deletion_series.push(("random".into(), fractions(&d)));
        insertion_series.push(("random".into(), fractions(&i)));
    }
    for (kind, series, x) in [
        ("deletion", &deletion_series, "share of pixels removed"),
        ("insertion", &insertion_series, "share of pixels revealed"),
    ] {
        kiln::train::curves::plot_lines(
            series,
            &format!("{name}: {kind} curves, {n} test digits"),
            (x, "target probability"),
            (0.0..1.0, 0.0..1.02),
            false,
            &out.join(format!("{name}-{kind}.png")),
        )?;
    }
    Ok((rows, cascade))
}

/// Mean over the images (784 values each) of Spearman's ρ of |a| and |b|, over all pixels and over the
/// `foreground` ones.
fn rank_correlations(a: &[f32], b: &[f32], foreground: &[bool]) -> (f64, f64) {
    let n = a.len() / 784;
    let (mut all, mut digit) = (0.0, 0.0);
    for i in 0..n {
        let pixels = i * 784..(i + 1) * 784;
        all += spearman(&abs(&a[pixels.clone()]), &abs(&b[pixels.clone()]));
        let keep = |v: &[f32]| -> Vec<f32> {
            pixels
                .clone()
                .filter(|&j| foreground[j])
                .map(|j| v[j].abs())
                .collect()
        };
        digit += spearman(&keep(a), &keep(b));
    }
    (all / n as f64, digit / n as f64)
}

/// What a model family brings to the report beyond the shared methods: its config type, its randomisation
/// cascade, and the models some methods need by type (the CNN for Grad-CAM, the Transformer for its
/// attention); the extra sections it writes.
trait Family:
    kiln::core::Supervised<
        Batch = kiln::data::ImageBatch,
        Output = kiln::core::ClassificationOutput,
    > + burn::module::Module
    + Sized
{
    /// The saved `model.json`.
    type Config: burn::config::Config;
    /// A fresh model from the config.
    fn init(config: &Self::Config, device: &Device) -> anyhow::Result<Self>;
    /// The trained model with its layers re-initialised from the top down, one more each stage.
    fn cascade(trained: &Self, random: &Self) -> Vec<(String, Self)>;
    fn as_cnn(&self) -> Option<&Cnn> {
        None
    }
    fn as_transformer(&self) -> Option<&TransformerClassifier> {
        None
    }
    /// Layer-input statistics (the models with layer-input hooks).
    fn layers(&self, _name: &str, _held: &Held) -> anyhow::Result<Vec<ActivationRecord>> {
        Ok(Vec::new())
    }
    /// Gate statistics (the recurrent models).
    fn gates(&self, _name: &str, _held: &Held) -> anyhow::Result<Vec<GateRecord>> {
        Ok(Vec::new())
    }
    /// Extra pictures (the Transformer's attention maps).
    fn pictures(&self, _name: &str, _images: &Tensor<3>, _out: &Path) -> anyhow::Result<()> {
        Ok(())
    }
}

impl Family for Mlp {
    type Config = MlpConfig;
    fn init(config: &MlpConfig, device: &Device) -> anyhow::Result<Self> {
        Ok(config.init(device)?)
    }
    fn cascade(trained: &Self, random: &Self) -> Vec<(String, Self)> {
        mlp_cascade(trained, random)
    }
    fn layers(&self, name: &str, held: &Held) -> anyhow::Result<Vec<ActivationRecord>> {
        layer_statistics(name, self, held)
    }
}

impl Family for Cnn {
    type Config = CnnConfig;
    fn init(config: &CnnConfig, device: &Device) -> anyhow::Result<Self> {
        Ok(config.init(device)?)
    }
    fn cascade(trained: &Self, random: &Self) -> Vec<(String, Self)> {
        cnn_cascade(trained, random)
    }
    fn as_cnn(&self) -> Option<&Cnn> {
        Some(self)
    }
    fn layers(&self, name: &str, held: &Held) -> anyhow::Result<Vec<ActivationRecord>> {
        layer_statistics(name, self, held)
    }
}

impl Family for SequenceClassifier {
    type Config = SequenceClassifierConfig;
    fn init(config: &SequenceClassifierConfig, device: &Device) -> anyhow::Result<Self> {
        Ok(config.init(device)?)
    }
    fn cascade(trained: &Self, random: &Self) -> Vec<(String, Self)> {
        recurrent_cascade(trained, random)
    }
    fn gates(&self, name: &str, held: &Held) -> anyhow::Result<Vec<GateRecord>> {
        gate_statistics(name, self, held)
    }
}

impl Family for TransformerClassifier {
    type Config = TransformerClassifierConfig;
    fn init(config: &TransformerClassifierConfig, device: &Device) -> anyhow::Result<Self> {
        Ok(config.init(device)?)
    }
    fn cascade(trained: &Self, random: &Self) -> Vec<(String, Self)> {
        transformer_cascade(trained, random)
    }
    fn as_transformer(&self) -> Option<&TransformerClassifier> {
        Some(self)
    }
    fn pictures(&self, name: &str, images: &Tensor<3>, out: &Path) -> anyhow::Result<()> {
        write_head_maps(name, self, images, out)
    }
}

/// One trained model of the report and what it is explained on.
struct Subject<'a> {
    name: &'a str,
    run_dir: &'a Path,
    device: &'a Device,
    images: &'a Tensor<3>,
    targets: &'a [usize],
    pixel_range: (f32, f32),
    held: &'a Held,
    out: &'a Path,
}

/// Everything the report says of one model.
struct Explained {
    rows: Vec<ExplainRecord>,
    stages: Vec<CascadeRecord>,
    outputs: CalibrationRecord,
    layers: Vec<ActivationRecord>,
    gates: Vec<GateRecord>,
    probabilities: Vec<f32>,
}

impl Subject<'_> {
    /// Loads the trained model of type `M` and runs every part of the report on it.
    fn explain<M: Family>(&self) -> anyhow::Result<Explained> {
        let (name, device) = (self.name, self.device);
        let config: M::Config = load_config(&self.run_dir.join("model.json"))?;
        let trained: M = load_weights(M::init(&config, device)?, &self.run_dir.join("model.bpk"))?;
        device.seed(99);
        // `valid` draws the lazily initialised weights now, from seed 99 alone.
        let random = M::init(&config, device)?.valid();
        let stages = M::cascade(&trained, &random);
        trained.pictures(name, self.images, self.out)?;
        let (rows, stages) = explain_model(
            name,
            &trained,
            &stages,
            device,
            self.images,
            self.targets,
            self.pixel_range.0,
            self.out,
        )?;
        Ok(Explained {
            rows,
            stages,
            outputs: interpret_outputs(name, &trained, device, self.held, self.out)?,
            layers: trained.layers(name, self.held)?,
            gates: trained.gates(name, self.held)?,
            probabilities: class_images(name, &trained, device, self.pixel_range, self.out)?,
        })
    }
}

/// The Transformer classifier with its layers (output, encoder layers, input projection) re-initialised
/// from the top down, one more each stage.
fn transformer_cascade(
    trained: &TransformerClassifier,
    random: &TransformerClassifier,
) -> Vec<(String, TransformerClassifier)> {
    let mut stages = Vec::new();
    let mut model = trained.clone();
    model.output = random.output.clone();
    model.stack.final_norm = random.stack.final_norm.clone();
    stages.push(("output".to_string(), model.clone()));
    for i in (0..trained.stack.encoder.layers.len()).rev() {
        model.stack.encoder.layers[i] = random.stack.encoder.layers[i].clone();
        stages.push((format!("layers.{i}"), model.clone()));
    }
    model.input = random.input.clone();
    model.stack.positions = random.stack.positions.clone();
    stages.push(("input".to_string(), model.clone()));
    stages
}

/// The recurrent classifier with its layers (output, then recurrent layers) re-initialised from the top
/// down, one more each stage.
fn recurrent_cascade(
    trained: &SequenceClassifier,
    random: &SequenceClassifier,
) -> Vec<(String, SequenceClassifier)> {
    let mut stages = Vec::new();
    let mut model = trained.clone();
    model.output = random.output.clone();
    stages.push(("output".to_string(), model.clone()));
    for i in (0..trained.recurrent.layers.len()).rev() {
        model.recurrent.layers[i] = random.recurrent.layers[i].clone();
        stages.push((format!("recurrent.{i}"), model.clone()));
    }
    stages
}

/// Attention rollout as an attribution of the pixels: each image row (a step of the Transformer) gets the
/// share of the mean-pooled output that rolls out from it, `[batch, 28, 28]`.
fn rollout_rows(model: &TransformerClassifier, images: Tensor<3>) -> anyhow::Result<Tensor<3>> {
    let [n, h, w] = images.dims();
    let weights = model.valid().attention_weights(images, None)?;
    let rollout = attention_rollout(&weights, 0.5)?; // [n, steps, steps]
    // The classifier pools every step's output with equal weight: average the rows of the rollout.
    let relevance = rollout.mean_dim(1).reshape([n, h, 1]);
    Ok(relevance.expand([n, h, w]))
}

/// The last layer's attention maps of the first digit, one per head, and the mean over heads, as a
/// greyscale grid `<name>-attention.png` (queries down, keys across: image rows).
fn write_head_maps(
    name: &str,
    model: &TransformerClassifier,
    images: &Tensor<3>,
    out: &Path,
) -> anyhow::Result<()> {
    let [_, h, w] = images.dims();
    let first = images.clone().slice([0..1, 0..h, 0..w]);
    let weights = model.valid().attention_weights(first, None)?;
    let last = weights
        .last()
        .context("a Transformer without layers")?
        .clone();
    let [_, heads, q, k] = last.dims();
    let mut maps: Vec<Vec<f32>> = (0..heads)
        .map(|head| {
            last.clone()
                .slice([0..1, head..head + 1, 0..q, 0..k])
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    maps.push(
        head_mean(last)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    );
    let (png, _, _) = grey_grid(&maps, q, k, maps.len())?;
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join(format!("{name}-attention.png")), png)?;
    Ok(())
}

/// The MLP with its layers re-initialised from the top down, one more each stage.
fn mlp_cascade(trained: &Mlp, random: &Mlp) -> Vec<(String, Mlp)> {
    let mut stages = Vec::new();
    let mut model = trained.clone();
    model.output = random.output.clone();
    stages.push(("output".to_string(), model.clone()));
    for i in (0..trained.hidden.len()).rev() {
        model.hidden[i] = random.hidden[i].clone();
        stages.push((format!("hidden.{i}"), model.clone()));
    }
    stages
}

/// The CNN with its layers (output, hidden, then convolution blocks with their norms) re-initialised from
/// the top down, one more each stage.
fn cnn_cascade(trained: &Cnn, random: &Cnn) -> Vec<(String, Cnn)> {
    let mut stages = Vec::new();
    let mut model = trained.clone();
    model.output = random.output.clone();
    stages.push(("output".to_string(), model.clone()));
    for i in (0..trained.hidden.len()).rev() {
        model.hidden[i] = random.hidden[i].clone();
        stages.push((format!("hidden.{i}"), model.clone()));
    }
    for i in (0..trained.blocks.len()).rev() {
        model.blocks[i] = random.blocks[i].clone();
        stages.push((format!("blocks.{i}"), model.clone()));
    }
    stages
}

/// Pixels drawn per map pixel in the report's PNGs (a 28×28 map is 84×84).
const PNG_SCALE: usize = 3;

/// `maps` (`h × w` each) as a PNG grid of `columns`, every map enlarged `PNG_SCALE` times.
fn grey_grid(
    maps: &[Vec<f32>],
    h: usize,
    w: usize,
    columns: usize,
) -> anyhow::Result<(Vec<u8>, u32, u32)> {
    let k = PNG_SCALE;
    let large: Vec<Vec<f32>> = maps
        .iter()
        .map(|m| {
            (0..h * k)
                .flat_map(|r| (0..w * k).map(move |c| m[(r / k) * w + c / k]))
                .collect()
        })
        .collect();
    Ok(kiln_tensorboard::grey_grid_png(
        &large,
        h * k,
        w * k,
        columns,
    )?)
}

/// A curve's points at fractions 0, 1/STEPS, …, 1 of the pixels.
fn fractions(curve: &[f64]) -> Vec<(f64, f64)> {
    let last = (curve.len() - 1).max(1) as f64;
    curve
        .iter()
        .enumerate()
        .map(|(k, &v)| (k as f64 / last, v))
        .collect()
}

/// The area under a curve of equally spaced points on [0, 1] (trapezoidal rule).
fn auc(curve: &[f64]) -> f64 {
    let steps = (curve.len() - 1).max(1) as f64;
    curve.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum::<f64>() / steps
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// A reproducible number in [0, 1) for index `i` (SplitMix64).
fn pseudo_random(i: u64) -> f32 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
}

/// Ranks of `v` (ties get their mean rank).
fn ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0;
        for &k in &order[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (0 when either side is constant).
pub fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    if va == 0.0 || vb == 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

/// Deletion and insertion curves of `attributions` (flat, 784 per image; ranked by value, largest first):
/// the mean target probability with 0, 1/`CURVE_STEPS`, …, all of the pixels removed or revealed.
fn curves<M>(
    explainer: &Explainer<M>,
    images: &Tensor<3>,
    targets: &[usize],
    attributions: &[f32],
    black: f32,
    device: &Device,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)>
where
    M: kiln::core::Supervised<
            Batch = kiln::data::ImageBatch,
            Output = kiln::core::ClassificationOutput,
        > + burn::module::Module,
{
    let n = images.dims()[0];
    let pixels = images
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let orders: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let a = &attributions[i * 784..(i + 1) * 784];
            let mut o: Vec<usize> = (0..784).collect();
            o.sort_by(|&x, &y| a[y].total_cmp(&a[x]));
            o
        })
        .collect();
    let per_step = 784 / CURVE_STEPS;
    let (mut deletion, mut insertion) = (Vec::new(), Vec::new());
    for step in 0..=CURVE_STEPS {
        let k = step * per_step;
        let mut deleted = pixels.clone();
        let mut inserted = vec![black; n * 784];
        for (i, order) in orders.iter().enumerate() {
            for &p in &order[..k] {
                deleted[i * 784 + p] = black;
                inserted[i * 784 + p] = pixels[i * 784 + p];
            }
        }
        for (values, curve) in [(deleted, &mut deletion), (inserted, &mut insertion)] {
            let x = Tensor::<3>::from_data(TensorData::new(values, [n, 28, 28]), device);
            let p = probabilities(explainer, x, targets)?;
            curve.push(p.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64);
        }
    }
    Ok((deletion, insertion))
}

/// The images a model's outputs are judged on, batched once for every model and section: the run's
/// validation split and the test set.
struct Held {
    valid: Vec<ImageBatch>,
    test: Vec<ImageBatch>,
}

/// `data` in batches of 500 on `device`.
fn batched(
    data: &ImageDataset,
    batcher: &ImageBatcher,
    device: &Device,
) -> anyhow::Result<Vec<ImageBatch>> {
    (0..data.len())
        .step_by(500)
        .map(|start| {
            let items = (start..(start + 500).min(data.len()))
                .map(|i| data.get(i))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(batcher.clone().batch(items, device))
        })
        .collect()
}

/// Logits of every image of `batches`, flat (`items × classes`), with the labels.
fn logits_of<M>(
    explainer: &Explainer<M>,
    batches: &[ImageBatch],
) -> anyhow::Result<(Vec<f32>, Vec<usize>)>
where
    M: kiln::core::Supervised<
            Batch = kiln::data::ImageBatch,
            Output = kiln::core::ClassificationOutput,
        > + burn::module::Module,
{
    let (mut logits, mut labels) = (Vec::new(), Vec::new());
    for batch in batches {
        labels.extend(
            batch
                .labels
                .clone()
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .into_iter()
                .map(|l| l as usize),
        );
        logits.extend(
            explainer
                .logits(batch.images.clone())
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        );
    }
    Ok((logits, labels))
}

/// Output interpretation of one model: confusion, calibration before and after a temperature fitted on
/// the validation split, and the reliability diagram `<name>-reliability.png`.
fn interpret_outputs<M>(
    name: &str,
    trained: &M,
    device: &Device,
    held: &Held,
    out: &Path,
) -> anyhow::Result<CalibrationRecord>
where
    M: kiln::core::Supervised<
            Batch = kiln::data::ImageBatch,
            Output = kiln::core::ClassificationOutput,
        > + burn::module::Module,
{
    let explainer = Explainer::new(trained, device);
    let (valid_logits, valid_labels) = logits_of(&explainer, &held.valid)?;
    let (test_logits, test_labels) = logits_of(&explainer, &held.test)?;
    let classes = valid_logits.len() / valid_labels.len().max(1);
    let valid = Scored::new(&valid_logits, classes, &valid_labels)?;
    let test = Scored::new(&test_logits, classes, &test_labels)?;
    let temperature = fit_temperature(&valid);
    let before = Calibration::of(&test, 1.0, CALIBRATION_BINS)?;
    let after = Calibration::of(&test, temperature, CALIBRATION_BINS)?;
    let confusion = ConfusionMatrix::of(&test);
    let diagram = |c: &Calibration| -> Vec<(f64, f64)> {
        c.bins
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.confidence, b.accuracy))
            .collect()
    };
    kiln::train::curves::plot_lines(
        &[
            (format!("T = 1 (ECE {:.4})", before.ece), diagram(&before)),
            (
                format!("T = {temperature:.3} (ECE {:.4})", after.ece),
                diagram(&after),
            ),
        ],
        &format!("{name}: reliability on {} test digits", test.len()),
        ("confidence", "accuracy"),
        (0.0..1.0, 0.0..1.02),
        true,
        &out.join(format!("{name}-reliability.png")),
    )?;
    println!(
        "{name} outputs: test accuracy {:.4}, temperature {temperature:.3} (fitted on {} validation digits), \
         ECE {:.4} → {:.4}, NLL {:.4} → {:.4}",
        confusion.accuracy(),
        valid.len(),
        before.ece,
        after.ece,
        before.nll,
        after.nll
    );
    Ok(CalibrationRecord {
        model: name.into(),
        accuracy: confusion.accuracy(),
        temperature,
        ece_before: before.ece,
        ece_after: after.ece,
        mce_before: before.mce,
        mce_after: after.mce,
        nll_before: before.nll,
        nll_after: after.nll,
        most_confused: confusion
            .most_confused(5)
            .into_iter()
            .map(|c| ConfusedPair {
                truth: c.truth,
                predicted: c.predicted,
                count: c.count,
            })
            .collect(),
    })
}

/// The report's table of the randomisation cascade: ρ (all pixels / digit pixels) per method and stage.
fn write_cascade(md: &mut String, stages: &[CascadeRecord]) -> anyhow::Result<()> {
    let mut columns: Vec<&str> = Vec::new();
    for r in stages {
        if !columns.contains(&r.randomised.as_str()) {
            columns.push(&r.randomised);
        }
    }
    writeln!(
        md,
        "Randomisation cascade (Adebayo et al. 2018): Spearman's ρ of |attribution| against the trained \
         model's, all pixels / digit pixels, as the layers are re-initialised from the top down (each column \
         re-initialises that layer and all above it):\n"
    )?;
    writeln!(
        md,
        "| method | {} |\n|---|{}",
        columns
            .iter()
            .map(|c| format!("from {c}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(columns.len())
    )?;
    let mut methods: Vec<&str> = Vec::new();
    for r in stages {
        if !methods.contains(&r.method.as_str()) {
            methods.push(&r.method);
        }
    }
    for method in methods {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| {
                stages
                    .iter()
                    .find(|r| r.method == method && r.randomised == *c)
                    .map_or("—".into(), |r| {
                        format!(
                            "{:.2} / {:.2}",
                            r.rank_correlation, r.rank_correlation_foreground
                        )
                    })
            })
            .collect();
        writeln!(md, "| {method} | {} |", cells.join(" | "))?;
    }
    writeln!(md)?;
    Ok(())
}

/// The statistics of every layer's input (after the first) over the test images (or the smoke run's
/// part of them).
fn layer_statistics<M: HookedClassifier>(
    name: &str,
    trained: &M,
    held: &Held,
) -> anyhow::Result<Vec<ActivationRecord>> {
    let stats = activation_statistics(trained, held.test.iter().cloned())?;
    for s in &stats {
        println!(
            "{name} input of {}: {} units, mean {:.3}, std {:.3}, zeros {:.1}%, dead units {:.1}%",
            s.layer,
            s.units,
            s.mean,
            s.std,
            100.0 * s.zero_fraction,
            100.0 * s.dead_fraction
        );
    }
    Ok(stats
        .into_iter()
        .map(|s| ActivationRecord {
            model: name.into(),
            layer: s.layer,
            units: s.units,
            mean: s.mean,
            std: s.std,
            zero_fraction: s.zero_fraction,
            dead_fraction: s.dead_fraction,
        })
        .collect())
}

/// Class maximisation from a black image (200 steps of 0.1, l2 0.01, pixels kept in the image range):
/// writes `<name>-classes.png` (digits 0–9, each to its own range) and returns each class's softmax
/// probability at the end.
fn class_images<M>(
    name: &str,
    trained: &M,
    device: &Device,
    range: (f32, f32),
    out: &Path,
) -> anyhow::Result<Vec<f32>>
where
    M: kiln::core::Supervised<
            Batch = kiln::data::ImageBatch,
            Output = kiln::core::ClassificationOutput,
        > + burn::module::Module,
{
    let explainer = Explainer::new(trained, device);
    let targets: Vec<usize> = (0..10).collect();
    let start = Tensor::<3>::full([10, 28, 28], range.0, device);
    let found = explainer.maximise_classes(start, &targets, 200, 0.1, 0.01, range)?;
    let pixels = found
        .images
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let grid: Vec<Vec<f32>> = pixels.chunks(784).map(<[f32]>::to_vec).collect();
    let (png, _, _) = grey_grid(&grid, 28, 28, 10)?;
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join(format!("{name}-classes.png")), png)?;
    probabilities(&explainer, found.images, &targets)
}

/// The gate statistics of a recurrent classifier over the test images.
fn gate_statistics(
    name: &str,
    trained: &SequenceClassifier,
    held: &Held,
) -> anyhow::Result<Vec<GateRecord>> {
    let stats = gate_saturation(trained, held.test.iter().map(|b| b.images.clone()))?;
    Ok(stats
        .into_iter()
        .map(|s| {
            println!(
                "{name} layer {}{} {} gate: mean {:.3}, saturated {:.1}%",
                s.layer,
                if s.reverse { " (reverse)" } else { "" },
                s.gate,
                s.mean,
                100.0 * s.saturated_fraction
            );
            GateRecord {
                model: name.into(),
                layer: s.layer,
                reverse: s.reverse,
                gate: s.gate.into(),
                mean: s.mean,
                saturated_fraction: s.saturated_fraction,
            }
        })
        .collect())
}

/// The report's table of recurrent gates.
fn write_gates(md: &mut String, gates: &[GateRecord]) -> anyhow::Result<()> {
    writeln!(
        md,
        "The recurrent gates over the test set (saturated: a sigmoid below 0.05 or above 0.95, a tanh \
         beyond ±0.95, where the gate passes almost no gradient):\n\n| layer | gate | mean | saturated |\n\
         |---|---|---|---|"
    )?;
    for g in gates {
        writeln!(
            md,
            "| {}{} | {} | {:.3} | {:.1}% |",
            g.layer,
            if g.reverse { " (reverse)" } else { "" },
            g.gate,
            g.mean,
            100.0 * g.saturated_fraction
        )?;
    }
    writeln!(md)?;
    Ok(())
}

/// The report's table of layer inputs.
fn write_layers(md: &mut String, layers: &[ActivationRecord]) -> anyhow::Result<()> {
    writeln!(
        md,
        "What each layer receives over the test set (the ReLU outputs below it; after max-pooling for a \
         convolution):\n\n| input of | units | mean | std | zeros | dead units |\n|---|---|---|---|---|---|"
    )?;
    for l in layers {
        writeln!(
            md,
            "| {} | {} | {:.3} | {:.3} | {:.1}% | {:.1}% |",
            l.layer,
            l.units,
            l.mean,
            l.std,
            100.0 * l.zero_fraction,
            100.0 * l.dead_fraction
        )?;
    }
    writeln!(md)?;
    Ok(())
}

/// The report's section on a model's outputs.
fn write_outputs(md: &mut String, r: &CalibrationRecord) -> anyhow::Result<()> {
    writeln!(
        md,
        "Outputs on the test set: accuracy {:.2}%; temperature {:.3} fitted on the validation split.\n\n\
         | | ECE ↓ | MCE ↓ | NLL ↓ |\n|---|---|---|---|\n\
         | T = 1 | {:.4} | {:.4} | {:.4} |\n| T = {:.3} | {:.4} | {:.4} | {:.4} |\n",
        100.0 * r.accuracy,
        r.temperature,
        r.ece_before,
        r.mce_before,
        r.nll_before,
        r.temperature,
        r.ece_after,
        r.mce_after,
        r.nll_after
    )?;
    let pairs: Vec<String> = r
        .most_confused
        .iter()
        .map(|c| format!("{} taken for {} ({}×)", c.truth, c.predicted, c.count))
        .collect();
    writeln!(
        md,
        "Most confused: {}.\n\n![reliability]({}-reliability.png)\n",
        pairs.join(", "),
        r.model
    )?;
    Ok(())
}

/// The softmax probability of each target.
fn probabilities<M>(
    explainer: &Explainer<M>,
    images: Tensor<3>,
    targets: &[usize],
) -> anyhow::Result<Vec<f32>>
where
    M: kiln::core::Supervised<
            Batch = kiln::data::ImageBatch,
            Output = kiln::core::ClassificationOutput,
        > + burn::module::Module,
{
    let n = images.dims()[0];
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(100) {
        let end = (start + 100).min(n);
        let x = images.clone().slice([start..end, 0..28, 0..28]);
        let p = softmax(explainer.logits(x), 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let classes = p.len() / (end - start);
        out.extend((start..end).map(|i| p[(i - start) * classes + targets[i]]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_is_one_for_the_same_order_and_minus_one_reversed() {
        let a = [1.0, 2.0, 3.0, 10.0];
        assert!((spearman(&a, &[5.0, 6.0, 7.0, 8.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[8.0, 7.0, 6.0, 5.0]) + 1.0).abs() < 1e-12);
        assert_eq!(spearman(&a, &[1.0; 4]), 0.0);
        assert_eq!(ranks(&[3.0, 1.0, 3.0]), [1.5, 0.0, 1.5]);
    }
}
