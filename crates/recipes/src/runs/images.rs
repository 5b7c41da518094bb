//! Classifiers of IDX images.

use super::{
    RunSettings, RunSummary, record, run_options, save_run, serde_json_string, training_config,
};
use crate::model_name::ModelName;
use crate::recipe::{Hyper, Recipe};
use anyhow::{Context, bail};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use kiln_data::{
    AugmentationConfig, ImageBatcher, ImageDataset, ImageFolder, PixelNormalizer, train_valid_split,
};
use kiln_models::{
    CnnConfig, LogisticRegressionConfig, MlpConfig, RecurrentConfig, SequenceClassifierConfig,
    TransformerClassifierConfig,
};
use kiln_train::{Supervised, TrainingConfig, evaluate_dataset, fit_with_batchers};

/// A classifier of IDX images: logistic regression, the MLP, the CNN, or a recurrent or Transformer
/// classifier reading the images row by row.
///
/// Split: the folder's training images minus a seeded 1/12 held out for validation (5,000 of MNIST's
/// 60,000); the folder's test images for the test score. Pixels are normalised with training statistics.
pub fn image_classifier(
    recipe: &Recipe,
    folder: &ImageFolder,
    dataset: &str,
    settings: &RunSettings,
) -> anyhow::Result<RunSummary> {
    let model = recipe.model;
    let (mut full_train, mut test) = (folder.train.clone(), folder.test.clone());
    if settings.quick {
        if let Some(n) = recipe.quick.train {
            full_train = full_train.take(n);
        }
        if let Some(n) = recipe.quick.test {
            test = test.take(n);
        }
    }
    let split = train_valid_split(full_train.len(), 1.0 / 12.0, settings.seed)?;
    let train = full_train.subset(&split.train);
    let valid = full_train.subset(&split.valid);
    let (h, w) = (train.height(), train.width());
    let classes = folder.train.num_classes().max(folder.test.num_classes());
    if classes < 2 {
        bail!("{dataset}: the labels hold fewer than two classes");
    }
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), h, w);
    let device = settings.device.device();
    device.seed(settings.seed);
    let config = training_config(recipe, settings);
    let run = ImageRun {
        recipe: &recipe.name,
        model,
        train,
        valid,
        test,
        batcher,
        dataset,
        settings,
    };
    match &recipe.hyper {
        Hyper::LogisticRegression => {
            let model_config = LogisticRegressionConfig::new(h * w, classes);
            run_classifier(model_config.init(&device)?, &model_config, config, run)
        }
        Hyper::Mlp { hidden, dropout } => {
            let model_config =
                MlpConfig::new(h * w, hidden.clone(), classes).with_dropout(*dropout);
            run_classifier(model_config.init(&device)?, &model_config, config, run)
        }
        Hyper::Cnn { dropout } => {
            let model_config = CnnConfig::new(1, h, w, classes).with_dropout(*dropout);
            run_classifier(model_config.init(&device)?, &model_config, config, run)
        }
        Hyper::RowClassifier { hidden } => {
            let cell = model
                .cell()
                .with_context(|| format!("{} has no recurrent cell", model.as_str()))?;
            // Rows are steps: `h` steps of `w` pixels (sequential MNIST: 28 × 28).
            let model_config =
                SequenceClassifierConfig::new(RecurrentConfig::new(cell, w, *hidden), classes);
            run_classifier(model_config.init(&device)?, &model_config, config, run)
        }
        Hyper::RowTransformer { stack } => {
            // Rows are steps, as for the recurrent models; the positions cover the rows.
            let stack = stack.clone().with_max_len(h);
            let model_config = TransformerClassifierConfig::new(w, classes, stack);
            run_classifier(model_config.init(&device)?, &model_config, config, run)
        }
        other => bail!(
            "recipe `{}`: {} hyper-parameters do not train on images",
            recipe.name,
            other.family()
        ),
    }
}

/// The data and settings of one image-classifier run.
struct ImageRun<'a> {
    recipe: &'a str,
    model: ModelName,
    train: ImageDataset,
    valid: ImageDataset,
    test: ImageDataset,
    batcher: ImageBatcher,
    dataset: &'a str,
    settings: &'a RunSettings,
}

fn run_classifier<M, C>(
    model: M,
    model_config: &C,
    config: TrainingConfig,
    run: ImageRun<'_>,
) -> anyhow::Result<RunSummary>
where
    M: Supervised<Batch = kiln_data::ImageBatch>,
    M::Output: kiln_train::LearnerOutput,
    C: burn::config::Config,
{
    let ImageRun {
        recipe: recipe_name,
        model: name,
        train,
        valid,
        test,
        batcher,
        dataset,
        settings,
    } = run;
    let train_batcher = if settings.augment {
        batcher
            .clone()
            .with_augmentation(AugmentationConfig::standard(), settings.seed)
    } else {
        batcher.clone()
    };
    let is_root = settings
        .data_parallel
        .as_ref()
        .is_none_or(kiln_train::DataParallel::is_root);
    if settings.augment && is_root {
        // What augmentation does, in TensorBoard: 16 training images as they are and as augmented (a
        // clone of the batcher, which restarts from its seed, so training's draws are untouched).
        let items: Vec<_> = (0..train.len().min(16))
            .filter_map(|i| train.get(i).ok())
            .collect();
        let device = settings.device.device();
        let (h, w) = (train.height(), train.width());
        for (tag, b) in [
            ("images/training", &batcher),
            ("images/augmented_training", &train_batcher),
        ] {
            let images = b.clone().batch(items.clone(), &device).images;
            let n = images.dims()[0];
            if let Ok(values) = images.into_data().convert::<f32>().try_to_vec::<f32>() {
                let per: Vec<Vec<f32>> =
                    values.chunks(h * w).take(n).map(<[f32]>::to_vec).collect();
                kiln_train::board::write_image_grid(&settings.run_dir, tag, 1, &per, h, w);
            }
        }
    }
    let outcome = fit_with_batchers(
        model,
        train,
        valid,
        train_batcher,
        batcher.clone(),
        &config,
        &run_options(settings, name.as_str(), dataset),
    )?;
    let scores = evaluate_dataset(
        &outcome.model,
        test,
        batcher.clone(),
        1000,
        &settings.device.device(),
        1.0,
    )?;
    let (accuracy, items) = (scores.accuracy()?, scores.items()?);
    save_run(&outcome.model, model_config, &config, settings)?;
    kiln_core::files::write_atomic(
        settings.run_dir.join("preprocessing.json"),
        serde_json_string(&batcher.normalizer)?,
    )?;
    Ok(RunSummary {
        recipe: recipe_name.to_string(),
        record: record(name, dataset, settings, "test_accuracy", accuracy, &outcome),
        run_dir: settings.run_dir.clone(),
        details: vec![
            ("test accuracy".into(), format!("{:.2}%", 100.0 * accuracy)),
            (
                "test errors".into(),
                format!("{}", ((1.0 - accuracy) * items as f64).round()),
            ),
            ("test loss".into(), format!("{:.4}", scores.loss()?)),
            (
                "best epoch (valid loss)".into(),
                format!("{:?}", outcome.best_epoch.unwrap_or(0)),
            ),
        ],
        reference: None,
        texts: Vec::new(),
        more_records: Vec::new(),
    })
}
