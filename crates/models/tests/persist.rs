//! Save → load gives the same outputs; loading weights of another architecture is an error naming the file.

use burn::prelude::*;
use kiln_models::persist::{load_config, load_weights, save_config, save_weights};
use kiln_models::{LinearRegressionConfig, LogisticRegressionConfig, MlpConfig, ModelError};

#[test]
fn save_then_load_reproduces_outputs() {
    let device = Device::flex();
    device.seed(9);
    let dir = tempfile::tempdir().unwrap();
    let config = MlpConfig::new(12, vec![8, 6], 4).with_dropout(0.1);
    let model = config.init(&device).unwrap();
    save_weights(&model, &dir.path().join("m.bpk")).unwrap();
    save_config(&config, &dir.path().join("m.json")).unwrap();

    let config2: MlpConfig = load_config(&dir.path().join("m.json")).unwrap();
    let fresh = config2.init(&device).unwrap();
    let loaded = load_weights(fresh, &dir.path().join("m.bpk")).unwrap();
    let x = Tensor::<2>::random([5, 12], burn::tensor::Distribution::Default, &device);
    let a = model.valid().forward(x.clone()).to_data();
    let b = loaded.valid().forward(x).to_data();
    a.assert_approx_eq::<f32>(&b, burn::tensor::Tolerance::absolute(1e-7));
}

#[test]
fn weights_of_another_architecture_or_no_file_are_errors() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.bpk");
    save_weights(
        &MlpConfig::new(12, vec![8], 4).init(&device).unwrap(),
        &path,
    )
    .unwrap();

    let err =
        load_weights(MlpConfig::new(12, vec![9], 4).init(&device).unwrap(), &path).unwrap_err();
    assert!(
        matches!(err, ModelError::File { .. }) && err.to_string().contains("mlp.bpk"),
        "{err}"
    );
    let err = load_weights(
        LogisticRegressionConfig::new(12, 4).init(&device).unwrap(),
        &path,
    )
    .unwrap_err();
    assert!(err.to_string().contains("mlp.bpk"), "{err}");

    let missing = dir.path().join("none.bpk");
    let err = load_weights(
        LinearRegressionConfig::new(3).init(&device).unwrap(),
        &missing,
    )
    .unwrap_err();
    assert!(err.to_string().contains("none.bpk"), "{err}");

    std::fs::write(dir.path().join("junk.bpk"), b"not a burnpack file").unwrap();
    let err = load_weights(
        LinearRegressionConfig::new(3).init(&device).unwrap(),
        &dir.path().join("junk.bpk"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("junk.bpk"), "{err}");
}

/// The readers the fuzz targets drive (`fuzz/readers.rs`), for the corpus replay below.
#[path = "../../../fuzz/readers.rs"]
mod readers;

/// Replays the committed fuzz corpus (`fuzz/corpus/<target>/`: the inputs cargo-fuzz found interesting,
/// minimised with `cargo fuzz cmin`) through the same readers: each may refuse its input with an error, none
/// may panic.
#[test]
fn every_committed_fuzz_input_is_read_without_a_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for target in readers::TARGETS {
        let dir = root.join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut inputs = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            readers::run(target, &std::fs::read(&path).unwrap());
            inputs += 1;
        }
        assert!(inputs > 0, "{}: no inputs", dir.display());
    }
}
