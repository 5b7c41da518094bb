//! Data-parallel training over MPI, end to end: `xtask-mpi train --ranks 2` on this machine's loopback
//! against one process, and a rank killed mid-run. Needs Open MPI (`cargo test-all` installs it) and the
//! `mpi` feature.
#![cfg(feature = "mpi")]

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use kiln_models::persist::{load_config, load_weights};
use kiln_models::{CnnConfig, MlpConfig};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask-mpi");

/// The shipped recipe `name`, made small: `train` training images in a smoke run of `epochs`, a global
/// batch of 32, no dropout (each rank draws its own masks, so dropout would make the ranks' steps differ
/// from one process's), no early stopping, and the last epoch's weights.
fn small_recipe(
    dir: &Path,
    name: &str,
    train: usize,
    epochs: usize,
    edit: impl Fn(&mut Value),
) -> PathBuf {
    let out = Command::new(XTASK)
        .args(["recipes", "--show", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r: Value = serde_json::from_slice(&out.stdout).unwrap();
    r["hyper"]["dropout"] = json!(0.0);
    r["training"]["batch_size"] = json!(32);
    r["training"]["early_stopping_patience"] = Value::Null;
    r["training"]["restore_best"] = json!(false);
    r["quick"] = json!({"epochs": epochs, "train": train, "test": 100});
    r["smoke"] = json!(true);
    edit(&mut r);
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&r).unwrap()).unwrap();
    path
}

fn train(recipe: &Path, out: &Path, ranks: usize, extra: &[&str]) -> Output {
    let mut c = Command::new(XTASK);
    c.arg("train")
        .arg("--recipe")
        .arg(recipe)
        .arg("--out")
        .arg(out)
        .arg("--lines");
    if ranks > 1 {
        c.args(["--ranks", &ranks.to_string()]);
    }
    c.args(extra).output().unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr)
}

fn ok(output: &Output) -> String {
    let text = text(output);
    assert!(output.status.success(), "the run failed:\n{text}");
    text
}

/// Every float parameter of a module, in visiting order.
#[derive(Default)]
struct Values(Vec<f32>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0
            .extend(param.val().into_data().try_to_vec::<f32>().unwrap());
    }
}

fn values<M: Module>(model: &M) -> Vec<f32> {
    let mut v = Values::default();
    model.visit(&mut v);
    v.0
}

/// The trained weights of the run in `dir`.
fn weights(dir: &Path, model: &str) -> Vec<f32> {
    let device = Device::flex();
    let (config, file) = (dir.join("model.json"), dir.join("model.bpk"));
    match model {
        "mlp" => {
            let m = load_config::<MlpConfig>(&config)
                .unwrap()
                .init(&device)
                .unwrap();
            values(&load_weights(m, &file).unwrap())
        }
        "cnn" => {
            let m = load_config::<CnnConfig>(&config)
                .unwrap()
                .init(&device)
                .unwrap();
            values(&load_weights(m, &file).unwrap())
        }
        other => panic!("no loader for {other}"),
    }
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Two ranks with 16 images a step each take the steps one process takes with 32: their shards together
/// are the single process's batches, and their averaged gradients its gradients. `train_items` leaves an
/// even number of training images after the validation split (1/12), so the shards drop none.
fn two_ranks_equal_one_process(name: &str, model: &str, train_items: usize) {
    let dir = tempfile::tempdir().unwrap();
    let recipe = small_recipe(dir.path(), name, train_items, 2, |r| {
        if model == "mlp" {
            r["hyper"]["hidden"] = json!([64]);
        }
    });
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    ok(&train(&recipe, &one, 1, &[]));
    let text = ok(&train(&recipe, &two, 2, &[]));
    assert!(text.contains("on 2 ranks"), "{text}");
    let (a, b) = (weights(&one, model), weights(&two, model));
    let difference = max_difference(&a, &b);
    eprintln!(
        "{name}: max |2 ranks - 1 process| over {} weights = {difference:e}",
        a.len()
    );
    assert!(
        difference < 1e-5,
        "{name}: 2 ranks and 1 process differ by {difference}"
    );
    // These are trained models, not two copies of one initialisation: the loss fell.
    let history = std::fs::read_to_string(two.join("metrics.csv")).unwrap();
    let loss = |epoch: usize| -> f64 {
        let row = format!("{epoch},train,loss,");
        let line = history.lines().find(|l| l.starts_with(&row)).unwrap();
        line[row.len()..].parse().unwrap()
    };
    assert!(
        loss(2) < loss(1),
        "{name}: the loss did not fall:\n{history}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["runs"][0]["ranks"], json!(2));
}

#[test]
fn two_mlp_ranks_train_as_one_process() {
    two_ranks_equal_one_process("mlp-mnist", "mlp", 288);
}

#[test]
fn two_cnn_ranks_train_as_one_process() {
    two_ranks_equal_one_process("cnn-mnist", "cnn", 216);
}

/// The processes running as MPI rank `rank` of the run that writes `out`.
fn rank_processes(out: &Path, rank: usize) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let (Ok(cmdline), Ok(environ)) = (
            std::fs::read(entry.path().join("cmdline")),
            std::fs::read(entry.path().join("environ")),
        ) else {
            continue;
        };
        let ours = String::from_utf8_lossy(&cmdline).contains(&*out.to_string_lossy());
        let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
        if ours
            && String::from_utf8_lossy(&environ)
                .split('\0')
                .any(|v| v == wanted)
        {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn a_killed_rank_ends_the_run_and_rank_0s_checkpoint_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let epochs = 5;
    let recipe = small_recipe(dir.path(), "mlp-mnist", 2400, epochs, |r| {
        r["hyper"]["hidden"] = json!([64]);
    });
    let out = dir.path().join("run");
    let mut run = Command::new(XTASK)
        .arg("train")
        .arg("--recipe")
        .arg(&recipe)
        .arg("--out")
        .arg(&out)
        .args(["--lines", "--ranks", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once rank 0 has checkpointed epoch 2, rank 1 is killed (during epoch 3).
    let started = Instant::now();
    while !out.join("checkpoint").join("model-2.bpk").is_file() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint of epoch 2 after 5 minutes"
        );
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before epoch 2"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let victims = rank_processes(&out, 1);
    assert_eq!(victims.len(), 1, "one process is rank 1: {victims:?}");
    let killed = Command::new("kill")
        .arg("-9")
        .arg(victims[0].to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let killed_at = Instant::now();
    // The run stops within a bounded time, with an error.
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "rank 0 still runs a minute after rank 1 died"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = text(&run.wait_with_output().unwrap());
    assert!(
        !status.success(),
        "a run that lost a rank must fail:\n{output}"
    );
    assert!(
        !out.join("report.json").exists(),
        "a failed run writes no report"
    );
    // Resumed with two ranks from rank 0's checkpoint, it runs the remaining epochs.
    let text = ok(&train(&recipe, &out, 2, &["--resume"]));
    assert!(text.contains(&format!("after {epochs} epochs")), "{text}");
    let history = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    for epoch in 1..=epochs {
        assert!(
            history.contains(&format!("\n{epoch},valid,loss,")),
            "epoch {epoch} is missing from metrics.csv:\n{history}"
        );
    }
}

/// The epochs a run in `dir` reports.
fn epochs_run(dir: &Path) -> u64 {
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    report["runs"][0]["epochs"].as_u64().unwrap()
}

#[test]
fn rank_0s_early_stop_ends_every_rank_at_the_epoch_one_process_stops() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = small_recipe(dir.path(), "mlp-mnist", 288, 40, |r| {
        r["hyper"]["hidden"] = json!([64]);
        r["training"]["early_stopping_patience"] = json!(1);
        r["training"]["lr"] = json!(0.01);
    });
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    ok(&train(&recipe, &one, 1, &[]));
    ok(&train(&recipe, &two, 2, &[]));
    let stopped = epochs_run(&one);
    assert!(stopped < 40, "one process did not stop early");
    assert_eq!(
        epochs_run(&two),
        stopped,
        "2 ranks stopped at another epoch"
    );
}
