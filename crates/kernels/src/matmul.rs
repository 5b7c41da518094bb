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
    if parallel && m * n * k >= PARALLEL_WORK && threads > 1 {
        // SAFETY: as this function's contract; the blocks are disjoint.
        unsafe { split_matmul(dst, dst_rs, m, n, k, lhs, rhs, accumulate, threads) };
    } else {
        // SAFETY: as this function's contract.
        unsafe { gemm_one_thread(dst, dst_rs, m, n, k, lhs, rhs, accumulate) };
    }
}

/// Rows (or columns) of a block handed to one thread are a multiple of this (the vector width).
const SPLIT_ALIGN: usize = 16;

/// A destination pointer that rayon's closures may carry (each closure writes its own block).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the blocks the closures write through it are disjoint (see `split_matmul`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
// SAFETY: views are only read.
unsafe impl Send for View {}
unsafe impl Sync for View {}

/// The product as `threads` single-threaded products over disjoint blocks of the destination: row blocks
/// when there are enough rows, else column blocks. `gemm`'s own rayon mode splits inside its packing
/// loops, and on the 2-core machine it reaches 168–196 GFLOP/s on the MLP's 64×784×512 and the
/// Transformer's 128×1024×512 weight-gradient product, where two independent halves reach 195–245 (best
/// of five ~2 GFLOP loops, issue 12's note); on the large shapes the two are equal.
///
/// # Safety
/// As [`matmul_into`].
#[allow(clippy::too_many_arguments)]
unsafe fn split_matmul(
    dst: *mut f32,
    dst_rs: usize,
    m: usize,
    n: usize,
    k: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
    threads: usize,
) {
    let by_rows = m >= SPLIT_ALIGN * threads || m >= n;
    let len = if by_rows { m } else { n };
    let block = len.div_ceil(threads).div_ceil(SPLIT_ALIGN) * SPLIT_ALIGN;
    let dst = SendPtr(dst);
    rayon::scope(|scope| {
        for start in (0..len).step_by(block.max(1)) {
            let size = block.min(len - start);
            scope.spawn(move |_| {
                let dst = dst;
                // SAFETY: each block is a disjoint part of the destination and of one operand, inside
                // the views the caller vouched for.
                unsafe {
                    if by_rows {
                        let lhs = View {
                            ptr: lhs.ptr.offset(start as isize * lhs.rs),
                            ..lhs
                        };
                        gemm_one_thread(
                            dst.0.add(start * dst_rs),
                            dst_rs,
                            size,
                            n,
                            k,
                            lhs,
                            rhs,
                            accumulate,
                        );
                    } else {
                        let rhs = View {
                            ptr: rhs.ptr.offset(start as isize * rhs.cs),
                            ..rhs
                        };
                        gemm_one_thread(dst.0.add(start), dst_rs, m, size, k, lhs, rhs, accumulate);
                    }
                }
            });
        }
    });
}

/// One `gemm` call on the calling thread.
///
/// # Safety
/// As [`matmul_into`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_one_thread(
    dst: *mut f32,
    dst_rs: usize,
    m: usize,
    n: usize,
    k: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
) {
    // SAFETY: the callers pass views into slices whose lengths they computed from the same dimensions,
    // and a destination as `matmul_into`'s contract says.
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
            gemm::Parallelism::None,
        );
    }
}
