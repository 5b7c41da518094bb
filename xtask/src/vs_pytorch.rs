//! `cargo xtask bench --vs-pytorch`: each workload trained in Kiln (flex) and in PyTorch
//! (`scripts/bench_pytorch.py`) alternately, Kiln, PyTorch, Kiln, PyTorch…, so that both see the same
//! machine load; the table gives the medians and the median of the pairwise ratios.
//!
//! PyTorch runs in a child process per measurement (`python3 scripts/bench_pytorch.py --network NAME`),
//! with as many threads as Kiln's rayon pool has, on the same data, batch and optimizer.

use super::bench::{Figure, Network, Workloads, chosen, write_json};
use anyhow::Context;
use kiln::train::DeviceChoice;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One row of the comparison.
#[derive(Debug, Serialize)]
pub struct Row {
    /// The workload, spelled as `cargo xtask bench` prints it.
    pub network: String,
    /// Median Kiln samples/s over the pairs.
    pub kiln_samples_per_second: f64,
    /// Median PyTorch samples/s over the pairs (`None` where PyTorch could not be run).
    pub pytorch_samples_per_second: Option<f64>,
    /// Median of the pairwise ratios Kiln / PyTorch (> 1: Kiln is faster).
    pub ratio: Option<f64>,
    /// Every Kiln measurement, in order.
    pub kiln_runs: Vec<f64>,
    /// Every PyTorch measurement, in order.
    pub pytorch_runs: Vec<f64>,
}

/// The report written to `reports/bench/vs-pytorch.json`.
#[derive(Debug, Serialize)]
struct Report {
    rows: Vec<Row>,
    steps: usize,
    pairs: usize,
    threads: usize,
    torch_version: Option<String>,
}

/// What `bench_pytorch.py` writes for one network.
#[derive(Debug, Deserialize)]
struct TorchFigure {
    samples_per_second: f64,
}

/// Settings of a comparison.
pub struct VsPytorch<'a> {
    /// Image batch size.
    pub batch: usize,
    /// Timed steps per measurement.
    pub steps: usize,
    /// Kiln–PyTorch pairs per workload (at least 3).
    pub pairs: usize,
    /// Only workloads whose name contains this text.
    pub only: Option<&'a str>,
    /// The JSON report.
    pub out: &'a Path,
}

impl VsPytorch<'_> {
    /// Runs the comparison, prints the table and writes the report.
    pub fn run(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.pairs >= 3,
            "--pairs must be at least 3, got {}",
            self.pairs
        );
        let choice: DeviceChoice = "flex"
            .parse()
            .context("--vs-pytorch measures Kiln on flex, which this build lacks")?;
        // Threads of rayon's global pool, which flex and Kiln's kernels compute on.
        let threads = rayon::current_num_threads();
        let torch = torch_version();
        if torch.is_none() {
            println!(
                "PyTorch is not importable by python3: `pip install torch numpy` to compare; measuring Kiln alone"
            );
        }
        let workloads = Workloads::load(self.batch)?;
        let scratch =
            tempfile::tempdir().context("creating a scratch folder for PyTorch's figures")?;
        let mut rows = Vec::new();
        for network in chosen(self.only).filter(|n| n.in_pytorch()) {
            let (mut kiln, mut pytorch) = (Vec::new(), Vec::new());
            for pair in 0..self.pairs {
                let fig = workloads.measure(network, choice, self.steps)?;
                println!("{}", fig.line());
                kiln.push(fig.samples_per_second);
                if torch.is_some() {
                    let json = scratch.path().join(format!("pytorch-{pair}.json"));
                    let sps = self.pytorch(network, threads, &json)?;
                    println!("{}", pytorch_line(network, sps, &fig));
                    pytorch.push(sps);
                }
            }
            let ratios: Vec<f64> = kiln.iter().zip(&pytorch).map(|(k, p)| k / p).collect();
            rows.push(Row {
                network: network.name(),
                kiln_samples_per_second: median(&kiln).unwrap_or(f64::NAN),
                pytorch_samples_per_second: median(&pytorch),
                ratio: median(&ratios),
                kiln_runs: kiln,
                pytorch_runs: pytorch,
            });
        }
        println!();
        print!("{}", table(&rows));
        write_json(
            self.out,
            &Report {
                rows,
                steps: self.steps,
                pairs: self.pairs,
                threads,
                torch_version: torch,
            },
        )
    }

    /// One PyTorch measurement of `network` in a child process; returns its samples/s.
    fn pytorch(&self, network: Network, threads: usize, json: &Path) -> anyhow::Result<f64> {
        let status = Command::new("python3")
            .arg(script())
            .args(["--network", &network.name()])
            .args(["--batch", &self.batch.to_string()])
            .args(["--steps", &self.steps.to_string()])
            .args(["--threads", &threads.to_string()])
            .arg("--out")
            .arg(json)
            .arg("--quiet")
            .status()
            .context("running python3 scripts/bench_pytorch.py")?;
        anyhow::ensure!(
            status.success(),
            "scripts/bench_pytorch.py failed for {} ({status})",
            network.name()
        );
        let text =
            std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
        let figures: Vec<TorchFigure> =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
        figures
            .first()
            .map(|f| f.samples_per_second)
            .with_context(|| format!("{} holds no figure for {}", json.display(), network.name()))
    }
}

fn pytorch_line(network: Network, sps: f64, kiln: &Figure) -> String {
    format!(
        "{:<8} {:<30} batch {:>4}: {:>9.0} samples/s (Kiln / PyTorch {:.2})",
        "pytorch",
        network.name(),
        kiln.batch,
        sps,
        kiln.samples_per_second / sps
    )
}

/// The table printed at the end (also the README's).
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| workload | Kiln flex samples/s | PyTorch samples/s | ratio |\n|---|---|---|---|\n",
    );
    for row in rows {
        let fmt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.0}"));
        s += &format!(
            "| {} | {:.0} | {} | {} |\n",
            row.network,
            row.kiln_samples_per_second,
            fmt(row.pytorch_samples_per_second),
            row.ratio.map_or("—".to_string(), |r| format!("{r:.2}"))
        );
    }
    s
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// PyTorch's version, or `None` where `python3 -c "import torch"` fails.
fn torch_version() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import torch, numpy; print(torch.__version__)"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_pytorch.py")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn table_marks_missing_pytorch_figures() {
        let rows = [Row {
            network: "LSTM 28x28 h128".into(),
            kiln_samples_per_second: 1234.4,
            pytorch_samples_per_second: None,
            ratio: None,
            kiln_runs: vec![1234.4],
            pytorch_runs: vec![],
        }];
        assert!(table(&rows).contains("| LSTM 28x28 h128 | 1234 | — | — |"));
    }
}
