//! The raw f32 kernels of [`super::attention`]: per (batch, head) pair, scores as one GEMM, a masked softmax
//! that skips blocked keys, and the weighted sum of values as one GEMM; the backward pass as four GEMMs and
//! one pass over the softmax's rows. Pairs are spread over rayon's threads.
//!
//! Queries, keys, values and the result keep the `[batch, steps, heads · head_dim]` layout of the linear
//! projections around them: head `h` is the column block `h · head_dim ..`, read and written with a row
//! stride of the full width, so no head is ever copied out or back.

use crate::matmul::{View, matmul, matmul_into};
use crate::simd::multiversion;
use rayon::prelude::*;

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionDims {
    /// Sequences.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Query steps.
    pub q_steps: usize,
    /// Key (and value) steps.
    pub k_steps: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl AttentionDims {
    /// `heads · head_dim`: the row width of queries, keys, values and the result.
    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    fn pairs(&self) -> usize {
        self.batch * self.heads
    }

    fn scores(&self) -> usize {
        self.q_steps * self.k_steps
    }

    /// Offsets of pair `pair`'s first query and first key row (element index, head column included).
    fn offsets(&self, pair: usize) -> (usize, usize) {
        let (b, h) = (pair / self.heads, pair % self.heads);
        (
            b * self.q_steps * self.width() + h * self.head_dim,
            b * self.k_steps * self.width() + h * self.head_dim,
        )
    }
}

/// A raw pointer that the pairs' threads write through, each into its own head's columns.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: every use writes a block no other pair writes (see `offsets`), and the buffer outlives the loop.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer `offset` elements in. A method (not a field access) so closures capture the whole
    /// `Send` wrapper rather than the bare pointer.
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers pass offsets inside the buffer the pointer came from.
        unsafe { self.0.add(offset) }
    }
}

multiversion! {
    /// `row = exp(row − max)`.
    fn exp_shifted(row: &mut [f32], max: f32) {
        for v in row.iter_mut() {
            *v = crate::math::exp(*v - max);
        }
    }
}

multiversion! {
    /// `row = exp(row − max)` where `blocked` is 0, else 0 (the exponential is computed either way, of a
    /// finite score, and discarded: a select, not a branch).
    fn exp_shifted_open(row: &mut [f32], blocked: &[f32], max: f32) {
        let blocked = &blocked[..row.len()];
        for (v, &m) in row.iter_mut().zip(blocked) {
            let e = crate::math::exp(*v - max);
            *v = if m == 0.0 { e } else { 0.0 };
        }
    }
}

multiversion! {
    /// `max = ` the largest `row[j]` whose `blocked[j]` is 0 (all keys when `blocked` is empty), −∞ if none:
    /// sixteen running maxima and a select instead of a branch, so the loop vectorises.
    fn open_max(row: &[f32], blocked: &[f32], max: &mut f32) {
        let mut lanes = [f32::NEG_INFINITY; 16];
        let mut rows = row.chunks_exact(16);
        if blocked.is_empty() {
            for chunk in &mut rows {
                lanes.iter_mut().zip(chunk).for_each(|(l, &v)| *l = l.max(v));
            }
        } else {
            let mut masks = blocked[..row.len()].chunks_exact(16);
            for (chunk, mask) in (&mut rows).zip(&mut masks) {
                lanes.iter_mut().zip(chunk).zip(mask).for_each(|((l, &v), &m)| {
                    *l = if m == 0.0 { l.max(v) } else { *l };
                });
            }
        }
        let tail = row.len() - rows.remainder().len();
        let mut best = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for (j, &v) in row.iter().enumerate().skip(tail) {
            if blocked.get(j).is_none_or(|&m| m == 0.0) {
                best = best.max(v);
            }
        }
        *max = best;
    }
}

multiversion! {
    /// `dot = Σⱼ a[j] · b[j]`, in sixteen partial sums so the loop vectorises.
    fn dot(a: &[f32], b: &[f32], dot: &mut f32) {
        let b = &b[..a.len()];
        let mut lanes = [0.0f32; 16];
        let (mut ac, mut bc) = (a.chunks_exact(16), b.chunks_exact(16));
        for (x, y) in (&mut ac).zip(&mut bc) {
            lanes.iter_mut().zip(x.iter().zip(y)).for_each(|(l, (x, y))| *l += x * y);
        }
        let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
        *dot = lanes.iter().sum::<f32>() + tail;
    }
}

/// Softmax over one row of scaled scores in place. Blocked keys (`blocked[j] != 0`) take no part in the
/// maximum or the sum and get weight exactly 0 (their finite scores are exponentiated with the others and
/// the result discarded, so the loop has no branch; no −∞ or −10⁴ fill is ever exponentiated). A row whose keys are all blocked gets uniform weights, as burn's softmax after
/// filling blocked scores with one large negative value does.
fn masked_softmax_row(row: &mut [f32], blocked: Option<&[f32]>) {
    let mut max = f32::NEG_INFINITY;
    open_max(row, blocked.unwrap_or(&[]), &mut max);
    if max == f32::NEG_INFINITY {
        row.fill(1.0 / row.len() as f32);
        return;
    }
    match blocked {
        None => exp_shifted(row, max),
        Some(mask) => exp_shifted_open(row, mask, max),
    }
    // Eight partial sums, so the loop vectorises.
    let mut lanes = [0.0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        lanes.iter_mut().zip(chunk).for_each(|(l, v)| *l += v);
    }
    let sum = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|s| *s *= inv);
}

/// The weights `probs` of one pair after dropout: `probs` itself without it, else `probs ∘ keep` in
/// `scratch`.
fn after_dropout<'a>(
    probs: &'a [f32],
    keep: Option<&[f32]>,
    scratch: &'a mut Vec<f32>,
) -> &'a [f32] {
    match keep {
        None => probs,
        Some(keep) => {
            scratch.clear();
            scratch.extend(probs.iter().zip(keep).map(|(p, k)| p * k));
            scratch
        }
    }
}

/// The forward pass.
///
/// - `q`: `[batch, q_steps, width]`; `k`, `v`: `[batch, k_steps, width]`
/// - `blocked`: optional `[batch, q_steps, k_steps]`, non-zero where a query may not see a key
/// - `keep`: optional dropout multipliers on the weights, `[batch, heads, q_steps, k_steps]` (0 or 1/(1−p))
/// - returns the result `[batch, q_steps, width]` and the softmax weights `[batch, heads, q_steps, k_steps]`
///   (before dropout), which the backward pass needs.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    d: &AttentionDims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    blocked: Option<&[f32]>,
    keep: Option<&[f32]>,
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let (w, tq, tk, dh) = (d.width(), d.q_steps, d.k_steps, d.head_dim);
    let mut out = vec![0.0f32; d.batch * tq * w];
    let mut probs = vec![0.0f32; d.pairs() * d.scores()];
    let out_ptr = Shared(out.as_mut_ptr());
    probs
        .par_chunks_mut(d.scores().max(1))
        .enumerate()
        .for_each_init(Vec::new, |dropped, (pair, p)| {
            let (qo, ko) = d.offsets(pair);
            let b = pair / d.heads;
            matmul(
                p,
                tk,
                tq,
                tk,
                dh,
                View::rows(&q[qo..], w),
                View::transposed(&k[ko..], w),
                false,
                false,
            );
            for (i, row) in p.chunks_exact_mut(tk).enumerate() {
                row.iter_mut().for_each(|s| *s *= scale);
                let mask = blocked.map(|m| &m[(b * tq + i) * tk..(b * tq + i + 1) * tk]);
                masked_softmax_row(row, mask);
            }
            let keep = keep.map(|keep| &keep[pair * d.scores()..(pair + 1) * d.scores()]);
            let weights = after_dropout(p, keep, dropped);
            // SAFETY: pair (b, h) alone writes rows b·tq.. and columns h·dh.. of `out`.
            unsafe {
                matmul_into(
                    out_ptr.at(qo),
                    w,
                    tq,
                    dh,
                    tk,
                    View::rows(weights, tk),
                    View::rows(&v[ko..], w),
                    false,
                    false,
                );
            }
        });
    (out, probs)
}

/// Gradients of queries, keys and values.
pub struct AttentionGrads {
    /// `[batch, q_steps, width]`.
    pub dq: Vec<f32>,
    /// `[batch, k_steps, width]`.
    pub dk: Vec<f32>,
    /// `[batch, k_steps, width]`.
    pub dv: Vec<f32>,
}

/// The backward pass, from the inputs of [`forward`], its weights `probs` and the result's gradient `dout`.
/// A query whose keys are all blocked has weights that do not depend on the scores: its gradient is 0.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d: &AttentionDims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    blocked: Option<&[f32]>,
    keep: Option<&[f32]>,
    scale: f32,
    dout: &[f32],
) -> AttentionGrads {
    let (w, tq, tk, dh) = (d.width(), d.q_steps, d.k_steps, d.head_dim);
    let mut dq = vec![0.0f32; d.batch * tq * w];
    let mut dk = vec![0.0f32; d.batch * tk * w];
    let mut dv = vec![0.0f32; d.batch * tk * w];
    let (dq_ptr, dk_ptr, dv_ptr) = (
        Shared(dq.as_mut_ptr()),
        Shared(dk.as_mut_ptr()),
        Shared(dv.as_mut_ptr()),
    );
    (0..d.pairs()).into_par_iter().for_each_init(
        || (Vec::new(), Vec::new()),
        |(dropped, ds), pair| {
            let (qo, ko) = d.offsets(pair);
            let p = &probs[pair * d.scores()..(pair + 1) * d.scores()];
            let keep = keep.map(|keep| &keep[pair * d.scores()..(pair + 1) * d.scores()]);
            let weights = after_dropout(p, keep, dropped);
            // dV = weightsᵀ · dOut.
            // SAFETY (all three `matmul_into`): pair (b, h) alone writes its rows and head columns.
            unsafe {
                matmul_into(
                    dv_ptr.at(ko),
                    w,
                    tk,
                    dh,
                    tq,
                    View::transposed(weights, tk),
                    View::rows(&dout[qo..], w),
                    false,
                    false,
                );
            }
            // dWeights = dOut · Vᵀ, then through the dropout and the softmax:
            // dS = P ∘ (dP − Σⱼ dPⱼ Pⱼ), times the scale.
            ds.resize(d.scores(), 0.0);
            matmul(
                ds,
                tk,
                tq,
                tk,
                dh,
                View::rows(&dout[qo..], w),
                View::transposed(&v[ko..], w),
                false,
                false,
            );
            if let Some(keep) = keep {
                ds.iter_mut().zip(keep).for_each(|(g, k)| *g *= k);
            }
            let b = pair / d.heads;
            for (i, (g_row, p_row)) in ds.chunks_exact_mut(tk).zip(p.chunks_exact(tk)).enumerate() {
                let mask = blocked.map(|m| &m[(b * tq + i) * tk..(b * tq + i + 1) * tk]);
                if mask.is_some_and(|m| m.iter().all(|&x| x != 0.0)) {
                    g_row.fill(0.0);
                    continue;
                }
                let mut gp = 0.0;
                dot(g_row, p_row, &mut gp);
                g_row
                    .iter_mut()
                    .zip(p_row)
                    .for_each(|(g, p)| *g = p * (*g - gp) * scale);
            }
            unsafe {
                // dQ = dS · K.
                matmul_into(
                    dq_ptr.at(qo),
                    w,
                    tq,
                    dh,
                    tk,
                    View::rows(ds, tk),
                    View::rows(&k[ko..], w),
                    false,
                    false,
                );
                // dK = dSᵀ · Q.
                matmul_into(
                    dk_ptr.at(ko),
                    w,
                    tk,
                    dh,
                    tq,
                    View::transposed(ds, tk),
                    View::rows(&q[qo..], w),
                    false,
                    false,
                );
            }
        },
    );
    AttentionGrads { dq, dk, dv }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// Attention written out by its definition, in f64.
    fn reference(
        d: &AttentionDims,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        blocked: Option<&[f32]>,
        keep: Option<&[f32]>,
        scale: f32,
    ) -> Vec<f64> {
        let (w, tq, tk, dh) = (d.width(), d.q_steps, d.k_steps, d.head_dim);
        let mut out = vec![0.0f64; d.batch * tq * w];
        for b in 0..d.batch {
            for h in 0..d.heads {
                for i in 0..tq {
                    let open = |j: usize| blocked.is_none_or(|m| m[(b * tq + i) * tk + j] == 0.0);
                    let scores: Vec<f64> = (0..tk)
                        .map(|j| {
                            (0..dh)
                                .map(|c| {
                                    f64::from(q[(b * tq + i) * w + h * dh + c])
                                        * f64::from(k[(b * tk + j) * w + h * dh + c])
                                })
                                .sum::<f64>()
                                * f64::from(scale)
                        })
                        .collect();
                    let any_open = (0..tk).any(open);
                    let max = (0..tk)
                        .filter(|&j| open(j) || !any_open)
                        .map(|j| scores[j])
                        .fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = (0..tk)
                        .map(|j| {
                            if !any_open {
                                1.0
                            } else if open(j) {
                                (scores[j] - max).exp()
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let sum: f64 = e.iter().sum();
                    for j in 0..tk {
                        let mut p = e[j] / sum;
                        if let Some(keep) = keep {
                            p *= f64::from(keep[((b * d.heads + h) * tq + i) * tk + j]);
                        }
                        for c in 0..dh {
                            out[(b * tq + i) * w + h * dh + c] +=
                                p * f64::from(v[(b * tk + j) * w + h * dh + c]);
                        }
                    }
                }
            }
        }
        out
    }

    struct Case {
        d: AttentionDims,
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        blocked: Vec<f32>,
        keep: Vec<f32>,
    }

    /// Odd sizes, a padded key, a causal mask and a fully blocked row, dropout on every other weight.
    fn case() -> Case {
        let d = AttentionDims {
            batch: 2,
            heads: 3,
            q_steps: 4,
            k_steps: 5,
            head_dim: 3,
        };
        let (w, tq, tk) = (d.width(), d.q_steps, d.k_steps);
        let mut blocked = vec![0.0; d.batch * tq * tk];
        for i in 0..tq {
            for j in 0..tk {
                // Batch 0: causal; batch 1: key 4 is padding, and query 3 sees nothing.
                blocked[i * tk + j] = f32::from(j > i);
                blocked[(tq + i) * tk + j] = f32::from(j == 4 || i == 3);
            }
        }
        let keep = (0..d.pairs() * d.scores())
            .map(|i| if i % 3 == 1 { 0.0 } else { 1.5 })
            .collect();
        Case {
            q: values(d.batch * tq * w, 1),
            k: values(d.batch * tk * w, 2),
            v: values(d.batch * tk * w, 3),
            d,
            blocked,
            keep,
        }
    }

    #[test]
    fn the_vectorised_row_loops_equal_their_scalar_definitions() {
        for len in [0, 5, 16, 37, 128] {
            let row = values(len, 4);
            let other = values(len, 5);
            let blocked: Vec<f32> = (0..len).map(|j| f32::from(j % 3 == 1 || j > 30)).collect();
            let mut max = 0.0;
            open_max(&row, &[], &mut max);
            assert_eq!(max, row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)));
            open_max(&row, &blocked, &mut max);
            let open = row.iter().zip(&blocked).filter(|(_, m)| **m == 0.0);
            assert_eq!(max, open.fold(f32::NEG_INFINITY, |a, (&b, _)| a.max(b)));
            let mut got = 0.0;
            dot(&row, &other, &mut got);
            let want: f64 = row.iter().zip(&other).map(|(a, b)| f64::from(a * b)).sum();
            assert!(
                (f64::from(got) - want).abs() < 1e-5,
                "{len}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn the_forward_pass_is_attention_by_its_definition() {
        let c = case();
        for (blocked, keep) in [
            (None, None),
            (Some(&c.blocked[..]), None),
            (Some(&c.blocked[..]), Some(&c.keep[..])),
        ] {
            let (out, _) = forward(&c.d, &c.q, &c.k, &c.v, blocked, keep, 0.7);
            let exact = reference(&c.d, &c.q, &c.k, &c.v, blocked, keep, 0.7);
            for (a, b) in out.iter().zip(&exact) {
                assert!((f64::from(*a) - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn the_gradients_equal_finite_differences() {
        let c = case();
        let (blocked, keep) = (Some(&c.blocked[..]), Some(&c.keep[..]));
        let dout = values(c.q.len(), 9);
        let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            reference(&c.d, q, k, v, blocked, keep, 0.7)
                .iter()
                .zip(&dout)
                .map(|(o, g)| o * f64::from(*g))
                .sum()
        };
        let (_, probs) = forward(&c.d, &c.q, &c.k, &c.v, blocked, keep, 0.7);
        let g = backward(&c.d, &c.q, &c.k, &c.v, &probs, blocked, keep, 0.7, &dout);
        let h = 1e-3f32;
        for (which, grad) in [(0, &g.dq), (1, &g.dk), (2, &g.dv)] {
            for i in 0..grad.len() {
                let mut inputs = [c.q.clone(), c.k.clone(), c.v.clone()];
                inputs[which][i] += h;
                let up = loss(&inputs[0], &inputs[1], &inputs[2]);
                inputs[which][i] -= 2.0 * h;
                let down = loss(&inputs[0], &inputs[1], &inputs[2]);
                let fd = (up - down) / (2.0 * f64::from(h));
                assert!(
                    (fd - f64::from(grad[i])).abs() < 2e-3,
                    "input {which} element {i}: {} vs {fd}",
                    grad[i]
                );
            }
        }
    }
}
