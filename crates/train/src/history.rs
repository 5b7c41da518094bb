//! Per-epoch metrics: a burn-train [`MetricLogger`] that averages each metric over an epoch, appends the
//! means to `metrics.csv`, prints one line per epoch when no dashboard is shown, and stops training on a
//! NaN or infinite loss.

use crate::TrainError;
use crate::board::{Board, tag_name};
use crate::data_parallel::DataParallel;
use burn::train::Interrupter;
use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The header of `metrics.csv`.
const HEADER: &str = "epoch,split,metric,value";

/// One row of `metrics.csv`: the mean of a metric over one epoch of one split.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochMetric {
    /// 1-based epoch.
    pub epoch: usize,
    /// `train` or `valid`.
    pub split: String,
    /// Metric name in lower case (`loss`, `accuracy`).
    pub metric: String,
    /// The epoch mean.
    pub value: f64,
}

/// All epoch means of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Rows in the order they were written.
    pub rows: Vec<EpochMetric>,
}

impl History {
    /// Reads `metrics.csv`.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            let bad = || TrainError::Format {
                path: path.to_path_buf(),
                message: format!("line {}: expected `{HEADER}`, found {line:?}", i + 1),
            };
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 4 {
                return Err(bad());
            }
            rows.push(EpochMetric {
                epoch: f[0].parse().map_err(|_| bad())?,
                split: f[1].to_string(),
                metric: f[2].to_string(),
                value: f[3].parse().map_err(|_| bad())?,
            });
        }
        Ok(Self { rows })
    }

    /// `(epoch, value)` points of one metric of one split, in epoch order.
    pub fn series(&self, split: &str, metric: &str) -> Vec<(usize, f64)> {
        let mut points: Vec<(usize, f64)> = self
            .rows
            .iter()
            .filter(|r| r.split == split && r.metric == metric)
            .map(|r| (r.epoch, r.value))
            .collect();
        points.sort_by_key(|p| p.0);
        points
    }

    /// The epoch with the lowest validation loss, if any was logged.
    pub fn best_valid_loss_epoch(&self) -> Option<usize> {
        self.series("valid", "loss")
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(e, _)| e)
    }

    /// The last epoch logged.
    pub fn last_epoch(&self) -> usize {
        self.rows.iter().map(|r| r.epoch).max().unwrap_or(0)
    }
}

/// What the logger found wrong, read by the learner after training.
#[derive(Debug, Default)]
pub(crate) struct Divergence {
    pub(crate) non_finite: Option<(usize, String, f64)>,
}

/// Running sums of the entries of one metric during one epoch of one split.
#[derive(Debug, Default, Clone, Copy)]
struct Running {
    weighted_sum: f64,
    count: usize,
    final_value: Option<f64>,
}

impl Running {
    fn add(&mut self, entry: &NumericEntry) {
        match entry {
            NumericEntry::Value(v) => {
                self.weighted_sum += v;
                self.count += 1;
            }
            NumericEntry::Aggregated {
                aggregated_value,
                count,
            } => {
                self.weighted_sum += aggregated_value * *count as f64;
                self.count += count;
            }
            NumericEntry::Final(v) => self.final_value = Some(*v),
        }
    }

    fn mean(&self) -> f64 {
        self.final_value
            .unwrap_or(self.weighted_sum / self.count.max(1) as f64)
    }
}

/// Per-batch TensorBoard scalars of the training split.
pub(crate) struct StepScalars {
    board: Board,
    /// Each batch's training loss (global step, loss), for the curves of short runs.
    losses: Arc<Mutex<Vec<(i64, f64)>>>,
    /// The global step of the last batch written.
    step: i64,
    /// The last update's values (tag, value), not yet known to be a batch's.
    held: Vec<(String, f64)>,
}

impl StepScalars {
    /// Writes the held update as the next step's and holds `update` instead.
    fn hold(&mut self, update: &MetricsUpdate, names: &HashMap<MetricId, String>) {
        if !self.held.is_empty() {
            self.step += 1;
            for (tag, value) in self.held.drain(..) {
                if tag == "step/loss"
                    && let Ok(mut losses) = self.losses.lock()
                {
                    losses.push((self.step, value));
                }
                self.board.scalar(&tag, self.step, value);
            }
        }
        for numeric in &update.entries_numeric {
            let (Some(name), Some(entry)) =
                (names.get(&numeric.entry.metric_id), &numeric.numeric_entry)
            else {
                continue;
            };
            let value = match entry {
                NumericEntry::Value(v) | NumericEntry::Final(v) => *v,
                NumericEntry::Aggregated {
                    aggregated_value, ..
                } => *aggregated_value,
            };
            self.held.push((format!("step/{}", tag_name(name)), value));
        }
    }
}

/// burn-train metric logger writing `metrics.csv` (see the module docs).
pub(crate) struct EpochCsvLogger {
    path: PathBuf,
    names: HashMap<MetricId, String>,
    running: HashMap<(String, String), Running>,
    print_lines: bool,
    label: String,
    interrupter: Interrupter,
    divergence: Arc<Mutex<Divergence>>,
    /// Whether this process validates (a data-parallel rank other than 0 does not).
    validates: bool,
    /// The ranks this process trains with: epochs that the ranks' stop word emptied are not logged.
    group: Option<DataParallel>,
    /// TensorBoard scalars.
    board: Option<StepScalars>,
}

impl EpochCsvLogger {
    /// A logger appending to `path`. With `keep_until = Some(k)` (a resumed run) rows of epochs after `k`
    /// are dropped first; with `None` the file starts afresh.
    pub(crate) fn new(
        path: PathBuf,
        keep_until: Option<usize>,
        print_lines: bool,
        label: String,
        interrupter: Interrupter,
        divergence: Arc<Mutex<Divergence>>,
    ) -> Result<Self, TrainError> {
        let kept = match keep_until {
            Some(k) if path.exists() => History::read(&path)?
                .rows
                .into_iter()
                .filter(|r| r.epoch <= k)
                .collect(),
            _ => Vec::new(),
        };
        let mut text = format!("{HEADER}\n");
        for r in kept {
            text += &format!("{},{},{},{}\n", r.epoch, r.split, r.metric, r.value);
        }
        kiln_core::files::write_atomic(&path, text).map_err(|e| TrainError::io(&path, e))?;
        Ok(Self {
            path,
            names: HashMap::new(),
            running: HashMap::new(),
            print_lines,
            label,
            interrupter,
            divergence,
            validates: true,
            group: None,
            board: None,
        })
    }

    /// This logger also writing TensorBoard scalars to `board`: each training batch's metrics at its global
    /// step (counted from `first_step`, the steps before a resume), and every epoch's means at its number;
    /// each batch's loss also goes to `losses`.
    pub(crate) fn with_board(
        mut self,
        board: Board,
        first_step: usize,
        losses: Arc<Mutex<Vec<(i64, f64)>>>,
    ) -> Self {
        self.board = Some(StepScalars {
            board,
            losses,
            step: first_step as i64,
            held: Vec::new(),
        });
        self
    }

    /// This logger for one rank of `group`: only rank 0 logs validation, and no rank logs the epoch that
    /// the ranks' stop word emptied.
    pub(crate) fn for_rank(mut self, group: Option<DataParallel>) -> Self {
        self.validates = group.as_ref().is_none_or(DataParallel::is_root);
        self.group = group;
        self
    }
}

impl MetricLogger for EpochCsvLogger {
    fn log(&mut self, update: MetricsUpdate, _epoch: usize, split: &Split) {
        // burn-train logs one update per training batch and one more when the split ends (the epoch's
        // aggregates); each update is held back until the next one shows it was a batch's.
        if let (Some(board), Split::Train) = (&mut self.board, split) {
            board.hold(&update, &self.names);
        }
        for numeric in &update.entries_numeric {
            let (Some(name), Some(entry)) = (
                self.names.get(&numeric.entry.metric_id),
                &numeric.numeric_entry,
            ) else {
                continue;
            };
            self.running
                .entry((split.to_string(), name.clone()))
                .or_default()
                .add(entry);
        }
    }

    fn read_numeric(&mut self, _: &str, _: usize, _: &Split) -> Result<Vec<NumericEntry>, String> {
        // burn's FileMetricLogger, registered beside this one, answers the event store's queries.
        Err("EpochCsvLogger keeps no per-batch entries".into())
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id, definition.name.to_lowercase());
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        let split = summary.split.to_string();
        let emptied = self.group.as_ref().is_some_and(DataParallel::has_stopped);
        if emptied || (!self.validates && summary.split == Split::Valid) {
            self.running.retain(|(s, _), _| *s != split);
            return;
        }
        let mut rows: Vec<(String, f64)> = self
            .running
            .iter()
            .filter(|((s, _), _)| *s == split)
            .map(|((_, name), r)| (name.clone(), r.mean()))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        self.running.retain(|(s, _), _| *s != split);

        let mut text = String::new();
        for (name, value) in &rows {
            text += &format!("{},{split},{name},{value}\n", summary.epoch_number);
        }
        let written = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            eprintln!("warning: cannot append to {}: {e}", self.path.display());
        }
        if let Some(scalars) = &mut self.board {
            if summary.split == Split::Train {
                // The held update is the split's end, not a batch.
                scalars.held.clear();
            }
            let board = &mut scalars.board;
            for (name, value) in &rows {
                board.scalar(
                    &format!("{}/{split}", tag_name(name)),
                    summary.epoch_number as i64,
                    *value,
                );
            }
            board.flush();
        }
        if self.print_lines {
            let values: Vec<String> = rows.iter().map(|(n, v)| format!("{n} {v:.4}")).collect();
            println!(
                "[{}] epoch {:>3} {split:<5} {}",
                self.label,
                summary.epoch_number,
                values.join("  ")
            );
        }
        if let Some((_, loss)) = rows.iter().find(|(n, v)| n == "loss" && !v.is_finite()) {
            if let Ok(mut d) = self.divergence.lock() {
                d.non_finite
                    .get_or_insert((summary.epoch_number, split.clone(), *loss));
            }
            self.interrupter.stop(Some("non-finite loss"));
        }
    }
}
