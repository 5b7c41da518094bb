//! Deterministic inputs for the kernels' tests.

/// `n` values spread over [−1, 1), a hash of `(index, seed)`.
pub(crate) fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}
