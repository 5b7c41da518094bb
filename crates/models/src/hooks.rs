//! Layer-input hooks: a forward pass that shows (and may replace) the input of every weight layer, the way
//! PyTorch's forward pre-hooks do. Calibration observers and activation quantization (`kiln-compress`) are
//! written against [`LayerInputHook`]; the plain `forward` of each model is the hooked one with [`NoHook`].
//!
//! burn has no hooks on module calls, so the models that support them ([`crate::Mlp`], [`crate::Cnn`])
//! implement [`HookedClassifier`] by threading the hook through their own forward pass.

use burn::prelude::*;
use kiln_core::{ClassificationOutput, Supervised};
use kiln_data::ImageBatch;
use std::fmt;

/// A weight layer of a hooked model; displayed as its path in the module record (`blocks.1.conv`,
/// `hidden.0`, `output`). An id rather than a string, so that a forward pass without hooks builds no names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The convolution of block `i`.
    Conv(usize),
    /// Fully connected hidden layer `i`.
    Hidden(usize),
    /// The output layer.
    Output,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Conv(i) => write!(f, "blocks.{i}.conv"),
            Layer::Hidden(i) => write!(f, "hidden.{i}"),
            Layer::Output => write!(f, "output"),
        }
    }
}

/// Sees the input of each weight layer, in forward order, and returns the tensor the layer is given.
pub trait LayerInputHook {
    /// Called with the input of `layer`; returns what the layer computes on.
    fn layer_input<const D: usize>(&mut self, layer: Layer, input: Tensor<D>) -> Tensor<D>;
}

/// The hook that changes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl LayerInputHook for NoHook {
    fn layer_input<const D: usize>(&mut self, _layer: Layer, input: Tensor<D>) -> Tensor<D> {
        input
    }
}

/// An image classifier whose forward step can run with a [`LayerInputHook`].
pub trait HookedClassifier:
    Supervised<Batch = ImageBatch, Output = ClassificationOutput> + Module
{
    /// [`Supervised::forward_step`] with `hook` applied to the input of every weight layer.
    fn forward_step_hooked<H: LayerInputHook>(
        &self,
        batch: ImageBatch,
        hook: &mut H,
    ) -> ClassificationOutput;
}
