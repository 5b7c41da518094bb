//! Saving trained weights (burnpack) with their config (JSON) and loading them back into a fresh model.

use crate::ModelError;
use burn::config::Config;
use burn::module::Module;
use std::path::Path;

/// Saves `model`'s weights to `weights` (a burnpack `.bpk` file).
pub fn save_weights<M: Module>(model: &M, weights: &Path) -> Result<(), ModelError> {
    if let Some(dir) = weights.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    }
    // Written under a temporary name and renamed: a crash never leaves a half-written weights file.
    kiln_core::files::write_via_temporary(
        weights,
        |temporary| {
            model
                .clone()
                .save_file(temporary)
                .map_err(|e| file_error(weights, e))
        },
        |e| file_error(weights, e),
    )
}

/// Loads weights into `model` (freshly built from the same config); a file for another architecture or
/// other sizes is an error naming the file.
pub fn load_weights<M: Module>(model: M, weights: &Path) -> Result<M, ModelError> {
    if !weights.is_file() {
        return Err(ModelError::File {
            path: weights.to_path_buf(),
            message: "no such weights file".into(),
        });
    }
    model
        .try_load_file(weights)
        .map_err(|e| file_error(weights, e))
}

/// Saves a config as JSON.
pub fn save_config<C: Config>(config: &C, path: &Path) -> Result<(), ModelError> {
    kiln_core::files::write_via_temporary(
        path,
        |temporary| config.save(temporary).map_err(|e| file_error(path, e)),
        |e| file_error(path, e),
    )
}

/// Loads a config from JSON.
pub fn load_config<C: Config>(path: &Path) -> Result<C, ModelError> {
    C::load(path).map_err(|e| file_error(path, e))
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
