//! Kiln: train and compress classic and modern models on burn, with the same code on CPU and GPU.
//!
//! This umbrella crate re-exports the workspace's crates and holds the ready-made runs ([`recipes`]) that
//! `cargo xtask train-all`, `cargo xtask train` and the examples share, so that a figure in a report and a
//! figure from an example come from the same code.
#![warn(missing_docs)]

pub use kiln_compress as compress;
pub use kiln_core as core;
pub use kiln_data as data;
pub use kiln_models as models;
pub use kiln_train as train;

pub mod compression;
pub mod ols;
pub mod recipes;
