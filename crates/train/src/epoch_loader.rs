//! The learner's training data loader: each epoch's order and random stream depend only on the seed and
//! the epoch's number, so that a resumed run trains exactly as an uninterrupted one.
//!
//! burn's `DataLoaderBuilder::shuffle(seed)` draws each epoch's order from one generator that advances
//! epoch by epoch (and is forked when burn-train moves the loader to its device); a run resumed at epoch
//! 3 starts that generator afresh and trains epoch 3 on epoch 1's order. The device's random stream
//! (dropout masks, augmentation draws) is not part of burn-train's checkpoint either. [`EpochLoader`]
//! shuffles epoch `e` with a generator seeded from `(seed, e)` and reseeds the device the same way when
//! the epoch starts; burn-train calls [`DataLoader::iter`] once per epoch, which is where both happen.
//!
//! As one rank of a data-parallel run ([`EpochLoader::sharded`]), the loader serves rank `r` of `n` the
//! items `r, r + n, r + 2n, …` of the epoch's order, cut to a multiple of `n` first (PyTorch's
//! `DistributedSampler` with `drop_last`): disjoint, equal shards, reshuffled every epoch by the seed all
//! ranks share, and batch `k` of every rank together is batch `k` of a single process whose batch is `n`
//! times larger. Each epoch starts with the ranks' stop word ([`DataParallel`]).

use crate::data_parallel::DataParallel;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;
use burn::train::Interrupter;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The seed of epoch `epoch` (1-based) of a run seeded with `seed`: distinct per epoch, the same in every
/// run and every resume.
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    // SplitMix64's increment and finaliser: nearby (seed, epoch) pairs give unrelated seeds.
    let mut z = seed.wrapping_add((epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Shuffled batches of a training set, epoch by epoch (see the module's documentation).
pub struct EpochLoader<I, O> {
    dataset: Arc<dyn Dataset<I>>,
    batcher: Arc<dyn Batcher<I, O>>,
    batch_size: usize,
    seed: u64,
    device: Device,
    /// The items this loader serves, as a range of the epoch's shuffled order (all of it, unless sliced).
    range: (usize, usize),
    /// The number of the epoch the next [`DataLoader::iter`] serves; shared by every copy of the loader
    /// that burn-train makes for its devices.
    next_epoch: Arc<AtomicUsize>,
    /// The data-parallel group this loader serves one rank of, and the training loop's interrupter, which
    /// stops the loop when another rank has stopped.
    group: Option<(DataParallel, Arc<OnceLock<Interrupter>>)>,
}

impl<I, O> EpochLoader<I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    /// Batches of `batch_size` items of `dataset` on `device`, in an order drawn from `(seed, epoch)`;
    /// `first_epoch` is the number of the first epoch to serve (1, or one more than the checkpoint a run
    /// resumes from).
    pub fn new<D: Dataset<I> + 'static, B: Batcher<I, O> + 'static>(
        dataset: D,
        batcher: B,
        batch_size: usize,
        seed: u64,
        device: Device,
        first_epoch: usize,
    ) -> Self {
        let len = dataset.len();
        Self {
            dataset: Arc::new(dataset),
            batcher: Arc::new(batcher),
            batch_size: batch_size.max(1),
            seed,
            device,
            range: (0, len),
            next_epoch: Arc::new(AtomicUsize::new(first_epoch)),
            group: None,
        }
    }

    /// This loader as rank `group.rank()` of `group.size()`, serving its shard (see the module's
    /// documentation); `interrupter` is set to the training loop's before the first epoch.
    pub fn sharded(mut self, group: DataParallel, interrupter: Arc<OnceLock<Interrupter>>) -> Self {
        let shard = self.dataset.len() / group.size().max(1);
        self.range = (0, shard);
        self.group = Some((group, interrupter));
        self
    }

    /// This loader on `device`, serving `range`, sharing the data and the epoch counter.
    fn copy(&self, device: Device, range: (usize, usize)) -> Self {
        Self {
            dataset: Arc::clone(&self.dataset),
            batcher: Arc::clone(&self.batcher),
            batch_size: self.batch_size,
            seed: self.seed,
            device,
            range,
            next_epoch: Arc::clone(&self.next_epoch),
            group: self.group.clone(),
        }
    }
}

impl<I, O> DataLoader<O> for EpochLoader<I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        let seed = epoch_seed(self.seed, epoch);
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let mut device_seed = seed;
        if let Some((group, interrupter)) = &self.group {
            if !group.begin_epoch() {
                if let Some(interrupter) = interrupter.get() {
                    interrupter.stop(Some("another rank stopped"));
                }
                order.clear();
            }
            let (rank, ranks) = (group.rank(), group.size());
            order.truncate(order.len() / ranks * ranks);
            order = order.into_iter().skip(rank).step_by(ranks).collect();
            // Each rank draws its own dropout masks and augmentations (rank 0 those of one process).
            if rank > 0 {
                device_seed = epoch_seed(seed, rank);
            }
        }
        let (start, end) = self.range;
        order.truncate(end);
        order.drain(..start.min(order.len()));
        // Dropout and augmentation draw from the device's stream: start it where this epoch always does.
        self.device.seed(device_seed);
        Box::new(EpochIter {
            loader: self,
            order,
            position: 0,
        })
    }

    fn num_items(&self) -> usize {
        self.range.1 - self.range.0
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.copy(device.clone(), self.range))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        let from = (self.range.0 + start).min(self.range.1);
        let to = (self.range.0 + end).clamp(from, self.range.1);
        Arc::new(self.copy(self.device.clone(), (from, to)))
    }
}

/// One epoch's batches. Written here because burn's batching iterator is private to burn-core and its
/// loaders' iterators borrow the loader, which would have to outlive this epoch's call.
struct EpochIter<'a, I, O> {
    loader: &'a EpochLoader<I, O>,
    order: Vec<usize>,
    position: usize,
}

impl<I, O> Iterator for EpochIter<'_, I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    type Item = Result<O, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.order.len() {
            return None;
        }
        let end = (self.position + self.loader.batch_size).min(self.order.len());
        let items: Result<Vec<I>, DatasetError> = self.order[self.position..end]
            .iter()
            .map(|&i| self.loader.dataset.get(i))
            .collect();
        self.position = end;
        Some(items.map(|items| self.loader.batcher.batch(items, &self.loader.device)))
    }
}

impl<I, O> DataLoaderIterator<O> for EpochIter<'_, I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    fn progress(&self) -> Progress {
        Progress {
            items_processed: self.position,
            items_total: self.order.len(),
            unit: Some("items".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataset::InMemDataset;

    /// Batches of item values, as a flat list.
    #[derive(Clone)]
    struct Ids;

    impl Batcher<usize, Vec<usize>> for Ids {
        fn batch(&self, items: Vec<usize>, _: &Device) -> Vec<usize> {
            items
        }
    }

    fn epoch(loader: &dyn DataLoader<Vec<usize>>) -> Vec<usize> {
        loader
            .iter()
            .flat_map(|b| b.expect("in-memory items"))
            .collect()
    }

    fn loader(first_epoch: usize) -> EpochLoader<usize, Vec<usize>> {
        let data = InMemDataset::new((0..50).collect::<Vec<usize>>());
        EpochLoader::new(data, Ids, 8, 11, Device::flex(), first_epoch)
    }

    #[test]
    fn each_epoch_is_a_new_permutation_that_a_resume_reproduces() {
        let fresh = loader(1);
        let epochs: Vec<Vec<usize>> = (0..3).map(|_| epoch(&fresh)).collect();
        for e in &epochs {
            let mut sorted = e.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                (0..50).collect::<Vec<_>>(),
                "a permutation of the set"
            );
        }
        assert_ne!(epochs[0], epochs[1]);
        assert_ne!(epochs[1], epochs[2]);
        // Resumed after epoch 2, and moved to a device as burn-train does: epoch 3 is the same.
        let resumed = loader(3).to_device(&Device::flex());
        assert_eq!(epoch(&*resumed), epochs[2]);
    }

    #[test]
    fn slices_split_an_epoch_and_share_its_counter() {
        let whole = loader(1);
        let all = epoch(&whole);
        let again = loader(1);
        let (a, b) = (again.slice(0, 20), again.slice(20, 50));
        assert_eq!(epoch(&*a), all[..20], "the first 20 of epoch 1's order");
        assert_eq!(a.num_items() + b.num_items(), 50);
        // The counter is shared: the other slice now serves epoch 2.
        let second = epoch(&whole);
        assert_eq!(epoch(&*b), {
            let mut e2 = second;
            e2.drain(..20);
            e2
        });
    }

    /// Rank `rank` of `size`, in a group whose other ranks contribute nothing to an exchange (so every
    /// epoch goes on).
    struct Listener {
        rank: usize,
        size: usize,
    }

    impl crate::Collective for Listener {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn all_reduce_sum(&self, _: &mut [f32]) {}
        fn broadcast(&self, _: &mut Vec<u8>) {}
        fn abort(&self, message: &str) -> ! {
            panic!("{message}")
        }
    }

    fn batches(loader: &dyn DataLoader<Vec<usize>>) -> Vec<Vec<usize>> {
        loader.iter().map(|b| b.expect("in-memory items")).collect()
    }

    #[test]
    fn rank_shards_are_disjoint_equal_and_together_the_batches_of_one_process() {
        // 50 items among 3 ranks: 16 each (2 dropped), batches of 4 per rank = one process's 12.
        let shard = |rank: usize| {
            let group = DataParallel::new(std::sync::Arc::new(Listener { rank, size: 3 }));
            let data = InMemDataset::new((0..50).collect::<Vec<usize>>());
            let loader = EpochLoader::new(data, Ids, 4, 11, Device::flex(), 1)
                .sharded(group, Arc::new(OnceLock::new()));
            assert_eq!(loader.num_items(), 16);
            let epochs: Vec<Vec<Vec<usize>>> = (0..2).map(|_| batches(&loader)).collect();
            epochs
        };
        let ranks: Vec<_> = (0..3).map(shard).collect();
        let data = InMemDataset::new((0..50).collect::<Vec<usize>>());
        let single = EpochLoader::new(data, Ids, 12, 11, Device::flex(), 1);
        for epoch in 0..2 {
            let whole = batches(&single);
            let mut seen: Vec<usize> = ranks.iter().flat_map(|r| r[epoch].concat()).collect();
            assert_eq!(seen.len(), 48);
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 48, "the shards overlap");
            for (k, batch) in whole.iter().take(4).enumerate() {
                let mut together: Vec<usize> =
                    ranks.iter().flat_map(|r| r[epoch][k].clone()).collect();
                let mut expected = batch.clone();
                together.sort();
                expected.sort();
                assert_eq!(together, expected, "epoch {epoch}, batch {k}");
            }
        }
        assert_ne!(ranks[0][0], ranks[0][1], "each epoch reshuffles");
    }
}
