//! Multinomial logistic regression on MNIST: train, score, save, load, predict.
//!
//! The minimal hand-written version, calling the library crates directly: it does not use the recipe
//! `logistic_regression-mnist` that `cargo xtask train-all` runs (`cargo xtask recipes --show NAME` prints it).
//!
//! `cargo run --release --example logistic_regression`

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use kiln::data::{ImageBatcher, ImageFolder, PixelNormalizer, train_valid_split};
use kiln::models::LogisticRegressionConfig;
use kiln::models::persist::{load_weights, save_weights};
use kiln::train::{Dashboard, DeviceChoice, RunOptions, TrainingConfig, evaluate_dataset, fit};

fn main() -> anyhow::Result<()> {
    let device = DeviceChoice::cpu_default()?.device();
    let mnist = ImageFolder::mnist()?;
    let split = train_valid_split(mnist.train.len(), 1.0 / 12.0, 42)?;
    let (train, valid) = (
        mnist.train.subset(&split.train),
        mnist.train.subset(&split.valid),
    );
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);

    let config = LogisticRegressionConfig::new(784, 10);
    let options = RunOptions {
        dir: "runs/examples/logistic_regression".into(),
        device: device.clone(),
        dashboard: Dashboard::Auto,
        resume: false,
        label: "logistic regression example".into(),
        data_parallel: None,
        devices: Vec::new(),
    };
    let training = TrainingConfig::new(3, 128, 1e-3);
    let trained = fit(
        config.init(&device)?,
        train,
        valid,
        batcher.clone(),
        &training,
        &options,
    )?;
    let test = evaluate_dataset(
        &trained.model,
        mnist.test.clone(),
        batcher.clone(),
        1000,
        &device,
        1.0,
    )?;
    println!("test accuracy {:.2}%", 100.0 * test.accuracy()?);

    let weights = options.dir.join("model.bpk");
    save_weights(&trained.model, &weights)?;
    let loaded = load_weights(config.init(&device)?, &weights)?;
    let items: Vec<_> = (0..10)
        .map(|i| mnist.test.get(i))
        .collect::<Result<_, _>>()?;
    let labels: Vec<u8> = items.iter().map(|i| i.label).collect();
    let images = batcher.batch(items, &device).images;
    let [n, h, w] = images.dims();
    let predicted = loaded.predict(images.reshape([n, h * w]))?;
    println!(
        "labels    {labels:?}\npredicted {:?}",
        predicted.into_data().convert::<i64>().try_to_vec::<i64>()?
    );
    Ok(())
}
