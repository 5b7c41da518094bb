//! Build the Kinships knowledge graph from its triple files, print its statistics, train TransE with
//! negative sampling, and score filtered link prediction (MRR, Hits@1/3/10) on the test triples.
//!
//! The minimal hand-written version, calling the library crates directly: it does not use the recipe
//! `transe-kinships` that `cargo xtask train-all` runs (`cargo xtask recipes --show NAME` prints it).
//!
//! `cargo run --release --example knowledge_graph` (50 epochs, under a minute on 2 cores; `-- 200` for the
//! train-all setting).

use burn::data::dataset::InMemDataset;
use kiln::data::{TripleBatcher, kg};
use kiln::models::{KgEmbeddingConfig, KgScorer, link_prediction_ranks};
use kiln::train::metrics::{MRR, hits_at, rank_evaluation};
use kiln::train::{Dashboard, DeviceChoice, RunOptions, TrainingConfig, fit_with_batchers};

fn main() -> anyhow::Result<()> {
    let epochs = std::env::args()
        .nth(1)
        .map(|e| e.parse())
        .transpose()?
        .unwrap_or(50);
    let graph = kg::vendored("kinships")?;
    println!("kinships: {}", graph.summary());
    let device = DeviceChoice::cpu_default()?.device();
    device.seed(42);
    let config = KgEmbeddingConfig::new(
        KgScorer::TransE,
        graph.entities.len(),
        graph.relations.len(),
    )
    .with_dim(200)
    .with_margin(1.0)
    .with_l2(3e-2);
    let training = TrainingConfig::new(epochs, 256, 3e-2);
    let options = RunOptions {
        dir: "runs/examples/transe".into(),
        device: device.clone(),
        dashboard: Dashboard::Auto,
        resume: false,
        label: "TransE example".into(),
        data_parallel: None,
        devices: Vec::new(),
    };
    let n = graph.entities.len();
    let trained = fit_with_batchers(
        config.init(&device)?,
        InMemDataset::new(graph.train.clone()),
        InMemDataset::new(graph.valid.clone()),
        TripleBatcher::new(n, 50, 1),
        TripleBatcher::new(n, 50, 2),
        &training,
        &options,
    )?;
    let ranks = link_prediction_ranks(&trained.model, &graph.test, &graph.known(), &device)?;
    let scores = rank_evaluation(&[&ranks.tail, &ranks.head])?;
    println!(
        "test (filtered): MRR {:.4}, Hits@1 {:.4}, Hits@3 {:.4}, Hits@10 {:.4}",
        scores.get(MRR)?,
        scores.get(&hits_at(1))?,
        scores.get(&hits_at(3))?,
        scores.get(&hits_at(10))?
    );
    Ok(())
}
