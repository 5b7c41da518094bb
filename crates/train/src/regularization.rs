//! L1 and L2 penalties over all weights of a model, added to the loss.
//!
//! burn has L2 only as optimizer weight decay and no L1 at all; a penalty in the loss works with every
//! optimizer and is what `torch`'s users write by hand. "Weights" are the parameters of rank ≥ 2 (dense and
//! convolution kernels, embeddings); biases and normalisation scales are left alone, as is customary.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Penalty coefficients: the loss becomes `loss + l1 · Σ|w| + l2 · Σ w²` over all weights `w`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Regularization {
    /// L1 (lasso) coefficient.
    #[serde(default)]
    pub l1: f64,
    /// L2 (ridge) coefficient. Note `l2 · Σ w²` has gradient `2 · l2 · w`, so it equals PyTorch's
    /// `weight_decay = 2 · l2` under plain SGD.
    #[serde(default)]
    pub l2: f64,
}

impl Regularization {
    /// No penalty.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether any penalty is set.
    pub fn is_active(&self) -> bool {
        self.l1 != 0.0 || self.l2 != 0.0
    }

    /// The penalty of `module`'s weights, shape `[1]`, differentiable; `None` when no penalty is set.
    pub fn penalty<M: Module>(&self, module: &M) -> Option<Tensor<1>> {
        if !self.is_active() {
            return None;
        }
        let mut visitor = PenaltyVisitor {
            config: *self,
            total: None,
        };
        module.visit(&mut visitor);
        visitor.total
    }
}

/// Sums the penalty over the weights a module visit meets.
struct PenaltyVisitor {
    config: Regularization,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for PenaltyVisitor {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D < 2 {
            return;
        }
        let w = param.val();
        let mut term: Option<Tensor<1>> = None;
        if self.config.l1 != 0.0 {
            term = Some(w.clone().abs().sum().mul_scalar(self.config.l1));
        }
        if self.config.l2 != 0.0 {
            let l2 = w.square().sum().mul_scalar(self.config.l2);
            term = Some(match term {
                Some(t) => t + l2,
                None => l2,
            });
        }
        if let Some(term) = term {
            self.total = Some(match self.total.take() {
                Some(total) => total + term,
                None => term,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    fn layer(device: &Device) -> Linear {
        let mut l = LinearConfig::new(2, 2).init(device);
        l.weight = Param::from_tensor(Tensor::from_data([[1.0, -2.0], [0.5, 0.0]], device));
        l.bias = Some(Param::from_tensor(Tensor::from_data([10.0, -10.0], device)));
        l
    }

    #[test]
    fn penalty_covers_weights_not_biases() {
        let d = Device::flex();
        let r = Regularization { l1: 0.1, l2: 0.01 };
        let p = r.penalty(&layer(&d)).unwrap().into_scalar::<f64>();
        let expected = 0.1 * 3.5 + 0.01 * 5.25;
        assert!((p - expected).abs() < 1e-6, "{p} vs {expected}");
        assert!(Regularization::none().penalty(&layer(&d)).is_none());
    }

    /// The autodiff gradient of the penalty equals a central finite difference of it.
    #[test]
    fn penalty_gradient_matches_finite_difference() {
        let d = Device::flex().autodiff();
        let r = Regularization { l1: 0.3, l2: 0.7 };
        let base = [[1.0f32, -2.0], [0.5, 0.25]];
        let l = layer(&d);
        let l = Linear {
            weight: Param::from_tensor(Tensor::from_data(base, &d).require_grad()),
            ..l
        };
        let grads = r.penalty(&l).unwrap().backward();
        let analytic = l
            .weight
            .grad(&grads)
            .unwrap()
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();

        let plain = Device::flex();
        let value_at = |w: [[f32; 2]; 2]| -> f64 {
            let mut m = layer(&plain);
            m.weight = Param::from_tensor(Tensor::from_data(w, &plain));
            r.penalty(&m).unwrap().into_scalar::<f64>()
        };
        let eps = 1e-3;
        for (k, &g) in analytic.iter().enumerate() {
            let (i, j) = (k / 2, k % 2);
            let (mut plus, mut minus) = (base, base);
            plus[i][j] += eps;
            minus[i][j] -= eps;
            let numeric = (value_at(plus) - value_at(minus)) / (2.0 * eps as f64);
            assert!(
                (g as f64 - numeric).abs() < 1e-2,
                "w[{i}][{j}]: {g} vs {numeric}"
            );
        }
    }
}
