//! A run's TensorBoard event files, read back with TensorBoard's own reader (`scripts/read_tensorboard.py`;
//! `cargo test-all` installs the `tensorboard` package with pip).

use burn::prelude::*;
use kiln_data::{ImageBatcher, ImageFolder, PixelNormalizer};
use kiln_models::MlpConfig;
use kiln_train::{Dashboard, RunOptions, TrainingConfig, fit};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn read_with_tensorboard(dir: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/read_tensorboard.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .output()
        .expect("python3 runs (cargo test-all installs it with the tensorboard package)");
    assert!(
        out.status.success(),
        "TensorBoard's reader failed (pip install tensorboard):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_run_leaves_per_step_and_per_epoch_scalars_and_weight_histograms() {
    let mnist = ImageFolder::mnist().unwrap();
    let train = mnist.train.subset(&(0..320).collect::<Vec<_>>());
    let valid = mnist.train.subset(&(320..400).collect::<Vec<_>>());
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let model = MlpConfig::new(784, vec![16], 10).init(&device).unwrap();
    let options = RunOptions {
        dir: dir.path().to_path_buf(),
        device,
        dashboard: Dashboard::Quiet,
        resume: false,
        label: "tensorboard".into(),
        data_parallel: None,
        devices: Vec::new(),
    };
    // 2 epochs of 10 batches of 32.
    let out = fit(
        model,
        train,
        valid,
        batcher,
        &TrainingConfig::new(2, 32, 1e-3),
        &options,
    )
    .unwrap();
    // Pictures go beside the run's events (the image classifiers write their augmented samples so).
    let pictures: Vec<Vec<f32>> = (0..3).map(|k| vec![k as f32; 28 * 28]).collect();
    kiln_train::board::write_image_grid(dir.path(), "images/samples", 1, &pictures, 28, 28);
    let board = read_with_tensorboard(&dir.path().join("tensorboard"));
    assert_eq!(
        board["images"]["images/samples"],
        serde_json::json!([1]),
        "{board}"
    );

    let steps = board["scalars"]["step/loss"].as_array().expect("step/loss");
    let numbers: Vec<u64> = steps.iter().map(|s| s[0].as_u64().unwrap()).collect();
    assert_eq!(
        numbers,
        (1..=20).collect::<Vec<u64>>(),
        "one loss per batch"
    );
    let lr = board["scalars"]["step/learning_rate"]
        .as_array()
        .expect("step/learning_rate");
    assert!((lr[0][1].as_f64().unwrap() - 1e-3).abs() < 1e-9, "{lr:?}");

    // The per-epoch means are metrics.csv's.
    for (tag, split) in [
        ("loss/train", "train"),
        ("loss/valid", "valid"),
        ("accuracy/valid", "valid"),
    ] {
        let series = board["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("{tag} missing: {board}"));
        let metric = tag.split('/').next().unwrap();
        let csv = out.history.series(split, metric);
        assert_eq!(series.len(), 2, "{tag}");
        for ((step, value), (epoch, mean)) in series
            .iter()
            .map(|e| (e[0].as_u64().unwrap() as usize, e[1].as_f64().unwrap()))
            .zip(csv)
        {
            assert_eq!(step, epoch);
            assert!(
                (value - mean).abs() < 1e-4 * mean.abs().max(1.0),
                "{tag}: {value} vs {mean}"
            );
        }
    }

    // Weights and gradients of both layers, once an epoch, every value counted.
    for tag in [
        "weights/hidden.0.weight",
        "gradients/hidden.0.weight",
        "weights/output.bias",
    ] {
        let h = board["histograms"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("{tag} missing; histograms: {:?}", board["histograms"]));
        assert_eq!(h.len(), 2, "{tag}");
        assert_eq!(h[0][0].as_u64(), Some(1));
    }
    let first = &board["histograms"]["weights/hidden.0.weight"][0][1];
    assert_eq!(first.as_f64(), Some((784 * 16) as f64));
}
