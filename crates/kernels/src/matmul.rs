//! The one wrapper of the `gemm` crate (the GEMM burn-flex calls) that the kernels use.

/// A strided row-major matrix view for [`matmul`]: element `(r, c)` at `ptr[r · rs + c · cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl View {
    /// A row-major matrix whose rows are `row_stride` apart.
    pub(crate) fn rows(s: &[f32], row_stride: usize) -> Self {
        Self {
            ptr: s.as_ptr(),
            rs: row_stride as isize,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows are `row_stride` apart.
    pub(crate) fn transposed(s: &[f32], row_stride: usize) -> Self {
        Self {
            ptr: s.as_ptr(),
            rs: 1,
            cs: row_stride as isize,
        }
    }
}

/// Products of at least this many multiply-adds use every thread of rayon's pool when the caller allows it
/// (gemm's own threshold, about 192³, would leave a 28-step `[1792, 28] × [28, 512]` projection on one core).
const PARALLEL_WORK: usize = 1 << 20;

/// `dst[m, n] (row-major, rows dst_rs apart) = (accumulate ? dst : 0) + lhs[m, k] · rhs[k, n]`, on every
/// thread when `parallel` and the product is large enough (callers that already spread work over the
/// threads pass `false`). The views must cover `m × k` and `k × n` elements; every caller builds them from
/// slices sized by the same dimensions it passes here.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    m: usize,
    n: usize,
    k: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dst.len() >= (m - 1) * dst_rs + n,
        "matmul destination too small"
    );
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && m * n * k >= PARALLEL_WORK && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the callers pass views into slices whose lengths they computed from the same dimensions;
    // `dst` is checked above and never aliases `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
