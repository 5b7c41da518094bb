//! The CPU kernel of one recurrent layer direction over a whole sequence, forward and backward through
//! time, on plain `f32` slices (row-major, batch-major: element `[b, t, j]` of a `[batch, steps, width]`
//! buffer is at `(b · steps + t) · width + j`).
//!
//! What oneDNN does for PyTorch's RNNs: the input projection of every step is one GEMM, each step does only
//! `h · W_hhᵀ` and one pass over the gates; the backward pass keeps the gate gradients of every step and
//! forms the weight gradients as single GEMMs over all steps (`dW_hh = Σ_t dG_tᵀ h_{t−1}`,
//! `dW_ih = dGᵀ X`, `dX = dG W_ih`). Matrix products go to the `gemm` crate, the one burn-flex uses.

use super::Cell;
use crate::math::{sigmoid, tanh};
use crate::matmul::{View, matmul};
use crate::simd::multiversion;
use rayon::prelude::*;

/// The sizes of one direction's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// The cell.
    pub cell: Cell,
    /// Sequences.
    pub batch: usize,
    /// Steps per sequence.
    pub steps: usize,
    /// Features per input step.
    pub input: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Reads steps `T−1 … 0`.
    pub reverse: bool,
}

impl Dims {
    /// Gate rows: `gates · hidden`.
    pub fn gate_width(&self) -> usize {
        self.cell.gates() * self.hidden
    }

    fn order(&self) -> impl Iterator<Item = usize> + use<> {
        let (steps, reverse) = (self.steps, self.reverse);
        (0..steps).map(move |i| if reverse { steps - 1 - i } else { i })
    }
}

/// The weights of one direction, in PyTorch's layout.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    /// `[gates · hidden, input]`.
    pub w_ih: &'a [f32],
    /// `[gates · hidden, hidden]`.
    pub w_hh: &'a [f32],
    /// `[gates · hidden]`.
    pub b_ih: &'a [f32],
    /// `[gates · hidden]`.
    pub b_hh: &'a [f32],
}

/// What the forward pass keeps for the backward pass.
#[derive(Debug, Clone, Default)]
pub struct Saved {
    /// The state each step started from, `[batch, steps, hidden]`.
    pub h_prev: Vec<f32>,
    /// LSTM: the cell state each step started from, `[batch, steps, hidden]`.
    pub c_prev: Vec<f32>,
    /// Gate activations, `[batch, steps, gates · hidden]`: LSTM `i, f, g, o`; GRU `r, z, n`; RNN `h_t`.
    pub gates: Vec<f32>,
    /// LSTM: `tanh(c_t)`; GRU: the hidden part of the candidate, `W_hn h_{t−1} + b_hn`. `[batch, steps,
    /// hidden]`; empty for the RNN.
    pub extra: Vec<f32>,
    /// `[batch, steps]`, 1 on real steps and 0 on padding; empty when every step is real.
    pub valid: Vec<f32>,
}

/// The results of the forward pass.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Outputs, `[batch, steps, hidden]` (zeros on padded steps).
    pub output: Vec<f32>,
    /// The final hidden state, `[batch, hidden]`.
    pub h: Vec<f32>,
    /// The final cell state (LSTM; zeros otherwise), `[batch, hidden]`.
    pub c: Vec<f32>,
    /// For the backward pass.
    pub saved: Saved,
}

/// The gradients of the backward pass.
#[derive(Debug, Clone)]
pub struct Gradients {
    /// `[batch, steps, input]`.
    pub x: Vec<f32>,
    /// `[gates · hidden, input]`.
    pub w_ih: Vec<f32>,
    /// `[gates · hidden, hidden]`.
    pub w_hh: Vec<f32>,
    /// `[gates · hidden]`.
    pub b_ih: Vec<f32>,
    /// `[gates · hidden]`.
    pub b_hh: Vec<f32>,
    /// `[batch, hidden]`.
    pub h0: Vec<f32>,
    /// `[batch, hidden]` (zeros but for the LSTM).
    pub c0: Vec<f32>,
}

/// Sequences per thread: the batch is cut into one block of rows per thread of rayon's pool, and each
/// block runs its whole recurrence on its own (the rows of a batch never interact), so the per-step GEMMs
/// need no synchronisation between threads. Blocks are at least [`MIN_ROWS`] rows.
fn row_blocks(batch: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    batch.div_ceil(threads).max(MIN_ROWS.min(batch)).max(1)
}
const MIN_ROWS: usize = 8;

/// `buf` (rows of `per_row` elements) cut into blocks of `rows` rows; `count` empty slices when `buf` is
/// empty (an unused buffer, such as the RNN's cell state).
fn blocks_mut(buf: &mut [f32], per_row: usize, rows: usize, count: usize) -> Vec<&mut [f32]> {
    if buf.is_empty() {
        (0..count).map(|_| Default::default()).collect()
    } else {
        buf.chunks_mut(per_row * rows).collect()
    }
}

fn blocks(buf: &[f32], per_row: usize, rows: usize, count: usize) -> Vec<&[f32]> {
    if buf.is_empty() {
        (0..count).map(|_| Default::default()).collect()
    } else {
        buf.chunks(per_row * rows).collect()
    }
}

/// One block of rows of the forward pass, every slice cut to the block (`d.batch` is the block's rows).
struct ForwardBlock<'a> {
    d: Dims,
    gx: &'a [f32],
    valid: &'a [f32],
    h_prev: &'a mut [f32],
    c_prev: &'a mut [f32],
    gates: &'a mut [f32],
    extra: &'a mut [f32],
    output: &'a mut [f32],
    hs: &'a mut [f32],
    cs: &'a mut [f32],
}

/// Runs one direction over `x` (`[batch, steps, input]`) from `h0` (and `c0` for the LSTM), each
/// `[batch, hidden]`. `valid` is `[batch, steps]` (1 real, 0 padding) or empty: a padded step outputs
/// zeros and leaves the state as it was.
pub fn forward(
    d: Dims,
    x: &[f32],
    w: Weights<'_>,
    h0: &[f32],
    c0: &[f32],
    valid: &[f32],
) -> Forward {
    let (b, s, h, gw) = (d.batch, d.steps, d.hidden, d.gate_width());
    assert_eq!(x.len(), b * s * d.input, "x");
    assert_eq!(w.w_ih.len(), gw * d.input, "w_ih");
    assert_eq!(w.w_hh.len(), gw * h, "w_hh");
    assert_eq!(w.b_ih.len(), gw, "b_ih");
    assert_eq!(w.b_hh.len(), gw, "b_hh");
    assert_eq!(h0.len(), b * h, "h0");
    assert!(valid.is_empty() || valid.len() == b * s, "valid");
    let lstm = d.cell == Cell::Lstm;
    // The input projection of every step at once, with both biases: gx[b, t] = x[b, t] · W_ihᵀ + b_ih + b_hh
    // (the GRU's candidate keeps b_hn on the hidden side, where the reset gate multiplies it).
    let mut gx = vec![0.0; b * s * gw];
    matmul(
        &mut gx,
        gw,
        b * s,
        gw,
        d.input,
        View::rows(x, d.input),
        View::transposed(w.w_ih, d.input),
        false,
        true,
    );
    let bias: Vec<f32> = (0..gw)
        .map(|k| {
            let hidden_side = d.cell == Cell::Gru && k >= 2 * h;
            w.b_ih[k] + if hidden_side { 0.0 } else { w.b_hh[k] }
        })
        .collect();
    gx.par_chunks_mut(gw).for_each(|row| {
        row.iter_mut().zip(&bias).for_each(|(v, b)| *v += b);
    });
    let mut saved = Saved {
        h_prev: vec![0.0; b * s * h],
        c_prev: if lstm {
            vec![0.0; b * s * h]
        } else {
            Vec::new()
        },
        gates: vec![0.0; b * s * gw],
        extra: if d.cell == Cell::Rnn {
            Vec::new()
        } else {
            vec![0.0; b * s * h]
        },
        valid: valid.to_vec(),
    };
    let mut output = vec![0.0; b * s * h];
    let mut hs = h0.to_vec();
    let mut cs = if lstm { c0.to_vec() } else { vec![0.0; b * h] };
    let rows = row_blocks(b);
    let count = b.div_ceil(rows);
    let mut parts: Vec<ForwardBlock<'_>> = Vec::with_capacity(count);
    let mut iters = (
        blocks(&gx, s * gw, rows, count).into_iter(),
        blocks(valid, s, rows, count).into_iter(),
        blocks_mut(&mut saved.h_prev, s * h, rows, count).into_iter(),
        blocks_mut(&mut saved.c_prev, s * h, rows, count).into_iter(),
        blocks_mut(&mut saved.gates, s * gw, rows, count).into_iter(),
        blocks_mut(&mut saved.extra, s * h, rows, count).into_iter(),
        blocks_mut(&mut output, s * h, rows, count).into_iter(),
        blocks_mut(&mut hs, h, rows, count).into_iter(),
        blocks_mut(&mut cs, h, rows, count).into_iter(),
    );
    for i in 0..count {
        let block_rows = rows.min(b - i * rows);
        let next = "one block per row range";
        parts.push(ForwardBlock {
            d: Dims {
                batch: block_rows,
                ..d
            },
            gx: iters.0.next().expect(next),
            valid: iters.1.next().expect(next),
            h_prev: iters.2.next().expect(next),
            c_prev: iters.3.next().expect(next),
            gates: iters.4.next().expect(next),
            extra: iters.5.next().expect(next),
            output: iters.6.next().expect(next),
            hs: iters.7.next().expect(next),
            cs: iters.8.next().expect(next),
        });
    }
    parts
        .into_par_iter()
        .for_each(|block| forward_block(block, w));
    Forward {
        output,
        h: hs,
        c: cs,
        saved,
    }
}

/// Gate block `g` (of `h` elements) of a row of gate pre-activations.
fn gate_block(row: &[f32], g: usize, h: usize) -> &[f32] {
    &row[g * h..(g + 1) * h]
}

multiversion! {
    /// One LSTM step for one row: gates from the input and hidden projections (`x*`, `h*`, order i, f, g,
    /// o), the new cell state in `c`, and the values the backward pass keeps (gates, `tanh(c)`); the new
    /// hidden state goes to both `h` and `out`. Every slice has the hidden size.
    fn lstm_forward_gates(
        xi: &[f32],
        xf: &[f32],
        xg: &[f32],
        xo: &[f32],
        hi: &[f32],
        hf: &[f32],
        hg: &[f32],
        ho: &[f32],
        c: &mut [f32],
        gi: &mut [f32],
        gf: &mut [f32],
        gg: &mut [f32],
        go: &mut [f32],
        tc: &mut [f32],
        h: &mut [f32],
        out: &mut [f32],
    ) {
        let n = c.len();
        let (xi, xf, xg, xo) = (&xi[..n], &xf[..n], &xg[..n], &xo[..n]);
        let (hi, hf, hg, ho) = (&hi[..n], &hf[..n], &hg[..n], &ho[..n]);
        let (gi, gf, gg, go) = (&mut gi[..n], &mut gf[..n], &mut gg[..n], &mut go[..n]);
        let (tc, h, out) = (&mut tc[..n], &mut h[..n], &mut out[..n]);
        for j in 0..n {
            let i = sigmoid(xi[j] + hi[j]);
            let f = sigmoid(xf[j] + hf[j]);
            let g = tanh(xg[j] + hg[j]);
            let o = sigmoid(xo[j] + ho[j]);
            let cv = f * c[j] + i * g;
            let t = tanh(cv);
            gi[j] = i;
            gf[j] = f;
            gg[j] = g;
            go[j] = o;
            c[j] = cv;
            tc[j] = t;
            let hv = o * t;
            h[j] = hv;
            out[j] = hv;
        }
    }
}

multiversion! {
    /// One LSTM step of the backward pass for one row: from the saved gates, `tanh(c)` and previous cell
    /// state, and the gradients arriving at h (`dh` from the next step, `dy` from the output) and at c
    /// (`dc`, replaced by the gradient of the previous cell state), the gate gradients `d*`; `direct` (the
    /// part of the previous hidden state's gradient not through the gates) is zero for the LSTM.
    fn lstm_backward_gates(
        gi: &[f32],
        gf: &[f32],
        gg: &[f32],
        go: &[f32],
        tc: &[f32],
        c_prev: &[f32],
        dh: &[f32],
        dy: &[f32],
        dc: &mut [f32],
        di: &mut [f32],
        df: &mut [f32],
        dgg: &mut [f32],
        d_o: &mut [f32],
        direct: &mut [f32],
    ) {
        let n = dc.len();
        let (gi, gf, gg, go) = (&gi[..n], &gf[..n], &gg[..n], &go[..n]);
        let (tc, c_prev, dh, dy) = (&tc[..n], &c_prev[..n], &dh[..n], &dy[..n]);
        let (di, df, dgg, d_o) = (&mut di[..n], &mut df[..n], &mut dgg[..n], &mut d_o[..n]);
        let direct = &mut direct[..n];
        for j in 0..n {
            let (i, f, g, o) = (gi[j], gf[j], gg[j], go[j]);
            let dht = dh[j] + dy[j];
            let dct = dc[j] + dht * o * (1.0 - tc[j] * tc[j]);
            di[j] = dct * g * i * (1.0 - i);
            df[j] = dct * c_prev[j] * f * (1.0 - f);
            dgg[j] = dct * i * (1.0 - g * g);
            d_o[j] = dht * tc[j] * o * (1.0 - o);
            dc[j] = dct * f;
            direct[j] = 0.0;
        }
    }
}

/// The recurrence of one block of rows.
fn forward_block(p: ForwardBlock<'_>, w: Weights<'_>) {
    let d = p.d;
    let (b, s, h, gw) = (d.batch, d.steps, d.hidden, d.gate_width());
    let mut gh = vec![0.0; b * gw];
    for t in d.order() {
        matmul(
            &mut gh,
            gw,
            b,
            gw,
            h,
            View::rows(p.hs, h),
            View::transposed(w.w_hh, h),
            false,
            false,
        );
        for bi in 0..b {
            let at = bi * s + t;
            let hrow = &mut p.hs[bi * h..(bi + 1) * h];
            p.h_prev[at * h..(at + 1) * h].copy_from_slice(hrow);
            if d.cell == Cell::Lstm {
                p.c_prev[at * h..(at + 1) * h].copy_from_slice(&p.cs[bi * h..(bi + 1) * h]);
            }
            if !p.valid.is_empty() && p.valid[at] == 0.0 {
                continue; // state kept, output zero, saved gates zero
            }
            let x_part = &p.gx[at * gw..(at + 1) * gw];
            let h_part = &gh[bi * gw..(bi + 1) * gw];
            let gates = &mut p.gates[at * gw..(at + 1) * gw];
            let out = &mut p.output[at * h..(at + 1) * h];
            match d.cell {
                Cell::Rnn => {
                    for j in 0..h {
                        let v = tanh(x_part[j] + h_part[j]);
                        gates[j] = v;
                        hrow[j] = v;
                        out[j] = v;
                    }
                }
                Cell::Lstm => {
                    let (gi, rest) = gates.split_at_mut(h);
                    let (gf, rest) = rest.split_at_mut(h);
                    let (gg, go) = rest.split_at_mut(h);
                    lstm_forward_gates(
                        gate_block(x_part, 0, h),
                        gate_block(x_part, 1, h),
                        gate_block(x_part, 2, h),
                        gate_block(x_part, 3, h),
                        gate_block(h_part, 0, h),
                        gate_block(h_part, 1, h),
                        gate_block(h_part, 2, h),
                        gate_block(h_part, 3, h),
                        &mut p.cs[bi * h..(bi + 1) * h],
                        gi,
                        gf,
                        gg,
                        &mut go[..h],
                        &mut p.extra[at * h..(at + 1) * h],
                        &mut hrow[..h],
                        &mut out[..h],
                    );
                }
                Cell::Gru => {
                    let hn_row = &mut p.extra[at * h..(at + 1) * h];
                    for j in 0..h {
                        let r = sigmoid(x_part[j] + h_part[j]);
                        let z = sigmoid(x_part[h + j] + h_part[h + j]);
                        let hn = h_part[2 * h + j] + w.b_hh[2 * h + j];
                        let n = tanh(x_part[2 * h + j] + r * hn);
                        gates[j] = r;
                        gates[h + j] = z;
                        gates[2 * h + j] = n;
                        hn_row[j] = hn;
                        let hv = n + (hrow[j] - n) * z;
                        hrow[j] = hv;
                        out[j] = hv;
                    }
                }
            }
        }
    }
}

/// One block of rows of the backward pass.
struct BackwardBlock<'a> {
    d: Dims,
    h_prev: &'a [f32],
    c_prev: &'a [f32],
    gates: &'a [f32],
    extra: &'a [f32],
    valid: &'a [f32],
    dy: &'a [f32],
    dgx: &'a mut [f32],
    dgh: &'a mut [f32],
    /// In: the gradient of the final h; out: that of h0.
    dh: &'a mut [f32],
    /// In: the gradient of the final c; out: that of c0.
    dc: &'a mut [f32],
}

/// Back-propagates through time. `dy` is the gradient of the outputs (`[batch, steps, hidden]`), `dh_n`
/// and `dc_n` those of the final states (`[batch, hidden]`; `dc_n` is ignored but for the LSTM).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d: Dims,
    x: &[f32],
    w: Weights<'_>,
    saved: &Saved,
    dy: &[f32],
    dh_n: &[f32],
    dc_n: &[f32],
) -> Gradients {
    let (b, s, h, gw, input) = (d.batch, d.steps, d.hidden, d.gate_width(), d.input);
    assert_eq!(dy.len(), b * s * h, "dy");
    assert_eq!(dh_n.len(), b * h, "dh_n");
    let lstm = d.cell == Cell::Lstm;
    let gru = d.cell == Cell::Gru;
    // Gradients of the gate pre-activations per step: the input side and, for the GRU (whose candidate
    // multiplies its hidden part by r), a separate hidden side.
    let mut dgx = vec![0.0; b * s * gw];
    let mut dgh = if gru {
        vec![0.0; b * s * gw]
    } else {
        Vec::new()
    };
    let mut dh = dh_n.to_vec();
    let mut dc = if lstm {
        dc_n.to_vec()
    } else {
        vec![0.0; b * h]
    };
    let rows = row_blocks(b);
    let count = b.div_ceil(rows);
    let mut parts = Vec::with_capacity(count);
    let mut iters = (
        blocks(&saved.h_prev, s * h, rows, count).into_iter(),
        blocks(&saved.c_prev, s * h, rows, count).into_iter(),
        blocks(&saved.gates, s * gw, rows, count).into_iter(),
        blocks(&saved.extra, s * h, rows, count).into_iter(),
        blocks(&saved.valid, s, rows, count).into_iter(),
        blocks(dy, s * h, rows, count).into_iter(),
        blocks_mut(&mut dgx, s * gw, rows, count).into_iter(),
        blocks_mut(&mut dgh, s * gw, rows, count).into_iter(),
        blocks_mut(&mut dh, h, rows, count).into_iter(),
        blocks_mut(&mut dc, h, rows, count).into_iter(),
    );
    for i in 0..count {
        let next = "one block per row range";
        parts.push(BackwardBlock {
            d: Dims {
                batch: rows.min(b - i * rows),
                ..d
            },
            h_prev: iters.0.next().expect(next),
            c_prev: iters.1.next().expect(next),
            gates: iters.2.next().expect(next),
            extra: iters.3.next().expect(next),
            valid: iters.4.next().expect(next),
            dy: iters.5.next().expect(next),
            dgx: iters.6.next().expect(next),
            dgh: iters.7.next().expect(next),
            dh: iters.8.next().expect(next),
            dc: iters.9.next().expect(next),
        });
    }
    parts
        .into_par_iter()
        .for_each(|block| backward_block(block, w));
    let dg_h = if gru { &dgh } else { &dgx };
    let mut g = Gradients {
        x: vec![0.0; b * s * input],
        w_ih: vec![0.0; gw * input],
        w_hh: vec![0.0; gw * h],
        b_ih: column_sums(&dgx, gw),
        b_hh: column_sums(dg_h, gw),
        h0: dh,
        c0: dc,
    };
    let all = b * s;
    // dX = dG_x · W_ih; dW_ih = dG_xᵀ · X; dW_hh = dG_hᵀ · H_prev — each one GEMM over every step.
    matmul(
        &mut g.x,
        input,
        all,
        input,
        gw,
        View::rows(&dgx, gw),
        View::rows(w.w_ih, input),
        false,
        true,
    );
    matmul(
        &mut g.w_ih,
        input,
        gw,
        input,
        all,
        View::transposed(&dgx, gw),
        View::rows(x, input),
        false,
        true,
    );
    matmul(
        &mut g.w_hh,
        h,
        gw,
        h,
        all,
        View::transposed(dg_h, gw),
        View::rows(&saved.h_prev, h),
        false,
        true,
    );
    g
}

/// The backward recurrence of one block of rows: fills its gate gradients, and turns `dh`/`dc` from the
/// final state's gradients into the initial state's.
fn backward_block(p: BackwardBlock<'_>, w: Weights<'_>) {
    let d = p.d;
    let (b, s, h, gw) = (d.batch, d.steps, d.hidden, d.gate_width());
    let gru = d.cell == Cell::Gru;
    let mut dh_prev = vec![0.0; b * h];
    let padded = |at: usize| !p.valid.is_empty() && p.valid[at] == 0.0;
    let order: Vec<usize> = d.order().collect();
    for &t in order.iter().rev() {
        for bi in 0..b {
            let at = bi * s + t;
            let dh_row = &p.dh[bi * h..(bi + 1) * h];
            let direct = &mut dh_prev[bi * h..(bi + 1) * h];
            if padded(at) {
                direct.copy_from_slice(dh_row); // the state passed through untouched
                continue;
            }
            let dy_row = &p.dy[at * h..(at + 1) * h];
            let gates = &p.gates[at * gw..(at + 1) * gw];
            let dg = &mut p.dgx[at * gw..(at + 1) * gw];
            match d.cell {
                Cell::Rnn => {
                    for j in 0..h {
                        let v = gates[j];
                        dg[j] = (dh_row[j] + dy_row[j]) * (1.0 - v * v);
                        direct[j] = 0.0;
                    }
                }
                Cell::Lstm => {
                    let (di, rest) = dg.split_at_mut(h);
                    let (df, rest) = rest.split_at_mut(h);
                    let (dgg, d_o) = rest.split_at_mut(h);
                    lstm_backward_gates(
                        &gates[..h],
                        &gates[h..2 * h],
                        &gates[2 * h..3 * h],
                        &gates[3 * h..4 * h],
                        &p.extra[at * h..(at + 1) * h],
                        &p.c_prev[at * h..(at + 1) * h],
                        &dh_row[..h],
                        &dy_row[..h],
                        &mut p.dc[bi * h..(bi + 1) * h],
                        di,
                        df,
                        dgg,
                        &mut d_o[..h],
                        &mut direct[..h],
                    );
                }
                Cell::Gru => {
                    let hn = &p.extra[at * h..(at + 1) * h];
                    let hp = &p.h_prev[at * h..(at + 1) * h];
                    let dgh_row = &mut p.dgh[at * gw..(at + 1) * gw];
                    for j in 0..h {
                        let (r, z, n) = (gates[j], gates[h + j], gates[2 * h + j]);
                        let dht = dh_row[j] + dy_row[j];
                        let dn = dht * (1.0 - z) * (1.0 - n * n);
                        let dz = dht * (hp[j] - n) * z * (1.0 - z);
                        let dr = dn * hn[j] * r * (1.0 - r);
                        dg[j] = dr;
                        dg[h + j] = dz;
                        dg[2 * h + j] = dn;
                        dgh_row[j] = dr;
                        dgh_row[h + j] = dz;
                        dgh_row[2 * h + j] = dn * r;
                        direct[j] = dht * z;
                    }
                }
            }
        }
        // dh_{t−1} = direct part + dG_h[t] · W_hh (padded rows of dG are zero).
        let dg_h: &[f32] = if gru { p.dgh } else { p.dgx };
        matmul(
            &mut dh_prev,
            h,
            b,
            h,
            gw,
            View::rows(&dg_h[t * gw..], s * gw),
            View::rows(w.w_hh, h),
            true,
            false,
        );
        p.dh.copy_from_slice(&dh_prev);
    }
}

fn column_sums(m: &[f32], width: usize) -> Vec<f32> {
    let mut out = vec![0.0; width];
    for row in m.chunks_exact(width) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random vector in [−1, 1).
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    struct Case {
        d: Dims,
        x: Vec<f32>,
        w_ih: Vec<f32>,
        w_hh: Vec<f32>,
        b_ih: Vec<f32>,
        b_hh: Vec<f32>,
        h0: Vec<f32>,
        c0: Vec<f32>,
        valid: Vec<f32>,
        /// Weights of the scalar loss Σ dy·y + Σ dh·h_n + Σ dc·c_n.
        dy: Vec<f32>,
        dh: Vec<f32>,
        dc: Vec<f32>,
    }

    impl Case {
        fn new(cell: Cell, reverse: bool, masked: bool) -> Self {
            let d = Dims {
                cell,
                batch: 3,
                steps: 5,
                input: 4,
                hidden: 3,
                reverse,
            };
            let (b, s, h, gw) = (d.batch, d.steps, d.hidden, d.gate_width());
            let valid = if masked {
                // sequence 1 has 3 real steps, sequence 2 has 1 (padding at the end, as batches pad).
                (0..b * s)
                    .map(|at| {
                        let (bi, t) = (at / s, at % s);
                        f32::from(t < [5, 3, 1][bi])
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Self {
                x: noise(b * s * d.input, 1),
                w_ih: noise(gw * d.input, 2),
                w_hh: noise(gw * h, 3),
                b_ih: noise(gw, 4),
                b_hh: noise(gw, 5),
                h0: noise(b * h, 6),
                c0: noise(b * h, 7),
                dy: noise(b * s * h, 8),
                dh: noise(b * h, 9),
                dc: noise(b * h, 10),
                valid,
                d,
            }
        }

        fn weights(&self) -> Weights<'_> {
            Weights {
                w_ih: &self.w_ih,
                w_hh: &self.w_hh,
                b_ih: &self.b_ih,
                b_hh: &self.b_hh,
            }
        }

        fn loss(&self) -> f64 {
            let f = forward(
                self.d,
                &self.x,
                self.weights(),
                &self.h0,
                &self.c0,
                &self.valid,
            );
            let dot = |a: &[f32], b: &[f32]| -> f64 {
                a.iter()
                    .zip(b)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum()
            };
            let c = if self.d.cell == Cell::Lstm {
                dot(&f.c, &self.dc)
            } else {
                0.0
            };
            dot(&f.output, &self.dy) + dot(&f.h, &self.dh) + c
        }
    }

    /// Every gradient of the hand-written backward pass equals a central finite difference of the forward
    /// pass, for each cell, direction, with and without padding.
    #[test]
    #[allow(clippy::needless_range_loop)] // perturbs `field[i]` and reads `analytic[i]`
    fn backward_equals_finite_differences() {
        for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
            for (reverse, masked) in [(false, false), (true, false), (false, true), (true, true)] {
                let mut case = Case::new(cell, reverse, masked);
                let f = forward(
                    case.d,
                    &case.x,
                    case.weights(),
                    &case.h0,
                    &case.c0,
                    &case.valid,
                );
                let g = backward(
                    case.d,
                    &case.x,
                    case.weights(),
                    &f.saved,
                    &case.dy,
                    &case.dh,
                    &case.dc,
                );
                let label = format!("{cell:?} reverse {reverse} masked {masked}");
                type Field = fn(&mut Case) -> &mut Vec<f32>;
                let fields: [(&str, Field, &Vec<f32>); 7] = [
                    ("x", |c| &mut c.x, &g.x),
                    ("w_ih", |c| &mut c.w_ih, &g.w_ih),
                    ("w_hh", |c| &mut c.w_hh, &g.w_hh),
                    ("b_ih", |c| &mut c.b_ih, &g.b_ih),
                    ("b_hh", |c| &mut c.b_hh, &g.b_hh),
                    ("h0", |c| &mut c.h0, &g.h0),
                    ("c0", |c| &mut c.c0, &g.c0),
                ];
                for (name, field, analytic) in fields {
                    if name == "c0" && cell != Cell::Lstm {
                        assert!(analytic.iter().all(|v| *v == 0.0), "{label}: dc0");
                        continue;
                    }
                    for i in 0..field(&mut case).len() {
                        let eps = 1e-2;
                        let orig = field(&mut case)[i];
                        field(&mut case)[i] = orig + eps;
                        let up = case.loss();
                        field(&mut case)[i] = orig - eps;
                        let down = case.loss();
                        field(&mut case)[i] = orig;
                        let numeric = (up - down) / (2.0 * f64::from(eps));
                        let err = (numeric - f64::from(analytic[i])).abs();
                        assert!(
                            err < 2e-3 * (1.0 + numeric.abs()),
                            "{label}: d{name}[{i}] analytic {} numeric {numeric}",
                            analytic[i]
                        );
                    }
                }
            }
        }
    }

    /// Cutting the batch into blocks of rows (one per thread) changes nothing: a batch of 20 on four
    /// threads (blocks of 8, 8 and 4) gives the outputs and gradients of one thread.
    #[test]
    fn row_blocks_give_the_single_thread_results() {
        for cell in [Cell::Rnn, Cell::Gru, Cell::Lstm] {
            let mut case = Case::new(cell, true, false);
            case.d.batch = 20;
            let (b, s, h, gw) = (20, case.d.steps, case.d.hidden, case.d.gate_width());
            case.x = noise(b * s * case.d.input, 11);
            case.h0 = noise(b * h, 12);
            case.c0 = noise(b * h, 13);
            case.dy = noise(b * s * h, 14);
            case.dh = noise(b * h, 15);
            case.dc = noise(b * h, 16);
            case.valid = (0..b * s)
                .map(|at| f32::from(at % s < 1 + at / s % s))
                .collect();
            assert_eq!(case.w_ih.len(), gw * case.d.input);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let f = forward(
                        case.d,
                        &case.x,
                        case.weights(),
                        &case.h0,
                        &case.c0,
                        &case.valid,
                    );
                    let g = backward(
                        case.d,
                        &case.x,
                        case.weights(),
                        &f.saved,
                        &case.dy,
                        &case.dh,
                        &case.dc,
                    );
                    [
                        f.output, f.h, f.c, g.x, g.w_ih, g.w_hh, g.b_ih, g.b_hh, g.h0, g.c0,
                    ]
                })
            };
            for (one, four) in run(1).iter().zip(run(4).iter()) {
                for (a, b) in one.iter().zip(four) {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                        "{cell:?}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// A padded step outputs zeros and carries the state through unchanged.
    #[test]
    fn padded_steps_output_zeros_and_keep_the_state() {
        let case = Case::new(Cell::Lstm, false, true);
        let f = forward(
            case.d,
            &case.x,
            case.weights(),
            &case.h0,
            &case.c0,
            &case.valid,
        );
        let (s, h) = (case.d.steps, case.d.hidden);
        // sequence 2 has one real step: its final state is the state after step 0.
        let after_first = &f.output[(2 * s) * h..(2 * s + 1) * h];
        assert_eq!(&f.h[2 * h..3 * h], after_first);
        assert!(
            f.output[(2 * s + 1) * h..(3 * s) * h]
                .iter()
                .all(|v| *v == 0.0)
        );
    }
}
