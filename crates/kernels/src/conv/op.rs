//! The convolution as a burn backend extension: a flex kernel, and under autodiff a hand-written backward.

use super::ConvSpec;
use super::cpu::{self, ConvDims};
use super::epilogue;
use crate::flex::{dense, slice, tensor};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use std::borrow::Cow;
use std::sync::Arc;

/// The fused convolution, on the backends that have it.
#[backend_extension(Flex, Autodiff)]
pub trait FusedConvOps: Backend {
    /// `conv(x, weight) + bias` (see [`super::conv2d`]).
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: ConvSpec,
    ) -> FloatTensor<Self>;

    /// `max pool(relu(conv(x, weight) + bias))` (see [`super::conv2d_relu_pool`]).
    fn fused_conv2d_relu_pool(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: ConvSpec,
        pool: usize,
    ) -> FloatTensor<Self>;
}

/// Calls the op through burn's dispatch.
pub(super) fn fused(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, spec: ConvSpec) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedConvOps>::fused_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        spec,
    ))
}

/// Calls the op with its ReLU and pooling epilogue through burn's dispatch.
pub(super) fn fused_relu_pool(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    spec: ConvSpec,
    pool: usize,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedConvOps>::fused_conv2d_relu_pool(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        spec,
        pool,
    ))
}

fn dims(x: &FlexTensor, weight: &FlexTensor, spec: ConvSpec) -> ConvDims {
    let [batch, channels, height, width] = x.layout().shape().dims::<4>();
    let [out_channels, _, kh, kw] = weight.layout().shape().dims::<4>();
    ConvDims {
        batch,
        channels,
        height,
        width,
        out_channels,
        kernel: [kh, kw],
        stride: spec.stride,
        padding: spec.padding,
    }
}

/// Runs the forward kernel on dense operands; returns `y`.
fn forward(d: &ConvDims, x: &FlexTensor, w: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let y = cpu::forward(d, slice(x), slice(w), slice(b));
    let [oh, ow] = d.out_hw();
    tensor(y, &[d.batch, d.out_channels, oh, ow])
}

/// The forward kernel with its epilogue, on dense operands: the pooled result and the maxima's offsets.
fn forward_relu_pool(
    d: &ConvDims,
    x: &FlexTensor,
    w: &FlexTensor,
    b: &FlexTensor,
    pool: usize,
) -> (FlexTensor, Vec<u32>) {
    let (pooled, argmax) = cpu::forward_relu_pool(d, slice(x), slice(w), slice(b), pool);
    let [ph, pw] = epilogue::pooled_hw(d.out_hw(), pool);
    (tensor(pooled, &[d.batch, d.out_channels, ph, pw]), argmax)
}

/// The convolution with or without its epilogue (`pool`), as one backward node under autodiff.
fn tracked<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    bias: FloatTensor<Autodiff<Flex, C>>,
    spec: ConvSpec,
    pool: Option<usize>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let (x, x_node) = x.into_parts();
    let (w, w_node) = weight.into_parts();
    let (b, b_node) = bias.into_parts();
    let d = dims(&x, &w, spec);
    let (x, w, b) = (dense(&x), dense(&w), dense(&b));
    match FusedConvBackward
        .prepare::<C>([x_node, w_node, b_node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => match pool {
            None => {
                let y = forward(&d, &x, &w, &b);
                prep.finish((d, w, x, None), y)
            }
            Some(pool) => {
                let (out, argmax) = forward_relu_pool(&d, &x, &w, &b, pool);
                let epilogue = Epilogue { pool, argmax };
                prep.finish((d, w, x, Some(Arc::new(epilogue))), out)
            }
        },
        OpsKind::UnTracked(prep) => prep.finish(match pool {
            None => forward(&d, &x, &w, &b),
            Some(pool) => forward_relu_pool(&d, &x, &w, &b, pool).0,
        }),
    }
}

impl FusedConvOps for Flex {
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: ConvSpec,
    ) -> FloatTensor<Self> {
        let d = dims(&x, &weight, spec);
        forward(&d, &dense(&x), &dense(&weight), &dense(&bias))
    }

    fn fused_conv2d_relu_pool(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: ConvSpec,
        pool: usize,
    ) -> FloatTensor<Self> {
        let d = dims(&x, &weight, spec);
        forward_relu_pool(&d, &dense(&x), &dense(&weight), &dense(&bias), pool).0
    }
}

/// The convolution's gradients.
#[derive(Debug)]
struct FusedConvBackward;

/// What the fused ReLU and pooling keep for the backward pass: the offsets of the pooled maxima.
#[derive(Debug)]
struct Epilogue {
    pool: usize,
    argmax: Vec<u32>,
}

impl Backward<Flex, 3> for FusedConvBackward {
    /// Sizes, the dense weight, the dense input (its columns are recomputed) and the epilogue's record,
    /// if any.
    type State = (ConvDims, FlexTensor, FlexTensor, Option<Arc<Epilogue>>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (d, w, x, epilogue) = ops.state;
        let dout = dense(&grads.consume::<Flex>(&ops.node));
        let dy: Cow<'_, [f32]> = match &epilogue {
            None => Cow::Borrowed(slice(&dout)),
            Some(e) => Cow::Owned(epilogue::backward(
                &e.argmax,
                slice(&dout),
                d.out_hw(),
                e.pool,
            )),
        };
        let [node_x, node_w, node_b] = ops.parents;
        let (dx, dw, db) = cpu::backward(&d, slice(&w), slice(&x), &dy, node_x.is_some());
        if let Some(node) = node_x {
            grads.register::<Flex>(
                node.id,
                tensor(dx, &[d.batch, d.channels, d.height, d.width]),
            );
        }
        if let Some(node) = node_w {
            let [kh, kw] = d.kernel;
            grads.register::<Flex>(node.id, tensor(dw, &[d.out_channels, d.channels, kh, kw]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, tensor(db, &[d.out_channels]));
        }
    }
}

impl<C: CheckpointStrategy> FusedConvOps for Autodiff<Flex, C> {
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: ConvSpec,
    ) -> FloatTensor<Self> {
        tracked::<C>(x, weight, bias, spec, None)
    }

    fn fused_conv2d_relu_pool(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        spec: ConvSpec,
        pool: usize,
    ) -> FloatTensor<Self> {
        tracked::<C>(x, weight, bias, spec, Some(pool))
    }
}
