//! Kiln's tasks: `cargo xtask train-all`, `cargo xtask train`, `cargo xtask bench`.

mod bench;
mod compress_md;
mod report_md;
mod vs_pytorch;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kiln::compression::ReportPart;
use kiln::data::{CharCorpus, ImageFolder, Table, tabular};
use kiln::recipes::{self, ModelName, RunSettings, RunSummary};
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
    /// Train every model on its real dataset; write reports/train-all/report.{md,json} and the curves.
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
    },
    /// Train one model, on the vendored data or on your own IDX folder / CSV or TSV file.
    Train {
        /// linear_regression, logistic_regression, mlp, cnn, rnn, gru, lstm, transe or distmult.
        #[arg(long)]
        model: String,
        /// IDX folder (the four {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] files) for classifiers
        /// (rnn/gru/lstm read the images row by row); a UTF-8 text file (gzipped or not) for an rnn/gru/lstm
        /// character language model; a folder of {train,valid,test}.txt triple files (or the name of a
        /// vendored graph: kinships, umls, nations) for transe/distmult; CSV/TSV file with a header for
        /// linear_regression. Default: the vendored MNIST (sequential MNIST for rnn/gru/lstm) / Kinships /
        /// diabetes data.
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// Target column of a CSV/TSV file (default: the last column).
        #[arg(long)]
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
        #[arg(long)]
        resume: bool,
        /// A smoke run.
        #[arg(long)]
        quick: bool,
        /// Augment training images on the fly (classifiers): ±2 px shifts, ±10° rotations, noise σ 0.05.
        #[arg(long)]
        augment: bool,
        /// Print one line per epoch instead of burn's terminal dashboard.
        #[arg(long)]
        lines: bool,
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

fn main() -> anyhow::Result<()> {
    keep_freed_pages();
    let task = Cli::parse().task;
    // Every task (training, evaluation, decoding, benchmarks) runs on a worker of the compute pool, so the
    // tensor ops it issues cost no futex round trip each (see `kiln_train::compute_pool`).
    kiln_train::compute_pool::on_compute_pool(|| run(task))
}

/// Runs one task.
fn run(task: Task) -> anyhow::Result<()> {
    match task {
        Task::TrainAll {
            device,
            quick,
            out,
            lines,
        } => train_all(parse_device(device)?, quick, &out, dashboard(lines)),
        Task::Train {
            model,
            dataset,
            target,
            epochs,
            device,
            out,
            resume,
            quick,
            augment,
            lines,
        } => {
            let model: ModelName = model.parse()?;
            let device = parse_device(device)?;
            let name = match (&dataset, model) {
                (Some(path), _) => recipes::dataset_name(path),
                (None, ModelName::LinearRegression) => "diabetes".into(),
                (None, ModelName::TransformerLm) => "shakespeare".into(),
                (None, m) if m.translates() => "kjv_rv1909".into(),
                (None, m) if m.reads_rows() => "seq_mnist".into(),
                (None, m) if m.kg_scorer().is_some() => "kinships".into(),
                (None, _) => "mnist".into(),
            };
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!("reports/train/{}-{name}", model.as_str()))
            });
            let settings = RunSettings {
                device,
                run_dir: out.clone(),
                epochs,
                quick,
                dashboard: dashboard(lines),
                resume,
                seed: 42,
                augment,
            };
            let summary = run_one(
                model,
                dataset.as_deref(),
                target.as_deref(),
                &name,
                &settings,
            )?;
            print_summary(&summary);
            Report {
                runs: summary.records(),
            }
            .write(&out.join("report.json"))?;
            println!(
                "wrote {} and {}",
                out.join("report.json").display(),
                summary.curves().display()
            );
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
            };
            let started = std::time::Instant::now();
            let mut report = kiln::compression::compress_all(&settings, &parts)?;
            // A partial run updates its rows of the existing report.
            let existing = out.join("report.json");
            if parts.len() < ReportPart::ALL.len() && existing.is_file() {
                let text = std::fs::read_to_string(&existing)
                    .with_context(|| existing.display().to_string())?;
                let old: kiln::compression::CompressReport = serde_json::from_str(&text)
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

/// Runs one recipe on the given (or vendored) data.
fn run_one(
    model: ModelName,
    dataset: Option<&Path>,
    target: Option<&str>,
    name: &str,
    settings: &RunSettings,
) -> anyhow::Result<RunSummary> {
    match model {
        ModelName::LinearRegression => {
            let data = match dataset {
                None => tabular::diabetes()?,
                Some(path) => {
                    let table = Table::read(path)?;
                    let target = match target {
                        Some(t) => t.to_string(),
                        None => table
                            .columns
                            .last()
                            .cloned()
                            .context("table has no columns")?,
                    };
                    table.regression(&target)?
                }
            };
            recipes::linear_regression(&data, name, settings)
        }
        m if m.kg_scorer().is_some() => {
            let graph = match dataset {
                Some(path) if path.is_dir() => kiln::data::KnowledgeGraph::load(path)?,
                // A bare name: one of the vendored graphs (an unknown name is a missing-folder error).
                _ => kiln::data::kg::vendored(name)?,
            };
            recipes::kg_embedding(model, &graph, name, settings)
        }
        m if m.translates() => {
            let corpus = match dataset {
                Some(path) => kiln::data::ParallelCorpus::load(path)?,
                None => kiln::data::parallel::kjv_rv1909()?,
            };
            if m == ModelName::CopySource {
                recipes::copy_source(&corpus, name, settings)
            } else {
                recipes::translation(&corpus, name, settings)
            }
        }
        ModelName::TransformerLm if dataset.is_none() => {
            let corpus = kiln::data::text::shakespeare()?;
            recipes::char_language_model(model, &corpus, name, settings)
        }
        m if m == ModelName::TransformerLm
            || (m.cell().is_some() && dataset.is_some_and(Path::is_file)) =>
        {
            let path = dataset.context("a text file")?;
            let corpus = CharCorpus::load(path, 0.9, 0.05)?;
            recipes::char_language_model(model, &corpus, name, settings)
        }
        _ => {
            let folder = match dataset {
                None => ImageFolder::mnist()?,
                Some(path) => ImageFolder::load(path)?,
            };
            recipes::image_classifier(model, &folder, name, settings)
        }
    }
}

/// One run of `train-all`.
struct PlannedRun {
    model: ModelName,
    dataset: &'static str,
    augment: bool,
}

/// What `train-all` runs, in report order: each model on its dataset; the CNN with and without
/// augmentation (the ablation); the recurrent models on sequential MNIST and on Shakespeare.
fn train_all_plan() -> Vec<PlannedRun> {
    let run = |model, dataset, augment| PlannedRun {
        model,
        dataset,
        augment,
    };
    let mut plan = vec![
        run(ModelName::LinearRegression, "diabetes", false),
        run(ModelName::LogisticRegression, "mnist", false),
        run(ModelName::Mlp, "mnist", false),
        run(ModelName::Cnn, "mnist", true),
        run(ModelName::Cnn, "mnist", false),
    ];
    for (dataset, transformer) in [
        ("seq_mnist", ModelName::TransformerEncoder),
        ("shakespeare", ModelName::TransformerLm),
    ] {
        for model in [ModelName::Rnn, ModelName::Gru, ModelName::Lstm, transformer] {
            plan.push(run(model, dataset, false));
        }
    }
    plan.push(run(ModelName::TransformerSeq2Seq, "kjv_rv1909", false));
    plan.push(run(ModelName::CopySource, "kjv_rv1909", false));
    for dataset in ["kinships", "umls"] {
        for model in [ModelName::TransE, ModelName::DistMult] {
            plan.push(run(model, dataset, false));
        }
    }
    plan
}

fn print_summary(s: &RunSummary) {
    let r = &s.record;
    println!(
        "{} on {} ({}): {} = {:.4} after {} epochs, {:.1} s, {} parameters",
        r.model, r.dataset, r.device, r.metric, r.value, r.epochs, r.train_seconds, r.params
    );
    for (k, v) in &s.details {
        println!("  {k}: {v}");
    }
    for (title, text) in &s.texts {
        println!("  {title}:\n{text}\n");
    }
}

fn train_all(
    device: DeviceChoice,
    quick: bool,
    out: &Path,
    dashboard: Dashboard,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let run_root = PathBuf::from("runs/train-all");
    let mut summaries = Vec::new();
    let shakespeare = kiln::data::text::shakespeare()?;
    for PlannedRun {
        model,
        dataset,
        augment,
    } in train_all_plan()
    {
        let settings = RunSettings {
            device,
            run_dir: run_root.join(format!(
                "{}-{dataset}{}",
                model.as_str(),
                if augment { "-augmented" } else { "" }
            )),
            epochs: None,
            quick,
            dashboard,
            resume: false,
            seed: 42,
            augment,
        };
        println!("== {} on {dataset} ({device})", model.as_str());
        let summary = if dataset == "shakespeare" {
            recipes::char_language_model(model, &shakespeare, dataset, &settings)?
        } else {
            run_one(model, None, None, dataset, &settings)?
        };
        print_summary(&summary);
        summaries.push(summary);
    }
    let total = started.elapsed().as_secs_f64();
    report_md::write(out, &summaries, device, quick, total)?;
    println!(
        "train-all took {total:.0} s; wrote {}/report.md and report.json",
        out.display()
    );
    Ok(())
}
