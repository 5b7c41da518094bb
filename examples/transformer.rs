//! Train an encoder–decoder Transformer to translate English Bible verses into Spanish (King James →
//! Reina-Valera 1909, the test books held out), score it by BLEU, save and reload it, and translate a few
//! test verses greedily and by beam search.
//!
//! The minimal hand-written version, calling the library crates directly: it does not use the recipe
//! `transformer_seq2seq-kjv_rv1909` that `cargo xtask train-all` runs (`cargo xtask recipes --show NAME` prints it).
//!
//! `cargo run --release --example transformer` (3,000 training pairs, two epochs, a couple of minutes on 2
//! cores; `-- 10` for ten epochs). `cargo xtask train --model transformer_seq2seq` trains on every pair.

use kiln::data::parallel::{kjv_rv1909, split_bible_by_books};
use kiln::data::{PairBatcher, TranslationData};
use kiln::models::persist::{load_weights, save_weights};
use kiln::models::{EncoderStackConfig, Seq2SeqConfig};
use kiln::train::{
    Dashboard, DeviceChoice, LrSchedule, RunOptions, TrainingConfig, corpus_bleu, fit,
};

fn main() -> anyhow::Result<()> {
    let epochs = std::env::args()
        .nth(1)
        .map(|e| e.parse())
        .transpose()?
        .unwrap_or(2);
    let device = DeviceChoice::cpu_default()?.device();
    let split = split_bible_by_books(&kjv_rv1909()?, 20)?;
    let train = &split.train[..3000.min(split.train.len())];
    let data = TranslationData::build(train, 2, 8000);
    let batcher = PairBatcher { max_len: 48 };
    let stack = EncoderStackConfig::new(128)
        .with_n_layers(2)
        .with_d_ff(256)
        .with_max_len(48);
    let config = Seq2SeqConfig::new(
        data.source_vocab.len(),
        data.target_vocab.len(),
        stack.clone(),
        stack,
    );
    let mut training = TrainingConfig::new(epochs, 64, 1e-3);
    training.schedule = LrSchedule::WarmupCosine {
        warmup_fraction: 0.05,
        min_lr: 1e-5,
    };
    let options = RunOptions {
        dir: "runs/examples/transformer_seq2seq".into(),
        device: device.clone(),
        dashboard: Dashboard::Auto,
        resume: false,
        label: "translation example".into(),
        data_parallel: None,
        devices: Vec::new(),
    };
    let trained = fit(
        config.init(&device)?,
        data.encode(train),
        data.encode(&split.valid),
        batcher,
        &training,
        &options,
    )?;
    let weights = options.dir.join("model.bpk");
    save_weights(&trained.model, &weights)?;
    let model = load_weights(config.init(&device)?, &weights)?;

    let test = &split.test[..200];
    let sources: Vec<Vec<u32>> = test
        .iter()
        .map(|p| data.source_vocab.encode(&p.source))
        .collect();
    let (source, valid) = batcher.sources(&sources, &device);
    let greedy: Vec<String> = model
        .greedy(source, valid, 48)?
        .iter()
        .map(|ids| data.target_vocab.decode(ids))
        .collect();
    let references: Vec<String> = test.iter().map(|p| p.target.clone()).collect();
    println!(
        "greedy test {} (first 200 test verses)",
        corpus_bleu(&greedy, &references)
    );
    for (i, pair) in test.iter().enumerate().take(3) {
        let (source, valid) = batcher.sources(std::slice::from_ref(&sources[i]), &device);
        let beam = model.beam_search(source, valid, 4, 48, 0.6)?;
        println!(
            "{}\n  source:    {}\n  reference: {}\n  greedy:    {}\n  beam 4:    {}",
            pair.id,
            pair.source,
            pair.target,
            greedy[i],
            data.target_vocab.decode(&beam)
        );
    }
    Ok(())
}
