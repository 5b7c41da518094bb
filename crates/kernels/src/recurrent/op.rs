//! The recurrent direction as a burn backend extension: a flex kernel, and under autodiff a hand-written
//! backward through time (burn's `Backward` with the forward's activations as its state).

use super::Cell;
use super::cpu::{self, Dims, Saved, Weights};
use crate::flex::{dense, slice, tensor};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use std::sync::Arc;

/// What the op needs besides tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The cell.
    pub cell: Cell,
    /// Read steps `T−1 … 0`.
    pub reverse: bool,
    /// Whether `valid` holds a mask (otherwise it is an empty placeholder).
    pub masked: bool,
}

/// The fused recurrent direction, on the backends that have it.
#[backend_extension(Flex, Autodiff)]
pub trait FusedRecurrentOps: Backend {
    /// One direction over the sequence; returns outputs, final h and final c packed into one vector
    /// (see [`super::run_direction`]).
    #[allow(clippy::too_many_arguments)]
    fn fused_recurrent(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        valid: FloatTensor<Self>,
        spec: Spec,
    ) -> FloatTensor<Self>;
}

/// Calls the op through burn's dispatch.
#[allow(clippy::too_many_arguments)]
pub(super) fn fused(
    x: Tensor<3>,
    w_ih: Tensor<2>,
    w_hh: Tensor<2>,
    b_ih: Tensor<1>,
    b_hh: Tensor<1>,
    h0: Tensor<2>,
    c0: Tensor<2>,
    valid: Tensor<2>,
    spec: Spec,
) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as FusedRecurrentOps>::fused_recurrent(
        x.into_dispatch(),
        w_ih.into_dispatch(),
        w_hh.into_dispatch(),
        b_ih.into_dispatch(),
        b_hh.into_dispatch(),
        h0.into_dispatch(),
        c0.into_dispatch(),
        valid.into_dispatch(),
        spec,
    ))
}

/// The dense inputs of one call and its sizes.
#[derive(Debug, Clone)]
struct Inputs {
    dims: Dims,
    x: FlexTensor,
    w_ih: FlexTensor,
    w_hh: FlexTensor,
    b_ih: FlexTensor,
    b_hh: FlexTensor,
}

impl Inputs {
    fn new(spec: Spec, [x, w_ih, w_hh, b_ih, b_hh]: [&FlexTensor; 5], h0: &FlexTensor) -> Self {
        let [batch, steps, input] = x.layout().shape().dims::<3>();
        let [_, hidden] = h0.layout().shape().dims::<2>();
        Self {
            dims: Dims {
                cell: spec.cell,
                batch,
                steps,
                input,
                hidden,
                reverse: spec.reverse,
            },
            x: dense(x),
            w_ih: dense(w_ih),
            w_hh: dense(w_hh),
            b_ih: dense(b_ih),
            b_hh: dense(b_hh),
        }
    }

    fn weights(&self) -> Weights<'_> {
        Weights {
            w_ih: slice(&self.w_ih),
            w_hh: slice(&self.w_hh),
            b_ih: slice(&self.b_ih),
            b_hh: slice(&self.b_hh),
        }
    }

    /// Runs the forward kernel; returns the packed output and what the backward pass needs.
    fn forward(
        &self,
        spec: Spec,
        h0: &FlexTensor,
        c0: &FlexTensor,
        valid: &FlexTensor,
    ) -> (FlexTensor, Saved) {
        let (h0, c0) = (dense(h0), dense(c0));
        let valid = dense(valid);
        let valid = if spec.masked { slice(&valid) } else { &[] };
        let f = cpu::forward(
            self.dims,
            slice(&self.x),
            self.weights(),
            slice(&h0),
            slice(&c0),
            valid,
        );
        let mut packed = f.output;
        packed.extend_from_slice(&f.h);
        packed.extend_from_slice(&f.c);
        let len = packed.len();
        (tensor(packed, &[len]), f.saved)
    }
}

impl FusedRecurrentOps for Flex {
    fn fused_recurrent(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        valid: FloatTensor<Self>,
        spec: Spec,
    ) -> FloatTensor<Self> {
        let inputs = Inputs::new(spec, [&x, &w_ih, &w_hh, &b_ih, &b_hh], &h0);
        inputs.forward(spec, &h0, &c0, &valid).0
    }
}

/// Back-propagation through time for one direction.
#[derive(Debug)]
struct FusedRecurrentBackward;

impl Backward<Flex, 7> for FusedRecurrentBackward {
    type State = (Arc<Inputs>, Arc<Saved>);

    fn backward(self, ops: Ops<Self::State, 7>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (inputs, saved) = ops.state;
        let d = inputs.dims;
        let packed = dense(&grads.consume::<Flex>(&ops.node));
        let packed = slice(&packed);
        let (seq, state) = (d.batch * d.steps * d.hidden, d.batch * d.hidden);
        let g = cpu::backward(
            d,
            slice(&inputs.x),
            inputs.weights(),
            &saved,
            &packed[..seq],
            &packed[seq..seq + state],
            &packed[seq + state..seq + 2 * state],
        );
        let gw = d.gate_width();
        let grads_of: [(Vec<f32>, Vec<usize>); 7] = [
            (g.x, vec![d.batch, d.steps, d.input]),
            (g.w_ih, vec![gw, d.input]),
            (g.w_hh, vec![gw, d.hidden]),
            (g.b_ih, vec![gw]),
            (g.b_hh, vec![gw]),
            (g.h0, vec![d.batch, d.hidden]),
            (g.c0, vec![d.batch, d.hidden]),
        ];
        for (parent, (grad, dims)) in ops.parents.into_iter().zip(grads_of) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, tensor(grad, &dims));
            }
        }
    }
}

impl<C: CheckpointStrategy> FusedRecurrentOps for Autodiff<Flex, C> {
    fn fused_recurrent(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        valid: FloatTensor<Self>,
        spec: Spec,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (w_ih, w_ih_node) = w_ih.into_parts();
        let (w_hh, w_hh_node) = w_hh.into_parts();
        let (b_ih, b_ih_node) = b_ih.into_parts();
        let (b_hh, b_hh_node) = b_hh.into_parts();
        let (h0, h0_node) = h0.into_parts();
        let (c0, c0_node) = c0.into_parts();
        // The mask is data, never differentiated.
        let valid = valid.into_primitive();
        let inputs = Inputs::new(spec, [&x, &w_ih, &w_hh, &b_ih, &b_hh], &h0);
        match FusedRecurrentBackward
            .prepare::<C>([
                x_node, w_ih_node, w_hh_node, b_ih_node, b_hh_node, h0_node, c0_node,
            ])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, saved) = inputs.forward(spec, &h0, &c0, &valid);
                prep.finish((Arc::new(inputs), Arc::new(saved)), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(inputs.forward(spec, &h0, &c0, &valid).0),
        }
    }
}
