//! Linear regression on the real diabetes data reaches the closed-form least-squares R², and the recipe
//! writes what `train` promises.

use kiln::data::tabular;
use kiln::recipes::{self, RunSettings};
use kiln::train::{Dashboard, DeviceChoice};

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
