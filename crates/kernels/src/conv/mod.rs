//! 2-D convolution (groups 1, dilation 1) as one op whose gradients are well-shaped GEMMs.
//!
//! burn's `Conv2d` on flex runs its forward as im2col + GEMM, but its backward is burn-backend's generic
//! one: the weight gradient is a convolution of the transposed input by the transposed output gradient,
//! after two strided copies (README, "Where the CNN's time goes"). [`conv2d`] computes the same function
//! with the backward of [`cpu`]; on other backends callers use burn's `Conv2d`.

pub mod cpu;
pub mod epilogue;
mod op;

use burn::prelude::*;

/// Stride and zero padding of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// `[height, width]`.
    pub stride: [usize; 2],
    /// `[height, width]`, on both sides.
    pub padding: [usize; 2],
}

/// `y = conv(x, weight) + bias`, as `torch.nn.functional.conv2d` with groups 1 and dilation 1.
///
/// # Shapes
/// - `x`: `[batch, channels, height, width]`
/// - `weight`: `[out_channels, channels, kernel_h, kernel_w]`; `bias`: `[out_channels]`
/// - returns `[batch, out_channels, out_h, out_w]`, `out = (in + 2·padding − kernel) / stride + 1`
///
/// Call only where [`crate::on_flex_f32`] (of every input) is true; the caller checks the shapes.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    spec: ConvSpec,
) -> Tensor<4> {
    let out_channels = weight.dims()[0];
    let bias = bias.unwrap_or_else(|| Tensor::zeros([out_channels], &x.device()));
    op::fused(x, weight, bias, spec)
}

/// `max pool(relu(conv(x, weight) + bias))` in one op, pooling with kernel = stride `pool` (no padding,
/// floor rounding; `pool` 1 is the ReLU alone): the block of a CNN without batch norm, with no
/// full-resolution activation kept for the backward pass ([`epilogue`]).
///
/// # Shapes
/// - as [`conv2d`]; returns `[batch, out_channels, out_h / pool, out_w / pool]`
///
/// Call only where [`crate::on_flex_f32`] (of every input) is true and `pool ≥ 1`; the caller checks the
/// shapes.
pub fn conv2d_relu_pool(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    spec: ConvSpec,
    pool: usize,
) -> Tensor<4> {
    let out_channels = weight.dims()[0];
    let bias = bias.unwrap_or_else(|| Tensor::zeros([out_channels], &x.device()));
    op::fused_relu_pool(x, weight, bias, spec, pool.max(1))
}
