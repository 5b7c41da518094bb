//! Fused CPU kernels for Kiln's models, each with a hand-written backward pass.
//!
//! burn 0.22.1 builds recurrent layers, convolution gradients and attention from generic tensor ops, which
//! on the CPU cost one kernel launch, one allocation and one pass over memory per op. The ops here do a
//! whole layer in one call on burn's `flex` backend (through burn's backend extensions) and keep burn's
//! generic path everywhere else: each public function checks the device and dtype of its inputs, and
//! callers fall back to their generic code where [`on_flex_f32`] says no.
#![warn(missing_docs)]

pub mod adam;
pub mod attention;
pub mod conv;
mod flex;
pub mod gelu;
pub mod kg;
pub mod layer_norm;
pub mod math;
mod matmul;
pub mod recurrent;
mod simd;
#[cfg(test)]
mod testing;

pub use flex::on_flex_f32;
