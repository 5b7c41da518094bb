//! Kiln's tasks: `cargo xtask train-all`, `cargo xtask train`, `cargo xtask recipes`, `cargo xtask compress`,
//! `cargo xtask bench`.

mod bench;
mod compress_md;
mod explain;
mod federated;
mod ranks;
mod report_md;
mod vs_pytorch;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kiln::recipes::compression::ReportPart;
use kiln::recipes::registry::{self, DataKind};
use kiln::recipes::{self, DataSource, Hyper, ModelName, Recipe, RunSettings, RunSummary};
use kiln::train::{Dashboard, DeviceChoice, Report};
use std::path::{Path, PathBuf};

/// mimalloc instead of the system allocator: a training step frees and reallocates many multi-megabyte
/// buffers, and glibc's malloc hands each one back to the kernel (`munmap`) once the dataloader's threads
/// exist, so every step paid for fresh zeroed pages. One CNN epoch on MNIST took 58.5 s with glibc's
/// malloc and 38 s with mimalloc (see the CNN issue's note).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Kiln's tasks: train every model, train one, benchmark.")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Train every model on its real dataset (every recipe of the registry); write
    /// reports/train-all/report.{md,json}, runs.json and the curves.
    TrainAll {
        /// flex, ndarray or wgpu (default: the CPU default, flex).
        #[arg(long)]
        device: Option<String>,
        /// A smoke run: small subsets, one or two epochs per model.
        #[arg(long)]
        quick: bool,
        /// Report folder.
        #[arg(long, default_value = "reports/train-all")]
        out: PathBuf,
        /// Print one line per epoch instead of burn's terminal dashboard.
        #[arg(long)]
        lines: bool,
        /// Run only these recipes (comma-separated registry names, see `cargo xtask recipes`); their rows
        /// and sections replace those of the report already in `--out`.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Train one model, on the vendored data or on your own IDX folder / CSV or TSV file / text file /
    /// sentence-pair file / triple folder; or rerun a saved recipe.
    Train {
        #[arg(long, help = registry::model_help(), required_unless_present = "recipe", conflicts_with = "recipe")]
        model: Option<String>,
        /// A recipe file to run (every run folder holds its recipe as `recipe.json`; `cargo xtask recipes
        /// --show NAME` prints a shipped one to start from).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// IDX folder (the four {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] files) for classifiers
        /// (rnn/gru/lstm read the images row by row); a UTF-8 text file (gzipped or not) for an rnn/gru/lstm
        /// or transformer_lm character language model; a sentence-pair file for transformer_seq2seq and
        /// copy_source; a folder of {train,valid,test}.txt triple files (or the name of a vendored graph:
        /// kinships, umls, nations) for transe/distmult; CSV/TSV file with a header for linear_regression.
        /// Default: the recipe's vendored data.
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// Target column of a CSV/TSV file (default: the last column).
        #[arg(long, requires = "dataset")]
        target: Option<String>,
        /// Number of epochs (default: the recipe's).
        #[arg(long)]
        epochs: Option<usize>,
        /// flex, ndarray or wgpu.
        #[arg(long)]
        device: Option<String>,
        /// Output folder (default: reports/train/<model>-<dataset>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue from the last checkpoint in the output folder.
        #[arg(long, conflicts_with = "overwrite")]
        resume: bool,
        /// Replace an earlier run in the output folder (without it, or `--resume`, an earlier run there is
        /// an error, so that it is never lost by accident).
        #[arg(long)]
        overwrite: bool,
        /// A smoke run.
        #[arg(long)]
        quick: bool,
        /// Augment training images on the fly (classifiers): ±2 px shifts, ±10° rotations, noise σ 0.05.
        #[arg(long)]
        augment: bool,
        /// Print one line per epoch instead of burn's terminal dashboard.
        #[arg(long)]
        lines: bool,
        /// Train data-parallel on this many processes (MPI ranks, started with `mpirun`): each takes its
        /// shard of every epoch and `batch_size / N` items a step, and the gradients are averaged, so the
        /// run follows one process's learning curve. Builds `xtask-mpi` (xtask with MPI) if needed.
        #[arg(long)]
        ranks: Option<usize>,
        /// Hosts to start the ranks on (an `mpirun` hostfile; default: this machine).
        #[arg(long, requires = "ranks")]
        hostfile: Option<PathBuf>,
        /// Train on these devices of this process together with burn's distributed data parallel
        /// (comma-separated, e.g. `cuda:0,cuda:1`; NCCL, so CUDA builds only: `--features cuda`).
        #[arg(long, value_delimiter = ',', conflicts_with = "ranks")]
        devices: Vec<String>,
    },
    /// Explain the MNIST MLP and CNN (saliency, gradient × input, integrated gradients, SmoothGrad,
    /// occlusion, Grad-CAM) and measure faithfulness (deletion / insertion AUC against a random
    /// attribution, model randomisation); write reports/explain/report.{md,json} and heatmaps.
    Explain {
        /// flex, ndarray or wgpu (default: the CPU default).
        #[arg(long)]
        device: Option<String>,
        /// A smoke run: models trained on a subset for one epoch, 64 digits.
        #[arg(long)]
        quick: bool,
        /// Where the report goes.
        #[arg(long, default_value = "reports/explain")]
        out: PathBuf,
    },
    /// Federated learning on MNIST: McMahan et al.'s (2017) 2NN and CNN with 100 clients, IID and
    /// pathological non-IID, beside the paper's rounds; FedProx with stragglers, FedAdam, FedYogi,
    /// robust aggregation, DP-FedAvg; write reports/federated/report.{md,json} and the curves.
    Federated {
        /// flex, ndarray or wgpu (default: the CPU default).
        #[arg(long)]
        device: Option<String>,
        /// A smoke run: 10 clients on 2,000 images, a few rounds.
        #[arg(long)]
        quick: bool,
        /// Only rewrite report.md and the curves from the report.json in `--out` (no training).
        #[arg(long, conflicts_with = "quick")]
        replot: bool,
        /// Where the report goes.
        #[arg(long, default_value = "reports/federated")]
        out: PathBuf,
    },
    /// List the registry's recipes (what train-all runs), or print one as JSON.
    Recipes {
        /// Print this recipe as JSON (a file for `cargo xtask train --recipe`).
        #[arg(long)]
        show: Option<String>,
    },
    /// Prune, quantize and distil the MNIST MLP and CNN; write reports/compress/report.{md,json} and a plot.
    Compress {
        /// flex, ndarray or wgpu (default: the CPU default).
        #[arg(long)]
        device: Option<String>,
        /// A smoke run: small subsets, one epoch each.
        #[arg(long)]
        quick: bool,
        /// Where the report goes.
        #[arg(long, default_value = "reports/compress")]
        out: PathBuf,
        /// Run only these parts (comma-separated: mlp, cnn, distill); their rows replace those of the
        /// report already in `--out`, if any.
        #[arg(long, value_delimiter = ',')]
        only: Vec<ReportPart>,
        /// Print one line per epoch instead of burn's terminal dashboard.
        #[arg(long)]
        lines: bool,
    },
    /// Measure training throughput (samples/s) of the MLPs, CNNs and recurrent classifiers on MNIST batches
    /// and of the Transformer LM on Shakespeare windows, on each CPU backend.
    Bench {
        /// Devices to measure (default: every one compiled in).
        #[arg(long)]
        device: Vec<String>,
        /// Batch size.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Timed steps per device (after 20 warm-up steps).
        #[arg(long, default_value_t = 300)]
        steps: usize,
        /// Where to write the figures as JSON (default `reports/bench/bench.json`, with `--vs-pytorch`
        /// `reports/bench/vs-pytorch.json`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Measure only the networks whose name contains this text (e.g. `CNN`, `LeNet`, `LSTM`).
        #[arg(long)]
        only: Option<String>,
        /// Kiln (flex) against PyTorch (`scripts/bench_pytorch.py`), alternately, with the same threads;
        /// prints the medians and the median ratio per workload.
        #[arg(long)]
        vs_pytorch: bool,
        /// Kiln–PyTorch pairs per workload with `--vs-pytorch` (at least 3).
        #[arg(long, default_value_t = 3)]
        pairs: usize,
    },
}

/// mimalloc's `mi_option_purge_delay` (index 15 of `mi_option_e` in mimalloc 3's `mimalloc.h`;
/// libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to hand freed pages back to the kernel. A training step frees and reallocates the
/// same multi-megabyte buffers every few milliseconds; with mimalloc's default purge delay the kernel
/// zeroed fresh (huge) pages for them on every step. `cargo xtask bench --only LSTM`, three interleaved
/// runs: 4,436 / 4,515 / 5,290 samples/s with the default, 4,870 / 5,170 / 6,089 without purging (the
/// CNN +2%). Memory stays at the process's peak, which a training run reaches in its first step anyway.
fn keep_freed_pages() {
    // SAFETY: sets a plain integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Parses the command line and runs its task (`pub` for the `xtask-mpi` binary, which is this one with MPI).
pub fn main() -> anyhow::Result<()> {
    keep_freed_pages();
    let task = Cli::parse().task;
    // Under an MPI launcher this process is one rank of a data-parallel run.
    let role = ranks::Role::join()?;
    if role.group().is_some() && !matches!(task, Task::Train { .. }) {
        let error = anyhow::anyhow!("only `train` runs as several ranks");
        role.fail(&error);
        return Err(error);
    }
    // Every task (training, evaluation, decoding, benchmarks) runs on a worker of the compute pool, so the
    // tensor ops it issues cost no futex round trip each (see `kiln_train::compute_pool`).
    let result = kiln_train::compute_pool::on_compute_pool(|| run(task, &role));
    if let Err(error) = &result {
        role.fail(error);
    }
    result
}

/// Runs one task.
fn run(task: Task, role: &ranks::Role) -> anyhow::Result<()> {
    match task {
        Task::TrainAll {
            device,
            quick,
            out,
            lines,
            only,
        } => train_all(parse_device(device)?, quick, &out, dashboard(lines), &only),
        Task::Train {
            model,
            recipe,
            dataset,
            target,
            epochs,
            device,
            out,
            resume,
            overwrite,
            quick,
            augment,
            lines,
            ranks,
            hostfile,
            devices,
        } => {
            let mut recipe = match (recipe, model) {
                (Some(file), _) => Recipe::load(&file)?,
                (None, Some(model)) => {
                    let model: ModelName = model.parse()?;
                    let kind = match &dataset {
                        None => DataKind::Default,
                        Some(path) if path.is_file() => DataKind::File,
                        Some(_) => DataKind::Folder,
                    };
                    registry::for_model(model, kind).with_context(|| {
                        format!("no recipe trains {} on this data", model.as_str())
                    })?
                }
                (None, None) => bail!("give --model M or --recipe FILE.json"),
            };
            if let Some(path) = dataset {
                recipe.dataset = match recipe.hyper {
                    // A bare name of a vendored graph (an unknown one is a missing-folder error).
                    Hyper::KgEmbedding { .. } if !path.is_dir() => {
                        DataSource::Vendored(recipes::dataset_name(&path))
                    }
                    _ => DataSource::Path { path, target },
                };
                recipe.name = format!("{}-{}", recipe.model.as_str(), recipe.dataset_name());
            }
            if let Some(epochs) = epochs {
                recipe.training.epochs = epochs;
                recipe.quick.epochs = epochs;
            }
            recipe.smoke |= quick;
            if augment && !recipe.augment {
                recipe.augment = true;
                recipe.name.push_str("-augmented");
            }
            recipe.check()?;
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "reports/train/{}-{}",
                    recipe.model.as_str(),
                    recipe.dataset_name()
                ))
            });
            let group = role.group().cloned();
            if let Some(n) = ranks.filter(|&n| n != 1 && group.is_none()) {
                check_run_folder(&out, resume, overwrite)?;
                return ranks::launch(n, hostfile);
            }
            let rank = group.as_ref().map_or(0, |g| g.rank());
            // Rank 0 writes the run folder; the others train in scratch folders of their own.
            let scratch = (rank > 0).then(|| ranks::Scratch::new(rank)).transpose()?;
            if rank == 0 {
                check_run_folder(&out, resume, overwrite)?;
            }
            let mut settings = RunSettings::for_recipe(
                &recipe,
                parse_device(device)?,
                scratch
                    .as_ref()
                    .map_or_else(|| out.clone(), |s| s.0.clone()),
                if rank > 0 {
                    Dashboard::Quiet
                } else {
                    dashboard(lines)
                },
                resume,
            );
            settings.data_parallel = group;
            settings.devices = devices
                .iter()
                .map(|d| d.parse::<DeviceChoice>())
                .collect::<Result<_, _>>()?;
            if let Some(first) = settings.devices.first() {
                settings.device = *first;
            }
            let summary = recipes::run(&recipe, &settings)?;
            if rank > 0 {
                return Ok(());
            }
            print_summary(&summary);
            Report {
                runs: summary.records(),
            }
            .write(&out.join("report.json"))?;
            println!(
                "wrote {}, {} and {}",
                out.join("report.json").display(),
                out.join("recipe.json").display(),
                summary.curves().display()
            );
            Ok(())
        }
        Task::Explain { device, quick, out } => explain::run(parse_device(device)?, quick, &out),
        Task::Federated {
            device,
            quick,
            replot,
            out,
        } => {
            if replot {
                federated::replot(&out)
            } else {
                federated::run(parse_device(device)?, quick, &out)
            }
        }
        Task::Recipes { show } => {
            match show {
                Some(name) => println!("{}", registry::find(&name)?.to_json()),
                None => print!("{}", recipes_table()),
            }
            Ok(())
        }
        Task::Compress {
            device,
            quick,
            out,
            only,
            lines,
        } => {
            let device = parse_device(device)?;
            let parts: Vec<ReportPart> = if only.is_empty() {
                ReportPart::ALL.to_vec()
            } else {
                only
            };
            let settings = RunSettings {
                device,
                run_dir: PathBuf::from("runs/compress"),
                epochs: None,
                quick,
                dashboard: dashboard(lines),
                resume: false,
                seed: 42,
                augment: false,
                data_parallel: None,
                devices: Vec::new(),
            };
            let started = std::time::Instant::now();
            let mut report = kiln::recipes::compression::compress_all(&settings, &parts)?;
            // A partial run updates its rows of the existing report.
            let existing = out.join("report.json");
            if parts.len() < ReportPart::ALL.len() && existing.is_file() {
                let text = std::fs::read_to_string(&existing)
                    .with_context(|| existing.display().to_string())?;
                let old: kiln::recipes::compression::CompressReport = serde_json::from_str(&text)
                    .with_context(|| {
                    format!("{} is not a compression report", existing.display())
                })?;
                report = old.merged(report, &parts);
            }
            compress_md::write(
                &out,
                &report,
                device,
                quick,
                started.elapsed().as_secs_f64(),
            )?;
            println!(
                "wrote {}/report.md, report.json and accuracy_vs_size.png",
                out.display()
            );
            Ok(())
        }
        Task::Bench {
            device,
            batch,
            steps,
            out,
            only,
            vs_pytorch,
            pairs,
        } => {
            if vs_pytorch {
                anyhow::ensure!(
                    device.is_empty(),
                    "--vs-pytorch always measures Kiln on flex; drop --device"
                );
                let out = out.unwrap_or_else(|| "reports/bench/vs-pytorch.json".into());
                return vs_pytorch::VsPytorch {
                    batch,
                    steps,
                    pairs,
                    only: only.as_deref(),
                    out: &out,
                }
                .run();
            }
            let out = out.unwrap_or_else(|| "reports/bench/bench.json".into());
            let devices = if device.is_empty() {
                DeviceChoice::available()
                    .into_iter()
                    .filter(|d| *d != "wgpu")
                    .map(String::from)
                    .collect()
            } else {
                device
            };
            let devices = devices
                .iter()
                .map(|d| d.parse::<DeviceChoice>())
                .collect::<Result<Vec<_>, _>>()?;
            bench::run(&devices, batch, steps, &out, only.as_deref())
        }
    }
}

/// Refuses to train into a folder that holds an earlier run (its `metrics.csv`) unless the run is resumed
/// or `--overwrite` says to replace it: a fresh run there would drop the earlier run's checkpoints.
fn check_run_folder(out: &Path, resume: bool, overwrite: bool) -> anyhow::Result<()> {
    if !resume && !overwrite && out.join("metrics.csv").is_file() {
        bail!(
            "{} holds an earlier run (its metrics.csv): pass --resume to continue it, --overwrite to \
             replace it, or --out for another folder",
            out.display()
        );
    }
    Ok(())
}

fn dashboard(lines: bool) -> Dashboard {
    if lines {
        Dashboard::Lines
    } else {
        Dashboard::Auto
    }
}

fn parse_device(device: Option<String>) -> anyhow::Result<DeviceChoice> {
    Ok(match device {
        Some(d) => d.parse()?,
        None => DeviceChoice::cpu_default()?,
    })
}

fn print_summary(s: &RunSummary) {
    let r = &s.record;
    let ranks = if r.ranks > 1 {
        format!(" on {} ranks", r.ranks)
    } else {
        String::new()
    };
    println!(
        "{} on {} ({}{ranks}): {} = {:.4} after {} epochs, {:.1} s, {} parameters",
        r.model, r.dataset, r.device, r.metric, r.value, r.epochs, r.train_seconds, r.params
    );
    for (k, v) in &s.details {
        println!("  {k}: {v}");
    }
    for (title, text) in &s.texts {
        println!("  {title}:\n{text}\n");
    }
}

/// The registry as a table: name, model, data, epochs, batch, learning rate, the bar.
fn recipes_table() -> String {
    let mut out = String::from("recipe | model | dataset | epochs | batch | lr | bar\n");
    for r in registry::recipes() {
        let bar = match &r.target {
            recipes::Target::None => "—".to_string(),
            recipes::Target::Reported { text }
            | recipes::Target::AtLeast { text, .. }
            | recipes::Target::AtMost { text, .. }
            | recipes::Target::BesidePeer { text, .. } => text.clone(),
            recipes::Target::NearReference {
                relative,
                reference,
            } => format!("within {}% of {reference}", 100.0 * relative),
            recipes::Target::BelowPeerAtEqualTime { peer, .. } => {
                format!("below {peer} at equal training time")
            }
            recipes::Target::AbovePeer { peer, .. } => format!("above {peer}"),
        };
        out.push_str(&format!(
            "{} | {} | {} | {} | {} | {} | {bar}\n",
            r.name,
            r.model.as_str(),
            r.dataset_name(),
            r.training.epochs,
            r.training.batch_size,
            r.training.lr
        ));
    }
    out
}

/// Runs the registry's recipes (or those named in `only`, merged into the report already in `out`).
fn train_all(
    device: DeviceChoice,
    quick: bool,
    out: &Path,
    dashboard: Dashboard,
    only: &[String],
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let run_root = PathBuf::from("runs/train-all");
    let mut plan = registry::recipes();
    if !only.is_empty() {
        for name in only {
            registry::find(name)?;
        }
        plan.retain(|r| only.contains(&r.name));
    }
    // A partial run merges into the existing report: refuse before training if there is none to merge into.
    let previous = if only.is_empty() {
        None
    } else {
        Some(report_md::TrainAllRuns::read(out, quick)?)
    };
    let mut summaries = Vec::new();
    for mut recipe in plan {
        recipe.smoke = quick;
        let settings = RunSettings::for_recipe(
            &recipe,
            device,
            run_root.join(&recipe.name),
            dashboard,
            false,
        );
        println!(
            "== {} on {} ({device})",
            recipe.model.as_str(),
            recipe.dataset_name()
        );
        let summary = recipes::run(&recipe, &settings)?;
        print_summary(&summary);
        summaries.push(summary);
    }
    let seconds = started.elapsed().as_secs_f64();
    let runs = match previous {
        None => report_md::TrainAllRuns::full(summaries, device, quick, seconds),
        Some(previous) => previous.merged(summaries, seconds),
    };
    report_md::write(out, &runs)?;
    println!(
        "train-all took {seconds:.0} s; wrote {}/report.md, report.json and runs.json",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_run_is_kept_unless_resumed_or_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        check_run_folder(dir.path(), false, false).unwrap();
        std::fs::write(dir.path().join("metrics.csv"), "epoch\n").unwrap();
        let err = check_run_folder(dir.path(), false, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--resume") && err.contains("--overwrite"),
            "{err}"
        );
        check_run_folder(dir.path(), true, false).unwrap();
        check_run_folder(dir.path(), false, true).unwrap();
    }

    #[test]
    fn train_parses_recipe_or_model_but_not_both() {
        use clap::Parser;
        assert!(Cli::try_parse_from(["xtask", "train", "--model", "mlp"]).is_ok());
        assert!(Cli::try_parse_from(["xtask", "train", "--recipe", "r.json"]).is_ok());
        assert!(Cli::try_parse_from(["xtask", "train"]).is_err());
        assert!(
            Cli::try_parse_from(["xtask", "train", "--model", "mlp", "--recipe", "r.json"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from(["xtask", "train", "--model", "mlp", "--target", "y"]).is_err()
        );
    }
}
