//! Integrated gradients (Sundararajan et al. 2017; Captum's `IntegratedGradients`).

use crate::{ExplainError, Explainer};
use burn::module::Module;
use burn::prelude::*;
use kiln_core::{ClassificationOutput, Supervised};
use kiln_data::ImageBatch;

/// How the path integral is approximated (Captum's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quadrature {
    /// Gauss–Legendre nodes and weights on [0, 1] (Captum's default, `gausslegendre`).
    #[default]
    GaussLegendre,
    /// The trapezoid rule on evenly spaced points (`riemann_trapezoid`).
    RiemannTrapezoid,
}

impl Quadrature {
    /// The points α in [0, 1] and their weights, `steps` of them, as Captum computes them.
    pub fn points(self, steps: usize) -> Vec<(f64, f64)> {
        let n = steps.max(2);
        match self {
            Quadrature::RiemannTrapezoid => (0..n)
                .map(|i| {
                    let edge = i == 0 || i == n - 1;
                    let w = if edge { 0.5 } else { 1.0 } / (n - 1) as f64;
                    (i as f64 / (n - 1) as f64, w)
                })
                .collect(),
            Quadrature::GaussLegendre => gauss_legendre(n)
                .into_iter()
                .map(|(x, w)| (0.5 * (x + 1.0), 0.5 * w))
                .collect(),
        }
    }
}

/// Gauss–Legendre nodes and weights on [−1, 1], ascending (numpy's `leggauss`): Newton's method on the
/// Legendre polynomial from Chebyshev starting points. Written by hand: no maintained crate offers it.
fn gauss_legendre(n: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut x = -(std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 1.0;
        for _ in 0..100 {
            // P_n(x) and P_n'(x) by the three-term recurrence.
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            let p = if n == 0 {
                1.0
            } else if n == 1 {
                x
            } else {
                p1
            };
            let prev = if n == 1 { 1.0 } else { p0 };
            derivative = n as f64 * (x * p - prev) / (x * x - 1.0);
            let step = p / derivative;
            x -= step;
            if step.abs() < 1e-15 {
                break;
            }
        }
        out.push((x, 2.0 / ((1.0 - x * x) * derivative * derivative)));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Integrated-gradients attributions and how far they are from complete.
#[derive(Debug, Clone)]
pub struct IntegratedGradients {
    /// `[batch, height, width]`.
    pub attributions: Tensor<3>,
    /// Per image, Σ attributions − (f(x) − f(baseline)): zero for an exact integral (completeness).
    pub delta: Vec<f32>,
}

impl<M> Explainer<M>
where
    M: Supervised<Batch = ImageBatch, Output = ClassificationOutput> + Module,
{
    /// Integrated gradients from `baselines` (same shape as `images`; zeros, blurred or noisy images…)
    /// along the straight path, with `steps` points of `quadrature`.
    pub fn integrated_gradients(
        &self,
        images: Tensor<3>,
        baselines: Tensor<3>,
        targets: &[usize],
        steps: usize,
        quadrature: Quadrature,
    ) -> Result<IntegratedGradients, ExplainError> {
        let device = images.device();
        let baselines = baselines.to_device(&device);
        if baselines.dims() != images.dims() {
            return Err(ExplainError::Argument(format!(
                "baselines {:?} for images {:?}",
                baselines.dims(),
                images.dims()
            )));
        }
        let [n, h, w] = images.dims();
        let points = quadrature.points(steps);
        let diff = images.clone() - baselines.clone();
        // All points of all images in one batch: image-major, point-minor.
        let path: Vec<Tensor<3>> = points
            .iter()
            .map(|&(alpha, _)| baselines.clone() + diff.clone() * alpha)
            .collect();
        let k = points.len();
        let stacked = Tensor::stack::<4>(path, 1).reshape([n * k, h, w]);
        let repeated: Vec<usize> = targets
            .iter()
            .flat_map(|&t| std::iter::repeat_n(t, k))
            .collect();
        let (g, _) = self.gradient(stacked, &repeated)?;
        let g = g.reshape([n, k, h, w]);
        let weights: Vec<f32> = points.iter().map(|&(_, w)| w as f32).collect();
        let weights = Tensor::<1>::from_data(TensorData::new(weights, [k]), &g.device())
            .reshape([1, k, 1, 1]);
        let mean_grad = (g * weights).sum_dim(1).reshape([n, h, w]);
        let attributions = diff.to_device(&mean_grad.device()) * mean_grad;
        let gap = self.target_scores(images, targets)? - self.target_scores(baselines, targets)?;
        let sums = attributions.clone().sum_dim(2).sum_dim(1).reshape([n]);
        let delta = (sums - gap.to_device(&attributions.device()))
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| ExplainError::Argument(format!("{e:?}")))?;
        Ok(IntegratedGradients {
            attributions,
            delta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_matches_numpys_leggauss() {
        // numpy.polynomial.legendre.leggauss(3): nodes ±sqrt(3/5), 0; weights 5/9, 8/9, 5/9.
        let g = gauss_legendre(3);
        let r = (0.6f64).sqrt();
        for ((x, w), (ex, ew)) in g
            .iter()
            .zip([(-r, 5.0 / 9.0), (0.0, 8.0 / 9.0), (r, 5.0 / 9.0)])
        {
            assert!((x - ex).abs() < 1e-12 && (w - ew).abs() < 1e-12, "{g:?}");
        }
        // 50 points integrate x^7 on [0, 1] exactly (1/8) and their weights sum to 1.
        let p = Quadrature::GaussLegendre.points(50);
        assert!((p.iter().map(|(_, w)| w).sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((p.iter().map(|(a, w)| w * a.powi(7)).sum::<f64>() - 0.125).abs() < 1e-12);
        let t = Quadrature::RiemannTrapezoid.points(5);
        assert_eq!(t[0], (0.0, 0.125));
        assert_eq!(t[4], (1.0, 0.125));
    }
}
