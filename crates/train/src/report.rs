//! The `report.json` schema shared by `cargo xtask train-all` and `cargo xtask train`.

use crate::TrainError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One training run's headline result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// snake_case model name (`linear_regression`, `logistic_regression`, `mlp`, ...).
    pub model: String,
    /// snake_case dataset name (`diabetes`, `mnist`, or the folder/file name of a user's data).
    pub dataset: String,
    /// The device it trained on (`flex`, `ndarray`, `wgpu`).
    pub device: String,
    /// `test_accuracy`, `test_r2` or `test_rmse`.
    pub metric: String,
    /// The metric's value on the test split.
    pub value: f64,
    /// Trainable parameters.
    pub params: usize,
    /// Epochs actually run (fewer than asked when early stopping fired).
    pub epochs: usize,
    /// Wall-clock training time (training and validation epochs, not data loading or testing).
    pub train_seconds: f64,
    /// Tells apart runs of one model on one dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Data-parallel ranks (processes) it trained on.
    #[serde(default = "one")]
    pub ranks: usize,
}

fn one() -> usize {
    1
}

/// A list of runs: the whole of `report.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The runs, in the order they were made.
    pub runs: Vec<RunRecord>,
}

impl Report {
    /// Writes the report as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), TrainError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        }
        let json = serde_json::to_string_pretty(self).map_err(|e| TrainError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        kiln_core::files::write_atomic(path, json + "\n").map_err(|e| TrainError::io(path, e))
    }

    /// Reads a report.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_with_the_documented_field_names() {
        let r = Report {
            runs: vec![RunRecord {
                model: "mlp".into(),
                dataset: "mnist".into(),
                device: "flex".into(),
                metric: "test_accuracy".into(),
                value: 0.98,
                params: 10,
                epochs: 3,
                train_seconds: 1.5,
                variant: None,
                ranks: 1,
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        r.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for key in [
            "runs",
            "model",
            "dataset",
            "device",
            "metric",
            "value",
            "params",
            "epochs",
            "train_seconds",
        ] {
            assert!(
                text.contains(&format!("\"{key}\"")),
                "{key} missing from {text}"
            );
        }
        assert_eq!(Report::read(&path).unwrap(), r);
        std::fs::write(&path, "{\"runs\": 3}").unwrap();
        assert!(
            Report::read(&path)
                .unwrap_err()
                .to_string()
                .contains("report.json")
        );
    }
}
