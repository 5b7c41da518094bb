//! Translation of sentence pairs, and the copy-the-source baseline.

use super::{
    RunSettings, RunSummary, record, run_options, save_run, serde_json_string, smoke_cut,
    training_config, variant,
};
use crate::model_name::ModelName;
use crate::recipe::{Hyper, Recipe};
use anyhow::bail;
use kiln_data::parallel::{PairSplit, split_bible_by_books};
use kiln_data::split::train_valid_test_split;
use kiln_data::{PairBatcher, ParallelCorpus, SentencePair, TranslationData};
use kiln_models::Seq2SeqConfig;
use kiln_train::{RunRecord, corpus_bleu, fit};

/// Source and target training pairs, held-out validation and test pairs: the Bible split by whole books
/// ([`kiln_data::parallel::split_bible_by_books`]) or, for any other pair file, a seeded 90/5/5 split; pairs
/// longer than `max_words` on either side are left out.
pub fn translation_split(
    corpus: &ParallelCorpus,
    max_words: usize,
    seed: u64,
) -> anyhow::Result<(PairSplit, &'static str)> {
    if let Ok(split) = split_bible_by_books(corpus, max_words) {
        return Ok((
            split,
            "whole books: train Genesis–Daniel, Gospels, Acts; valid Hosea–Malachi; test Romans–Revelation",
        ));
    }
    let short: Vec<SentencePair> = corpus
        .pairs
        .iter()
        .filter(|p| p.is_short(max_words))
        .cloned()
        .collect();
    let indices = train_valid_test_split(short.len(), 0.05, 0.05, seed)?;
    let pick = |ids: &[usize]| ids.iter().map(|&i| short[i].clone()).collect();
    Ok((
        PairSplit {
            train: pick(&indices.train),
            valid: pick(&indices.valid),
            test: pick(&indices.test),
        },
        "seeded 90/5/5 split of the pairs",
    ))
}

/// The copy-the-source baseline: each test source sentence is scored as its own translation (corpus BLEU
/// against the references), which credits the names, numbers and punctuation the two languages share.
pub fn copy_source(
    recipe: &Recipe,
    corpus: &ParallelCorpus,
    dataset: &str,
    settings: &RunSettings,
) -> anyhow::Result<RunSummary> {
    let Hyper::CopySource { max_words } = recipe.hyper else {
        bail!(
            "recipe `{}`: {} hyper-parameters are not the copy baseline's",
            recipe.name,
            recipe.hyper.family()
        );
    };
    let (split, how) = translation_split(corpus, max_words, settings.seed)?;
    let test = test_pairs(&split, recipe, settings);
    let hypotheses: Vec<String> = test.iter().map(|p| p.source.clone()).collect();
    let references: Vec<String> = test.iter().map(|p| p.target.clone()).collect();
    let bleu = corpus_bleu(&hypotheses, &references);
    Ok(RunSummary {
        recipe: recipe.name.clone(),
        record: RunRecord {
            model: ModelName::CopySource.as_str().into(),
            dataset: dataset.into(),
            device: settings.device.to_string(),
            metric: "test_bleu".into(),
            value: bleu.score,
            params: 0,
            epochs: 0,
            train_seconds: 0.0,
            variant: variant(ModelName::CopySource, settings),
            ranks: 1,
        },
        run_dir: settings.run_dir.clone(),
        details: vec![
            ("test BLEU (sacreBLEU 13a)".into(), bleu.to_string()),
            ("test pairs".into(), format!("{} ({how})", test.len())),
        ],
        reference: None,
        texts: Vec::new(),
        more_records: Vec::new(),
    })
}

/// The test pairs of a run (the recipe's smoke-run share in a smoke run).
fn test_pairs<'a>(
    split: &'a PairSplit,
    recipe: &Recipe,
    settings: &RunSettings,
) -> &'a [SentencePair] {
    &split.test[..smoke_cut(settings, recipe.quick.test, split.test.len())]
}

/// An encoder–decoder Transformer translating sentence pairs (English → Spanish on the vendored Bible).
///
/// Word vocabularies come from the training pairs (words seen at least the recipe's `min_count` times, at
/// most `max_vocab` ids a side); the model trains with teacher forcing and is scored by corpus BLEU (as
/// sacreBLEU computes it) on the test pairs, translated by beam search (the recipe's width and GNMT length
/// penalty: the headline) and greedily.
pub fn translation(
    recipe: &Recipe,
    corpus: &ParallelCorpus,
    dataset: &str,
    settings: &RunSettings,
) -> anyhow::Result<RunSummary> {
    let Hyper::Translation {
        ref stack,
        max_words,
        min_count,
        max_vocab,
        beam: beam_width,
        length_penalty,
    } = recipe.hyper
    else {
        bail!(
            "recipe `{}`: {} hyper-parameters do not translate",
            recipe.name,
            recipe.hyper.family()
        );
    };
    let (split, how) = translation_split(corpus, max_words, settings.seed)?;
    let data = TranslationData::build(&split.train, min_count, max_vocab);
    let max_len = stack.max_len;
    let batcher = PairBatcher { max_len };
    let device = settings.device.device();
    device.seed(settings.seed);
    let model_config = Seq2SeqConfig::new(
        data.source_vocab.len(),
        data.target_vocab.len(),
        stack.clone(),
        stack.clone(),
    );
    let config = training_config(recipe, settings);
    let (mut train, mut valid) = (split.train.clone(), split.valid.clone());
    train.truncate(smoke_cut(settings, recipe.quick.train, train.len()));
    valid.truncate(smoke_cut(settings, recipe.quick.valid, valid.len()));
    let outcome = fit(
        model_config.init(&device)?,
        data.encode(&train),
        data.encode(&valid),
        batcher,
        &config,
        &run_options(settings, ModelName::TransformerSeq2Seq.as_str(), dataset),
    )?;
    let model = &outcome.model;
    let test = test_pairs(&split, recipe, settings);
    let sources: Vec<Vec<u32>> = test
        .iter()
        .map(|p| data.source_vocab.encode(&p.source))
        .collect();
    let references: Vec<String> = test.iter().map(|p| p.target.clone()).collect();
    let mut greedy = Vec::with_capacity(test.len());
    for chunk in sources.chunks(128) {
        let (source, valid) = batcher.sources(chunk, &device);
        greedy.extend(model.greedy(source, valid, max_len)?);
    }
    let mut beam = Vec::with_capacity(test.len());
    for sentence in &sources {
        let (source, valid) = batcher.sources(std::slice::from_ref(sentence), &device);
        beam.push(model.beam_search(source, valid, beam_width, max_len, length_penalty)?);
    }
    let decode = |ids: &[Vec<u32>]| -> Vec<String> {
        ids.iter().map(|t| data.target_vocab.decode(t)).collect()
    };
    let (greedy, beam) = (decode(&greedy), decode(&beam));
    let beam_bleu = corpus_bleu(&beam, &references);
    let greedy_bleu = corpus_bleu(&greedy, &references);
    save_run(model, &model_config, &config, settings)?;
    kiln_core::files::write_atomic(
        settings.run_dir.join("vocabularies.json"),
        serde_json_string(&(&data.source_vocab, &data.target_vocab))?,
    )?;
    let mut examples = String::new();
    for i in (0..test.len()).step_by((test.len() / 6).max(1)).take(6) {
        examples.push_str(&format!(
            "{}\n  source:    {}\n  reference: {}\n  beam 4:    {}\n  greedy:    {}\n",
            test[i].id, test[i].source, test[i].target, beam[i], greedy[i]
        ));
    }
    Ok(RunSummary {
        recipe: recipe.name.clone(),
        record: record(
            ModelName::TransformerSeq2Seq,
            dataset,
            settings,
            "test_bleu",
            beam_bleu.score,
            &outcome,
        ),
        run_dir: settings.run_dir.clone(),
        details: vec![
            (
                format!("test BLEU, beam {beam_width} (the headline)"),
                beam_bleu.to_string(),
            ),
            ("test BLEU, greedy".into(), greedy_bleu.to_string()),
            (
                format!("pairs (≤ {max_words} words a side)"),
                format!(
                    "{} train / {} valid / {} test ({how})",
                    train.len(),
                    valid.len(),
                    test.len()
                ),
            ),
            (
                "vocabularies".into(),
                format!(
                    "{} English / {} Spanish ids (words seen twice or more in training)",
                    data.source_vocab.len(),
                    data.target_vocab.len()
                ),
            ),
            (
                "best epoch (valid loss)".into(),
                format!("{:?}", outcome.best_epoch.unwrap_or(0)),
            ),
        ],
        reference: None,
        texts: vec![("example test translations".into(), examples)],
        more_records: Vec::new(),
    })
}
