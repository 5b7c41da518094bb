//! The exact GELU as one element-wise op with a vectorised `erf`.
//!
//! burn-flex evaluates `gelu` with a scalar `libm::erff` call per element, and under autodiff its backward
//! is a further chain of generic ops; [`gelu`] uses [`crate::math::gelu`] (absolute error of its `erf`
//! below 1e-6) both ways, spread over rayon's threads.

use crate::flex::{dense, slice, tensor};
use crate::math;
use crate::simd::multiversion;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use rayon::prelude::*;

/// Elements per block of work.
const BLOCK: usize = 1 << 14;

/// `x · Φ(x)`, element-wise, as burn's `activation::gelu` and `torch.nn.functional.gelu`.
///
/// Call only where [`crate::on_flex_f32`] holds for `x`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedGeluOps>::fused_gelu(x.into_dispatch()))
}

/// The fused GELU, on the backends that have it.
#[backend_extension(Flex, Autodiff)]
pub trait FusedGeluOps: Backend {
    /// See [`gelu`].
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

multiversion! {
    /// `out = gelu(x)`, element-wise.
    fn gelu_slice(x: &[f32], out: &mut [f32]) {
        let n = out.len();
        let x = &x[..n];
        for j in 0..n {
            out[j] = math::gelu(x[j]);
        }
    }
}

multiversion! {
    /// `dx = dy · gelu'(x)`, element-wise.
    fn gelu_grad_slice(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        let n = dx.len();
        let (x, dy) = (&x[..n], &dy[..n]);
        for j in 0..n {
            dx[j] = dy[j] * math::gelu_grad(x[j]);
        }
    }
}

/// The GELU of every element of `x`, as a dense tensor of `x`'s shape.
fn forward(x: &FlexTensor) -> FlexTensor {
    let x = dense(x);
    let src = slice(&x);
    let mut out = vec![0.0f32; src.len()];
    out.par_chunks_mut(BLOCK)
        .zip(src.par_chunks(BLOCK))
        .for_each(|(o, s)| gelu_slice(s, o));
    tensor(out, x.layout().shape())
}

impl FusedGeluOps for Flex {
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        forward(&x)
    }
}

/// The GELU's gradient, from the dense input.
#[derive(Debug)]
struct FusedGeluBackward;

impl Backward<Flex, 1> for FusedGeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = dense(&grads.consume::<Flex>(&ops.node));
        let x = ops.state;
        let [node] = ops.parents;
        if let Some(node) = node {
            let mut dx = vec![0.0f32; slice(&x).len()];
            dx.par_chunks_mut(BLOCK)
                .zip(
                    slice(&x)
                        .par_chunks(BLOCK)
                        .zip(slice(&dy).par_chunks(BLOCK)),
                )
                .for_each(|(dx, (x, dy))| gelu_grad_slice(x, dy, dx));
            grads.register::<Flex>(node.id, tensor(dx, x.layout().shape()));
        }
    }
}

impl<C: CheckpointStrategy> FusedGeluOps for Autodiff<Flex, C> {
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, node) = x.into_parts();
        match FusedGeluBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = forward(&x);
                prep.finish(dense(&x), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&x)),
        }
    }
}
