//! Multi-layer, optionally bidirectional RNN, GRU and LSTM with PyTorch's parameter layout, masks for
//! padded steps, an initial state in and the final state out.
//!
//! Written here rather than on `burn::nn::{Rnn, Gru, Lstm}`, which match PyTorch too (the parity tests load
//! the same weights into them): burn keeps one `Linear` pair per gate and projects the input step by step,
//! which is up to 8 small matmuls a step, and it has no stacking, masks or bidirectional GRU. Here each
//! direction keeps PyTorch's fused `weight_ih [gates·hidden, input]`, `weight_hh [gates·hidden, hidden]`,
//! `bias_ih`, `bias_hh` (gate order LSTM `i, f, g, o`; GRU `r, z, n`), projects the whole input sequence
//! with one matmul, and does one matmul a step. The parity tests (`tests/torch_parity.rs`) check it
//! against `torch.nn.{RNN, GRU, LSTM}`.
//!
//! On burn's flex backend each direction runs as one fused op with a hand-written backward pass through
//! time ([`kiln_kernels::recurrent`]); on every other backend it runs as the generic tensor ops below. The
//! tests here check that both give the same outputs, states and gradients.

use crate::{ModelError, check_shape};
use burn::module::{Initializer, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use kiln_kernels::recurrent;
use serde::{Deserialize, Serialize};

/// Which recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Elman RNN: `h_t = tanh(W x_t + b_ih + U h_{t-1} + b_hh)`.
    Rnn,
    /// Gated recurrent unit (Cho et al. 2014), PyTorch's form (reset applied after the hidden matmul).
    Gru,
    /// Long short-term memory (Hochreiter & Schmidhuber 1997), with a cell state.
    #[default]
    Lstm,
}

impl CellKind {
    /// Gate blocks stacked in the weight matrices: 1, 3 or 4.
    pub fn gates(self) -> usize {
        match self {
            Self::Rnn => 1,
            Self::Gru => 3,
            Self::Lstm => 4,
        }
    }

    /// The same cell as `kiln-kernels` names it.
    fn kernel_cell(self) -> recurrent::Cell {
        match self {
            Self::Rnn => recurrent::Cell::Rnn,
            Self::Gru => recurrent::Cell::Gru,
            Self::Lstm => recurrent::Cell::Lstm,
        }
    }

    /// `rnn`, `gru` or `lstm`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rnn => "rnn",
            Self::Gru => "gru",
            Self::Lstm => "lstm",
        }
    }
}

impl std::fmt::Display for CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Configuration of a [`Recurrent`] stack, with `torch.nn.RNN/GRU/LSTM`'s arguments (inputs are always
/// batch-first).
#[derive(Config, Debug)]
pub struct RecurrentConfig {
    /// The cell.
    pub cell: CellKind,
    /// Features per input step.
    pub d_input: usize,
    /// Hidden size of each direction.
    pub d_hidden: usize,
    /// Stacked layers.
    #[config(default = 1)]
    pub num_layers: usize,
    /// A second direction reading the sequence backwards; outputs are the two directions concatenated.
    #[config(default = false)]
    pub bidirectional: bool,
    /// Dropout on the outputs of every layer but the last (training only), as in PyTorch.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl RecurrentConfig {
    /// Number of directions, 1 or 2.
    pub fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Features per output step: `d_hidden × directions`.
    pub fn d_output(&self) -> usize {
        self.d_hidden * self.directions()
    }

    /// Builds the stack on `device`, every weight and bias drawn from U(−1/√hidden, 1/√hidden) as PyTorch does.
    pub fn init(&self, device: &Device) -> Result<Recurrent, ModelError> {
        if self.d_input == 0 || self.d_hidden == 0 || self.num_layers == 0 {
            return Err(ModelError::Config {
                model: "recurrent",
                field: "d_input, d_hidden, num_layers",
                message: format!(
                    "d_input ({}), d_hidden ({}) and num_layers ({}) must be positive",
                    self.d_input, self.d_hidden, self.num_layers
                ),
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::Config {
                model: "recurrent",
                field: "dropout",
                message: format!("dropout must be in [0, 1), got {}", self.dropout),
            });
        }
        let layers = (0..self.num_layers)
            .map(|l| {
                let d_in = if l == 0 {
                    self.d_input
                } else {
                    self.d_output()
                };
                let direction = || Direction::init(self.cell, d_in, self.d_hidden, device);
                RecurrentLayer {
                    forward: direction(),
                    reverse: self.bidirectional.then(direction),
                }
            })
            .collect();
        Ok(Recurrent {
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            cell: self.cell,
            d_input: self.d_input,
            d_hidden: self.d_hidden,
        })
    }
}

/// The parameters of one direction of one layer, named and laid out as PyTorch's.
#[derive(Module, Debug)]
pub struct Direction {
    /// Input-to-hidden weights, `[gates · hidden, input]`.
    pub weight_ih: Param<Tensor<2>>,
    /// Hidden-to-hidden weights, `[gates · hidden, hidden]`.
    pub weight_hh: Param<Tensor<2>>,
    /// Input-side bias, `[gates · hidden]`.
    pub bias_ih: Param<Tensor<1>>,
    /// Hidden-side bias, `[gates · hidden]`.
    pub bias_hh: Param<Tensor<1>>,
}

/// One layer: a forward direction and, when bidirectional, a reverse one.
#[derive(Module, Debug)]
pub struct RecurrentLayer {
    /// Reads steps `0 … T−1`.
    pub forward: Direction,
    /// Reads steps `T−1 … 0`.
    pub reverse: Option<Direction>,
}

/// The recurrent state in PyTorch's layout: `h` (and `c` for the LSTM) of shape
/// `[layers · directions, batch, hidden]`, index `layer · directions + direction`.
#[derive(Debug, Clone)]
pub struct RecurrentState {
    /// Hidden state.
    pub h: Tensor<3>,
    /// Cell state (LSTM only).
    pub c: Option<Tensor<3>>,
}

/// A stack of recurrent layers. See the module documentation.
#[derive(Module, Debug)]
pub struct Recurrent {
    /// The layers, input side first.
    pub layers: Vec<RecurrentLayer>,
    /// Dropout between layers.
    pub dropout: Dropout,
    /// The cell.
    #[module(skip)]
    pub cell: CellKind,
    /// Features per input step.
    #[module(skip)]
    pub d_input: usize,
    /// Hidden size per direction.
    #[module(skip)]
    pub d_hidden: usize,
}

/// The running state of one direction.
struct Carry {
    h: Tensor<2>,
    c: Option<Tensor<2>>,
}

impl Direction {
    fn init(cell: CellKind, d_input: usize, d_hidden: usize, device: &Device) -> Self {
        let bound = 1.0 / (d_hidden as f64).sqrt();
        let uniform = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        let rows = cell.gates() * d_hidden;
        Self {
            weight_ih: uniform.init([rows, d_input], device),
            weight_hh: uniform.init([rows, d_hidden], device),
            bias_ih: uniform.init([rows], device),
            bias_hh: uniform.init([rows], device),
        }
    }

    /// Runs the direction over `x` (`[batch, steps, input]`); `valid` is `[batch, steps]` with 1 for real
    /// steps and 0 for padding. Padded steps leave the state as it was and output zeros. Fused on flex,
    /// generic elsewhere.
    fn run(
        &self,
        cell: CellKind,
        x: Tensor<3>,
        valid: Option<&Tensor<2>>,
        carry: Carry,
        reverse: bool,
    ) -> (Tensor<3>, Carry) {
        let fusable = kiln_kernels::on_flex_f32(&x)
            && kiln_kernels::on_flex_f32(&self.weight_ih.val())
            && kiln_kernels::on_flex_f32(&self.weight_hh.val())
            && kiln_kernels::on_flex_f32(&self.bias_ih.val())
            && kiln_kernels::on_flex_f32(&self.bias_hh.val());
        if fused_recurrent_enabled() && fusable {
            self.run_fused(cell, x, valid, carry, reverse)
        } else {
            self.run_generic(cell, x, valid, carry, reverse)
        }
    }

    /// [`Direction::run`] as one fused op.
    fn run_fused(
        &self,
        cell: CellKind,
        x: Tensor<3>,
        valid: Option<&Tensor<2>>,
        carry: Carry,
        reverse: bool,
    ) -> (Tensor<3>, Carry) {
        let out = recurrent::run_direction(recurrent::DirectionInput {
            cell: cell.kernel_cell(),
            x,
            w_ih: self.weight_ih.val(),
            w_hh: self.weight_hh.val(),
            b_ih: self.bias_ih.val(),
            b_hh: self.bias_hh.val(),
            h0: carry.h,
            c0: carry.c,
            valid: valid.cloned(),
            reverse,
        });
        (out.output, Carry { h: out.h, c: out.c })
    }

    /// [`Direction::run`] as burn's generic tensor ops, step by step (any backend).
    fn run_generic(
        &self,
        cell: CellKind,
        x: Tensor<3>,
        valid: Option<&Tensor<2>>,
        mut carry: Carry,
        reverse: bool,
    ) -> (Tensor<3>, Carry) {
        let [batch, steps, _] = x.dims();
        // Steps are cut from the (narrow) input, time-major so that each step's rows are contiguous, and
        // projected one by one: cutting steps from the projected sequence instead (four times wider for an
        // LSTM) made the backward pass allocate and zero far more memory than the extra matmuls cost.
        let weight_ih = self.weight_ih.val().transpose();
        let bias_ih = self.bias_ih.val().unsqueeze::<2>();
        let weight_hh = self.weight_hh.val().transpose();
        let bias_hh = self.bias_hh.val().unsqueeze::<2>();
        let mut outputs = Vec::with_capacity(steps);
        let order: Box<dyn Iterator<Item = usize>> = if reverse {
            Box::new((0..steps).rev())
        } else {
            Box::new(0..steps)
        };
        let mut per_step = Vec::with_capacity(steps);
        split_steps(x.swap_dims(0, 1), &mut per_step);
        let mut per_step: Vec<Option<Tensor<2>>> = per_step.into_iter().map(Some).collect();
        for t in order {
            let x_t = per_step[t]
                .take()
                .expect("each step is read once")
                .matmul(weight_ih.clone())
                + bias_ih.clone();
            let h_part = carry.h.clone().matmul(weight_hh.clone()) + bias_hh.clone();
            let (h_new, c_new) = step(cell, x_t, h_part, &carry);
            let (h_next, c_next) = match valid {
                Some(valid) => {
                    let m = valid.clone().slice([0..batch, t..t + 1]);
                    let keep =
                        |new: Tensor<2>, old: Tensor<2>| old.clone() + (new - old) * m.clone();
                    let c_next = match (c_new, carry.c.take()) {
                        (Some(new), Some(old)) => Some(keep(new, old)),
                        _ => None,
                    };
                    outputs.push(h_new.clone() * m.clone());
                    (keep(h_new, carry.h.clone()), c_next)
                }
                None => {
                    outputs.push(h_new.clone());
                    (h_new, c_new)
                }
            };
            carry = Carry {
                h: h_next,
                c: c_next,
            };
        }
        if reverse {
            outputs.reverse();
        }
        (Tensor::stack(outputs, 1), carry)
    }
}

/// Whether flex runs the fused recurrent op: on unless `KILN_FUSED_RECURRENT=0`, which benchmarks the generic
/// path against it.
fn fused_recurrent_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("KILN_FUSED_RECURRENT").map_or(true, |v| v != "0"))
}

/// `tanh(x)` as `2·σ(2x) − 1`: the same function (to float rounding, and checked against PyTorch by the
/// parity tests), but flex computes `tanh` element by element with libm's `tanhf` and `σ` with a fast
/// `exp`; in the LSTM benchmark `tanhf` alone took a fifth of the time.
fn fast_tanh(x: Tensor<2>) -> Tensor<2> {
    sigmoid(x * 2.0) * 2.0 - 1.0
}

/// Splits `x` (`[steps, batch, width]`) into its steps (`[batch, width]` each, in order) by halving
/// recursively. burn's autodiff turns the gradient of every slice into a zero tensor of the sliced tensor's
/// full size, so slicing `steps` single steps off the whole sequence costs `steps` full-size tensors in the
/// backward pass (quadratic in the length); halving costs `log2(steps)` of them.
fn split_steps(x: Tensor<3>, out: &mut Vec<Tensor<2>>) {
    let [steps, batch, width] = x.dims();
    if steps == 1 {
        out.push(x.reshape([batch, width]));
        return;
    }
    let mid = steps / 2;
    split_steps(x.clone().slice([0..mid, 0..batch, 0..width]), out);
    split_steps(x.slice([mid..steps, 0..batch, 0..width]), out);
}

/// One step of the cell: the input part `x_t` and hidden part `h_part` are `[batch, gates · hidden]`.
fn step(
    cell: CellKind,
    x_t: Tensor<2>,
    h_part: Tensor<2>,
    carry: &Carry,
) -> (Tensor<2>, Option<Tensor<2>>) {
    match cell {
        CellKind::Rnn => (fast_tanh(x_t + h_part), None),
        CellKind::Lstm => {
            let mut gates = (x_t + h_part).chunk(4, 1).into_iter();
            let mut next = || gates.next().expect("LSTM has four gate blocks");
            let (i, f, g, o) = (
                sigmoid(next()),
                sigmoid(next()),
                fast_tanh(next()),
                sigmoid(next()),
            );
            let c_prev = carry.c.clone().unwrap_or_else(|| carry.h.zeros_like());
            let c = f * c_prev + i * g;
            (o * fast_tanh(c.clone()), Some(c))
        }
        CellKind::Gru => {
            let mut xs = x_t.chunk(3, 1).into_iter();
            let mut hs = h_part.chunk(3, 1).into_iter();
            let mut next = || {
                (
                    xs.next().expect("GRU has three gate blocks"),
                    hs.next().expect("GRU has three gate blocks"),
                )
            };
            let ((xr, hr), (xz, hz), (xn, hn)) = (next(), next(), next());
            let r = sigmoid(xr + hr);
            let z = sigmoid(xz + hz);
            let n = fast_tanh(xn + r * hn);
            let h = n.clone() + (carry.h.clone() - n) * z;
            (h, None)
        }
    }
}

impl Recurrent {
    /// Number of directions, 1 or 2.
    pub fn directions(&self) -> usize {
        if self.layers.first().is_some_and(|l| l.reverse.is_some()) {
            2
        } else {
            1
        }
    }

    /// Features per output step.
    pub fn d_output(&self) -> usize {
        self.d_hidden * self.directions()
    }

    /// Runs the stack.
    ///
    /// # Shapes
    /// - `x`: `[batch, steps, d_input]`
    /// - `state`: optional initial state, `[layers · directions, batch, d_hidden]` (zeros when `None`)
    /// - `mask`: optional `[batch, steps]`, `true` on real steps; padded steps change neither the outputs of
    ///   real steps nor the final state, and their outputs are zeros
    /// - returns the top layer's outputs `[batch, steps, d_hidden · directions]` and the final state (for a
    ///   masked sequence, the state after its last real step; for the reverse direction, after step 0)
    pub fn try_forward(
        &self,
        x: Tensor<3>,
        state: Option<RecurrentState>,
        mask: Option<Tensor<2, Bool>>,
    ) -> Result<(Tensor<3>, RecurrentState), ModelError> {
        let [batch, steps, _] = x.dims();
        check_shape("recurrent", &[None, None, Some(self.d_input)], &x.dims())?;
        let slots = self.layers.len() * self.directions();
        let state_shape = [Some(slots), Some(batch), Some(self.d_hidden)];
        if let Some(state) = &state {
            check_shape("recurrent (initial h)", &state_shape, &state.h.dims())?;
            match (&state.c, self.cell) {
                (Some(c), CellKind::Lstm) => {
                    check_shape("recurrent (initial c)", &state_shape, &c.dims())?
                }
                (None, CellKind::Lstm) | (Some(_), _) => {
                    return Err(ModelError::Argument {
                        model: "recurrent",
                        argument: "initial state",
                        message: format!(
                            "an initial state for a {} needs {}",
                            self.cell,
                            if self.cell == CellKind::Lstm {
                                "both h and c"
                            } else {
                                "h only, no cell state"
                            }
                        ),
                    });
                }
                (None, _) => {}
            }
        }
        if let Some(mask) = &mask {
            check_shape(
                "recurrent (mask)",
                &[Some(batch), Some(steps)],
                &mask.dims(),
            )?;
        }
        let device = x.device();
        let valid = mask.map(|m| m.float());
        let initial = |slot: usize| -> Carry {
            match &state {
                Some(s) => {
                    let pick = |t: &Tensor<3>| {
                        t.clone()
                            .slice([slot..slot + 1, 0..batch, 0..self.d_hidden])
                            .reshape([batch, self.d_hidden])
                    };
                    Carry {
                        h: pick(&s.h),
                        c: s.c.as_ref().map(pick),
                    }
                }
                None => Carry {
                    h: Tensor::zeros([batch, self.d_hidden], &device),
                    c: (self.cell == CellKind::Lstm)
                        .then(|| Tensor::zeros([batch, self.d_hidden], &device)),
                },
            }
        };
        let mut input = x;
        let (mut final_h, mut final_c) = (Vec::new(), Vec::new());
        for (l, layer) in self.layers.iter().enumerate() {
            if l > 0 {
                input = self.dropout.forward(input);
            }
            let directions = self.directions();
            let (out_f, carry_f) = layer.forward.run(
                self.cell,
                input.clone(),
                valid.as_ref(),
                initial(l * directions),
                false,
            );
            let mut carries = vec![carry_f];
            let output = match &layer.reverse {
                Some(reverse) => {
                    let (out_r, carry_r) = reverse.run(
                        self.cell,
                        input,
                        valid.as_ref(),
                        initial(l * directions + 1),
                        true,
                    );
                    carries.push(carry_r);
                    Tensor::cat(vec![out_f, out_r], 2)
                }
                None => out_f,
            };
            for carry in carries {
                final_h.push(carry.h);
                final_c.extend(carry.c);
            }
            input = output;
        }
        let state = RecurrentState {
            h: Tensor::stack(final_h, 0),
            c: (!final_c.is_empty()).then(|| Tensor::stack(final_c, 0)),
        };
        Ok((input, state))
    }

    /// The gate activations of every layer and direction for `x` from a zero state (no mask, inference:
    /// no dropout between layers): for each, the gates in PyTorch's order — LSTM `input`, `forget`,
    /// `cell` (the tanh candidate), `output`; GRU `reset`, `update`, `new`; RNN `hidden` — each
    /// `[batch, steps, hidden]`, recomputed from the direction's weights and its outputs (step t's gates
    /// read the state the direction output at the step before it).
    pub fn gate_activations(&self, x: Tensor<3>) -> Result<Vec<GateActivations>, ModelError> {
        let batch = x.dims()[0];
        check_shape("recurrent", &[None, None, Some(self.d_input)], &x.dims())?;
        let device = x.device();
        let zero = || Carry {
            h: Tensor::zeros([batch, self.d_hidden], &device),
            c: (self.cell == CellKind::Lstm)
                .then(|| Tensor::zeros([batch, self.d_hidden], &device)),
        };
        let mut input = x;
        let mut found = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let mut outputs = Vec::new();
            for (reverse, direction) in [
                (false, Some(&layer.forward)),
                (true, layer.reverse.as_ref()),
            ] {
                let Some(direction) = direction else { continue };
                let (out, _) = direction.run(self.cell, input.clone(), None, zero(), reverse);
                let gates = direction.gates(self.cell, input.clone(), out.clone(), reverse);
                found.push(GateActivations {
                    layer: l,
                    reverse,
                    gates,
                });
                outputs.push(out);
            }
            input = Tensor::cat(outputs, 2);
        }
        Ok(found)
    }
}

/// The gates of one direction of one layer over a sequence (see [`Recurrent::gate_activations`]).
#[derive(Debug, Clone)]
pub struct GateActivations {
    /// The layer, from 0 at the input.
    pub layer: usize,
    /// Whether this is the reverse direction of a bidirectional layer.
    pub reverse: bool,
    /// Each gate's name and values `[batch, steps, hidden]`.
    pub gates: Vec<(&'static str, Tensor<3>)>,
}

impl Direction {
    /// The gates of this direction at every step, from its input `x` and outputs `out`.
    fn gates(
        &self,
        cell: CellKind,
        x: Tensor<3>,
        out: Tensor<3>,
        reverse: bool,
    ) -> Vec<(&'static str, Tensor<3>)> {
        let [batch, steps, hidden] = out.dims();
        let zeros = Tensor::<3>::zeros([batch, 1, hidden], &out.device());
        // The state each step reads: the output of the step before it in reading order.
        let previous = if steps == 1 {
            zeros
        } else if reverse {
            Tensor::cat(vec![out.slice([0..batch, 1..steps, 0..hidden]), zeros], 1)
        } else {
            Tensor::cat(
                vec![zeros, out.slice([0..batch, 0..steps - 1, 0..hidden])],
                1,
            )
        };
        let project = |v: Tensor<3>, w: &Param<Tensor<2>>, b: &Param<Tensor<1>>| {
            let [_, _, d] = v.dims();
            let rows = v.reshape([batch * steps, d]).matmul(w.val().transpose())
                + b.val().unsqueeze::<2>();
            rows.reshape([batch, steps, cell.gates() * hidden])
        };
        let from_x = project(x, &self.weight_ih, &self.bias_ih);
        let from_h = project(previous, &self.weight_hh, &self.bias_hh);
        let block = |t: &Tensor<3>, k: usize| {
            t.clone()
                .slice([0..batch, 0..steps, k * hidden..(k + 1) * hidden])
        };
        let sigmoid = burn::tensor::activation::sigmoid::<3>;
        match cell {
            CellKind::Rnn => vec![("hidden", (from_x + from_h).tanh())],
            CellKind::Lstm => {
                let pre = from_x + from_h;
                vec![
                    ("input", sigmoid(block(&pre, 0))),
                    ("forget", sigmoid(block(&pre, 1))),
                    ("cell", block(&pre, 2).tanh()),
                    ("output", sigmoid(block(&pre, 3))),
                ]
            }
            CellKind::Gru => {
                let r = sigmoid(block(&from_x, 0) + block(&from_h, 0));
                let z = sigmoid(block(&from_x, 1) + block(&from_h, 1));
                let n = (block(&from_x, 2) + r.clone() * block(&from_h, 2)).tanh();
                vec![("reset", r), ("update", z), ("new", n)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    fn input(batch: usize, steps: usize, d: usize) -> Tensor<3> {
        let device = Device::flex();
        device.seed(3);
        Tensor::random([batch, steps, d], Distribution::Normal(0.0, 1.0), &device)
    }

    /// The fused flex op and the generic step-by-step ops give the same outputs, final states and
    /// gradients (input, initial state, every weight) for every cell, direction and padding, at odd sizes.
    #[test]
    fn fused_direction_equals_the_generic_path_with_gradients() {
        let device = Device::flex().autodiff();
        for cell in [CellKind::Rnn, CellKind::Gru, CellKind::Lstm] {
            for (batch, steps, d_in, hidden) in [(3, 5, 4, 7), (1, 1, 2, 3), (4, 9, 5, 2)] {
                for (reverse, masked) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    device.seed(11);
                    let dir = Direction::init(cell, d_in, hidden, &device);
                    let normal = Distribution::Normal(0.0, 1.0);
                    let x =
                        Tensor::<3>::random([batch, steps, d_in], normal, &device).require_grad();
                    let h0 = Tensor::<2>::random([batch, hidden], normal, &device).require_grad();
                    let c0 = Tensor::<2>::random([batch, hidden], normal, &device).require_grad();
                    let valid = masked.then(|| {
                        let lengths: Vec<usize> = (0..batch).map(|b| steps - b % steps).collect();
                        let rows: Vec<f32> = (0..batch * steps)
                            .map(|i| f32::from(i % steps < lengths[i / steps]))
                            .collect();
                        Tensor::<2>::from_data(TensorData::new(rows, [batch, steps]), &device)
                    });
                    // A loss touching the outputs and both final states with distinct weights.
                    let wy = Tensor::<3>::random([batch, steps, hidden], normal, &device);
                    let wh = Tensor::<2>::random([batch, hidden], normal, &device);
                    let run = |fused: bool| {
                        let carry = Carry {
                            h: h0.clone(),
                            c: (cell == CellKind::Lstm).then(|| c0.clone()),
                        };
                        let (y, carry) = if fused {
                            dir.run_fused(cell, x.clone(), valid.as_ref(), carry, reverse)
                        } else {
                            dir.run_generic(cell, x.clone(), valid.as_ref(), carry, reverse)
                        };
                        let mut loss =
                            (y.clone() * wy.clone()).sum() + (carry.h.clone() * wh.clone()).sum();
                        if let Some(c) = &carry.c {
                            loss = loss + (c.clone() * wh.clone() * 0.5).sum();
                        }
                        let grads = loss.backward();
                        let mut values = vec![y.inner().into_data(), carry.h.inner().into_data()];
                        values.extend(carry.c.map(|c| c.inner().into_data()));
                        let mut grad_data = vec![
                            x.grad(&grads).expect("x grad").into_data(),
                            h0.grad(&grads).expect("h0 grad").into_data(),
                            dir.weight_ih
                                .val()
                                .grad(&grads)
                                .expect("w_ih grad")
                                .into_data(),
                            dir.weight_hh
                                .val()
                                .grad(&grads)
                                .expect("w_hh grad")
                                .into_data(),
                            dir.bias_ih
                                .val()
                                .grad(&grads)
                                .expect("b_ih grad")
                                .into_data(),
                            dir.bias_hh
                                .val()
                                .grad(&grads)
                                .expect("b_hh grad")
                                .into_data(),
                        ];
                        if cell == CellKind::Lstm {
                            grad_data.push(c0.grad(&grads).expect("c0 grad").into_data());
                        }
                        (values, grad_data)
                    };
                    let (fused_values, fused_grads) = run(true);
                    let (generic_values, generic_grads) = run(false);
                    let tol = Tolerance::absolute(1e-4);
                    for (a, b) in fused_values.iter().zip(&generic_values) {
                        a.assert_approx_eq::<f32>(b, tol);
                    }
                    for (a, b) in fused_grads.iter().zip(&generic_grads) {
                        a.assert_approx_eq::<f32>(b, tol);
                    }
                }
            }
        }
    }

    /// A whole stack (two bidirectional layers, masked) gives the same results on flex (fused) as on
    /// ndarray (generic), with the same weights.
    #[test]
    #[allow(deprecated)] // ndarray runs the generic path
    fn a_stack_on_flex_equals_the_same_stack_on_ndarray() {
        for cell in [CellKind::Rnn, CellKind::Gru, CellKind::Lstm] {
            let flex = Device::flex();
            let config = RecurrentConfig::new(cell, 3, 5)
                .with_num_layers(2)
                .with_bidirectional(true);
            let model = config.init(&flex).unwrap();
            let on_ndarray = model.clone().to_device(&Device::ndarray());
            let x = input(2, 6, 3);
            let mask = Tensor::<2, Bool>::from_data(
                TensorData::from([[true; 6], [true, true, true, true, false, false]]),
                &flex,
            );
            let (y_flex, s_flex) = model
                .try_forward(x.clone(), None, Some(mask.clone()))
                .unwrap();
            let nd = Device::ndarray();
            let (y_nd, s_nd) = on_ndarray
                .try_forward(x.to_device(&nd), None, Some(mask.to_device(&nd)))
                .unwrap();
            let tol = Tolerance::absolute(1e-5);
            y_flex
                .into_data()
                .assert_approx_eq::<f32>(&y_nd.into_data(), tol);
            s_flex
                .h
                .into_data()
                .assert_approx_eq::<f32>(&s_nd.h.into_data(), tol);
        }
    }

    #[test]
    fn output_and_state_shapes_for_every_cell_depth_and_direction() {
        let device = Device::flex();
        for cell in [CellKind::Rnn, CellKind::Gru, CellKind::Lstm] {
            for (layers, bidirectional) in [(1, false), (2, false), (3, true)] {
                let model = RecurrentConfig::new(cell, 5, 7)
                    .with_num_layers(layers)
                    .with_bidirectional(bidirectional)
                    .init(&device)
                    .unwrap();
                let (out, state) = model.try_forward(input(2, 4, 5), None, None).unwrap();
                let dirs = if bidirectional { 2 } else { 1 };
                assert_eq!(
                    out.dims(),
                    [2, 4, 7 * dirs],
                    "{cell} {layers} {bidirectional}"
                );
                assert_eq!(state.h.dims(), [layers * dirs, 2, 7]);
                assert_eq!(
                    state.c.map(|c| c.dims()),
                    (cell == CellKind::Lstm).then_some([layers * dirs, 2, 7])
                );
            }
        }
    }

    #[test]
    fn wrong_shapes_give_errors_naming_them() {
        let device = Device::flex();
        let model = RecurrentConfig::new(CellKind::Lstm, 5, 7)
            .init(&device)
            .unwrap();
        let err = model.try_forward(input(2, 4, 6), None, None).unwrap_err();
        assert!(err.to_string().contains("[_, _, 5]"), "{err}");
        let bad_state = RecurrentState {
            h: Tensor::zeros([2, 2, 7], &device),
            c: Some(Tensor::zeros([2, 2, 7], &device)),
        };
        let err = model
            .try_forward(input(2, 4, 5), Some(bad_state), None)
            .unwrap_err();
        assert!(err.to_string().contains("initial h"), "{err}");
        let no_c = RecurrentState {
            h: Tensor::zeros([1, 2, 7], &device),
            c: None,
        };
        let err = model
            .try_forward(input(2, 4, 5), Some(no_c), None)
            .unwrap_err();
        assert!(err.to_string().contains("both h and c"), "{err}");
        let mask = Tensor::<2, Bool>::from_data(TensorData::from([[true, true, false]]), &device);
        let err = model
            .try_forward(input(2, 4, 5), None, Some(mask))
            .unwrap_err();
        assert!(err.to_string().contains("mask"), "{err}");
        assert!(
            RecurrentConfig::new(CellKind::Gru, 0, 3)
                .init(&device)
                .is_err()
        );
    }

    /// A sequence padded with garbage gives the same valid outputs and final state as the sequence alone,
    /// in both directions and every layer.
    #[test]
    fn padded_steps_never_leak() {
        let device = Device::flex();
        for cell in [CellKind::Rnn, CellKind::Gru, CellKind::Lstm] {
            let model = RecurrentConfig::new(cell, 3, 4)
                .with_num_layers(2)
                .with_bidirectional(true)
                .init(&device)
                .unwrap();
            let full = input(1, 6, 3);
            let short = full.clone().slice([0..1, 0..4, 0..3]);
            let mask = Tensor::<2, Bool>::from_data(
                TensorData::from([[true, true, true, true, false, false]]),
                &device,
            );
            let (out_short, state_short) = model.try_forward(short, None, None).unwrap();
            let (out_masked, state_masked) = model.try_forward(full, None, Some(mask)).unwrap();
            let tol = Tolerance::absolute(1e-6);
            out_masked
                .clone()
                .slice([0..1, 0..4, 0..8])
                .into_data()
                .assert_approx_eq::<f32>(&out_short.into_data(), tol);
            let padded: f32 = out_masked
                .slice([0..1, 4..6, 0..8])
                .abs()
                .sum()
                .into_scalar();
            assert_eq!(padded, 0.0, "{cell}: padded steps output zeros");
            state_masked
                .h
                .into_data()
                .assert_approx_eq::<f32>(&state_short.h.into_data(), tol);
            if let (Some(a), Some(b)) = (state_masked.c, state_short.c) {
                a.into_data().assert_approx_eq::<f32>(&b.into_data(), tol);
            }
        }
    }

    #[test]
    fn the_initial_state_is_used_and_the_final_state_continues_the_sequence() {
        let device = Device::flex();
        for cell in [CellKind::Rnn, CellKind::Gru, CellKind::Lstm] {
            let model = RecurrentConfig::new(cell, 3, 4)
                .with_num_layers(2)
                .init(&device)
                .unwrap();
            let x = input(2, 6, 3);
            let (whole, _) = model.try_forward(x.clone(), None, None).unwrap();
            let (_, state) = model
                .try_forward(x.clone().slice([0..2, 0..3, 0..3]), None, None)
                .unwrap();
            let (rest, _) = model
                .try_forward(x.slice([0..2, 3..6, 0..3]), Some(state), None)
                .unwrap();
            whole
                .slice([0..2, 3..6, 0..4])
                .into_data()
                .assert_approx_eq::<f32>(&rest.into_data(), Tolerance::absolute(1e-6));
        }
    }

    /// Recomputing the cell from the reported gates gives the layer's own outputs: the gates are the ones
    /// the forward pass used.
    #[test]
    fn gate_activations_rebuild_the_outputs() {
        let device = Device::flex();
        for (cell, bidirectional) in [
            (CellKind::Lstm, false),
            (CellKind::Lstm, true),
            (CellKind::Gru, false),
            (CellKind::Rnn, true),
        ] {
            device.seed(21);
            let model = RecurrentConfig::new(cell, 4, 5)
                .with_num_layers(2)
                .with_bidirectional(bidirectional)
                .init(&device)
                .unwrap();
            let x = Tensor::<3>::random([3, 6, 4], Distribution::Normal(0.0, 1.0), &device);
            let (outputs, _) = model.try_forward(x.clone(), None, None).unwrap();
            let found = model.gate_activations(x).unwrap();
            let directions = if bidirectional { 2 } else { 1 };
            assert_eq!(found.len(), 2 * directions);
            // The top layer's forward direction, rebuilt step by step.
            let top = &found[directions];
            assert_eq!((top.layer, top.reverse), (1, false));
            let gate = |name: &str| {
                let (_, t) = top.gates.iter().find(|(n, _)| *n == name).unwrap();
                t.clone()
            };
            let (batch, steps, hidden) = (3, 6, 5);
            let mut h = Tensor::<2>::zeros([batch, hidden], &device);
            let mut c = Tensor::<2>::zeros([batch, hidden], &device);
            let mut rebuilt = Vec::new();
            let at = |t: Tensor<3>, s: usize| {
                t.slice([0..batch, s..s + 1, 0..hidden])
                    .reshape([batch, hidden])
            };
            for s in 0..steps {
                h = match cell {
                    CellKind::Lstm => {
                        c = at(gate("forget"), s) * c.clone()
                            + at(gate("input"), s) * at(gate("cell"), s);
                        at(gate("output"), s) * c.clone().tanh()
                    }
                    CellKind::Gru => {
                        let (z, n) = (at(gate("update"), s), at(gate("new"), s));
                        n.clone() + (h.clone() - n) * z
                    }
                    CellKind::Rnn => at(gate("hidden"), s),
                };
                rebuilt.push(h.clone().unsqueeze_dim::<3>(1));
            }
            let rebuilt = Tensor::cat(rebuilt, 1);
            let forward = outputs.slice([0..batch, 0..steps, 0..hidden]);
            rebuilt
                .into_data()
                .assert_approx_eq::<f32>(&forward.into_data(), Tolerance::absolute(1e-5));
            for g in &found {
                for (name, t) in &g.gates {
                    assert_eq!(t.dims(), [batch, steps, hidden], "{name}");
                }
            }
        }
    }
}
