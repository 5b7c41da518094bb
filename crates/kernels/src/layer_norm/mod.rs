//! Layer normalisation over the last dimension as one op.
//!
//! burn's `LayerNorm` under autodiff is a chain of generic ops (mean, centring, variance, a square root,
//! a division, a scale and a shift, each with its own pass over memory and backward node); [`layer_norm`]
//! computes the same function in one pass per row ([`cpu`]), with the closed-form backward.

pub mod cpu;
mod op;

use burn::prelude::*;

/// `(x − mean) / √(var + eps) · gamma + beta` over the last dimension (biased variance), as
/// `torch.nn.functional.layer_norm` and burn's `LayerNorm`.
///
/// # Shapes
/// - `x`: `[.., width]`; `gamma`, `beta`: `[width]`
/// - returns the shape of `x`
///
/// Call only where [`crate::on_flex_f32`] holds for every input; the caller checks the shapes.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Option<Tensor<1>>,
    eps: f64,
) -> Tensor<D> {
    let device = x.device();
    // An empty tensor stands for "no beta" through the backend extension, whose ops take tensors only.
    let beta = beta.unwrap_or_else(|| Tensor::<1>::empty([0], &device));
    op::fused(x, gamma, beta, eps as f32)
}
