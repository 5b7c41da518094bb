//! Train the CNN on MNIST with on-the-fly augmentation, score it, save it, load it back and predict.
//!
//! The minimal hand-written version, calling the library crates directly: it does not use the recipe
//! `cnn-mnist-augmented` that `cargo xtask train-all` runs (`cargo xtask recipes --show NAME` prints it).
//!
//! `cargo run --release --example cnn` (two epochs, a couple of minutes on 2 cores; `-- 8` for eight).

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use kiln::data::{
    AugmentationConfig, ImageBatcher, ImageFolder, PixelNormalizer, train_valid_split,
};
use kiln::models::CnnConfig;
use kiln::models::persist::{load_weights, save_weights};
use kiln::train::{
    Dashboard, DeviceChoice, RunOptions, TrainingConfig, evaluate_dataset, fit_with_batchers,
};

fn main() -> anyhow::Result<()> {
    let epochs = std::env::args()
        .nth(1)
        .map(|e| e.parse())
        .transpose()?
        .unwrap_or(2);
    let device = DeviceChoice::cpu_default()?.device();

    let mnist = ImageFolder::mnist()?;
    let split = train_valid_split(mnist.train.len(), 1.0 / 12.0, 42)?;
    let (train, valid) = (
        mnist.train.subset(&split.train),
        mnist.train.subset(&split.valid),
    );
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);
    // Augmentation for the training batches only.
    let augmenting = batcher
        .clone()
        .with_augmentation(AugmentationConfig::standard(), 42);

    let config = CnnConfig::new(1, 28, 28, 10).with_dropout(0.25);
    let training = TrainingConfig::new(epochs, 128, 1e-3);
    let options = RunOptions {
        dir: "runs/examples/cnn".into(),
        device: device.clone(),
        dashboard: Dashboard::Auto,
        resume: false,
        label: "cnn example".into(),
        data_parallel: None,
        devices: Vec::new(),
    };
    let model = config.init(&device)?;
    let trained = fit_with_batchers(
        model,
        train,
        valid,
        augmenting,
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
