//! One Adam or AdamW update of a parameter tensor as a single pass over its elements.
//!
//! burn's `Adam` and `AdamW` update each parameter with about fifteen generic tensor ops (each a pass over
//! memory and a fresh buffer): for the 400k-weight layer of an MLP that is more memory traffic per step than
//! its GEMMs. [`adam_step`] reads the parameter, its gradient and both moments once and writes the three
//! results once, in place where the buffers are not shared. It does burn's arithmetic in burn's order
//! (`burn-optim`'s `adam.rs` and `adamw.rs`), so the updates equal burn's.

use crate::flex::{dense, slice, tensor};
use crate::simd::multiversion;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DType, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use rayon::prelude::*;

/// Elements per block of work.
const BLOCK: usize = 1 << 14;

/// Which of burn's two update rules, with the settings of this step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// burn's `Adam`: `update = m₁·(√b₂ / b₁) / (√m₂ + ε·√b₂)` with the bias corrections `bᵢ = 1 − βᵢᵗ`,
    /// and coupled L2 decay (`g += λ·θ`) when `weight_decay` is non-zero.
    Adam {
        /// Coupled L2 weight decay λ (0 = none).
        weight_decay: f32,
    },
    /// burn's `AdamW`: `update = (m₁ / b₁) / (√(m₂ / b₂) + ε)` and decoupled decay `θ ← θ·(1 − lr·λ)`.
    AdamW {
        /// Decoupled weight decay λ.
        weight_decay: f32,
    },
}

/// The hyper-parameters of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// The update rule.
    pub rule: Rule,
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta_1: f32,
    /// Second-moment decay β₂.
    pub beta_2: f32,
    /// ε.
    pub epsilon: f32,
    /// The step number after this update (1 for the first update).
    pub time: usize,
}

/// The scalars of a step, as burn derives them.
#[derive(Debug, Clone, Copy)]
struct Scalars {
    beta_1: f32,
    one_minus_beta_1: f32,
    beta_2: f32,
    one_minus_beta_2: f32,
    /// Adam: coupled decay λ; AdamW: unused.
    coupled_decay: f32,
    adamw: bool,
    /// Adam: `√b₂ / b₁`; AdamW: `b₁`.
    a: f32,
    /// Adam: `ε·√b₂`; AdamW: `b₂`.
    b: f32,
    /// AdamW: ε.
    epsilon: f32,
    lr: f32,
    /// AdamW: `1 − lr·λ`, or `None` where burn skips the multiplication (`lr·λ = 0`).
    decay_factor: Option<f32>,
}

impl Scalars {
    fn new(step: &AdamStep) -> Self {
        let time = step.time as i32;
        let bias_1 = 1.0 - step.beta_1.powi(time);
        let bias_2 = 1.0 - step.beta_2.powi(time);
        let (coupled_decay, adamw, a, b, decay_factor) = match step.rule {
            Rule::Adam { weight_decay } => {
                let bias_2_sqrt = bias_2.sqrt();
                (
                    weight_decay,
                    false,
                    bias_2_sqrt / bias_1,
                    step.epsilon * bias_2_sqrt,
                    None,
                )
            }
            Rule::AdamW { weight_decay } => {
                let rate = step.lr * weight_decay as f64;
                let factor = (rate != 0.0).then_some((1.0 - rate) as f32);
                (0.0, true, bias_1, bias_2, factor)
            }
        };
        Self {
            beta_1: step.beta_1,
            one_minus_beta_1: 1.0 - step.beta_1,
            beta_2: step.beta_2,
            one_minus_beta_2: 1.0 - step.beta_2,
            coupled_decay,
            adamw,
            a,
            b,
            epsilon: step.epsilon,
            lr: step.lr as f32,
            decay_factor,
        }
    }
}

/// One update of `param` from `grad` and the moments of the previous steps (`None` before the first).
/// Returns the new parameter and moments, each of `param`'s shape.
///
/// Call only where [`crate::on_flex_f32`] holds for every tensor, and on tensors without autodiff (an
/// optimizer's inner tensors).
pub fn adam_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
    step: AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let device = param.device();
    let (m1, m2) = moments.unwrap_or_else(|| {
        let none = || Tensor::<D>::empty(shape_of_empty::<D>(), &device);
        (none(), none())
    });
    let (p, m1, m2) = <Dispatch as FusedAdamOps>::fused_adam(
        param.into_dispatch(),
        grad.into_dispatch(),
        m1.into_dispatch(),
        m2.into_dispatch(),
        step,
    );
    // The op returns each tensor in `param`'s shape.
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m1),
        Tensor::from_dispatch(m2),
    )
}

/// A shape of rank `D` with no elements (the "no moments yet" placeholder).
fn shape_of_empty<const D: usize>() -> [usize; D] {
    let mut dims = [1; D];
    dims[0] = 0;
    dims
}

/// The fused optimizer step, on the backends that have it.
#[backend_extension(Flex)]
pub trait FusedAdamOps: Backend {
    /// See [`adam_step`]; `m1` and `m2` are empty before the first step.
    fn fused_adam(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        m1: FloatTensor<Self>,
        m2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

multiversion! {
    /// The update of one block, in place; `m1`, `m2` hold the previous moments (zeros before the first
    /// step, which gives burn's first-step values exactly: `0·β + x = x`).
    fn update_block(
        param: &mut [f32],
        m1: &mut [f32],
        m2: &mut [f32],
        grad: &[f32],
        s: &Scalars,
    ) {
        let n = param.len();
        let (m1, m2, grad) = (&mut m1[..n], &mut m2[..n], &grad[..n]);
        let s = *s;
        for j in 0..n {
            let mut g = grad[j];
            if s.coupled_decay != 0.0 {
                // burn's `WeightDecay::transform`: `θ·λ + g`.
                g += param[j] * s.coupled_decay;
            }
            let first = m1[j] * s.beta_1 + g * s.one_minus_beta_1;
            let second = m2[j] * s.beta_2 + (g * g) * s.one_minus_beta_2;
            m1[j] = first;
            m2[j] = second;
            if s.adamw {
                let update = (first / s.a) / ((second / s.b).sqrt() + s.epsilon);
                let decayed = match s.decay_factor {
                    Some(f) => param[j] * f,
                    None => param[j],
                };
                param[j] = decayed - update * s.lr;
            } else {
                let update = (first * s.a) / (second.sqrt() + s.b);
                param[j] -= update * s.lr;
            }
        }
    }
}

/// `t` as a dense tensor of `n` elements starting at offset 0 that can be written: `t` itself where it
/// already is one (then [`FlexTensor::storage_mut`] writes in place unless another tensor shares the buffer,
/// and copies it once if one does), a dense copy otherwise; zeros of `dims` if `t` is empty.
fn writable(t: FlexTensor, n: usize, dims: &[usize]) -> FlexTensor {
    if t.layout().shape().num_elements() == 0 {
        return tensor(vec![0.0; n], dims);
    }
    // `dense` is an `Arc` clone of a contiguous tensor: drop `t` so that the buffer can stay unshared.
    let d = dense(&t);
    drop(t);
    let whole = d.layout().contiguous_offsets() == Some((0, n)) && d.storage::<f32>().len() == n;
    if whole {
        d
    } else {
        tensor(slice(&d).to_vec(), dims)
    }
}

impl FusedAdamOps for Flex {
    fn fused_adam(
        param: FlexTensor,
        grad: FlexTensor,
        m1: FlexTensor,
        m2: FlexTensor,
        step: AdamStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        assert_eq!(param.dtype(), DType::F32, "the fused Adam step is f32 only");
        let dims = param.layout().shape().to_vec();
        let n = param.layout().shape().num_elements();
        let grad = dense(&grad);
        let grad = slice(&grad);
        assert_eq!(grad.len(), n, "gradient and parameter sizes differ");
        let mut p = writable(param, n, &dims);
        let mut first = writable(m1, n, &dims);
        let mut second = writable(m2, n, &dims);
        let scalars = Scalars::new(&step);
        p.storage_mut::<f32>()
            .par_chunks_mut(BLOCK)
            .zip(first.storage_mut::<f32>().par_chunks_mut(BLOCK))
            .zip(second.storage_mut::<f32>().par_chunks_mut(BLOCK))
            .zip(grad.par_chunks(BLOCK))
            .for_each(|(((p, m1), m2), g)| update_block(p, m1, m2, g, &scalars));
        (p, first, second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    fn flex(v: Vec<f32>, dims: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(burn::tensor::TensorData::new(v, dims), &Device::flex())
    }

    fn elements(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32 tensor")
    }

    #[test]
    fn two_adam_steps_equal_the_formula_and_leave_shared_buffers_alone() {
        let dims = [7, 5];
        let (p0, g1, g2) = (values(35, 1), values(35, 2), values(35, 3));
        let param = flex(p0.clone(), dims);
        let kept = param.clone(); // shares the buffer: the step must not write into it
        let step = |time, lr| AdamStep {
            rule: Rule::Adam { weight_decay: 0.1 },
            lr,
            beta_1: 0.9,
            beta_2: 0.99,
            epsilon: 1e-5,
            time,
        };
        let (p1, m1, m2) = adam_step(param, flex(g1.clone(), dims), None, step(1, 0.01));
        let (p2, _, _) = adam_step(p1, flex(g2.clone(), dims), Some((m1, m2)), step(2, 0.005));
        assert_eq!(elements(kept), p0, "a shared parameter buffer was written");

        // Adam with coupled decay, in f64.
        let (mut p, mut a, mut b) = (
            p0.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            vec![0f64; 35],
            vec![0f64; 35],
        );
        for (t, (g, lr)) in [(&g1, 0.01), (&g2, 0.005)].into_iter().enumerate() {
            let t = t as i32 + 1;
            for j in 0..35 {
                let g = g[j] as f64 + 0.1 * p[j];
                a[j] = 0.9 * a[j] + 0.1 * g;
                b[j] = 0.99 * b[j] + 0.01 * g * g;
                let (c1, c2) = (1.0 - 0.9f64.powi(t), 1.0 - 0.99f64.powi(t));
                p[j] -= lr * (a[j] / c1) / ((b[j] / c2).sqrt() + 1e-5);
            }
        }
        for (got, want) in elements(p2).iter().zip(&p) {
            assert!((*got as f64 - want).abs() < 1e-5, "{got} vs {want}");
        }
    }
}
