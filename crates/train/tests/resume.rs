//! A run killed with SIGKILL during an epoch and resumed ends exactly where the uninterrupted run ends:
//! the same metrics for every epoch after the resume and the same weights. (One test in its own binary:
//! flex's random stream is global, and tests running beside it would draw from it.)

use burn::prelude::*;
use kiln_data::{ImageBatcher, ImageDataset, ImageFolder, PixelNormalizer};
use kiln_models::{Mlp, MlpConfig};
use kiln_train::{Dashboard, FitOutcome, RunOptions, TrainingConfig, fit};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const EPOCHS: usize = 4;
/// Where the child process trains (set only in the child).
const CHILD_DIR: &str = "KILN_RESUME_TEST_CHILD_DIR";

/// 2,000 training and 300 validation images from MNIST's training set.
fn data() -> (ImageDataset, ImageDataset, ImageBatcher) {
    let mnist = ImageFolder::mnist().unwrap();
    let train = mnist.train.subset(&(0..2000).collect::<Vec<_>>());
    let valid = mnist.train.subset(&(2000..2300).collect::<Vec<_>>());
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);
    (train, valid, batcher)
}

/// The same start for every run: weights from seed 5, dropout (so the device's stream matters), shuffling.
fn model() -> Mlp {
    let device = Device::flex();
    device.seed(5);
    MlpConfig::new(784, vec![48], 10)
        .with_dropout(0.3)
        .init(&device)
        .unwrap()
}

fn config() -> TrainingConfig {
    let mut config = TrainingConfig::new(EPOCHS, 32, 1e-3);
    config.seed = 9;
    config.restore_best = false;
    config
}

fn train(dir: &Path, resume: bool) -> FitOutcome<Mlp> {
    let (train, valid, batcher) = data();
    let options = RunOptions {
        dir: dir.to_path_buf(),
        device: Device::flex(),
        dashboard: Dashboard::Quiet,
        resume,
        label: "resume".into(),
        data_parallel: None,
        devices: Vec::new(),
    };
    fit(model(), train, valid, batcher, &config(), &options).unwrap()
}

fn weights(model: &Mlp) -> Vec<f32> {
    let mut out = Vec::new();
    for layer in model.hidden.iter().chain([&model.output]) {
        out.extend(layer.weight.val().into_data().try_to_vec::<f32>().unwrap());
    }
    out
}

/// Run by the test below in a child process, which it kills; skipped in a normal run.
#[test]
#[ignore = "the child process of killed_run_resumes_to_the_uninterrupted_result"]
fn child_trains_until_killed() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("run by the parent test"));
    train(&dir, false);
}

#[test]
fn killed_run_resumes_to_the_uninterrupted_result() {
    let whole = tempfile::tempdir().unwrap();
    let uninterrupted = train(whole.path(), false);

    let killed = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_trains_until_killed",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, killed.path())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL) once epoch 2's checkpoint is there, in the middle of epoch 3.
    let checkpoint = killed.path().join("checkpoint");
    let started = Instant::now();
    while !(checkpoint.join("model-2.bpk").is_file() && checkpoint.join("optim-2.bpk").is_file()) {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "epoch 2 never checkpointed"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !killed.path().join("checkpoint/model-4.bpk").exists(),
        "the child finished before it was killed; the test proves nothing"
    );

    let resumed = train(killed.path(), true);
    let rows = |o: &FitOutcome<Mlp>, split| o.history.series(split, "loss");
    assert_eq!(
        rows(&resumed, "valid")[2..],
        rows(&uninterrupted, "valid")[2..],
        "validation losses of epochs 3–4"
    );
    assert_eq!(
        rows(&resumed, "train")[2..],
        rows(&uninterrupted, "train")[2..],
        "training losses of epochs 3–4"
    );
    let (a, b) = (weights(&resumed.model), weights(&uninterrupted.model));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-6, "weights differ by up to {worst}");
}
