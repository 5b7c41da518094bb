//! A run's TensorBoard event files, in `<run>/tensorboard/`: per step the training batch's metrics and the
//! learning rate (`step/loss`, `step/learning_rate`, …), per epoch every train and validation metric
//! (`loss/train`, `loss/valid`, `accuracy/valid`, …), and histograms of every weight and its gradient at
//! each epoch's first step (`weights/<path>`, `gradients/<path>`). `tensorboard --logdir runs` shows them.
//!
//! Writing the files must never cost a run: a write that fails is reported once and the rest skipped.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use kiln_tensorboard::EventWriter;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The folder of a run's event files.
pub fn board_dir(run_dir: &Path) -> std::path::PathBuf {
    run_dir.join("tensorboard")
}

/// An event writer that goes quiet after its first failure.
pub(crate) struct Board {
    writer: Option<EventWriter>,
}

impl Board {
    /// A new event file in the run's board folder, or a quiet board (with a warning) when it cannot be made.
    pub(crate) fn create(run_dir: &Path) -> Self {
        match EventWriter::create(&board_dir(run_dir)) {
            Ok(writer) => Self {
                writer: Some(writer),
            },
            Err(e) => {
                eprintln!("warning: no TensorBoard events for this run: {e}");
                Self { writer: None }
            }
        }
    }

    fn write(
        &mut self,
        f: impl FnOnce(&mut EventWriter) -> Result<(), kiln_tensorboard::BoardError>,
    ) {
        if let Some(writer) = &mut self.writer
            && let Err(e) = f(writer)
        {
            eprintln!("warning: TensorBoard events stop here: {e}");
            self.writer = None;
        }
    }

    /// The scalar `value` of `tag` at `step`.
    pub(crate) fn scalar(&mut self, tag: &str, step: i64, value: f64) {
        self.write(|w| w.scalar(tag, step, value as f32));
    }

    /// A histogram of `values` as `tag` at `step`.
    pub(crate) fn histogram(&mut self, tag: &str, step: i64, values: &[f32]) {
        self.write(|w| w.histogram(tag, step, values));
    }

    /// Writes what is buffered.
    pub(crate) fn flush(&mut self) {
        self.write(|w| w.flush());
    }
}

/// Writes `images` (greyscale, `height × width` each) as one grid image `tag` at `step` into a new event
/// file of the run in `run_dir` (augmented training samples, attribution maps). A failure is a warning:
/// pictures must never cost a run.
pub fn write_image_grid(
    run_dir: &Path,
    tag: &str,
    step: i64,
    images: &[Vec<f32>],
    height: usize,
    width: usize,
) {
    let columns = (images.len() as f64).sqrt().ceil() as usize;
    let written =
        kiln_tensorboard::grey_grid_png(images, height, width, columns).and_then(|(png, h, w)| {
            let mut writer = EventWriter::create(&board_dir(run_dir))?;
            writer.image(tag, step, png, h, w, 1)?;
            writer.flush()
        });
    if let Err(e) = written {
        eprintln!("warning: no TensorBoard image {tag}: {e}");
    }
}

/// A metric's name as a tag component: lower case, spaces as underscores.
pub(crate) fn tag_name(name: &str) -> String {
    name.trim().to_lowercase().replace(' ', "_")
}

/// Histograms of the weights and gradients of the trained module at the first optimizer step of every
/// epoch; shared by every clone of the module burn-train makes.
#[derive(Clone)]
pub struct WeightHistograms {
    state: Arc<Mutex<HistogramState>>,
}

struct HistogramState {
    board: Board,
    steps: usize,
    steps_per_epoch: usize,
    first_epoch: usize,
}

impl fmt::Debug for WeightHistograms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeightHistograms")
    }
}

impl WeightHistograms {
    /// Histograms into a new event file of `run_dir`, for a run whose epochs have `steps_per_epoch`
    /// optimizer steps, starting at epoch `first_epoch`.
    pub(crate) fn new(run_dir: &Path, steps_per_epoch: usize, first_epoch: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(HistogramState {
                board: Board::create(run_dir),
                steps: 0,
                steps_per_epoch: steps_per_epoch.max(1),
                first_epoch,
            })),
        }
    }

    /// Called before every optimizer step with the module and its gradients.
    pub(crate) fn before_step<M: Module>(&self, module: &M, grads: &GradientsParams) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let step = state.steps;
        state.steps += 1;
        if !step.is_multiple_of(state.steps_per_epoch) {
            return;
        }
        let epoch = (state.first_epoch + step / state.steps_per_epoch) as i64;
        let mut visitor = Collect {
            grads,
            path: Vec::new(),
            found: Vec::new(),
        };
        module.visit(&mut visitor);
        for (path, weights, gradient) in visitor.found {
            state
                .board
                .histogram(&format!("weights/{path}"), epoch, &weights);
            if let Some(g) = gradient {
                state
                    .board
                    .histogram(&format!("gradients/{path}"), epoch, &g);
            }
        }
        state.board.flush();
    }
}

/// Every float parameter's dotted path (without the learner's `model.`), values and gradient.
struct Collect<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    found: Vec<(String, Vec<f32>, Option<Vec<f32>>)>,
}

fn values<const D: usize>(t: Tensor<D>) -> Option<Vec<f32>> {
    t.try_into_data_as::<f32>().ok()?.try_to_vec::<f32>().ok()
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let parts: Vec<&str> = self.path.iter().map(String::as_str).collect();
        let path = match parts.as_slice() {
            ["model", rest @ ..] if !rest.is_empty() => rest.join("."),
            all => all.join("."),
        };
        let Some(weights) = values(param.val().inner()) else {
            return;
        };
        let gradient = self.grads.get::<D>(param.id).and_then(values);
        self.found.push((path, weights, gradient));
    }
}
