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

/// Runs `work` on a worker of rayon's global pool and returns its result (a panic in `work` is resumed on
/// the caller). Runs it in place when already on a worker, or when the pool has a single thread: a lone
/// worker that blocks (on a channel, say) would leave nothing to run the jobs other threads inject.
pub fn on_compute_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() || rayon::current_num_threads() < 2 {
        return work();
    }
    rayon::scope(|_| work())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_runs_on_a_pool_thread_and_returns_its_value() {
        if rayon::current_num_threads() < 2 {
            return;
        }
        let (index, sum) = on_compute_pool(|| {
            use rayon::prelude::*;
            (
                rayon::current_thread_index(),
                (0..1000u64).into_par_iter().sum::<u64>(),
            )
        });
        assert!(index.is_some(), "ran outside the pool");
        assert_eq!(sum, 499_500);
    }

    #[test]
    fn a_panic_in_the_work_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| on_compute_pool(|| panic!("inside")));
        assert!(caught.is_err());
    }
}
