//! Scaled dot-product attention over several heads as one op: `softmax(Q·Kᵀ · scale, blocked keys
//! excluded) · V` per head, with dropout on the weights.
//!
//! burn's `MultiHeadAttention` builds this from generic ops: a head split and a copy of Q, K and V, a
//! batched matmul, two mask fills with −10⁴, a softmax of five ops (exponentiating the filled scores),
//! dropout, a second matmul and a copy back, each with its own backward node. [`attention`] does the same
//! arithmetic per (sequence, head) pair in one kernel ([`cpu`]), reading each head's columns where the
//! projections put them. Weights of blocked keys are exactly 0 rather than `e^(−10⁴ − max)`; a query with
//! every key blocked gets uniform weights, as in burn.

pub mod cpu;
mod op;

use burn::prelude::*;

/// `softmax(Q_h·K_hᵀ · scale + mask) · V_h` for every head `h`, heads side by side in the last dimension.
///
/// # Shapes
/// - `q`: `[batch, q_steps, heads · head_dim]`; `k`, `v`: `[batch, k_steps, heads · head_dim]`
/// - `blocked`: optional `[batch, q_steps, k_steps]`, 1.0 where a query may not attend to a key, else 0.0
/// - `keep`: optional dropout multipliers of the weights, `[batch, heads, q_steps, k_steps]`, each 0 or
///   `1 / (1 − p)` (what burn's `Dropout` multiplies by)
/// - returns `[batch, q_steps, heads · head_dim]`
///
/// Gradients flow to `q`, `k` and `v`, not to the masks. Call only where [`crate::on_flex_f32`] holds for
/// every input; the caller checks the shapes.
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    blocked: Option<Tensor<3>>,
    keep: Option<Tensor<4>>,
    scale: f32,
) -> Tensor<3> {
    let device = q.device();
    // An empty tensor stands for "no mask" through the backend extension, whose ops take tensors only.
    let none = || Tensor::<1>::empty([0], &device);
    op::fused(
        q,
        k,
        v,
        blocked.map_or_else(none, |m| m.reshape([-1])),
        keep.map_or_else(none, |m| m.reshape([-1])),
        heads,
        scale,
    )
}
