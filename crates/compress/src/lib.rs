//! Compression for Kiln's models, built on burn's module visitors, mappers and parameter
//! reparameterizations (burn 0.22 has weight-only quantization and nothing for pruning or distillation).
//!
//! - [`prune`]: unstructured magnitude pruning, layer-wise or global, as masks attached to the weights
//!   (PyTorch's `weight_orig * weight_mask`): pruned weights stay zero through fine-tuning, and
//!   `Module::materialize` makes them permanent; per-layer sparsity reports; the AGP sparsity schedule.
//! - [`structured`]: whole neurons and channels removed by L1/L2 norm, the layers really shrunk.
//! - [`quantize`]: post-training int8 through burn's quantizer (per tensor or block), per-channel int8 stored
//!   on disk, per-channel fake quantization and quantization-aware training with a straight-through
//!   estimator.
//! - [`activations`]: static int8 quantization of layer inputs (W8A8, simulated), calibrated MinMax.
//! - [`distill`]: Hinton's distillation loss and a student–frozen-teacher wrapper the learner trains.
#![warn(missing_docs)]

pub mod activations;
pub mod distill;
pub mod error;
pub mod prune;
pub mod quantize;
pub mod structured;

pub use activations::{RangeObserver, StaticInt8, fake_quantize_activation};
pub use distill::{Distillation, DistillationConfig, distillation_loss};
pub use error::CompressError;
pub use prune::{
    LayerSparsity, MagnitudePruner, PruneMask, PruningScope, agp_sparsity, sparsity_report,
};
pub use quantize::{
    ChannelScale, FakeQuant, Granularity, QatQuantizer, fake_quantize_int8, ptq_int8,
    ptq_int8_per_channel,
};
pub use structured::{Norm, prune_cnn_channels, prune_mlp_neurons};
