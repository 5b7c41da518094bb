//! Linear regression on the diabetes data with full-batch gradient descent: train, score against the
//! closed-form least-squares fit, save, load, predict.
//!
//! The minimal hand-written version, calling the library crates directly: it does not use the recipe
//! `linear_regression-diabetes` that `cargo xtask train-all` runs (`cargo xtask recipes --show NAME` prints it).
//!
//! `cargo run --release --example linear_regression`

use burn::data::dataloader::batcher::Batcher;
use kiln::data::split::train_valid_test_split;
use kiln::data::{Standardizer, TabularBatcher, tabular};
use kiln::models::LinearRegressionConfig;
use kiln::models::persist::{load_weights, save_weights};
use kiln::recipes::ols;
use kiln::train::{
    Dashboard, DeviceChoice, OptimizerConfig, RunOptions, TrainingConfig, evaluate_dataset, fit,
};

fn main() -> anyhow::Result<()> {
    let device = DeviceChoice::cpu_default()?.device();
    let data = tabular::diabetes()?;
    let split = train_valid_test_split(data.items.len(), 0.1, 0.2, 42)?;
    let (train, valid, test) = (
        data.subset(&split.train),
        data.subset(&split.valid),
        data.subset(&split.test),
    );
    let target = Standardizer::fit_target(&train);
    let batcher = TabularBatcher {
        features: Standardizer::fit_features(&train),
        target: Some(target.clone()),
    };

    let config = LinearRegressionConfig::new(data.num_features());
    let mut training = TrainingConfig::new(500, 0, 0.1);
    training.optimizer = OptimizerConfig::FullBatchGd { weight_decay: 0.0 };
    training.restore_best = false;
    let options = RunOptions {
        dir: "runs/examples/linear_regression".into(),
        device: device.clone(),
        dashboard: Dashboard::Quiet,
        resume: false,
        label: "linear regression example".into(),
        data_parallel: None,
        devices: Vec::new(),
    };
    let trained = fit(
        config.init(&device)?,
        train.clone(),
        valid,
        batcher.clone(),
        &training,
        &options,
    )?;
    let scores = evaluate_dataset(
        &trained.model,
        test.clone(),
        batcher.clone(),
        512,
        &device,
        target.std[0] as f64,
    )?;
    let (w, b) = ols::fit(&train).ok_or_else(|| anyhow::anyhow!("singular design matrix"))?;
    println!(
        "test R² {:.4} (closed form {:.4}), RMSE {:.1}",
        scores.r2()?,
        ols::r2(&test, &w, b),
        scores.rmse()?
    );

    let weights = options.dir.join("model.bpk");
    save_weights(&trained.model, &weights)?;
    let loaded = load_weights(config.init(&device)?, &weights)?;
    let rows = test.items[..5].to_vec();
    let predicted = loaded.predict(batcher.batch(rows.clone(), &device).features)?;
    for (row, p) in rows.iter().zip(predicted.to_data().try_to_vec::<f32>()?) {
        println!(
            "target {:>5.0}  predicted {:>6.1}",
            row.target,
            target.invert(0, p)
        );
    }
    Ok(())
}
