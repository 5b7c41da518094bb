//! Train an MLP on MNIST, score it, save it, load it back and predict.
//!
//! The minimal hand-written version, calling the library crates directly: it does not use the recipe
//! `mlp-mnist` that `cargo xtask train-all` runs (`cargo xtask recipes --show NAME` prints it).
//!
//! `cargo run --release --example mlp` (about a minute on 2 cores; `-- 10` for ten epochs).

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use kiln::data::{ImageBatcher, ImageFolder, PixelNormalizer, train_valid_split};
use kiln::models::MlpConfig;
use kiln::models::persist::{load_weights, save_weights};
use kiln::train::{Dashboard, DeviceChoice, RunOptions, TrainingConfig, evaluate_dataset, fit};

fn main() -> anyhow::Result<()> {
    let epochs = std::env::args()
        .nth(1)
        .map(|e| e.parse())
        .transpose()?
        .unwrap_or(3);
    let device = DeviceChoice::cpu_default()?.device();

    // Real data: MNIST from the repository; 5,000 training images held out for validation.
    let mnist = ImageFolder::mnist()?;
    let split = train_valid_split(mnist.train.len(), 1.0 / 12.0, 42)?;
    let (train, valid) = (
        mnist.train.subset(&split.train),
        mnist.train.subset(&split.valid),
    );
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);

    // The model, from its config; the learner, from its.
    let config = MlpConfig::new(784, vec![512, 256], 10).with_dropout(0.2);
    let training = TrainingConfig::new(epochs, 128, 1e-3);
    let options = RunOptions {
        dir: "runs/examples/mlp".into(),
        device: device.clone(),
        dashboard: Dashboard::Auto,
        resume: false,
        label: "mlp example".into(),
        data_parallel: None,
        devices: Vec::new(),
    };
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
    println!(
        "test accuracy {:.2}% after {} epochs",
        100.0 * test.accuracy()?,
        trained.epochs
    );

    // Save, load into a fresh model, predict.
    let weights = options.dir.join("model.bpk");
    save_weights(&trained.model, &weights)?;
    let loaded = load_weights(config.init(&device)?, &weights)?;
    let items: Vec<_> = (0..10)
        .map(|i| mnist.test.get(i))
        .collect::<Result<_, _>>()?;
    let labels: Vec<u8> = items.iter().map(|i| i.label).collect();
    let predicted = loaded.predict(batcher.batch(items, &device).images)?;
    println!(
        "labels    {labels:?}\npredicted {:?}",
        predicted.into_data().convert::<i64>().try_to_vec::<i64>()?
    );
    Ok(())
}
