//! Character language models.

use super::{RunSettings, RunSummary, record, run_options, save_run, training_config};
use crate::recipe::{Hyper, Recipe};
use anyhow::{Context, bail};
use kiln_data::{CharCorpus, TokenBatcher, TokenWindows};
use kiln_models::{CharLmConfig, TextGenerator, TransformerLmConfig};
use kiln_train::{Supervised, TrainingConfig, evaluate_dataset, fit};
use std::sync::Arc;

/// The windows of `length` characters over one split of a corpus, or an error naming the dataset and the
/// split where it is too short for a single one.
fn windows(
    ids: &Arc<Vec<u32>>,
    length: usize,
    dataset: &str,
    split: &str,
) -> Result<TokenWindows, kiln_data::DataError> {
    TokenWindows::new(Arc::clone(ids), length).map_err(|_| kiln_data::DataError::SplitTooSmall {
        source_name: dataset.to_string(),
        split: split.to_string(),
        found: ids.len(),
        needed: length + 1,
        why: format!("characters for one window of {length} (the text is too short)"),
    })
}

/// A character-level language model on a text corpus split contiguously 90/5/5: an RNN, GRU or LSTM
/// ([`kiln_models::CharLm`]) or a decoder-only Transformer ([`kiln_models::TransformerLm`]).
///
/// Trains on non-overlapping windows of the training part (shuffled each epoch; the recipe's window for the
/// recurrent models, the context for the Transformer), validates on the first 1,000 windows of the
/// validation part, and reports the test loss in nats per character over the whole test part, with samples
/// generated from a prompt. The recurrent models are scored on windows of each of the recipe's test lengths
/// (the first is the headline); the Transformer cannot read past its context, so it is scored on windows of
/// its context.
pub fn char_language_model(
    recipe: &Recipe,
    corpus: &CharCorpus,
    dataset: &str,
    settings: &RunSettings,
) -> anyhow::Result<RunSummary> {
    let model = recipe.model;
    let device = settings.device.device();
    device.seed(settings.seed);
    let vocab = corpus.vocab.len();
    let config = training_config(recipe, settings);
    let run = (recipe, corpus, dataset, settings);
    match &recipe.hyper {
        Hyper::CharLm {
            d_embedding,
            d_hidden,
            window,
            test_windows,
        } => {
            let cell = model
                .cell()
                .with_context(|| format!("{} has no recurrent cell", model.as_str()))?;
            let model_config = CharLmConfig::new(cell, vocab)
                .with_d_embedding(*d_embedding)
                .with_d_hidden(*d_hidden);
            let plan = LmPlan {
                train_window: *window,
                test_windows: test_windows.clone(),
            };
            run_language_model(
                model_config.init(&device)?,
                &model_config,
                config,
                plan,
                run,
            )
        }
        Hyper::TransformerLm { stack } => {
            let model_config = TransformerLmConfig::new(vocab, stack.clone());
            // The Transformer cannot read past its context: it trains and is tested on windows of it.
            let plan = LmPlan {
                train_window: stack.max_len,
                test_windows: vec![stack.max_len],
            };
            run_language_model(
                model_config.init(&device)?,
                &model_config,
                config,
                plan,
                run,
            )
        }
        other => bail!(
            "recipe `{}`: {} hyper-parameters do not train on text",
            recipe.name,
            other.family()
        ),
    }
}

/// Window lengths of a language-model run: training, and the test ones (the first is the headline).
struct LmPlan {
    train_window: usize,
    test_windows: Vec<usize>,
}

fn run_language_model<M, C>(
    model: M,
    model_config: &C,
    config: TrainingConfig,
    plan: LmPlan,
    (recipe, corpus, dataset, settings): (&Recipe, &CharCorpus, &str, &RunSettings),
) -> anyhow::Result<RunSummary>
where
    M: Supervised<Batch = kiln_data::TokenBatch> + TextGenerator,
    M::Output: kiln_train::LearnerOutput,
    C: burn::config::Config,
{
    let device = settings.device.device();
    let mut train = windows(&corpus.train, plan.train_window, dataset, "train")?;
    let mut valid = windows(&corpus.valid, plan.train_window, dataset, "valid")?.take(1000);
    // Every test window is cut before training, so that a text too short for them is refused now and
    // not after the training it would waste.
    let mut tests = Vec::new();
    for &window in &plan.test_windows {
        let mut test = windows(&corpus.test, window, dataset, "test")?;
        if let (true, Some(characters)) = (settings.quick, recipe.quick.test) {
            test = test.take(characters / window);
        }
        tests.push((window, test));
    }
    if settings.quick {
        if let Some(n) = recipe.quick.train {
            train = train.take(n);
        }
        if let Some(n) = recipe.quick.valid {
            valid = valid.take(n);
        }
    }
    let outcome = fit(
        model,
        train,
        valid,
        TokenBatcher,
        &config,
        &run_options(settings, recipe.model.as_str(), dataset),
    )?;
    let mut details = Vec::new();
    let mut headline = None;
    for (i, (window, test)) in tests.into_iter().enumerate() {
        let batch = (32_000 / window).clamp(1, 128);
        let scores = evaluate_dataset(&outcome.model, test, TokenBatcher, batch, &device, 1.0)?;
        let nats = scores.loss()?;
        let role = match (i, window == plan.train_window) {
            (0, true) => "the headline, as trained",
            (0, false) => "the headline",
            (_, true) => "as trained",
            _ => "",
        };
        details.push((
            format!(
                "test nats/char (windows of {window}{}{role})",
                if role.is_empty() { "" } else { ", " }
            ),
            format!("{nats:.4}"),
        ));
        if i == 0 {
            details.push((
                "test bits/char".into(),
                format!("{:.4}", nats / std::f64::consts::LN_2),
            ));
            details.push((
                "test perplexity".into(),
                format!("{:.3}", scores.get(kiln_train::metrics::PERPLEXITY)?),
            ));
            details.push((
                "test next-character accuracy".into(),
                format!("{:.2}%", 100.0 * scores.accuracy()?),
            ));
            details.push(("test characters".into(), scores.items()?.to_string()));
            headline = Some(nats);
        }
    }
    details.push((
        "best epoch (valid loss)".into(),
        format!("{:?}", outcome.best_epoch.unwrap_or(0)),
    ));
    save_run(&outcome.model, model_config, &config, settings)?;
    let prompt = "ROMEO.\n";
    let mut texts = Vec::new();
    for temperature in [0.5, 0.8] {
        let ids = outcome.model.generate(
            &corpus.vocab.encode(prompt),
            if settings.quick { 60 } else { 400 },
            temperature,
            settings.seed,
        )?;
        texts.push((
            format!("sample, temperature {temperature}, prompt {prompt:?}"),
            format!("{prompt}{}", corpus.vocab.decode(&ids)),
        ));
    }
    Ok(RunSummary {
        recipe: recipe.name.clone(),
        record: record(
            recipe.model,
            dataset,
            settings,
            "test_nats_per_char",
            headline.context("a language model has a test window")?,
            &outcome,
        ),
        run_dir: settings.run_dir.clone(),
        details,
        reference: None,
        texts,
        more_records: Vec::new(),
    })
}
