//! The attention as a burn backend extension: a flex kernel, and under autodiff a hand-written backward.

use super::cpu::{self, AttentionDims};
use crate::flex::{dense, slice, tensor};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use std::sync::Arc;

/// The fused attention, on the backends that have it.
#[backend_extension(Flex, Autodiff)]
pub trait FusedAttentionOps: Backend {
    /// See [`super::attention`]; `blocked` and `keep` are flattened, and empty when absent.
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: FloatTensor<Self>,
        keep: FloatTensor<Self>,
        heads: usize,
        scale: f32,
    ) -> FloatTensor<Self>;
}

/// Calls the op through burn's dispatch.
pub(super) fn fused(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    blocked: Tensor<1>,
    keep: Tensor<1>,
    heads: usize,
    scale: f32,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedAttentionOps>::fused_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        blocked.into_dispatch(),
        keep.into_dispatch(),
        heads,
        scale,
    ))
}

fn dims(q: &FlexTensor, k: &FlexTensor, heads: usize) -> AttentionDims {
    let [batch, q_steps, width] = q.layout().shape().dims::<3>();
    let [_, k_steps, _] = k.layout().shape().dims::<3>();
    AttentionDims {
        batch,
        heads,
        q_steps,
        k_steps,
        head_dim: width / heads,
    }
}

/// Dense inputs of one call, masks `None` where empty.
#[derive(Debug)]
struct Inputs {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    blocked: Option<FlexTensor>,
    keep: Option<FlexTensor>,
}

impl Inputs {
    fn new(
        q: &FlexTensor,
        k: &FlexTensor,
        v: &FlexTensor,
        blocked: &FlexTensor,
        keep: &FlexTensor,
    ) -> Self {
        let optional = |t: &FlexTensor| (t.layout().shape().num_elements() > 0).then(|| dense(t));
        Self {
            q: dense(q),
            k: dense(k),
            v: dense(v),
            blocked: optional(blocked),
            keep: optional(keep),
        }
    }

    /// Runs the forward kernel; returns the result and the softmax weights.
    fn forward(&self, d: &AttentionDims, scale: f32) -> (FlexTensor, Vec<f32>) {
        let (out, probs) = cpu::forward(
            d,
            slice(&self.q),
            slice(&self.k),
            slice(&self.v),
            self.blocked.as_ref().map(slice),
            self.keep.as_ref().map(slice),
            scale,
        );
        (tensor(out, &[d.batch, d.q_steps, d.width()]), probs)
    }
}

impl FusedAttentionOps for Flex {
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: FloatTensor<Self>,
        keep: FloatTensor<Self>,
        heads: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        Inputs::new(&q, &k, &v, &blocked, &keep)
            .forward(&dims(&q, &k, heads), scale)
            .0
    }
}

/// The attention's gradients (to `q`, `k`, `v`).
#[derive(Debug)]
struct FusedAttentionBackward;

/// What the backward pass keeps from the forward.
#[derive(Debug)]
struct Saved {
    d: AttentionDims,
    inputs: Inputs,
    probs: Vec<f32>,
    scale: f32,
}

impl Backward<Flex, 3> for FusedAttentionBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        let dout = dense(&grads.consume::<Flex>(&ops.node));
        let g = cpu::backward(
            &s.d,
            slice(&s.inputs.q),
            slice(&s.inputs.k),
            slice(&s.inputs.v),
            &s.probs,
            s.inputs.blocked.as_ref().map(slice),
            s.inputs.keep.as_ref().map(slice),
            s.scale,
            slice(&dout),
        );
        let (d, w) = (s.d, s.d.width());
        let [node_q, node_k, node_v] = ops.parents;
        for (node, grad, steps) in [
            (node_q, g.dq, d.q_steps),
            (node_k, g.dk, d.k_steps),
            (node_v, g.dv, d.k_steps),
        ] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(grad, &[d.batch, steps, w]));
            }
        }
    }
}

impl<C: CheckpointStrategy> FusedAttentionOps for Autodiff<Flex, C> {
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        blocked: FloatTensor<Self>,
        keep: FloatTensor<Self>,
        heads: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        let (q, q_node) = q.into_parts();
        let (k, k_node) = k.into_parts();
        let (v, v_node) = v.into_parts();
        // The masks are constants: their nodes take no part.
        let (blocked, _) = blocked.into_parts();
        let (keep, _) = keep.into_parts();
        let d = dims(&q, &k, heads);
        let inputs = Inputs::new(&q, &k, &v, &blocked, &keep);
        match FusedAttentionBackward
            .prepare::<C>([q_node, k_node, v_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, probs) = inputs.forward(&d, scale);
                prep.finish(
                    Arc::new(Saved {
                        d,
                        inputs,
                        probs,
                        scale,
                    }),
                    out,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(inputs.forward(&d, scale).0),
        }
    }
}
