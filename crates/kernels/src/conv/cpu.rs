//! The CPU kernel of a 2-D convolution (groups 1, dilation 1) and both its gradients as well-shaped GEMMs,
//! on plain `f32` slices in NCHW layout.
//!
//! Per image: `cols = im2col(x)` (`[C·KH·KW, OH·OW]`), `y = W · cols + b`; backward (with the columns
//! recomputed) `dW += dY · colsᵀ`, `dX = col2im(Wᵀ · dY)`. burn 0.22.1's generic backward instead computes the weight
//! gradient as a convolution whose "kernel" is the output gradient (a GEMM with N = KH·KW) after strided
//! transposes of both operands. Images are spread over rayon's threads; each thread sums its images'
//! weight gradients and the threads' sums are added at the end.

use crate::matmul::{View, matmul};
use rayon::prelude::*;

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvDims {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel `[height, width]`.
    pub kernel: [usize; 2],
    /// Stride `[height, width]`.
    pub stride: [usize; 2],
    /// Zero padding `[height, width]`, on both sides.
    pub padding: [usize; 2],
}

impl ConvDims {
    /// Output `[height, width]`.
    pub fn out_hw(&self) -> [usize; 2] {
        let o = |n: usize, k: usize, s: usize, p: usize| (n + 2 * p - k) / s + 1;
        [
            o(self.height, self.kernel[0], self.stride[0], self.padding[0]),
            o(self.width, self.kernel[1], self.stride[1], self.padding[1]),
        ]
    }

    /// Rows of `cols`: `C · KH · KW`.
    pub fn patch(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Columns of `cols`: `OH · OW`.
    pub fn positions(&self) -> usize {
        let [oh, ow] = self.out_hw();
        oh * ow
    }

    fn image(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// For each row of `cols` (`(c, i, j)`) and output row `y` inside the image, calls
/// `f(col_start, image_start, len)`: `len` consecutive elements of `cols` from `col_start` read image
/// elements `image_start + k · stride_w` (the other columns read the zero padding). Shared by im2col and
/// col2im, so both copy whole runs instead of testing every element.
fn for_each_run(d: &ConvDims, mut f: impl FnMut(usize, usize, usize)) {
    let [oh, ow] = d.out_hw();
    let [kh, kw] = d.kernel;
    let [sh, sw] = d.stride;
    let [ph, pw] = d.padding;
    let p = oh * ow;
    for c in 0..d.channels {
        for i in 0..kh {
            for j in 0..kw {
                let row = (c * kh + i) * kw + j;
                // ix = x·sw + j − pw must lie in [0, width).
                let x_lo = pw.saturating_sub(j).div_ceil(sw);
                let x_hi = if d.width + pw > j {
                    ((d.width + pw - j - 1) / sw + 1).min(ow)
                } else {
                    0
                };
                if x_lo >= x_hi {
                    continue;
                }
                for y in 0..oh {
                    let iy = (y * sh + i) as isize - ph as isize;
                    if iy < 0 || iy >= d.height as isize {
                        continue;
                    }
                    let image_row = (c * d.height + iy as usize) * d.width;
                    f(
                        row * p + y * ow + x_lo,
                        image_row + x_lo * sw + j - pw,
                        x_hi - x_lo,
                    );
                }
            }
        }
    }
}

fn im2col(d: &ConvDims, image: &[f32], cols: &mut [f32]) {
    cols.fill(0.0);
    let sw = d.stride[1];
    for_each_run(d, |col, start, len| {
        let out = &mut cols[col..col + len];
        if sw == 1 {
            out.copy_from_slice(&image[start..start + len]);
        } else {
            for (k, o) in out.iter_mut().enumerate() {
                *o = image[start + k * sw];
            }
        }
    });
}

fn col2im(d: &ConvDims, cols: &[f32], image: &mut [f32]) {
    image.fill(0.0);
    let sw = d.stride[1];
    for_each_run(d, |col, start, len| {
        let src = &cols[col..col + len];
        if sw == 1 {
            let dst = &mut image[start..start + len];
            dst.iter_mut().zip(src).for_each(|(a, b)| *a += b);
        } else {
            for (k, v) in src.iter().enumerate() {
                image[start + k * sw] += v;
            }
        }
    });
}

/// One image's convolution: `y` (`[out_channels, OH·OW]`) `= W · im2col(image) + b`, with `cols` (`[patch,
/// OH·OW]`) as scratch.
fn convolve_image(
    d: &ConvDims,
    image: &[f32],
    w: &[f32],
    bias: &[f32],
    cols: &mut [f32],
    y: &mut [f32],
) {
    let (patch, p, o) = (d.patch(), d.positions(), d.out_channels);
    im2col(d, image, cols);
    // y [o, p] = W [o, patch] · cols [patch, p]
    matmul(
        y,
        p,
        o,
        p,
        patch,
        View::rows(w, patch),
        View::rows(cols, p),
        false,
        false,
    );
    if !bias.is_empty() {
        for (row, b) in y.chunks_mut(p).zip(bias) {
            row.iter_mut().for_each(|v| *v += b);
        }
    }
}

fn check_sizes(d: &ConvDims, x: &[f32], w: &[f32], bias: &[f32]) {
    assert_eq!(x.len(), d.batch * d.image(), "x");
    assert_eq!(w.len(), d.out_channels * d.patch(), "weight");
    assert!(bias.is_empty() || bias.len() == d.out_channels, "bias");
}

/// The forward pass: `y` (`[batch, out_channels, OH, OW]`). Images are spread over rayon's threads, each
/// product on one thread; each thread's im2col buffer (one image's columns, a few hundred kB at most for
/// the shapes here, so it stays in cache) is reused from image to image, and nothing of it is kept: the
/// backward pass recomputes the columns from `x`, which costs less than writing every image's columns
/// to memory and reading them back.
pub fn forward(d: &ConvDims, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    check_sizes(d, x, w, bias);
    let (patch, p, o) = (d.patch(), d.positions(), d.out_channels);
    let mut y = vec![0.0; d.batch * o * p];
    y.par_chunks_mut((o * p).max(1))
        .zip(x.par_chunks(d.image().max(1)))
        .for_each_init(
            || vec![0.0; patch * p],
            |cols, (y, image)| convolve_image(d, image, w, bias, cols, y),
        );
    y
}

/// The forward pass followed by `relu(max pool)` (see [`super::epilogue`]), image by image: the pooled
/// output (`[batch, out_channels, OH / pool, OW / pool]`) and the offsets of its maxima; the full-size
/// output never leaves the thread's scratch buffer.
pub fn forward_relu_pool(
    d: &ConvDims,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    pool: usize,
) -> (Vec<f32>, Vec<u32>) {
    check_sizes(d, x, w, bias);
    let (patch, p, o) = (d.patch(), d.positions(), d.out_channels);
    let [ph, pw] = super::epilogue::pooled_hw(d.out_hw(), pool);
    let cells = (o * ph * pw).max(1);
    let mut out = vec![0.0f32; d.batch * o * ph * pw];
    let mut argmax = vec![0u32; d.batch * o * ph * pw];
    out.par_chunks_mut(cells)
        .zip(argmax.par_chunks_mut(cells))
        .zip(x.par_chunks(d.image().max(1)))
        .for_each_init(
            || (vec![0.0; patch * p], vec![0.0; o * p]),
            |(cols, y), ((out, argmax), image)| {
                convolve_image(d, image, w, bias, cols, y);
                super::epilogue::pool_planes(y, d.out_hw(), pool, out, argmax);
            },
        );
    (out, argmax)
}

/// The gradients: `(dx, dw, db)`; `dx` only when `need_x` (empty otherwise). `x` is the forward's input,
/// whose columns are recomputed image by image.
pub fn backward(
    d: &ConvDims,
    w: &[f32],
    x: &[f32],
    dy: &[f32],
    need_x: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (patch, p, o) = (d.patch(), d.positions(), d.out_channels);
    assert_eq!(dy.len(), d.batch * o * p, "dy");
    assert_eq!(x.len(), d.batch * d.image(), "x");
    let threads = rayon::current_num_threads().max(1);
    let per = d.batch.div_ceil(threads).max(1);
    let mut dx = if need_x {
        vec![0.0; d.batch * d.image()]
    } else {
        Vec::new()
    };
    let image = d.image();
    let chunks = d.batch.div_ceil(per);
    let partial: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .zip(dx_chunks(&mut dx, per * image, chunks))
        .map(|(chunk, mut dx_chunk)| {
            let mut dw = vec![0.0; o * patch];
            let mut cols = vec![0.0; patch * p];
            let mut dcols = if need_x {
                vec![0.0; patch * p]
            } else {
                Vec::new()
            };
            let images = chunk * per..((chunk + 1) * per).min(d.batch);
            for (k, n) in images.enumerate() {
                let dy_n = &dy[n * o * p..(n + 1) * o * p];
                im2col(d, &x[n * image..(n + 1) * image], &mut cols);
                // dW += dY_n [o, p] · cols_nᵀ [p, patch]
                matmul(
                    &mut dw,
                    patch,
                    o,
                    patch,
                    p,
                    View::rows(dy_n, p),
                    View::transposed(&cols, p),
                    true,
                    false,
                );
                if let Some(dx_chunk) = dx_chunk.as_deref_mut() {
                    // dcols = Wᵀ [patch, o] · dY_n [o, p]
                    matmul(
                        &mut dcols,
                        p,
                        patch,
                        p,
                        o,
                        View::transposed(w, patch),
                        View::rows(dy_n, p),
                        false,
                        false,
                    );
                    col2im(d, &dcols, &mut dx_chunk[k * image..(k + 1) * image]);
                }
            }
            dw
        })
        .collect();
    let mut dw = vec![0.0; o * patch];
    for part in partial {
        dw.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    let mut db = vec![0.0; o];
    for dy_n in dy.chunks(o * p) {
        for (b, row) in db.iter_mut().zip(dy_n.chunks(p)) {
            *b += row.iter().sum::<f32>();
        }
    }
    (dx, dw, db)
}

/// `dx` cut into one chunk per work item, or `None`s when the input needs no gradient.
fn dx_chunks(dx: &mut [f32], size: usize, count: usize) -> Vec<Option<&mut [f32]>> {
    if dx.is_empty() {
        (0..count).map(|_| None).collect()
    } else {
        dx.chunks_mut(size).map(Some).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The convolution by its definition, in f64.
    fn direct(d: &ConvDims, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
        let [oh, ow] = d.out_hw();
        let [kh, kw] = d.kernel;
        let mut y = vec![0.0; d.batch * d.out_channels * oh * ow];
        for n in 0..d.batch {
            for o in 0..d.out_channels {
                for yy in 0..oh {
                    for xx in 0..ow {
                        let mut acc = f64::from(b[o]);
                        for c in 0..d.channels {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let iy =
                                        (yy * d.stride[0] + i) as isize - d.padding[0] as isize;
                                    let ix =
                                        (xx * d.stride[1] + j) as isize - d.padding[1] as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy >= d.height as isize
                                        || ix >= d.width as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((n * d.channels + c) * d.height + iy as usize)
                                        * d.width
                                        + ix as usize;
                                    let wi = ((o * d.channels + c) * kh + i) * kw + j;
                                    acc += f64::from(x[xi]) * f64::from(w[wi]);
                                }
                            }
                        }
                        y[((n * d.out_channels + o) * oh + yy) * ow + xx] = acc;
                    }
                }
            }
        }
        y
    }

    fn cases() -> Vec<ConvDims> {
        let d = |batch, channels, height, width, out_channels, kernel, stride, padding| ConvDims {
            batch,
            channels,
            height,
            width,
            out_channels,
            kernel,
            stride,
            padding,
        };
        vec![
            d(2, 3, 5, 6, 4, [3, 3], [1, 1], [1, 1]),
            d(3, 2, 7, 5, 3, [5, 3], [2, 1], [2, 0]),
            d(1, 1, 4, 4, 2, [2, 2], [2, 2], [0, 0]),
            d(5, 2, 6, 6, 3, [3, 3], [1, 1], [0, 0]),
        ]
    }

    #[test]
    fn forward_equals_the_definition() {
        for d in cases() {
            let x = noise(d.batch * d.image(), 1);
            let w = noise(d.out_channels * d.patch(), 2);
            let b = noise(d.out_channels, 3);
            let y = forward(&d, &x, &w, &b);
            for (a, e) in y.iter().zip(direct(&d, &x, &w, &b)) {
                assert!((f64::from(*a) - e).abs() < 1e-4, "{d:?}: {a} vs {e}");
            }
            // The pooled path equals pooling the full output.
            for pool in [1, 2, 3] {
                let (pooled, argmax) = forward_relu_pool(&d, &x, &w, &b, pool);
                let (reference, reference_argmax) =
                    super::super::epilogue::forward(&y, d.out_hw(), pool);
                assert_eq!(pooled, reference, "{d:?} pool {pool}");
                assert_eq!(argmax, reference_argmax, "{d:?} pool {pool}");
            }
        }
    }

    /// Every gradient equals a central finite difference of `Σ dy · y` computed by the definition.
    #[test]
    fn gradients_equal_finite_differences() {
        for d in cases() {
            let mut x = noise(d.batch * d.image(), 4);
            let mut w = noise(d.out_channels * d.patch(), 5);
            let mut b = noise(d.out_channels, 6);
            let dy = noise(d.batch * d.out_channels * d.positions(), 7);
            let (dx, dw, db) = backward(&d, &w, &x, &dy, true);
            let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
                direct(&d, x, w, b)
                    .iter()
                    .zip(&dy)
                    .map(|(y, g)| y * f64::from(*g))
                    .sum()
            };
            let eps = 1e-2f32;
            let check = |name: &str,
                         analytic: &[f32],
                         v: &mut Vec<f32>,
                         which: u8,
                         x: &[f32],
                         w: &[f32],
                         b: &[f32]| {
                for i in 0..v.len() {
                    let orig = v[i];
                    let mut eval = |val: f32| {
                        v[i] = val;
                        let r = match which {
                            0 => loss(v, w, b),
                            1 => loss(x, v, b),
                            _ => loss(x, w, v),
                        };
                        v[i] = orig;
                        r
                    };
                    let numeric = (eval(orig + eps) - eval(orig - eps)) / (2.0 * f64::from(eps));
                    assert!(
                        (numeric - f64::from(analytic[i])).abs() < 1e-3 * (1.0 + numeric.abs()),
                        "{d:?} d{name}[{i}]: {} vs {numeric}",
                        analytic[i]
                    );
                }
            };
            let (x0, w0, b0) = (x.clone(), w.clone(), b.clone());
            check("x", &dx, &mut x, 0, &x0, &w0, &b0);
            check("w", &dw, &mut w, 1, &x0, &w0, &b0);
            check("b", &db, &mut b, 2, &x0, &w0, &b0);
            let (none, dw2, _) = backward(&d, &w0, &x0, &dy, false);
            assert!(none.is_empty());
            assert_eq!(dw, dw2, "{d:?}: dW does not depend on whether dX is wanted");
        }
    }
}
