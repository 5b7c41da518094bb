//! The learner end to end on real MNIST subsets: loss falls, accuracy rises, checkpoints and curves are
//! written, training resumes, and bad checkpoints or diverging losses are clear errors.

use burn::prelude::*;
use kiln_data::{ImageBatcher, ImageDataset, ImageFolder, PixelNormalizer};
use kiln_models::{LinearRegressionConfig, LogisticRegressionConfig, MlpConfig};
use kiln_train::{
    Dashboard, OptimizerConfig, RunOptions, TrainError, TrainingConfig, evaluate_dataset, fit,
};
use std::path::Path;

/// 1,200 training and 400 validation images from MNIST's training set, and 500 test images.
fn mnist_subsets() -> (ImageDataset, ImageDataset, ImageDataset, ImageBatcher) {
    let mnist = ImageFolder::mnist().unwrap();
    let train = mnist.train.subset(&(0..1200).collect::<Vec<_>>());
    let valid = mnist.train.subset(&(1200..1600).collect::<Vec<_>>());
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);
    (train, valid, mnist.test.take(500), batcher)
}

fn options(dir: &Path, resume: bool) -> RunOptions {
    RunOptions {
        dir: dir.to_path_buf(),
        device: Device::flex(),
        dashboard: Dashboard::Quiet,
        resume,
        label: "test".into(),
        data_parallel: None,
        devices: Vec::new(),
    }
}

#[test]
fn mlp_learns_mnist_subset_and_writes_its_run_folder() {
    let (train, valid, test, batcher) = mnist_subsets();
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    device.seed(3);
    let model = MlpConfig::new(784, vec![64], 10).init(&device).unwrap();
    let before =
        evaluate_dataset(&model, test.clone(), batcher.clone(), 250, &device, 1.0).unwrap();
    let config = TrainingConfig::new(3, 32, 1e-3);
    let out = fit(
        model,
        train,
        valid,
        batcher.clone(),
        &config,
        &options(dir.path(), false),
    )
    .unwrap();
    let after = evaluate_dataset(&out.model, test, batcher, 250, &device, 1.0).unwrap();

    let loss = out.history.series("train", "loss");
    assert_eq!(loss.len(), 3, "{:?}", out.history);
    assert!(
        loss[2].1 < 0.6 * loss[0].1,
        "train loss did not fall: {loss:?}"
    );
    assert!(
        before.accuracy().unwrap() < 0.3,
        "untrained accuracy {}",
        before.accuracy().unwrap()
    );
    // Five shuffling seeds gave 0.836–0.854 (untrained: under 0.3).
    assert!(
        after.accuracy().unwrap() > 0.8,
        "test accuracy after 3 epochs: {}",
        after.accuracy().unwrap()
    );
    assert!(!out.history.series("valid", "accuracy").is_empty());
    assert_eq!(out.epochs, 3);
    for f in [
        "metrics.csv",
        "curves.png",
        "checkpoint/model-3.bpk",
        "checkpoint/optim-3.bpk",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
}

#[test]
fn training_with_augmented_batches_still_learns() {
    let (train, valid, test, batcher) = mnist_subsets();
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    device.seed(4);
    let augmenting = batcher
        .clone()
        .with_augmentation(kiln_data::AugmentationConfig::standard(), 4);
    let model = MlpConfig::new(784, vec![64], 10).init(&device).unwrap();
    let config = TrainingConfig::new(3, 32, 1e-3);
    let out = kiln_train::fit_with_batchers(
        model,
        train,
        valid,
        augmenting,
        batcher.clone(),
        &config,
        &options(dir.path(), false),
    )
    .unwrap();
    let acc = evaluate_dataset(&out.model, test, batcher, 250, &device, 1.0)
        .unwrap()
        .accuracy()
        .unwrap();
    assert!(acc > 0.75, "test accuracy with augmented training: {acc}");
}

#[test]
fn cnn_learns_mnist_subset_within_a_few_steps() {
    let (train, valid, test, batcher) = mnist_subsets();
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    device.seed(6);
    let model = kiln_models::CnnConfig::new(1, 28, 28, 10)
        .with_channels(vec![8, 16])
        .with_hidden(vec![32])
        .init(&device)
        .unwrap();
    let train = train.take(600);
    let config = TrainingConfig::new(2, 32, 2e-3);
    let out = fit(
        model,
        train,
        valid,
        batcher.clone(),
        &config,
        &options(dir.path(), false),
    )
    .unwrap();
    let acc = evaluate_dataset(&out.model, test, batcher, 250, &device, 1.0)
        .unwrap()
        .accuracy()
        .unwrap();
    // Five shuffling seeds gave 0.706–0.752 (chance: 0.1).
    assert!(
        acc > 0.6,
        "CNN test accuracy after 2 epochs on 600 images: {acc}"
    );
}

#[test]
fn logistic_regression_learns_mnist_subset() {
    let (train, valid, test, batcher) = mnist_subsets();
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    device.seed(5);
    let model = LogisticRegressionConfig::new(784, 10)
        .init(&device)
        .unwrap();
    let mut config = TrainingConfig::new(2, 32, 1e-3);
    config.optimizer = OptimizerConfig::Sgd {
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
    };
    config.lr = 0.01;
    let out = fit(
        model,
        train,
        valid,
        batcher.clone(),
        &config,
        &options(dir.path(), false),
    )
    .unwrap();
    let acc = evaluate_dataset(&out.model, test, batcher, 250, &device, 1.0)
        .unwrap()
        .accuracy()
        .unwrap();
    assert!(acc > 0.8, "logistic regression test accuracy {acc}");
}

#[test]
fn training_resumes_from_the_last_checkpoint() {
    let (train, valid, _, batcher) = mnist_subsets();
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let config = MlpConfig::new(784, vec![32], 10);
    let mut training = TrainingConfig::new(2, 64, 1e-3);
    let first = fit(
        config.init(&device).unwrap(),
        train.clone(),
        valid.clone(),
        batcher.clone(),
        &training,
        &options(dir.path(), false),
    )
    .unwrap();
    let first_rows = first.history.series("train", "loss");

    // "Interrupted" after epoch 2; ask for 4 epochs and resume.
    training.epochs = 4;
    let resumed = fit(
        config.init(&device).unwrap(),
        train,
        valid,
        batcher,
        &training,
        &options(dir.path(), true),
    )
    .unwrap();
    let rows = resumed.history.series("train", "loss");
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(
        &rows[..2],
        &first_rows[..],
        "epochs before the resume are kept as they were"
    );
    assert!(rows[3].1 < rows[0].1, "{rows:?}");
    assert!(dir.path().join("checkpoint/model-4.bpk").is_file());
}

#[test]
fn resuming_with_another_architecture_is_a_clear_error() {
    let (train, valid, _, batcher) = mnist_subsets();
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let training = TrainingConfig::new(1, 128, 1e-3);
    fit(
        MlpConfig::new(784, vec![32], 10).init(&device).unwrap(),
        train.clone(),
        valid.clone(),
        batcher.clone(),
        &training,
        &options(dir.path(), false),
    )
    .unwrap();
    let err = fit(
        MlpConfig::new(784, vec![16], 10).init(&device).unwrap(),
        train,
        valid,
        batcher,
        &training,
        &options(dir.path(), true),
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("model-1.bpk"), "{err}");
}

#[test]
fn resuming_without_a_checkpoint_is_an_error_not_a_fresh_start() {
    let (train, valid, _, batcher) = mnist_subsets();
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let err = fit(
        MlpConfig::new(784, vec![16], 10).init(&device).unwrap(),
        train,
        valid,
        batcher,
        &TrainingConfig::new(1, 128, 1e-3),
        &options(dir.path(), true),
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::NothingToResume { .. }), "{err}");
    assert!(
        !dir.path().join("metrics.csv").exists(),
        "it trained anyway"
    );
}

#[test]
fn a_truncated_optimizer_checkpoint_is_passed_over_or_named() {
    let (train, valid, _, batcher) = mnist_subsets();
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let config = MlpConfig::new(784, vec![16], 10);
    let mut training = TrainingConfig::new(2, 128, 1e-3);
    let run = |training: &TrainingConfig, resume| {
        fit(
            config.init(&device).unwrap(),
            train.clone(),
            valid.clone(),
            batcher.clone(),
            training,
            &options(dir.path(), resume),
        )
    };
    run(&training, false).unwrap();
    // A crash while epoch 2's optimizer state was written: resuming goes back to epoch 1.
    let optim_2 = dir.path().join("checkpoint/optim-2.bpk");
    let bytes = std::fs::read(&optim_2).unwrap();
    std::fs::write(&optim_2, &bytes[..bytes.len() / 2]).unwrap();
    training.epochs = 3;
    let resumed = run(&training, true).unwrap();
    let epochs: Vec<usize> = resumed
        .history
        .series("train", "loss")
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(epochs, [1, 2, 3]);
    // With every optimizer checkpoint truncated, the error names the newest one.
    for epoch in 1..=3 {
        let p = dir.path().join(format!("checkpoint/optim-{epoch}.bpk"));
        if p.exists() {
            std::fs::write(&p, b"not a burnpack").unwrap();
        }
    }
    training.epochs = 4;
    let err = run(&training, true).unwrap_err();
    assert!(matches!(err, TrainError::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("optim-3.bpk"), "{err}");
}

#[test]
fn a_diverging_loss_stops_training_with_an_error() {
    let data = kiln_data::synthetic::linear_line(64, 0.1, 1);
    let batcher = kiln_data::TabularBatcher {
        features: kiln_data::Standardizer::fit_features(&data),
        target: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let mut training = TrainingConfig::new(200, 0, 50.0);
    training.optimizer = OptimizerConfig::FullBatchGd { weight_decay: 0.0 };
    let model = LinearRegressionConfig::new(1).init(&device).unwrap();
    let err = fit(
        model,
        data.clone(),
        data,
        batcher,
        &training,
        &options(dir.path(), false),
    )
    .unwrap_err();
    match err {
        TrainError::NonFiniteLoss { epoch, .. } => assert!(epoch < 200, "stopped at {epoch}"),
        other => panic!("expected NonFiniteLoss, got {other}"),
    }
}

#[test]
fn invalid_configs_are_errors() {
    let (train, valid, _, batcher) = mnist_subsets();
    let dir = tempfile::tempdir().unwrap();
    let model = MlpConfig::new(784, vec![8], 10)
        .init(&Device::flex())
        .unwrap();
    let err = fit(
        model.clone(),
        train.clone(),
        valid.clone(),
        batcher.clone(),
        &TrainingConfig::new(0, 32, 1e-3),
        &options(dir.path(), false),
    )
    .unwrap_err();
    assert!(err.to_string().contains("epochs"), "{err}");
    let mut no_steps = TrainingConfig::new(1, 32, 1e-3);
    no_steps.grad_accumulation = 0;
    let err = fit(
        model,
        train,
        valid,
        batcher,
        &no_steps,
        &options(dir.path(), false),
    )
    .unwrap_err();
    assert!(err.to_string().contains("grad_accumulation"), "{err}");
}

#[test]
fn fit_trains_a_character_language_model_on_token_batches() {
    let corpus = kiln_data::text::shakespeare().unwrap();
    let train = kiln_data::TokenWindows::new(corpus.train.clone(), 40)
        .unwrap()
        .take(400);
    let valid = kiln_data::TokenWindows::new(corpus.valid.clone(), 40)
        .unwrap()
        .take(100);
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let vocab = corpus.vocab.len();
    let model = kiln_models::CharLmConfig::new(kiln_models::CellKind::Gru, vocab)
        .with_d_embedding(16)
        .with_d_hidden(48)
        .init(&device)
        .unwrap();
    let out = fit(
        model,
        train,
        valid,
        kiln_data::TokenBatcher,
        &TrainingConfig::new(2, 32, 5e-3),
        &options(dir.path(), false),
    )
    .unwrap();
    let valid_loss = out.history.series("valid", "loss");
    assert_eq!(valid_loss.len(), 2, "{:?}", out.history);
    // A uniform guess costs ln(vocab) nats per character.
    assert!(
        valid_loss[1].1 < 0.9 * (vocab as f64).ln(),
        "valid loss {valid_loss:?} against ln {vocab}"
    );
}

#[test]
fn fit_trains_knowledge_graph_embeddings_on_triple_batches() {
    let graph = kiln_data::kg::vendored("kinships").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let (entities, relations) = (graph.entities.len(), graph.relations.len());
    let model =
        kiln_models::KgEmbeddingConfig::new(kiln_models::KgScorer::DistMult, entities, relations)
            .with_dim(32)
            .init(&device)
            .unwrap();
    let out = kiln_train::fit_with_batchers(
        model,
        burn::data::dataset::InMemDataset::new(graph.train.clone()),
        burn::data::dataset::InMemDataset::new(graph.valid.clone()),
        kiln_data::TripleBatcher::new(entities, 10, 1),
        kiln_data::TripleBatcher::new(entities, 10, 2),
        &TrainingConfig::new(3, 256, 1e-2),
        &options(dir.path(), false),
    )
    .unwrap();
    let loss = out.history.series("train", "loss");
    assert_eq!(loss.len(), 3, "{:?}", out.history);
    assert!(
        loss[2].1 < 0.8 * loss[0].1,
        "ranking loss did not fall: {loss:?}"
    );
}

#[test]
fn fit_trains_a_translation_model_on_pair_batches() {
    // Short Bible verses (at most 12 words a side): 600 to train on, 100 to validate.
    let corpus = kiln_data::parallel::kjv_rv1909().unwrap();
    let short: Vec<kiln_data::SentencePair> = corpus
        .pairs
        .iter()
        .filter(|p| p.is_short(12))
        .take(700)
        .cloned()
        .collect();
    let (train, valid) = short.split_at(600);
    let data = kiln_data::TranslationData::build(train, 2, 2000);
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let stack = kiln_models::EncoderStackConfig::new(32)
        .with_n_heads(2)
        .with_n_layers(1)
        .with_d_ff(64)
        .with_dropout(0.0)
        .with_max_len(16);
    let (source, target) = (data.source_vocab.len(), data.target_vocab.len());
    let model = kiln_models::Seq2SeqConfig::new(source, target, stack.clone(), stack)
        .init(&device)
        .unwrap();
    let out = fit(
        model,
        data.encode(train),
        data.encode(valid),
        kiln_data::PairBatcher { max_len: 16 },
        &TrainingConfig::new(2, 32, 3e-3),
        &options(dir.path(), false),
    )
    .unwrap();
    let valid_loss = out.history.series("valid", "loss");
    assert_eq!(valid_loss.len(), 2, "{:?}", out.history);
    // A uniform guess over the target words costs ln(target vocabulary) nats per token.
    assert!(
        valid_loss[1].1 < 0.8 * (target as f64).ln(),
        "valid loss {valid_loss:?} against ln {target}"
    );
}

#[test]
fn a_batch_the_model_cannot_take_is_refused_before_the_first_step() {
    let (train, valid, _, batcher) = mnist_subsets();
    let device = Device::flex();
    let fit_mlp = |config: MlpConfig, dir: &Path| {
        fit(
            config.init(&device).unwrap(),
            train.clone(),
            valid.clone(),
            batcher.clone(),
            &TrainingConfig::new(1, 64, 1e-3),
            &options(dir, false),
        )
    };
    // Five classes for MNIST's ten labels.
    let dir = tempfile::tempdir().unwrap();
    let err = fit_mlp(MlpConfig::new(784, vec![16], 5), dir.path()).unwrap_err();
    let TrainError::Batch { split, source } = &err else {
        panic!("expected a batch error, got {err}");
    };
    assert_eq!(*split, "training");
    assert!(
        matches!(
            source.downcast_ref::<kiln_models::ModelError>(),
            Some(kiln_models::ModelError::LabelOutOfRange { classes: 5, .. })
        ),
        "{err}"
    );
    assert!(!dir.path().join("metrics.csv").exists(), "training started");
    // Inputs of 20×20 pixels for 28×28 images.
    let err = fit_mlp(MlpConfig::new(400, vec![16], 10), dir.path()).unwrap_err();
    assert!(
        matches!(&err, TrainError::Batch { .. }) && err.to_string().contains("784"),
        "{err}"
    );
}

/// The largest absolute difference of two weight lists.
fn difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// Every float parameter of a module, in visiting order.
fn weights<M: burn::module::Module>(model: &M) -> Vec<f32> {
    struct Values(Vec<f32>);
    impl burn::module::ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            self.0
                .extend(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut v = Values(Vec::new());
    model.visit(&mut v);
    v.0
}

#[test]
fn accumulated_gradients_step_as_the_large_batch() {
    let (train, valid, _, batcher) = mnist_subsets();
    // 1,152 images: 36 batches of 32, 72 of 16 — every step sees whole batches.
    let train = train.subset(&(0..1152).collect::<Vec<_>>());
    let device = Device::flex();
    device.seed(5);
    let model = MlpConfig::new(784, vec![32], 10).init(&device).unwrap();
    let run = |batch: usize, accumulation: usize| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = TrainingConfig::new(1, batch, 1e-3);
        config.grad_accumulation = accumulation;
        config.restore_best = false;
        let out = fit(
            model.clone(),
            train.clone(),
            valid.clone(),
            batcher.clone(),
            &config,
            &options(dir.path(), false),
        )
        .unwrap();
        weights(&out.model)
    };
    let large = run(32, 1);
    let accumulated = run(16, 2);
    let small = run(16, 1);
    let d = difference(&large, &accumulated);
    assert!(d < 1e-5, "2 × 16 accumulated differ from 32 by {d}");
    // Steps on batches of 16 without accumulation end elsewhere: the comparison can fail.
    let d = difference(&large, &small);
    assert!(d > 1e-3, "batches of 16 differ from 32 by only {d}");
}

#[test]
fn activation_checkpointing_trains_to_the_same_weights() {
    let (train, valid, _, batcher) = mnist_subsets();
    let train = train.subset(&(0..256).collect::<Vec<_>>());
    let device = Device::flex();
    device.seed(6);
    let model = MlpConfig::new(784, vec![32], 10).init(&device).unwrap();
    let run = |checkpointing: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = TrainingConfig::new(1, 32, 1e-3);
        config.activation_checkpointing = checkpointing;
        config.restore_best = false;
        let out = fit(
            model.clone(),
            train.clone(),
            valid.clone(),
            batcher.clone(),
            &config,
            &options(dir.path(), false),
        )
        .unwrap();
        weights(&out.model)
    };
    let (plain, recomputed) = (run(false), run(true));
    let d = difference(&plain, &recomputed);
    assert!(
        d < 1e-6,
        "recomputing activations changed the weights by {d}"
    );
    assert_ne!(plain, weights(&model), "training moved the weights");
}

/// A group of two ranks whose exchanges must never be reached.
struct Unreachable;

impl kiln_train::Collective for Unreachable {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        2
    }
    fn all_reduce_sum(&self, _: &mut [f32]) {
        panic!("no exchange before the configuration is checked")
    }
    fn broadcast(&self, _: &mut Vec<u8>) {
        panic!("no exchange before the configuration is checked")
    }
    fn abort(&self, message: &str) -> ! {
        panic!("abort: {message}")
    }
}

#[test]
fn a_batch_that_does_not_divide_among_the_ranks_is_refused_before_any_exchange() {
    let (train, valid, _, batcher) = mnist_subsets();
    let dir = tempfile::tempdir().unwrap();
    let model = MlpConfig::new(784, vec![8], 10)
        .init(&Device::flex())
        .unwrap();
    let mut options = options(dir.path(), false);
    options.data_parallel = Some(kiln_train::DataParallel::new(std::sync::Arc::new(
        Unreachable,
    )));
    let err = fit(
        model,
        train,
        valid,
        batcher,
        &TrainingConfig::new(1, 33, 1e-3),
        &options,
    )
    .unwrap_err();
    assert!(
        matches!(err, TrainError::InvalidConfig(_)) && err.to_string().contains("2 ranks"),
        "{err}"
    );
}
