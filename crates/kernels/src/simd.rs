//! Element-wise loops compiled three times: for the CPU the crate is built for and, on x86-64, with AVX2 and
//! FMA and with AVX-512, picked at run time.
//!
//! The workspace builds for baseline x86-64 (SSE2), where LLVM vectorises the kernels' gate and activation
//! loops 4 wide at best; `gemm` already picks AVX2 kernels at run time, and [`multiversion!`] does the same
//! for our loops. Each loop is written once as a function of plain slices (so every output is a separate
//! `&mut` argument, which tells LLVM the outputs do not alias and lets it vectorise without run-time
//! overlap checks); the macro wraps it in `#[target_feature(enable = "avx2,fma")]` and
//! `#[target_feature(enable = "avx512f")]` copies and a dispatcher. All copies do the same IEEE operations in
//! the same order (no fused multiply-adds are introduced), so their results are identical.

/// Defines `fn $name(args)` that runs `$body` compiled with AVX-512, or AVX2 and FMA, where the CPU has them.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX-512F, AVX2 and FMA, checked just above.
                return unsafe { avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA, checked just above.
                return unsafe { avx2($($arg),*) };
            }
            body($($arg),*)
        }
    };
}

pub(crate) use multiversion;
