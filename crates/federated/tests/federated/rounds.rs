use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use kiln_core::params::parameter_values;
use kiln_core::{StepOutput, Supervised};
use kiln_data::{ImageBatch, ImageBatcher, ImageDataset, ImageFolder, PixelNormalizer};
use kiln_federated::{
    Evaluated, FedAvg, FederatedConfig, FederatedError, Federation, LocalTraining, Partition,
    RoundRecord, StragglerPolicy, local_batches, local_shuffle_rng,
};
use kiln_models::{Mlp, MlpConfig};

struct Mnist {
    train: ImageDataset,
    test: ImageDataset,
    batcher: ImageBatcher,
}

fn mnist(train: usize) -> Mnist {
    let folder = ImageFolder::mnist().expect("the vendored MNIST");
    let train = folder.train.take(train);
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);
    Mnist {
        train,
        test: folder.test.take(1000),
        batcher,
    }
}

fn device() -> Device {
    Device::flex().autodiff()
}

/// A small MLP, built once per test and cloned (the device's random stream is shared by test threads).
fn mlp(hidden: usize, classes: usize) -> Mlp {
    MlpConfig::new(784, vec![hidden], classes)
        .init(&device())
        .expect("mlp")
}

fn accuracy(model: &Mlp, data: &Mnist) -> f64 {
    let model = model.valid();
    let items: Vec<_> = (0..data.test.len())
        .map(|i| data.test.get(i).expect("item"))
        .collect();
    let batch: ImageBatch = data.batcher.batch(items, &device().inner());
    let out = model.forward_step(batch);
    let n = out.targets.dims()[0];
    let right = out
        .output
        .argmax(1)
        .reshape([n])
        .equal(out.targets)
        .int()
        .sum()
        .into_scalar::<i64>();
    right as f64 / n as f64
}

fn run(
    data: &Mnist,
    partition: &Partition,
    model: Mlp,
    config: &FederatedConfig,
) -> Result<(Mlp, Vec<RoundRecord>), FederatedError> {
    let federation = Federation::new(&data.train, &data.batcher, partition, device())?;
    federation.run(model, &mut FedAvg, config, |_, _| {
        Ok(Evaluated {
            accuracy: 0.0,
            stop: false,
        })
    })
}

fn max_difference(a: &Mlp, b: &Mlp) -> f32 {
    let (a, b) = (
        parameter_values(a).expect("a"),
        parameter_values(b).expect("b"),
    );
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn one_client_sampled_every_round_equals_plain_training() {
    let data = mnist(200);
    let partition = Partition::from_clients(vec![(0..200).collect()]).expect("partition");
    let start = mlp(32, 10);
    let mut config = FederatedConfig::new(2, LocalTraining::sgd(2, 32, 0.1), 5);
    config.fraction = 1.0;
    let (federated, records) = run(&data, &partition, start.clone(), &config).expect("run");
    assert_eq!(records.len(), 2);
    // The same batches with burn's SGD, no server in between.
    let mut model = start;
    let mut sgd = SgdConfig::new().init();
    for round in 1..=2 {
        let mut rng = local_shuffle_rng(5, round, 0);
        for indices in local_batches(partition.client(0), 2, 32, &mut rng) {
            let items = indices
                .iter()
                .map(|&i| data.train.get(i).expect("item"))
                .collect();
            let batch = data.batcher.batch(items, &device());
            let grads =
                GradientsParams::from_grads(model.forward_step(batch).loss().backward(), &model);
            model = sgd.step(0.1, model, grads);
        }
    }
    let diff = max_difference(&federated, &model);
    assert!(
        diff < 1e-5,
        "FedAvg with one client differs from SGD by {diff}"
    );
}

#[test]
fn the_same_seed_gives_the_same_global_model_whatever_the_threads() {
    let data = mnist(500);
    let partition = Partition::iid(500, 10, 1).expect("partition");
    let start = mlp(16, 10);
    let mut config =
        FederatedConfig::new(2, LocalTraining::sgd(2, 10, 0.05).with_proximal_mu(0.1), 21);
    config.fraction = 0.4;
    config.stragglers = 0.3;
    config.straggler_policy = StragglerPolicy::Partial;
    let (parallel, _) = run(&data, &partition, start.clone(), &config).expect("parallel");
    config.parallel = false;
    let (serial, _) = run(&data, &partition, start.clone(), &config).expect("serial");
    assert_eq!(max_difference(&parallel, &serial), 0.0);
    config.seed = 22;
    let (other, _) = run(&data, &partition, start, &config).expect("other seed");
    assert!(
        max_difference(&parallel, &other) > 1e-4,
        "another seed changed nothing"
    );
}

#[test]
fn fedprox_keeps_clients_near_the_global_model() {
    let data = mnist(300);
    let partition = Partition::from_clients(vec![(0..300).collect()]).expect("partition");
    let start = mlp(16, 10);
    let moved = |mu: f32| {
        let mut config =
            FederatedConfig::new(1, LocalTraining::sgd(3, 10, 0.1).with_proximal_mu(mu), 2);
        config.fraction = 1.0;
        let (trained, _) = run(&data, &partition, start.clone(), &config).expect("run");
        let (a, b) = (
            parameter_values(&trained).expect("a"),
            parameter_values(&start).expect("b"),
        );
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    let (free, held) = (moved(0.0), moved(5.0));
    assert!(held < 0.8 * free, "μ = 5 moved {held}, μ = 0 moved {free}");
}

#[test]
fn stragglers_are_dropped_or_report_partial_work() {
    let data = mnist(200);
    let partition = Partition::iid(200, 10, 3).expect("partition");
    let start = mlp(8, 10);
    let mut config = FederatedConfig::new(2, LocalTraining::sgd(3, 10, 0.05), 4);
    config.fraction = 1.0;
    config.stragglers = 0.5;
    let (_, dropped) = run(&data, &partition, start.clone(), &config).expect("drop");
    assert!(
        dropped.iter().all(|r| r.sampled == 10 && r.reported == 5),
        "{dropped:?}"
    );
    config.straggler_policy = StragglerPolicy::Partial;
    let (_, partial) = run(&data, &partition, start, &config).expect("partial");
    assert!(partial.iter().all(|r| r.reported == 10), "{partial:?}");
}

#[test]
fn fedavg_learns_mnist_across_clients() {
    let data = mnist(3000);
    let partition = Partition::iid(3000, 10, 8).expect("partition");
    let start = mlp(64, 10);
    let before = accuracy(&start, &data);
    let mut config = FederatedConfig::new(8, LocalTraining::sgd(1, 10, 0.1), 9);
    config.fraction = 0.5;
    let federation =
        Federation::new(&data.train, &data.batcher, &partition, device()).expect("federation");
    let (model, records) = federation
        .run(start, &mut FedAvg, &config, |_, m| {
            let accuracy = accuracy(m, &data);
            Ok(Evaluated {
                accuracy,
                stop: accuracy > 0.87,
            })
        })
        .expect("run");
    let after = accuracy(&model, &data);
    assert!(
        after > 0.87,
        "test accuracy {before} → {after} after {} rounds",
        records.len()
    );
    assert_eq!(records.last().map(|r| r.accuracy), Some(after));
}

#[test]
fn bad_settings_and_data_are_refused_before_training() {
    let data = mnist(100);
    let partition = Partition::iid(100, 4, 1).expect("partition");
    let start = mlp(8, 10);
    let refused = |config: &FederatedConfig| {
        run(&data, &partition, start.clone(), config)
            .expect_err("refused")
            .to_string()
    };
    let base = FederatedConfig::new(1, LocalTraining::sgd(1, 10, 0.1), 1);
    assert!(
        refused(&FederatedConfig {
            fraction: 0.0,
            ..base.clone()
        })
        .contains("fraction")
    );
    assert!(
        refused(&FederatedConfig {
            stragglers: 1.0,
            ..base.clone()
        })
        .contains("stragglers")
    );
    assert!(
        refused(&FederatedConfig {
            rounds: 0,
            ..base.clone()
        })
        .contains("rounds")
    );
    let bad_lr = FederatedConfig::new(1, LocalTraining::sgd(1, 10, f64::NAN), 1);
    assert!(refused(&bad_lr).contains("lr"));
    let no_batch = FederatedConfig::new(1, LocalTraining::sgd(1, 0, 0.1), 1);
    assert!(refused(&no_batch).contains("batch"));
    // A partition naming examples the dataset lacks.
    let outside = Partition::from_clients(vec![vec![0, 1], vec![100]]).expect("partition");
    let err = Federation::new(&data.train, &data.batcher, &outside, device())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("client 1 holds example 100"), "{err}");
    // Labels the model has no class for: refused by the model's batch check, before any round.
    let narrow = mlp(8, 5);
    let err = run(&data, &partition, narrow, &base)
        .expect_err("refused")
        .to_string();
    assert!(err.starts_with("client 0"), "{err}");
}
