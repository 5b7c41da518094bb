//! Linear regression on a table.

use super::{
    RunSettings, RunSummary, record, run_options, save_run, serde_json_string, training_config,
};
use crate::model_name::ModelName;
use crate::ols;
use crate::recipe::Recipe;
use kiln_data::split::train_valid_test_split;
use kiln_data::{RegressionDataset, Standardizer, TabularBatcher};
use kiln_models::LinearRegressionConfig;
use kiln_train::{evaluate_dataset, fit};

/// Linear regression on a regression table with full-batch gradient descent, compared with the
/// closed-form least-squares fit of the same training split.
///
/// Split: 70% train, 10% validation, 20% test (seeded). Features and target are standardised with
/// training statistics; RMSE is reported in the target's units.
pub fn linear_regression(
    recipe: &Recipe,
    data: &RegressionDataset,
    dataset: &str,
    settings: &RunSettings,
) -> anyhow::Result<RunSummary> {
    let split = train_valid_test_split(data.items.len(), 0.1, 0.2, settings.seed)?;
    let (train, valid, test) = (
        data.subset(&split.train),
        data.subset(&split.valid),
        data.subset(&split.test),
    );
    // Before training: the train and test splits must be large enough for R² (the learner itself refuses
    // an empty validation split before its first step).
    train.check_r2_scorable(dataset, "train")?;
    test.check_r2_scorable(dataset, "test")?;
    let batcher = TabularBatcher {
        features: Standardizer::fit_features(&train),
        target: Some(Standardizer::fit_target(&train)),
    };
    let target_scale = batcher.target.as_ref().map_or(1.0, |t| t.std[0] as f64);
    let device = settings.device.device();
    device.seed(settings.seed);
    let model_config = LinearRegressionConfig::new(data.num_features());
    let model = model_config.init(&device)?;
    // The recipe keeps the last epoch's weights: the point of this run is gradient descent converging to
    // the least-squares fit, not an early (ridge-like) epoch.
    let config = training_config(recipe, settings);
    let outcome = fit(
        model,
        train.clone(),
        valid,
        batcher.clone(),
        &config,
        &run_options(settings, "linear_regression", dataset),
    )?;
    let scores = evaluate_dataset(
        &outcome.model,
        test.clone(),
        batcher.clone(),
        512,
        &device,
        target_scale,
    )?;
    let (r2, rmse) = (scores.r2()?, scores.rmse()?);
    save_run(&outcome.model, &model_config, &config, settings)?;
    kiln_core::files::write_atomic(
        settings.run_dir.join("preprocessing.json"),
        serde_json_string(&(&batcher.features, &batcher.target))?,
    )?;

    let mut details = vec![
        ("test R²".into(), format!("{r2:.4}")),
        ("test RMSE".into(), format!("{rmse:.2}")),
    ];
    let reference = ols::fit(&train).map(|(w, b)| ols::r2(&test, &w, b));
    if let Some(closed) = reference {
        details.push((
            "closed-form least-squares test R²".into(),
            format!("{closed:.4}"),
        ));
        details.push((
            "gradient descent vs closed form".into(),
            format!("{:+.2}% of R²", 100.0 * (r2 - closed) / closed.abs()),
        ));
    }
    Ok(RunSummary {
        recipe: recipe.name.clone(),
        record: record(
            ModelName::LinearRegression,
            dataset,
            settings,
            "test_r2",
            r2,
            &outcome,
        ),
        run_dir: settings.run_dir.clone(),
        details,
        reference,
        texts: Vec::new(),
        more_records: Vec::new(),
    })
}
