//! The recipes on real and on bad data: linear regression on the real diabetes data reaches the closed-form
//! least-squares R² and writes what `train` promises; a run's saved `recipe.json` reruns to the same
//! report; bad user data and bad recipe files are refused before the first training step, with an error
//! naming the dataset and the split or the file (nothing is trained, nothing is written).
//! (One test binary for all: each binary links all of burn, and CI's disk is small.)

use kiln_data::DataError;
use kiln_data::tabular::{self, Table};
use kiln_data::text::CharCorpus;
use kiln_recipes::{Recipe, RecipeError, RunSettings, registry};
use kiln_train::{Dashboard, DeviceChoice};
use std::path::Path;

/// Held by every test here (the recipes seed the device before they check their data): flex's random generator is one per process, so two tests seeding and
/// drawing from it at once would give each other's runs other initial weights.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn recipe(name: &str) -> Recipe {
    registry::find(name).unwrap()
}

#[test]
fn gradient_descent_matches_closed_form_least_squares_on_diabetes() {
    let _training = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
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
        data_parallel: None,
        devices: Vec::new(),
    };
    let data = tabular::diabetes().unwrap();
    let summary = kiln_recipes::runs::linear_regression(
        &recipe("linear_regression-diabetes"),
        &data,
        "diabetes",
        &settings,
    )
    .unwrap();
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
        data_parallel: None,
        devices: Vec::new(),
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
    let _training = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // 6,000 characters split 90/5/5: the 300-character test part cannot hold one window of 1,000.
    let text: String = "To be, or not to be, that is the question. "
        .chars()
        .cycle()
        .take(6000)
        .collect();
    let corpus = CharCorpus::split(&text, 0.9, 0.05).unwrap();
    let err = kiln_recipes::runs::char_language_model(
        &recipe("lstm-shakespeare"),
        &corpus,
        "short",
        &settings(dir.path()),
    )
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
    let _training = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let csv = "x,y\n1,2\n2,4\n3,7\n4,8\n5,11\n6,12\n";
    let table = Table::parse(csv, Path::new("tiny.csv")).unwrap();
    let data = table.regression("y").unwrap();
    let err = kiln_recipes::runs::linear_regression(
        &recipe("linear_regression-diabetes"),
        &data,
        "tiny",
        &settings(dir.path()),
    )
    .unwrap_err();
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

/// The headline figures of a run, without its timing.
fn figures(summary: &kiln_recipes::RunSummary) -> Vec<(String, String, f64, usize, usize)> {
    summary
        .records()
        .into_iter()
        .map(|r| (r.model, r.metric, r.value, r.params, r.epochs))
        .collect()
}

#[test]
fn a_saved_recipe_reruns_to_the_same_report() {
    let _training = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut shipped = recipe("linear_regression-diabetes");
    shipped.smoke = true;
    let device = DeviceChoice::cpu_default().unwrap();
    let run = |recipe: &Recipe, dir: &Path| {
        let settings =
            RunSettings::for_recipe(recipe, device, dir.to_path_buf(), Dashboard::Quiet, false);
        kiln_recipes::run(recipe, &settings).unwrap()
    };
    let original = run(&shipped, first.path());
    let saved = Recipe::load(&first.path().join("recipe.json")).unwrap();
    assert_eq!(saved, shipped, "recipe.json holds the whole recipe");
    let rerun = run(&saved, second.path());
    assert_eq!(figures(&rerun), figures(&original));
    assert_eq!(rerun.details, original.details);
    // The smoke run's 50 epochs, not the full recipe's 500.
    assert_eq!(original.record.epochs, 50);
}

#[test]
fn bad_recipe_files_are_refused_naming_the_file_and_the_field() {
    let _training = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    std::fs::write(&path, "{\"name\": \"x\"").unwrap();
    let err = Recipe::load(&path).unwrap_err();
    assert!(matches!(err, RecipeError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("r.json"), "{err}");

    let mut wrong = recipe("mlp-mnist");
    wrong.training.batch_size = 128;
    wrong.hyper = kiln_recipes::Hyper::KgEmbedding {
        dim: 10,
        margin: 1.0,
        l2: 0.0,
        negatives: 2,
    };
    std::fs::write(&path, wrong.to_json()).unwrap();
    let err = Recipe::load(&path).unwrap_err();
    assert!(matches!(err, RecipeError::WrongFamily { .. }), "{err}");

    let mut bad = recipe("transformer_lm-shakespeare");
    if let kiln_recipes::Hyper::TransformerLm { stack } = &mut bad.hyper {
        stack.n_heads = 3;
    }
    std::fs::write(&path, bad.to_json()).unwrap();
    let err = Recipe::load(&path).unwrap_err().to_string();
    assert!(err.contains("hyper.stack.n_heads"), "{err}");

    // An unknown vendored dataset is refused before anything is written.
    let mut unknown = recipe("cnn-mnist");
    unknown.dataset = kiln_recipes::DataSource::Vendored("cifar".into());
    let settings = RunSettings::for_recipe(
        &unknown,
        DeviceChoice::cpu_default().unwrap(),
        dir.path().join("run"),
        Dashboard::Quiet,
        false,
    );
    let err = kiln_recipes::run(&unknown, &settings)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cifar") && err.contains("mnist"), "{err}");
    assert!(!dir.path().join("run").exists());
}
