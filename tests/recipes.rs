//! The recipes on real and on bad data: linear regression on the real diabetes data reaches the closed-form
//! least-squares R² and writes what `train` promises; bad user data is refused before the first training
//! step, with an error naming the dataset and the split (nothing is trained, nothing is written).
//! (One test binary for both: each binary links all of burn, and CI's disk is small.)

use kiln::data::DataError;
use kiln::data::tabular::{self, Table};
use kiln::data::text::CharCorpus;
use kiln::recipes::{self, ModelName, RunSettings};
use kiln::train::{Dashboard, DeviceChoice};
use std::path::Path;

#[test]
fn gradient_descent_matches_closed_form_least_squares_on_diabetes() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RunSettings {
        device: DeviceChoice::cpu_default().unwrap(),
        run_dir: dir.path().to_path_buf(),
        epochs: Some(300),
        quick: false,
        dashboard: Dashboard::Quiet,
        resume: false,
        seed: 42,
        augment: false,
    };
    let data = tabular::diabetes().unwrap();
    let summary = recipes::linear_regression(&data, "diabetes", &settings).unwrap();
    let closed = summary.reference.unwrap();
    let gd = summary.record.value;
    assert!(closed > 0.3, "closed-form test R² {closed}");
    assert!(
        (gd - closed).abs() / closed < 0.01,
        "GD R² {gd} vs closed form {closed}"
    );
    assert_eq!(summary.record.metric, "test_r2");
    assert_eq!(summary.record.params, 11);
    for f in [
        "model.bpk",
        "model.json",
        "training.json",
        "preprocessing.json",
        "metrics.csv",
        "curves.png",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
}

fn settings(dir: &Path) -> RunSettings {
    RunSettings {
        device: DeviceChoice::cpu_default().unwrap(),
        run_dir: dir.to_path_buf(),
        epochs: Some(1),
        quick: false,
        dashboard: Dashboard::Quiet,
        resume: false,
        seed: 7,
        augment: false,
    }
}

/// The run folder holds nothing a training run writes.
fn nothing_trained(dir: &Path) {
    for f in ["metrics.csv", "model.bpk", "checkpoint", "report.json"] {
        assert!(!dir.join(f).exists(), "{f} was written: training started");
    }
}

#[test]
fn a_text_too_short_for_the_test_windows_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    // 6,000 characters split 90/5/5: the 300-character test part cannot hold one window of 1,000.
    let text: String = "To be, or not to be, that is the question. "
        .chars()
        .cycle()
        .take(6000)
        .collect();
    let corpus = CharCorpus::split(&text, 0.9, 0.05).unwrap();
    let err =
        recipes::char_language_model(ModelName::Lstm, &corpus, "short", &settings(dir.path()))
            .unwrap_err();
    let data_err = err.downcast_ref::<DataError>().expect("a DataError");
    assert!(
        matches!(data_err, DataError::SplitTooSmall { split, needed: 1001, .. } if split == "test"),
        "{err}"
    );
    assert!(
        err.to_string().contains("short") && err.to_string().contains("window of 1000"),
        "{err}"
    );
    nothing_trained(dir.path());
}

#[test]
fn a_table_leaving_one_test_row_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "x,y\n1,2\n2,4\n3,7\n4,8\n5,11\n6,12\n";
    let table = Table::parse(csv, Path::new("tiny.csv")).unwrap();
    let data = table.regression("y").unwrap();
    let err = recipes::linear_regression(&data, "tiny", &settings(dir.path())).unwrap_err();
    let data_err = err.downcast_ref::<DataError>().expect("a DataError");
    assert!(
        matches!(
            data_err,
            DataError::SplitTooSmall {
                found: 1,
                needed: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("tiny"), "{err}");
    nothing_trained(dir.path());
}
