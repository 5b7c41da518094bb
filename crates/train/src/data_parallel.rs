//! Data-parallel training across processes: what [`crate::fit`] does when it is one of several ranks.
//!
//! burn 0.22.1's only collectives are NCCL's, on CUDA; its CPU backends implement none. Kiln's ranks
//! exchange through a [`Collective`] (MPI in `kiln-mpi`, so that this crate links no system library), as
//! PyTorch's DistributedDataParallel does through its process group:
//! - before the first step every rank takes rank 0's parameters ([`DataParallel::broadcast_parameters`]);
//! - each rank trains on its shard of every epoch's shuffled order (PyTorch's `DistributedSampler`, see
//!   [`crate::epoch_loader`]), with `batch_size / ranks` items a step;
//! - after every backward pass (or every `grad_accumulation` of them) the gradients are summed over the
//!   ranks in large buckets and divided by the number of contributions ([`GradientSync`]), so that every
//!   rank takes the same optimizer step a single process would take on the union of the ranks' batches;
//! - every epoch starts with a one-number exchange in which any rank may say it stops (rank 0 after early
//!   stopping or a non-finite loss), so all ranks leave the loop at the same epoch boundary and none waits
//!   forever for a partner that left. A rank that stops in the middle of an epoch ends the whole job.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use kiln_core::params::{parameter_values, with_parameter_values};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Gradients are exchanged in buckets of at most this many numbers (16 MiB of `f32`), so that one
/// exchange's buffers stay bounded however large the model (PyTorch's DDP uses 25 MiB buckets).
pub const BUCKET_ELEMENTS: usize = 1 << 22;

/// A rank's part of the stop word when it stops on an error (1 when it stops normally): the sum tells
/// the others whether any rank failed (exactly, in `f32`, for fewer than a million ranks).
const FAILED: f32 = 1.0e6;

/// The collective operations of a group of ranks (processes), each of which runs the same program. Every
/// rank must call the same operations in the same order with buffers of the same length.
pub trait Collective: Send + Sync {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Replaces `buffer`, on every rank, with its element-wise sum over all ranks.
    fn all_reduce_sum(&self, buffer: &mut [f32]);
    /// Replaces `bytes`, on every rank, with rank 0's `bytes` (resized to their length).
    fn broadcast(&self, bytes: &mut Vec<u8>);
    /// Ends every rank of the job after printing `message` (a rank that cannot go on: the others would
    /// otherwise wait for it forever).
    fn abort(&self, message: &str) -> !;
}

/// A group of ranks training one model together, and where the current epoch stands.
#[derive(Clone)]
pub struct DataParallel {
    collective: Arc<dyn Collective>,
    epoch: Arc<EpochState>,
}

#[derive(Default)]
struct EpochState {
    /// Some rank has stopped: no further exchange happens.
    stopped: AtomicBool,
    /// Another rank stopped on an error.
    peer_failed: AtomicBool,
    /// Inside an epoch, between its start and its last gradient exchange.
    in_epoch: AtomicBool,
    /// Gradient exchanges so far in this epoch, and how many an epoch has.
    exchanges: AtomicUsize,
    exchanges_per_epoch: AtomicUsize,
}

impl fmt::Debug for DataParallel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DataParallel(rank {} of {})",
            self.collective.rank(),
            self.collective.size()
        )
    }
}

impl DataParallel {
    /// Training through `collective`.
    pub fn new(collective: Arc<dyn Collective>) -> Self {
        Self {
            collective,
            epoch: Arc::default(),
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.collective.rank()
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.collective.size()
    }

    /// Whether this is rank 0, the one that validates, checkpoints into the run folder and reports.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// The collective itself.
    pub fn collective(&self) -> &dyn Collective {
        &*self.collective
    }

    /// Ends the job with `message` (see [`Collective::abort`]).
    pub fn abort(&self, message: &str) -> ! {
        self.collective.abort(message)
    }

    /// `module` with rank 0's parameter values on every rank.
    pub fn broadcast_parameters<M: Module>(&self, module: M) -> M {
        let mut values = parameter_values(&module).unwrap_or_else(|e| {
            self.abort(&format!("rank {}: {e}", self.rank()));
        });
        let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.collective.broadcast(&mut bytes);
        if bytes.len() != values.len() * 4 {
            self.abort(&format!(
                "rank {}: rank 0's model has {} parameters, this rank's {}: the ranks run different \
                 models",
                self.rank(),
                bytes.len() / 4,
                values.len()
            ));
        }
        for (v, b) in values.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        with_parameter_values(module, &values).unwrap_or_else(|e| {
            self.abort(&format!("rank {}: {e}", self.rank()));
        })
    }

    /// Rank 0's `bytes` on every rank (for small messages: a resume epoch, checkpoint files).
    pub fn broadcast_bytes(&self, bytes: &mut Vec<u8>) {
        self.collective.broadcast(bytes);
    }

    /// Sets how many gradient exchanges one epoch has (its optimizer steps).
    pub(crate) fn set_exchanges_per_epoch(&self, n: usize) {
        self.epoch.exchanges_per_epoch.store(n, Ordering::SeqCst);
    }

    /// Called as an epoch starts: whether every rank goes on (`false` once any rank has stopped).
    pub(crate) fn begin_epoch(&self) -> bool {
        if self.epoch.stopped.load(Ordering::SeqCst) {
            return false;
        }
        let mut word = [0.0f32];
        self.collective.all_reduce_sum(&mut word);
        if word[0] > 0.0 {
            self.epoch.stopped.store(true, Ordering::SeqCst);
            self.epoch
                .peer_failed
                .store(word[0] >= FAILED, Ordering::SeqCst);
            return false;
        }
        self.epoch.exchanges.store(0, Ordering::SeqCst);
        let per_epoch = self.epoch.exchanges_per_epoch.load(Ordering::SeqCst);
        self.epoch.in_epoch.store(per_epoch > 0, Ordering::SeqCst);
        true
    }

    /// Whether the ranks have stopped (the epoch now running, if any, was emptied by the stop word).
    pub(crate) fn has_stopped(&self) -> bool {
        self.epoch.stopped.load(Ordering::SeqCst)
    }

    /// Called when this rank's training loop has ended, with the error that ended it if any: tells the
    /// others, at their next epoch start or their own end, that it stops. A rank that ends in the middle
    /// of an epoch ends the job (the others are inside a gradient exchange that would never complete).
    /// Returns whether another rank stopped on an error.
    pub(crate) fn finish(&self, error: Option<&str>) -> bool {
        if self.epoch.in_epoch.load(Ordering::SeqCst) {
            self.abort(&format!(
                "rank {} stopped in the middle of an epoch ({}); ending all ranks",
                self.rank(),
                error.unwrap_or("interrupted")
            ));
        }
        if !self.epoch.stopped.swap(true, Ordering::SeqCst) {
            let mine = if error.is_some() { FAILED } else { 1.0 };
            let mut word = [mine];
            self.collective.all_reduce_sum(&mut word);
            // Every rank ended at this boundary; any other that ended on an error says so.
            self.epoch
                .peer_failed
                .store(word[0] - mine >= FAILED, Ordering::SeqCst);
        }
        self.epoch.peer_failed.load(Ordering::SeqCst)
    }

    fn exchanged(&self) {
        let done = self.epoch.exchanges.fetch_add(1, Ordering::SeqCst) + 1;
        if done >= self.epoch.exchanges_per_epoch.load(Ordering::SeqCst) {
            self.epoch.in_epoch.store(false, Ordering::SeqCst);
        }
    }
}

/// What the training step does to the gradients before the optimizer sees them: averages them over the
/// ranks of a [`DataParallel`] group and over the backward passes accumulated since the last step.
#[derive(Clone)]
pub struct GradientSync {
    group: Option<DataParallel>,
    /// Backward passes since the last optimizer step (shared by every clone of the trained module).
    passes: Arc<AtomicUsize>,
    /// Scratch buffer of the exchange, kept between steps.
    buffer: Arc<Mutex<Vec<f32>>>,
}

impl fmt::Debug for GradientSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GradientSync({:?})", self.group)
    }
}

impl GradientSync {
    /// Averaging over the ranks of `group` (if any) and over accumulated backward passes.
    pub fn new(group: Option<DataParallel>) -> Self {
        Self {
            group,
            passes: Arc::default(),
            buffer: Arc::default(),
        }
    }

    /// Counts one backward pass.
    pub(crate) fn backward_pass(&self) {
        self.passes.fetch_add(1, Ordering::SeqCst);
    }

    /// `grads` (the gradients of `module`, summed over the passes since the last step, as burn's
    /// accumulator sums them) averaged over those passes and over the ranks.
    pub fn average<M: Module>(&self, module: &M, mut grads: GradientsParams) -> GradientsParams {
        let passes = self.passes.swap(0, Ordering::SeqCst).max(1);
        let Some(group) = &self.group.as_ref().filter(|g| g.size() > 1) else {
            if passes > 1 {
                module.visit(&mut Scale {
                    grads: &mut grads,
                    factor: 1.0 / passes as f32,
                });
            }
            return grads;
        };
        let mut gather = Gather {
            grads: &mut grads,
            pieces: Vec::new(),
            present: Vec::new(),
        };
        module.visit(&mut gather);
        let Gather {
            pieces, present, ..
        } = gather;
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        buffer.clear();
        // One read-back of all gradients (a concatenation on the device), then the exchange.
        if !pieces.is_empty() {
            let flat = Tensor::cat(pieces.iter().map(|(t, _)| t.clone()).collect(), 0);
            match flat
                .try_into_data_as::<f32>()
                .map(|d| d.try_to_vec::<f32>())
            {
                Ok(Ok(values)) => buffer.extend(values),
                Ok(Err(e)) => group.abort(&format!("gradients unreadable: {e:?}")),
                Err(e) => group.abort(&format!("gradients unreadable: {e:?}")),
            }
        }
        let gradient_len = buffer.len();
        // One number per parameter: how many ranks have a gradient for it.
        buffer.extend(present.iter().map(|p| if p.is_some() { 1.0 } else { 0.0 }));
        for bucket in buffer.chunks_mut(BUCKET_ELEMENTS) {
            group.collective.all_reduce_sum(bucket);
        }
        group.exchanged();
        let scale = 1.0 / (group.size() * passes) as f32;
        let (values, counts) = buffer.split_at(gradient_len);
        module.visit(&mut Scatter {
            grads: &mut grads,
            values,
            counts,
            scale,
            index: 0,
            offset: 0,
            device: pieces.first().map(|(t, _)| t.device()),
        });
        grads
    }
}

/// Takes each parameter's gradient out of `grads`, flattened; `None` where it has none.
struct Gather<'a> {
    grads: &'a mut GradientsParams,
    pieces: Vec<(Tensor<1>, ParamId)>,
    present: Vec<Option<usize>>,
}

impl ModuleVisitor for Gather<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.shape().num_elements();
        match self.grads.remove::<D>(param.id) {
            Some(g) => {
                self.present.push(Some(n));
                self.pieces.push((g.reshape([n]), param.id));
            }
            // A parameter this rank has no gradient for: zeros in the exchange, so every rank sends
            // buffers of the same layout.
            None => {
                self.present.push(None);
                let device = self.pieces.first().map(|(t, _)| t.device());
                match device {
                    Some(device) => self.pieces.push((Tensor::zeros([n], &device), param.id)),
                    None => self
                        .pieces
                        .push((Tensor::zeros([n], &param.val().inner().device()), param.id)),
                }
            }
        }
    }
}

/// Puts the exchanged sums back into `grads`, scaled, for every parameter some rank had a gradient for.
struct Scatter<'a> {
    grads: &'a mut GradientsParams,
    values: &'a [f32],
    counts: &'a [f32],
    scale: f32,
    index: usize,
    offset: usize,
    device: Option<Device>,
}

impl ModuleVisitor for Scatter<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let shape = param.shape();
        let n = shape.num_elements();
        let (index, offset) = (self.index, self.offset);
        self.index += 1;
        self.offset += n;
        if self.counts[index] <= 0.0 {
            return;
        }
        let values: Vec<f32> = self.values[offset..offset + n]
            .iter()
            .map(|v| v * self.scale)
            .collect();
        let device = self
            .device
            .clone()
            .unwrap_or_else(|| param.val().inner().device());
        self.grads.register::<D>(
            param.id,
            Tensor::from_data(TensorData::new(values, shape), &device),
        );
    }
}

/// Multiplies every gradient in `grads` by `factor`.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads
                .register::<D>(param.id, g.mul_scalar(self.factor));
        }
    }
}
