//! `cargo xtask explain`: attributions of the MNIST MLP and CNN, measured for faithfulness — the deletion
//! and insertion curves of Petsiuk et al. (2018) against a random attribution, and the model-randomisation
//! sanity check of Adebayo et al. (2018) — written to `reports/explain/report.{md,json}` with heatmaps.

use anyhow::Context;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use kiln::data::{ImageBatcher, ImageFolder, PixelNormalizer};
use kiln::models::persist::{load_config, load_weights};
use kiln::models::{Cnn, CnnConfig, Mlp, MlpConfig};
use kiln::recipes::{self, RunSettings, registry};
use kiln::train::{Dashboard, DeviceChoice};
use kiln_explain::{Explainer, Quadrature, grad_cam};
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
    /// Time per image.
    pub ms_per_image: f64,
}

#[derive(Serialize)]
struct ExplainReport {
    runs: Vec<ExplainRecord>,
}

/// Steps of the deletion and insertion curves (784 / 28 = 28 pixels a step).
const CURVE_STEPS: usize = 28;

/// Trains (or, with `quick`, smoke-trains) the MLP and the CNN and explains `images` test digits.
pub fn run(device: DeviceChoice, quick: bool, out: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let folder = ImageFolder::mnist()?;
    let images_n = if quick { 64 } else { 500 };
    let mut runs = Vec::new();
    let mut md = String::new();
    writeln!(md, "# Kiln — explanation report\n")?;
    for model in ["mlp", "cnn"] {
        let mut recipe = registry::find(&format!("{model}-mnist"))?;
        recipe.training.epochs = if quick { 1 } else { 3 };
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
        let rows = match model {
            "mlp" => {
                let config: MlpConfig = load_config(&run_dir.join("model.json"))?;
                let trained: Mlp = load_weights(config.init(&plain)?, &run_dir.join("model.bpk"))?;
                plain.seed(99);
                let random = config.init(&plain)?;
                explain_model(
                    model, &trained, &random, None, &plain, &images, &targets, black, out,
                )?
            }
            _ => {
                let config: CnnConfig = load_config(&run_dir.join("model.json"))?;
                let trained: Cnn = load_weights(config.init(&plain)?, &run_dir.join("model.bpk"))?;
                plain.seed(99);
                let random = config.init(&plain)?;
                explain_model(
                    model,
                    &trained,
                    &random,
                    Some((&trained, &random)),
                    &plain,
                    &images,
                    &targets,
                    black,
                    out,
                )?
            }
        };
        writeln!(
            md,
            "## {model} (test accuracy {:.2}% after {} epochs)\n",
            100.0 * summary.record.value,
            summary.record.epochs
        )?;
        writeln!(
            md,
            "| method | deletion AUC ↓ | random | insertion AUC ↑ | random | randomisation ρ ↓ | ms / image |\n|---|---|---|---|---|---|---|"
        )?;
        for r in &rows {
            writeln!(
                md,
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.1} |",
                r.method,
                r.deletion_auc,
                r.random_deletion_auc,
                r.insertion_auc,
                r.random_insertion_auc,
                r.randomization_rank_correlation,
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
        writeln!(md)?;
        runs.extend(rows);
    }
    writeln!(
        md,
        "{images_n} MNIST test digits per model; deletion sets the most important pixels to black {CURVE_STEPS} \
         steps at a time and insertion reveals them on a black image, scoring the softmax probability of the \
         label (Petsiuk et al. 2018 reveal on a blurred image); the AUC is the curve's mean. The random \
         attribution ranks pixels at random. Randomisation: every layer re-initialised (the end of Adebayo et \
         al.'s cascade), Spearman's ρ of |attribution| per image, averaged. Whole run: {:.0} s{}.",
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
        serde_json::to_string_pretty(&ExplainReport { runs })? + "\n",
    )?;
    println!(
        "wrote {} and {}",
        out.join("report.md").display(),
        out.join("report.json").display()
    );
    Ok(())
}

/// Every method on one model.
#[allow(clippy::too_many_arguments)]
fn explain_model<M>(
    name: &str,
    trained: &M,
    random: &M,
    cnns: Option<(&Cnn, &Cnn)>,
    device: &Device,
    images: &Tensor<3>,
    targets: &[usize],
    black: f32,
    out: &Path,
) -> anyhow::Result<Vec<ExplainRecord>>
where
    M: kiln::core::Supervised<
            Batch = kiln::data::ImageBatch,
            Output = kiln::core::ClassificationOutput,
        > + burn::module::Module,
{
    let explainer = Explainer::new(trained, device);
    let randomised = Explainer::new(random, device);
    let n = images.dims()[0];
    let baselines = Tensor::<3>::full([n, 28, 28], black, device);
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
    let _ = &baselines;
    if cnns.is_some() {
        methods.push((
            "grad_cam",
            Box::new(|_, _, _, _| unreachable!("Grad-CAM runs on the CNN below")),
        ));
    }
    let mut rows = Vec::new();
    for (method, f) in &methods {
        let attribute = |e: &Explainer<M>,
                         model: &M,
                         cnn: Option<&Cnn>,
                         x: Tensor<3>,
                         t: &[usize]|
         -> anyhow::Result<Tensor<3>> {
            if *method == "grad_cam" {
                let cnn = cnn.context("Grad-CAM needs the CNN")?;
                let map = grad_cam(cnn, device, x, t, 1)?; // [n, 7, 7]
                let [k, h, w] = map.dims();
                // Nearest-neighbour upsampling to the image, as Captum's LayerAttribution.interpolate.
                let up = map
                    .reshape([k, h, 1, w, 1])
                    .repeat_dim(2, 28 / h)
                    .repeat_dim(4, 28 / w);
                Ok(up.reshape([k, 28, 28]))
            } else {
                f(e, model, x, t)
            }
        };
        let started = Instant::now();
        let mut maps = Vec::new();
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let x = images.clone().slice([start..end, 0..28, 0..28]);
            maps.push(attribute(
                &explainer,
                trained,
                cnns.map(|c| c.0),
                x,
                &targets[start..end],
            )?);
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0 / n as f64;
        let maps = Tensor::cat(maps, 0);
        let mut shuffled = Vec::new();
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let x = images.clone().slice([start..end, 0..28, 0..28]);
            shuffled.push(attribute(
                &randomised,
                random,
                cnns.map(|c| c.1),
                x,
                &targets[start..end],
            )?);
        }
        let shuffled = Tensor::cat(shuffled, 0);
        let values = |t: Tensor<3>| -> anyhow::Result<Vec<f32>> {
            t.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))
        };
        let (a, r) = (values(maps.clone())?, values(shuffled)?);
        let rho = (0..n)
            .map(|i| {
                spearman(
                    &abs(&a[i * 784..(i + 1) * 784]),
                    &abs(&r[i * 784..(i + 1) * 784]),
                )
            })
            .sum::<f64>()
            / n as f64;
        let (deletion, insertion) = curves(&explainer, images, targets, &a, black, device)?;
        let noise: Vec<f32> = (0..n * 784).map(|i| pseudo_random(i as u64)).collect();
        let (random_deletion, random_insertion) =
            curves(&explainer, images, targets, &noise, black, device)?;
        let grid: Vec<Vec<f32>> = (0..16.min(n))
            .map(|i| abs(&a[i * 784..(i + 1) * 784]))
            .collect();
        let (png, _, _) = kiln_tensorboard::grey_grid_png(&grid, 28, 28, 8)?;
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join(format!("{name}-{method}.png")), png)?;
        println!(
            "{name} {method}: deletion {deletion:.3} (random {random_deletion:.3}), insertion {insertion:.3} \
             (random {random_insertion:.3}), randomisation ρ {rho:.2}, {ms:.1} ms/image"
        );
        rows.push(ExplainRecord {
            model: name.into(),
            method: method.to_string(),
            deletion_auc: deletion,
            insertion_auc: insertion,
            random_deletion_auc: random_deletion,
            random_insertion_auc: random_insertion,
            randomization_rank_correlation: rho,
            ms_per_image: ms,
        });
    }
    Ok(rows)
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

/// Deletion and insertion AUCs of `attributions` (flat, 784 per image; ranked by value, largest first).
fn curves<M>(
    explainer: &Explainer<M>,
    images: &Tensor<3>,
    targets: &[usize],
    attributions: &[f32],
    black: f32,
    device: &Device,
) -> anyhow::Result<(f64, f64)>
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
    let (mut deletion, mut insertion) = (0.0, 0.0);
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
        let weight = if step == 0 || step == CURVE_STEPS {
            0.5
        } else {
            1.0
        } / CURVE_STEPS as f64;
        for (values, total) in [(deleted, &mut deletion), (inserted, &mut insertion)] {
            let x = Tensor::<3>::from_data(TensorData::new(values, [n, 28, 28]), device);
            let p = probabilities(explainer, x, targets)?;
            *total += weight * p.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        }
    }
    Ok((deletion, insertion))
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
