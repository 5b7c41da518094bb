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
    // SAFETY: `dst` is checked above and, being a `&mut`, aliases neither view.
    unsafe {
        matmul_into(
            dst.as_mut_ptr(),
            dst_rs,
            m,
            n,
            k,
            lhs,
            rhs,
            accumulate,
            parallel,
        )
    }
}

/// [`matmul`] into a raw destination, for kernels whose threads write disjoint blocks (one head's columns,
/// say) of one buffer, which no `&mut` slice can express.
///
/// # Safety
/// `dst` must be valid for writes of the `m × n` block with rows `dst_rs` apart, no other thread may touch
/// that block meanwhile, and it must not overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul_into(
    dst: *mut f32,
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
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && m * n * k >= PARALLEL_WORK && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the callers pass views into slices whose lengths they computed from the same dimensions,
    // and a destination as the function's contract says.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
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
