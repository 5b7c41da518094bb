//! Train an LSTM on sequential MNIST (each image read as 28 steps of 28 pixels) and a GRU character
//! language model on Shakespeare; score them, save and reload the LSTM, predict, and generate text.
//!
//! The minimal hand-written version, calling the library crates directly: it does not use the recipes
//! `lstm-seq_mnist` and `gru-shakespeare` that `cargo xtask train-all` runs (`cargo xtask recipes --show
//! NAME` prints them).
//!
//! `cargo run --release --example recurrent` (one epoch of each, a few minutes on 2 cores; `-- 4` for four).

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use kiln::data::{
    ImageBatcher, ImageFolder, PixelNormalizer, TokenBatcher, TokenWindows, text, train_valid_split,
};
use kiln::models::persist::{load_weights, save_weights};
use kiln::models::{CellKind, CharLmConfig, RecurrentConfig, SequenceClassifierConfig};
use kiln::train::{Dashboard, DeviceChoice, RunOptions, TrainingConfig, evaluate_dataset, fit};
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let epochs = std::env::args()
        .nth(1)
        .map(|e| e.parse())
        .transpose()?
        .unwrap_or(1);
    let device = DeviceChoice::cpu_default()?.device();
    let options = |name: &str| RunOptions {
        dir: format!("runs/examples/{name}").into(),
        device: device.clone(),
        dashboard: Dashboard::Auto,
        resume: false,
        label: format!("{name} example"),
        data_parallel: None,
        devices: Vec::new(),
    };

    // Sequential MNIST with an LSTM.
    let mnist = ImageFolder::mnist()?;
    let split = train_valid_split(mnist.train.len(), 1.0 / 12.0, 42)?;
    let (train, valid) = (
        mnist.train.subset(&split.train),
        mnist.train.subset(&split.valid),
    );
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);
    let config = SequenceClassifierConfig::new(RecurrentConfig::new(CellKind::Lstm, 28, 128), 10);
    let mut training = TrainingConfig::new(epochs, 128, 2e-3);
    training.grad_clip_norm = Some(1.0);
    let lstm_options = options("lstm");
    let trained = fit(
        config.init(&device)?,
        train,
        valid,
        batcher.clone(),
        &training,
        &lstm_options,
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
        "LSTM sequential-MNIST test accuracy {:.2}%",
        100.0 * test.accuracy()?
    );
    let weights = lstm_options.dir.join("model.bpk");
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

    // A GRU character language model on 2,000 windows of Shakespeare.
    let corpus = text::shakespeare()?;
    let train = TokenWindows::new(Arc::clone(&corpus.train), 100)?.take(2000);
    let valid = TokenWindows::new(Arc::clone(&corpus.valid), 100)?.take(200);
    let lm_config = CharLmConfig::new(CellKind::Gru, corpus.vocab.len());
    let trained = fit(
        lm_config.init(&device)?,
        train,
        valid.clone(),
        TokenBatcher,
        &training,
        &options("char_gru"),
    )?;
    let scores = evaluate_dataset(&trained.model, valid, TokenBatcher, 100, &device, 1.0)?;
    println!("GRU validation loss {:.3} nats/char", scores.loss()?);
    let prompt = "KING.\n";
    let sample = trained
        .model
        .generate(&corpus.vocab.encode(prompt), 200, 0.7, 1)?;
    println!("{prompt}{}", corpus.vocab.decode(&sample));
    Ok(())
}
