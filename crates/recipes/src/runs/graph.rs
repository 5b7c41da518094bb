//! Knowledge-graph embeddings.

use super::{RunSettings, RunSummary, record, run_options, save_run, training_config};
use crate::recipe::{Hyper, Recipe};
use anyhow::{Context, bail};
use burn::data::dataset::InMemDataset;
use kiln_data::{KnowledgeGraph, TripleBatcher};
use kiln_models::{KgEmbeddingConfig, link_prediction_ranks};
use kiln_train::fit_with_batchers;
use kiln_train::metrics::{MRR, hits_at, rank_evaluation};

/// Knowledge-graph embeddings (TransE or DistMult) on a graph's training triples with negative sampling
/// (the recipe's corruptions of head or tail per triple), validated on the loss of the validation triples, and scored
/// by filtered link prediction on the test triples (head and tail queries, all three splits filtered).
pub fn kg_embedding(
    recipe: &Recipe,
    graph: &KnowledgeGraph,
    dataset: &str,
    settings: &RunSettings,
) -> anyhow::Result<RunSummary> {
    let model = recipe.model;
    let scorer = model
        .kg_scorer()
        .with_context(|| format!("{} is not a knowledge-graph model", model.as_str()))?;
    let Hyper::KgEmbedding {
        dim,
        margin,
        l2,
        negatives,
    } = recipe.hyper
    else {
        bail!(
            "recipe `{}`: {} hyper-parameters do not train on a knowledge graph",
            recipe.name,
            recipe.hyper.family()
        );
    };
    let device = settings.device.device();
    device.seed(settings.seed);
    let model_config = KgEmbeddingConfig::new(scorer, graph.entities.len(), graph.relations.len())
        .with_dim(dim)
        .with_margin(margin)
        .with_l2(l2);
    let config = training_config(recipe, settings);
    let batcher = TripleBatcher::new(graph.entities.len(), negatives, settings.seed);
    let outcome = fit_with_batchers(
        model_config.init(&device)?,
        InMemDataset::new(graph.train.clone()),
        InMemDataset::new(graph.valid.clone()),
        batcher,
        TripleBatcher::new(graph.entities.len(), negatives, settings.seed + 1),
        &config,
        &run_options(settings, model.as_str(), dataset),
    )?;
    let known = graph.known();
    let valid = link_prediction_ranks(&outcome.model, &graph.valid, &known, &device)?;
    let valid = rank_evaluation(&[&valid.tail, &valid.head])?;
    let ranks = link_prediction_ranks(&outcome.model, &graph.test, &known, &device)?;
    let test = rank_evaluation(&[&ranks.tail, &ranks.head])?;
    let (mrr, hits10) = (test.get(MRR)?, test.get(&hits_at(10))?);
    let (tail_mrr, head_mrr) = (
        rank_evaluation(&[&ranks.tail])?.get(MRR)?,
        rank_evaluation(&[&ranks.head])?.get(MRR)?,
    );
    save_run(&outcome.model, &model_config, &config, settings)?;
    Ok(RunSummary {
        recipe: recipe.name.clone(),
        record: record(model, dataset, settings, "test_mrr", mrr, &outcome),
        run_dir: settings.run_dir.clone(),
        details: vec![
            (
                "validation MRR / Hits@10 (filtered)".into(),
                format!("{:.4} / {:.4}", valid.get(MRR)?, valid.get(&hits_at(10))?),
            ),
            ("test MRR (filtered)".into(), format!("{mrr:.4}")),
            (
                "test Hits@1".into(),
                format!("{:.4}", test.get(&hits_at(1))?),
            ),
            (
                "test Hits@3".into(),
                format!("{:.4}", test.get(&hits_at(3))?),
            ),
            ("test Hits@10".into(), format!("{hits10:.4}")),
            (
                "test MRR, tail / head queries".into(),
                format!("{tail_mrr:.4} / {head_mrr:.4}"),
            ),
            ("graph".into(), graph.summary()),
            (
                "best epoch (valid loss)".into(),
                format!("{:?}", outcome.best_epoch.unwrap_or(0)),
            ),
        ],
        reference: None,
        texts: Vec::new(),
        more_records: vec![record(
            model,
            dataset,
            settings,
            "test_hits10",
            hits10,
            &outcome,
        )],
    })
}
