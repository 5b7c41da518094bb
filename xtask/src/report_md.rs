//! `reports/train-all/report.md` and `report.json`.

use anyhow::{Context, bail};
use kiln::recipes::{RunSummary, registry};
use kiln::train::{DeviceChoice, Report};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// The runs of a `train-all` report, as `runs.json` keeps them so that `--only` can rerun some and merge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainAllRuns {
    /// The device the runs trained on.
    pub device: String,
    /// Whether these are smoke runs.
    pub quick: bool,
    /// Seconds of the last full run.
    pub full_run_seconds: f64,
    /// Recipes rerun since the full run (`--only`), with their seconds, oldest first.
    #[serde(default)]
    pub reruns: Vec<(Vec<String>, f64)>,
    /// Every run's summary, in registry order.
    pub runs: Vec<RunSummary>,
}

impl TrainAllRuns {
    /// The runs of a full `train-all`.
    pub fn full(runs: Vec<RunSummary>, device: DeviceChoice, quick: bool, seconds: f64) -> Self {
        Self {
            device: device.to_string(),
            quick,
            full_run_seconds: seconds,
            reruns: Vec::new(),
            runs,
        }
    }

    /// The runs kept in `out/runs.json`, refused where they are missing or of the other kind (smoke or
    /// full) than `quick` asks for: merging the two would mix smoke figures into results.
    pub fn read(out: &Path, quick: bool) -> anyhow::Result<Self> {
        let path = out.join("runs.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: --only merges into an existing train-all report; run `cargo xtask train-all{}` first",
                path.display(),
                if quick { " --quick" } else { "" }
            )
        })?;
        let runs: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a train-all run list", path.display()))?;
        if runs.quick != quick {
            bail!(
                "{} holds {} runs; rerun with{} --quick, or write elsewhere with --out",
                path.display(),
                if runs.quick { "smoke" } else { "full" },
                if runs.quick { "" } else { "out" }
            );
        }
        Ok(runs)
    }

    /// These runs with `new` in place of the runs of the same recipes, in registry order.
    pub fn merged(mut self, new: Vec<RunSummary>, seconds: f64) -> Self {
        let names: Vec<String> = new.iter().map(|s| s.recipe.clone()).collect();
        self.runs.retain(|s| !names.contains(&s.recipe));
        self.runs.extend(new);
        let order: Vec<String> = registry::recipes().into_iter().map(|r| r.name).collect();
        let rank = |s: &RunSummary| {
            order
                .iter()
                .position(|n| *n == s.recipe)
                .unwrap_or(order.len())
        };
        self.runs.sort_by_key(rank);
        self.reruns.push((names, seconds));
        self
    }
}

/// The bar a run is held to (its recipe's), and whether it was met.
fn target(s: &RunSummary, runs: &[RunSummary]) -> (String, Option<bool>) {
    match registry::find(&s.recipe) {
        Ok(recipe) => recipe.target.judge(s, runs),
        Err(_) => ("—".into(), None),
    }
}

/// Writes the JSON and Markdown reports and copies each run's curves next to them.
pub fn write(out: &Path, all: &TrainAllRuns) -> anyhow::Result<()> {
    let runs = &all.runs[..];
    let quick = all.quick;
    let device = &all.device;
    std::fs::create_dir_all(out.join("curves"))?;
    kiln::core::files::write_atomic(out.join("runs.json"), serde_json::to_string_pretty(all)?)?;
    Report {
        runs: runs.iter().flat_map(|s| s.records()).collect(),
    }
    .write(&out.join("report.json"))?;

    let mut md = String::new();
    writeln!(md, "# Kiln — train-all report\n")?;
    writeln!(
        md,
        "Written by `cargo xtask train-all{}{}`. Device `{device}`; {} CPU threads available; \
         the whole run took {:.0} s.{}\n",
        if *device == DeviceChoice::cpu_default()?.to_string() {
            String::new()
        } else {
            format!(" --device {device}")
        },
        if quick { " --quick" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        all.full_run_seconds,
        all.reruns
            .iter()
            .map(|(names, seconds)| format!(
                " Rerun since with `--only {}` ({seconds:.0} s).",
                names.join(",")
            ))
            .collect::<String>(),
    )?;
    if quick {
        writeln!(
            md,
            "**Quick (smoke) run: small subsets and 1–2 epochs; the figures are not results.**\n"
        )?;
    }
    writeln!(
        md,
        "| model | dataset | metric | value | target | met | params | epochs | train s |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|")?;
    for (s, r, headline) in runs.iter().flat_map(|s| {
        s.records()
            .into_iter()
            .enumerate()
            .map(move |(i, r)| (s, r, i == 0))
    }) {
        let r = &r;
        let (bar, met) = if headline {
            target(s, runs)
        } else {
            ("(the same run)".into(), None)
        };
        let met = match (quick, met) {
            (true, _) | (_, None) => "—",
            (false, Some(true)) => "yes",
            (false, Some(false)) => "**no**",
        };
        let value = if r.metric == "test_accuracy" {
            format!("{:.2}%", 100.0 * r.value)
        } else {
            format!("{:.4}", r.value)
        };
        writeln!(
            md,
            "| {}{} | {} | {} | {value} | {bar} | {met} | {} | {} | {:.1} |",
            r.model,
            r.variant
                .as_ref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default(),
            r.dataset,
            r.metric,
            r.params,
            r.epochs,
            r.train_seconds
        )?;
    }
    writeln!(md)?;
    for s in runs {
        let r = &s.record;
        let name = &s.recipe;
        let variant = r
            .variant
            .as_ref()
            .map(|v| format!(" ({v})"))
            .unwrap_or_default();
        writeln!(md, "## {} on {}{variant}\n", r.model, r.dataset)?;
        for (k, v) in &s.details {
            writeln!(md, "- {k}: {v}")?;
        }
        for (title, text) in &s.texts {
            writeln!(md, "\n{title}:\n\n```text\n{}\n```", text.trim_end())?;
        }
        // A run merged from an earlier report keeps the curves copied then.
        let (curves, copy) = (s.curves(), out.join("curves").join(format!("{name}.png")));
        if curves.exists() {
            std::fs::copy(&curves, &copy)?;
        }
        if copy.exists() {
            writeln!(md, "\n![{name} curves](curves/{name}.png)\n")?;
        }
    }
    writeln!(
        md,
        "Splits: MNIST's 60,000 training images minus a seeded 5,000 for validation, its 10,000 test \
         images for the test score (sequential MNIST reads the same images as 28 steps of 28 pixels); \
         diabetes 70/10/20 (seed 42); Shakespeare's complete works split in reading order 90/5/5, \
         training windows of 100 characters, validation on the first 1,000 such windows of its part, test \
         on its whole part read in windows of 1,000 characters (the state carried through each; the Transformer \
         language model trains and is tested on windows of its 128-character context); the Bible by whole books \
         (train Genesis–Daniel, the Gospels and Acts; valid Hosea–Malachi; test Romans–Revelation; verses of \
         at most 20 words a side); the knowledge graphs' own train/valid/test files, ranked with the other \
         known triples filtered out. Hyper-parameters are fixed in \
         `crates/recipes/src/registry.rs` and were not tuned on the test split, which is scored once per run: the \
         classifiers with the weights of their best validation epoch, linear regression with its last \
         (converged) epoch. Per-epoch figures: `runs/train-all/<model>-<dataset>/metrics.csv`."
    )?;
    kiln::core::files::write_atomic(out.join("report.md"), md)?;
    Ok(())
}
