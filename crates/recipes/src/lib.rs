//! Kiln's application layer: recipes as data and the code that runs them.
//!
//! A [`Recipe`] names a model, its hyper-parameters, its data, the learner's settings, what a smoke run
//! trims and the bar the report holds the result to. [`registry`] holds every recipe Kiln ships (the
//! `train-all` plan, in report order); [`runs::run`] runs one — the same code for `cargo xtask train-all`,
//! `cargo xtask train --model M` and `cargo xtask train --recipe FILE.json`. [`compression`] is the pruning,
//! quantization and distillation study of `cargo xtask compress`.
//!
//! The library crates below it (`kiln-models`, `kiln-train`, …) know nothing of recipes: a program that
//! only trains its own model needs none of this.
#![warn(missing_docs)]

pub mod compression;
pub mod model_name;
pub mod ols;
pub mod recipe;
pub mod registry;
pub mod runs;
pub mod target;

pub use model_name::ModelName;
pub use recipe::{DataSource, Hyper, Quick, Recipe, RecipeError};
pub use registry::{TRANSFORMER_CONTEXT, transformer_lm_config};
pub use runs::{RunSettings, RunSummary, dataset_name, run};
pub use target::Target;
