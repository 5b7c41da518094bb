//! Unstructured magnitude pruning.
//!
//! [`MagnitudePruner`] is a burn `Reparameterizer`: every prunable weight (a float parameter of rank 2 or
//! more: `Linear`, convolution and embedding weights; biases and norms are left alone) gets a [`PruneMask`]
//! that zeroes its smallest-magnitude entries, layer by layer or against one global threshold. The mask is
//! a frozen parameter of the module, so it is saved with it, the effective weight `base * mask` is what the
//! forward pass and the optimizer see (the gradient of a pruned entry is zero, and whatever the optimizer
//! does to its stored base, its effective value stays 0), and `Module::materialize` folds the mask in for
//! good. This is PyTorch's `torch.nn.utils.prune` (`weight_orig`, `weight_mask`, `prune.remove`).

use crate::CompressError;
use burn::module::{Module, ModuleVisitor, Param, ParamId, Reparameterization, Reparameterizer};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The mask of one pruned weight: 1 where the weight is kept, 0 where it is pruned.
#[derive(Module, Debug)]
pub struct PruneMask {
    /// The mask, flattened (it takes the weight's shape when applied); never trained.
    pub mask: Param<Tensor<1>>,
}

impl Reparameterization for PruneMask {
    const NAME: &'static str = "prune_mask";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let shape = base.shape();
        base * self.mask.val().reshape(shape)
    }
}

/// Whether the sparsity is reached in every layer or over all prunable weights together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruningScope {
    /// Each weight tensor loses the same fraction of its entries.
    LayerWise,
    /// One magnitude threshold over every prunable weight (layers with many small weights lose more).
    Global,
}

/// Prunes the smallest-magnitude weights to a target sparsity (see the module docs).
#[derive(Debug, Clone)]
pub struct MagnitudePruner {
    sparsity: f64,
    scope: PruningScope,
    /// The magnitude at or below which each prunable weight's entries go, by parameter; computed by
    /// [`MagnitudePruner::prune`] before any mask is made (a weight without one keeps every entry).
    thresholds: HashMap<ParamId, f32>,
}

/// The elements of `t` on the host, as f32; `what` names it in the error.
fn host_values<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>, CompressError> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| CompressError::ReadBack {
            what: what.to_string(),
            message: format!("{e:?}"),
        })
}

/// Is a parameter at `path` with `rank` dimensions a weight to prune?
fn prunable(rank: usize, path: &str) -> bool {
    rank >= 2 && !path.split('.').any(|p| p == PruneMask::NAME)
}

/// The `k`-th smallest of `values` (0-based), without sorting them all.
fn kth_smallest(mut values: Vec<f32>, k: usize) -> f32 {
    let k = k.min(values.len().saturating_sub(1));
    let (_, kth, _) = values.select_nth_unstable_by(k, f32::total_cmp);
    *kth
}

/// The threshold that prunes the fraction `sparsity` of `values`, if it prunes anything.
fn threshold(values: Vec<f32>, sparsity: f64) -> Option<f32> {
    let k = (sparsity * values.len() as f64).floor() as usize;
    (k > 0).then(|| kth_smallest(values, k - 1))
}

/// Reads the magnitudes of every prunable weight once, by parameter.
struct Magnitudes {
    path: Vec<String>,
    weights: Vec<(ParamId, Vec<f32>)>,
    failed: Option<CompressError>,
}

impl ModuleVisitor for Magnitudes {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.path.join(".");
        if self.failed.is_none() && prunable(D, &path) {
            match host_values(param.val().abs(), &path) {
                Ok(values) => self.weights.push((param.id, values)),
                Err(e) => self.failed = Some(e),
            }
        }
    }
}

impl MagnitudePruner {
    /// A pruner zeroing the fraction `sparsity` (in `[0, 1)`) of the weights.
    pub fn new(sparsity: f64, scope: PruningScope) -> Result<Self, CompressError> {
        if !(0.0..1.0).contains(&sparsity) {
            return Err(CompressError::Config {
                what: "sparsity",
                message: format!("{sparsity} is not in [0, 1)"),
            });
        }
        Ok(Self {
            sparsity,
            scope,
            thresholds: HashMap::new(),
        })
    }

    /// Returns `model` with a mask on every prunable weight. A model already pruned must be materialized
    /// first (burn does not nest reparameterizations); its zeros, being the smallest magnitudes, stay pruned.
    pub fn prune<M: Module>(mut self, model: M) -> Result<M, CompressError> {
        // Every threshold is computed here, where a weight that cannot be read back is an error; burn's
        // reparameterizer, which makes the masks, cannot return one.
        let mut magnitudes = Magnitudes {
            path: Vec::new(),
            weights: Vec::new(),
            failed: None,
        };
        model.visit(&mut magnitudes);
        if let Some(e) = magnitudes.failed {
            return Err(e);
        }
        self.thresholds = match self.scope {
            PruningScope::LayerWise => magnitudes
                .weights
                .into_iter()
                .filter_map(|(id, values)| Some((id, threshold(values, self.sparsity)?)))
                .collect(),
            PruningScope::Global => {
                let ids: Vec<ParamId> = magnitudes.weights.iter().map(|(id, _)| *id).collect();
                let all = magnitudes
                    .weights
                    .into_iter()
                    .flat_map(|(_, v)| v)
                    .collect();
                match threshold(all, self.sparsity) {
                    Some(t) => ids.into_iter().map(|id| (id, t)).collect(),
                    None => HashMap::new(),
                }
            }
        };
        Ok(model.apply_reparameterization(self))
    }
}

impl Reparameterizer for MagnitudePruner {
    type Reparam = PruneMask;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<PruneMask>) {
        if !prunable(D, path) {
            return (param, None);
        }
        let weight = param.val();
        let device = weight.device();
        let n = weight.shape().num_elements();
        let magnitudes = weight.abs().reshape([n]);
        let threshold = self.thresholds.get(&param.id).copied();
        let mask = match threshold {
            // Entries at or below the threshold go (ties at the threshold too, as PyTorch's `l1_unstructured`
            // breaks them by position instead: a rare difference of a few entries).
            Some(t) => magnitudes.greater_elem(t).float(),
            None => Tensor::ones([n], &device),
        };
        let mask = PruneMask {
            mask: Param::from_tensor(mask).set_require_grad(false),
        };
        (param, Some(mask))
    }
}

/// How sparse one weight is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSparsity {
    /// The parameter's path in the module (`hidden.0.weight`).
    pub path: String,
    /// Entries.
    pub total: usize,
    /// Entries equal to zero.
    pub zeros: usize,
}

impl LayerSparsity {
    /// Zeros over entries.
    pub fn sparsity(&self) -> f64 {
        self.zeros as f64 / self.total.max(1) as f64
    }
}

/// Counts zeros of effective values. burn visits a masked weight's base, then its mask (at
/// `<weight path>.prune_mask.mask`), so a base waits in `pending` until its mask, if any, arrives.
struct SparsityVisitor {
    path: Vec<String>,
    /// The struct that holds each entered field (burn's `Struct:TypeName`), beside `path`.
    containers: Vec<String>,
    layers: Vec<LayerSparsity>,
    pending: Option<(String, Tensor<1>)>,
}

impl SparsityVisitor {
    fn push(&mut self, path: String, values: Tensor<1>) {
        let total = values.dims()[0];
        let zeros = values.equal_elem(0.0).int().sum().into_scalar::<i64>() as usize;
        self.layers.push(LayerSparsity { path, total, zeros });
    }

    fn flush(&mut self) {
        if let Some((path, values)) = self.pending.take() {
            self.push(path, values);
        }
    }
}

impl ModuleVisitor for SparsityVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.containers.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.path.join(".");
        // A `StaticInt8`'s `ranges` field, wherever the `StaticInt8` is nested, or a per-channel scale.
        let ranges = self.path.last().map(String::as_str) == Some(crate::activations::RANGES)
            && self.containers.last().map(String::as_str)
                == Some(crate::activations::RANGES_CONTAINER);
        let metadata = ranges
            || self
                .path
                .iter()
                .any(|p| p == crate::quantize::ChannelScale::NAME);
        if metadata {
            return;
        }
        let values = param.val();
        let n = values.shape().num_elements();
        let values = values.reshape([n]);
        let mask_of = path
            .strip_suffix(&format!(".{}.mask", PruneMask::NAME))
            .map(str::to_string);
        match (mask_of, self.pending.take()) {
            (Some(weight), Some((pending_path, base))) if weight == pending_path => {
                self.push(pending_path, base * values);
            }
            (mask_of, pending) => {
                self.pending = pending;
                self.flush();
                if mask_of.is_none() {
                    self.pending = Some((path, values));
                }
            }
        }
    }
}

/// The sparsity of every float parameter of `model`, in visiting order, from the effective (masked) values;
/// masks and quantization metadata (per-channel scales, [`crate::StaticInt8`]'s activation ranges) are
/// left out.
pub fn sparsity_report<M: Module>(model: &M) -> Vec<LayerSparsity> {
    let mut visitor = SparsityVisitor {
        path: Vec::new(),
        containers: Vec::new(),
        layers: Vec::new(),
        pending: None,
    };
    model.visit(&mut visitor);
    visitor.flush();
    visitor.layers
}

/// The sparsity of step `step` of Zhu & Gupta's (2017) automated gradual pruning: from `initial` at
/// `start` to `target` at `start + steps`, along `target + (initial − target)(1 − progress)³` (fast first,
/// slow near the target); `initial` before, `target` after.
pub fn agp_sparsity(initial: f64, target: f64, start: usize, steps: usize, step: usize) -> f64 {
    if step <= start {
        return initial;
    }
    let progress = ((step - start) as f64 / steps.max(1) as f64).min(1.0);
    target + (initial - target) * (1.0 - progress).powi(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::Distribution;
    use kiln_models::MlpConfig;

    fn mlp(device: &Device) -> kiln_models::Mlp {
        device.seed(1);
        MlpConfig::new(20, vec![16, 8], 4).init(device).unwrap()
    }

    fn weight_sparsities(report: &[LayerSparsity]) -> Vec<f64> {
        report
            .iter()
            .filter(|l| l.path.ends_with("weight"))
            .map(LayerSparsity::sparsity)
            .collect()
    }

    #[test]
    fn layer_wise_pruning_reaches_the_sparsity_in_every_layer_and_spares_biases() {
        let device = Device::flex();
        // One model, cloned: flex's random stream is global, so a second `mlp()` built while other tests
        // draw from it need not have the same weights.
        let dense = mlp(&device);
        let pruned = MagnitudePruner::new(0.75, PruningScope::LayerWise)
            .unwrap()
            .prune(dense.clone())
            .unwrap();
        let report = sparsity_report(&pruned);
        assert_eq!(report.len(), 6, "{report:?}");
        for layer in &report {
            if layer.path.ends_with("weight") {
                assert_eq!(layer.zeros, layer.total * 3 / 4, "{layer:?}");
            } else {
                assert_eq!(layer.zeros, 0, "{layer:?}");
            }
        }
        // The kept weights are the largest of each layer.
        let w = dense.hidden[0].weight.val().abs();
        let kept = pruned.hidden[0].weight.val().abs();
        let smallest_kept = kept
            .clone()
            .mask_fill(kept.clone().equal_elem(0.0), f32::MAX)
            .min()
            .into_scalar::<f32>();
        let pruned_max = w
            .mask_fill(kept.not_equal_elem(0.0), 0.0)
            .max()
            .into_scalar::<f32>();
        assert!(
            pruned_max <= smallest_kept,
            "{pruned_max} > {smallest_kept}"
        );
    }

    #[test]
    fn global_pruning_reaches_the_sparsity_over_all_weights() {
        let device = Device::flex();
        let pruned = MagnitudePruner::new(0.9, PruningScope::Global)
            .unwrap()
            .prune(mlp(&device))
            .unwrap();
        let report = sparsity_report(&pruned);
        let (zeros, total) = report
            .iter()
            .filter(|l| l.path.ends_with("weight"))
            .fold((0, 0), |(z, t), l| (z + l.zeros, t + l.total));
        assert_eq!(zeros, total * 9 / 10);
        // Layers differ: one threshold, not one fraction per layer.
        let per_layer = weight_sparsities(&report);
        assert!(
            per_layer.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-3),
            "{per_layer:?}"
        );
        assert!(MagnitudePruner::new(1.0, PruningScope::Global).is_err());
    }

    #[test]
    fn masks_stay_applied_through_optimizer_steps_and_can_be_made_permanent() {
        let device = Device::flex().autodiff();
        let mut model = MagnitudePruner::new(0.5, PruningScope::LayerWise)
            .unwrap()
            .prune(mlp(&device))
            .unwrap();
        let before = weight_sparsities(&sparsity_report(&model));
        let mut optim = AdamConfig::new().init();
        for _ in 0..5 {
            let x = Tensor::<2>::random([8, 20], Distribution::Default, &device);
            let loss = model.try_forward(x).unwrap().powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        let after = weight_sparsities(&sparsity_report(&model));
        assert_eq!(before, after);
        assert!(after.iter().all(|&s| (s - 0.5).abs() < 1e-9), "{after:?}");
        let params_with_masks = model.num_params();
        let permanent = model.valid().materialize();
        assert!(permanent.num_params() < params_with_masks);
        assert_eq!(weight_sparsities(&sparsity_report(&permanent)), after);
        // Pruning again to a higher sparsity keeps the old zeros.
        let more = MagnitudePruner::new(0.8, PruningScope::LayerWise)
            .unwrap()
            .prune(permanent.clone())
            .unwrap();
        let old = permanent.hidden[0].weight.val().equal_elem(0.0);
        let new = more.hidden[0].weight.val().equal_elem(0.0);
        assert!(!old.bool_and(new.bool_not()).any().into_scalar::<bool>());
    }

    #[test]
    fn agp_rises_fast_then_levels_off() {
        let s: Vec<f64> = (0..=10).map(|t| agp_sparsity(0.0, 0.9, 0, 10, t)).collect();
        assert_eq!(s[0], 0.0);
        assert!((s[10] - 0.9).abs() < 1e-12);
        assert!((s[5] - 0.9 * (1.0 - 0.125)).abs() < 1e-12);
        assert!(s.windows(2).all(|w| w[1] >= w[0]));
        assert!(s[1] - s[0] > s[10] - s[9]);
        assert_eq!(agp_sparsity(0.0, 0.9, 0, 10, 20), 0.9);
    }
}
