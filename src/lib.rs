//! Kiln: train and compress classic and modern models on burn, with the same code on CPU and GPU.
//!
//! This umbrella crate only re-exports the workspace's crates: the libraries (`core`, `data`, `models`,
//! `train`, `compress`) and the application layer ([`recipes`]: the registry of recipes that
//! `cargo xtask train-all` and `cargo xtask train` run, and the compression study).
#![warn(missing_docs)]

pub use kiln_compress as compress;
pub use kiln_core as core;
pub use kiln_data as data;
pub use kiln_models as models;
pub use kiln_recipes as recipes;
pub use kiln_train as train;
