//! The layer norm as a burn backend extension: a flex kernel, and under autodiff a hand-written backward.

use super::cpu;
use crate::flex::{dense, slice, tensor};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use std::sync::Arc;

/// The fused layer norm, on the backends that have it.
#[backend_extension(Flex, Autodiff)]
pub trait FusedLayerNormOps: Backend {
    /// See [`super::layer_norm`]; `beta` is empty when absent.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;
}

/// Calls the op through burn's dispatch.
pub(super) fn fused<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f32,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedLayerNormOps>::fused_layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps,
    ))
}

/// Runs the forward kernel; returns `y` (shaped as `x`) and the rows' statistics.
fn forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f32,
) -> (FlexTensor, Vec<f32>) {
    let shape = x.layout().shape().clone();
    let (x, gamma) = (dense(x), dense(gamma));
    let beta = (beta.layout().shape().num_elements() > 0).then(|| dense(beta));
    let width = gamma.layout().shape().num_elements();
    let (y, stats) = cpu::forward(
        slice(&x),
        width,
        slice(&gamma),
        beta.as_ref().map(slice),
        eps,
    );
    (tensor(y, &shape), stats)
}

impl FusedLayerNormOps for Flex {
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        forward(&x, &gamma, &beta, eps).0
    }
}

/// The layer norm's gradients (to `x`, `gamma`, `beta`).
#[derive(Debug)]
struct FusedLayerNormBackward;

/// What the backward pass keeps: the dense input, `gamma` and the rows' `[mean, rstd]`.
#[derive(Debug)]
struct Saved {
    x: FlexTensor,
    gamma: FlexTensor,
    stats: Vec<f32>,
}

impl Backward<Flex, 3> for FusedLayerNormBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        let dy = dense(&grads.consume::<Flex>(&ops.node));
        let width = s.gamma.layout().shape().num_elements();
        let g = cpu::backward(slice(&s.x), width, slice(&s.gamma), &s.stats, slice(&dy));
        let [node_x, node_gamma, node_beta] = ops.parents;
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(g.dx, s.x.layout().shape()));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, tensor(g.dgamma, &[width]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, tensor(g.dbeta, &[width]));
        }
    }
}

impl<C: CheckpointStrategy> FusedLayerNormOps for Autodiff<Flex, C> {
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (beta, beta_node) = beta.into_parts();
        match FusedLayerNormBackward
            .prepare::<C>([x_node, gamma_node, beta_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                // Dense once: `forward`'s own `dense` is then an `Arc` clone.
                let (x, gamma) = (dense(&x), dense(&gamma));
                let (y, stats) = forward(&x, &gamma, &beta, eps);
                let saved = Saved { x, gamma, stats };
                prep.finish(Arc::new(saved), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&x, &gamma, &beta, eps).0),
        }
    }
}
