//! Running a training loop on a thread of rayon's global pool, the pool burn-flex and Kiln's kernels compute on.
//!
//! Every parallel op called from a thread outside the pool (the program's main thread, say) is injected into
//! the pool: the caller blocks on a futex, a sleeping worker is woken for each piece, and the caller is
//! woken again at the end — several context switches per op, and a training step issues hundreds of ops
//! (`perf` on the Transformer LM benchmark: 13% of samples in rayon's sleep and wake paths). Called from a
//! worker, the same op pushes its pieces onto that worker's own queue, the worker computes one of them
//! itself and only idle workers are woken. Measured with `cargo xtask bench --device flex --steps 100`
//! (2 cores, two runs each): MLP 784-256-128-10 +35%, MLP 784-512-256-10 +10%, CNNs +5–15%, the Transformer
//! LM +5%, with bit-identical losses. rayon has no call for "run this on the global pool" other than
//! [`rayon::scope`], which runs its body on a worker.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Loops running on a worker now (at most one: see [`on_compute_pool`]).
static ON_POOL: AtomicUsize = AtomicUsize::new(0);

/// Marks a loop as running on the pool until dropped (also when the loop panics).
struct OnPool;

impl Drop for OnPool {
    fn drop(&mut self) {
        ON_POOL.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `work` on a worker of rayon's global pool and returns its result (a panic in `work` is resumed on
/// the caller). Runs it in place when already on a worker, when the pool has a single thread, or when
/// another loop already holds a worker: a loop blocks its worker at times (on burn-train's channels), and
/// the jobs that other threads inject need a worker left free, or every thread would wait on another (two
/// concurrent `fit`s on a 2-thread pool did deadlock). A second concurrent loop therefore runs on its own
/// thread, as before this module.
pub fn on_compute_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() || rayon::current_num_threads() < 2 {
        return work();
    }
    if ON_POOL
        .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return work();
    }
    let _held = OnPool;
    rayon::scope(|_| work())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_runs_on_a_pool_thread_and_concurrent_loops_that_block_do_not_deadlock() {
        use rayon::prelude::*;
        use std::sync::mpsc;
        // Alone, the work runs on a worker (the other tests of this binary may hold the pool at the same
        // time, so only a lone run can be asserted on).
        if rayon::current_num_threads() >= 2 && ON_POOL.load(Ordering::SeqCst) == 0 {
            let (index, sum, alone) = on_compute_pool(|| {
                (
                    rayon::current_thread_index(),
                    (0..1000u64).into_par_iter().sum::<u64>(),
                    ON_POOL.load(Ordering::SeqCst) == 1,
                )
            });
            assert!(index.is_some() || !alone, "ran outside the pool");
            assert_eq!(sum, 499_500);
        }
        // Four loops at once, each blocking on a channel that a plain thread fills after a parallel op:
        // with every loop on a worker, no worker would be left for the plain threads' jobs.
        let handles: Vec<_> = (0..4u64)
            .map(|i| {
                std::thread::spawn(move || {
                    on_compute_pool(|| {
                        let (tx, rx) = mpsc::channel();
                        let helper = std::thread::spawn(move || {
                            let sum: u64 = (0..1000u64).into_par_iter().map(|x| x * i).sum();
                            tx.send(sum).unwrap();
                        });
                        let sum = rx.recv().unwrap();
                        helper.join().unwrap();
                        sum
                    })
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), 499_500 * i as u64);
        }
    }

    #[test]
    fn a_panic_in_the_work_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| on_compute_pool(|| panic!("inside")));
        assert!(caught.is_err());
    }
}
