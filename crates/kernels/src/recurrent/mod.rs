//! One recurrent layer direction (RNN, GRU or LSTM in PyTorch's layout) over a whole sequence as one op.
//!
//! [`run_direction`] computes what Kiln's step-by-step recurrent layer computes — same gate order, same
//! masks, same initial and final states — in one call: [`cpu`] projects every step's input with one GEMM,
//! does one `h · W_hhᵀ` GEMM and one pass over the gates per step, and back-propagates through time by hand
//! with the weight gradients as single GEMMs over all steps. burn's autodiff sees one node per direction
//! instead of about ten per step.

pub mod cpu;
mod op;

use burn::prelude::*;

/// The recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cell {
    /// Elman RNN, `tanh`.
    Rnn,
    /// GRU, gates `r, z, n`, reset applied after the hidden matmul (PyTorch's form).
    Gru,
    /// LSTM, gates `i, f, g, o`.
    Lstm,
}

impl Cell {
    /// Gate blocks in the weights: 1, 3 or 4.
    pub fn gates(self) -> usize {
        match self {
            Self::Rnn => 1,
            Self::Gru => 3,
            Self::Lstm => 4,
        }
    }
}

/// The inputs of one direction.
#[derive(Debug, Clone)]
pub struct DirectionInput {
    /// The cell.
    pub cell: Cell,
    /// Input sequence `[batch, steps, input]`.
    pub x: Tensor<3>,
    /// `[gates · hidden, input]`.
    pub w_ih: Tensor<2>,
    /// `[gates · hidden, hidden]`.
    pub w_hh: Tensor<2>,
    /// `[gates · hidden]`.
    pub b_ih: Tensor<1>,
    /// `[gates · hidden]`.
    pub b_hh: Tensor<1>,
    /// Initial hidden state `[batch, hidden]`.
    pub h0: Tensor<2>,
    /// Initial cell state `[batch, hidden]` (LSTM; zeros when `None`).
    pub c0: Option<Tensor<2>>,
    /// `[batch, steps]`, 1 on real steps and 0 on padding (`None`: every step is real). A padded step
    /// outputs zeros and leaves the state unchanged.
    pub valid: Option<Tensor<2>>,
    /// Read steps `T−1 … 0`.
    pub reverse: bool,
}

/// The results of one direction.
#[derive(Debug, Clone)]
pub struct DirectionOutput {
    /// Outputs `[batch, steps, hidden]`.
    pub output: Tensor<3>,
    /// Final hidden state `[batch, hidden]`.
    pub h: Tensor<2>,
    /// Final cell state `[batch, hidden]` (LSTM only).
    pub c: Option<Tensor<2>>,
}

/// Runs one direction as one op. Call only where [`crate::on_flex_f32`] (of every input) is true (it panics elsewhere, as
/// burn's backend extensions do on a backend they were not written for). Shapes are those of
/// [`DirectionInput`]; the caller checks them.
pub fn run_direction(input: DirectionInput) -> DirectionOutput {
    let [batch, steps, _] = input.x.dims();
    let [_, hidden] = input.h0.dims();
    let device = input.x.device();
    let lstm = input.cell == Cell::Lstm;
    let masked = input.valid.is_some();
    let c0 = input
        .c0
        .unwrap_or_else(|| Tensor::zeros([batch, hidden], &device));
    // A [batch, 0] placeholder when unmasked: extension ops take tensors, not options.
    let valid = input
        .valid
        .unwrap_or_else(|| Tensor::zeros([batch, 0], &device));
    let spec = op::Spec {
        cell: input.cell,
        reverse: input.reverse,
        masked,
    };
    let packed: Tensor<1> = op::fused(
        input.x, input.w_ih, input.w_hh, input.b_ih, input.b_hh, input.h0, c0, valid, spec,
    );
    // packed = outputs [batch·steps·hidden] ‖ final h [batch·hidden] ‖ final c [batch·hidden]
    let seq = batch * steps * hidden;
    let state = batch * hidden;
    let output = packed.clone().slice(0..seq).reshape([batch, steps, hidden]);
    let h = packed
        .clone()
        .slice(seq..seq + state)
        .reshape([batch, hidden]);
    let c = lstm.then(|| {
        packed
            .slice(seq + state..seq + 2 * state)
            .reshape([batch, hidden])
    });
    DirectionOutput { output, h, c }
}
