//! A client's round: local training from the global model on the client's own examples.

use crate::{FederatedError, setting};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use kiln_core::{StepOutput, Supervised};
use kiln_train::OptimizerConfig;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::HashMap;

/// How each client trains in a round.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalTraining {
    /// Local epochs E (passes over the client's examples).
    pub epochs: usize,
    /// Local batch size B (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// The client optimizer's learning rate.
    pub lr: f64,
    /// The client optimizer (a fresh one each round: clients keep no state between rounds).
    pub optimizer: OptimizerConfig,
    /// FedProx's proximal weight μ: each step's gradient gets μ·(w − w_global) added, the gradient of
    /// μ/2·‖w − w_global‖². 0 is FedAvg's plain local training.
    pub proximal_mu: f32,
}

impl LocalTraining {
    /// McMahan et al.'s local training: plain SGD with learning rate `lr`, E epochs of batches of B.
    pub fn sgd(epochs: usize, batch_size: usize, lr: f64) -> Self {
        Self {
            epochs,
            batch_size,
            lr,
            optimizer: OptimizerConfig::Sgd {
                momentum: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            proximal_mu: 0.0,
        }
    }

    /// The same with FedProx's proximal term μ.
    pub fn with_proximal_mu(mut self, mu: f32) -> Self {
        self.proximal_mu = mu;
        self
    }

    /// Refuses settings no client could train with.
    pub fn check(&self) -> Result<(), FederatedError> {
        if self.epochs == 0 {
            return Err(setting("local_epochs", 0, "at least one local epoch"));
        }
        if self.batch_size == 0 {
            return Err(setting("batch", 0, "a batch of at least one example"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(setting("lr", self.lr, "a finite learning rate > 0"));
        }
        if !(self.proximal_mu >= 0.0 && self.proximal_mu.is_finite()) {
            return Err(setting("proximal_mu", self.proximal_mu, "finite and ≥ 0"));
        }
        if self.optimizer.is_full_batch() {
            return Err(setting(
                "optimizer",
                "full_batch_gd",
                "local training takes mini-batches: use sgd with batch = the client's size",
            ));
        }
        Ok(())
    }
}

/// The batches (example indices) of `epochs` local epochs over `indices`: each epoch a fresh shuffle
/// from `rng`, cut into batches of `batch_size`.
pub fn local_batches(
    indices: &[usize],
    epochs: usize,
    batch_size: usize,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut order = indices.to_vec();
    for _ in 0..epochs {
        order.shuffle(rng);
        out.extend(order.chunks(batch_size.max(1)).map(<[usize]>::to_vec));
    }
    out
}

/// The global model's parameters (off the autodiff graph, flattened), by id: FedProx's anchor.
struct Anchor(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for Anchor {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().inner();
        let n = value.shape().num_elements();
        self.0.insert(param.id, value.reshape([n]));
    }
}

/// Every float parameter as a new autodiff leaf over the same values (no copy), tracked as before.
struct FreshLeaves;

impl ModuleMapper for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let tracked = t.is_require_grad();
            Tensor::from_inner(t.inner()).set_require_grad(tracked)
        })
    }
}

/// Adds μ·(w − w_global) to every parameter's gradient.
struct Proximal<'a> {
    anchor: &'a HashMap<ParamId, Tensor<1>>,
    grads: &'a mut GradientsParams,
    mu: f32,
}

impl ModuleVisitor for Proximal<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (Some(anchor), Some(grad)) =
            (self.anchor.get(&param.id), self.grads.remove::<D>(param.id))
        else {
            return;
        };
        let w = param.val().inner();
        let pull = (w.clone() - anchor.clone().reshape(w.shape())) * self.mu;
        self.grads.register(param.id, grad + pull);
    }
}

/// `global` trained on `batches` of `dataset` (indices, as [`local_batches`] gives them) made into model
/// batches by `batcher` on `device`, with `local`'s optimizer and proximal term. `client` names the client
/// in errors.
pub fn train_client<M, I, D, B>(
    global: &M,
    dataset: &D,
    batcher: &B,
    device: &Device,
    batches: &[Vec<usize>],
    local: &LocalTraining,
    client: usize,
) -> Result<M, FederatedError>
where
    M: Supervised,
    D: Dataset<I> + ?Sized,
    B: Batcher<I, M::Batch>,
{
    local.check()?;
    let mut optimizer = local.optimizer.init(None);
    let anchor = (local.proximal_mu > 0.0).then(|| {
        let mut anchor = Anchor(HashMap::new());
        global.visit(&mut anchor);
        anchor.0
    });
    // Each client trains on leaves of its own: a clone of `global` would share its parameters' autodiff
    // nodes with every other client of the round, and burn-autodiff 0.22.1 then merges the clients'
    // graphs and can deadlock when one client's backward cleans up while another registers an op (seen
    // with two clients on two threads).
    let mut model = global.clone().map(&mut FreshLeaves);
    for indices in batches {
        let items = indices
            .iter()
            .map(|&i| {
                dataset.get(i).map_err(|e| {
                    FederatedError::Partition(format!(
                        "client {client}: example {i} of a dataset of {}: {e}",
                        dataset.len()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = batcher.batch(items, device);
        let loss = model.forward_step(batch).loss();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(anchor) = &anchor {
            model.visit(&mut Proximal {
                anchor,
                grads: &mut grads,
                mu: local.proximal_mu,
            });
        }
        model = optimizer.step(local.lr, model, grads);
    }
    Ok(model)
}
