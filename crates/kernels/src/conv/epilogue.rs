//! ReLU and max pooling applied to a convolution's output inside the fused op, and their backward pass.
//!
//! `relu(max(window))` equals `max(relu(window))` (ReLU is monotonic), so the op pools the raw outputs and
//! keeps, per pooled cell, the offset of the window's maximum where that maximum is positive ([`ZERO`]
//! where ReLU made the cell 0); the backward pass sends each pooled cell's gradient to its offset, and
//! nothing elsewhere. Pooling has kernel
//! = stride `pool`, no padding, floor rounding (burn's `MaxPool2dConfig::new([pool, pool])`); `pool` 1 is
//! the ReLU alone. Ties go to the first maximum in row-major order.

use rayon::prelude::*;

/// The offset recorded for a pooled cell whose maximum was not positive: ReLU made it 0, and it passes no
/// gradient.
pub const ZERO: u32 = u32::MAX;

/// Pooled `[height, width]` of a `[height, width]` plane.
pub fn pooled_hw([h, w]: [usize; 2], pool: usize) -> [usize; 2] {
    [h / pool, w / pool]
}

/// `relu(max pool(y))` for planes of `[h, w]` (`y` is `[planes, h, w]`): the pooled values and, per pooled
/// cell, the offset of its maximum inside its plane ([`ZERO`] where the maximum was not positive).
pub fn forward(y: &[f32], [h, w]: [usize; 2], pool: usize) -> (Vec<f32>, Vec<u32>) {
    let [ph, pw] = pooled_hw([h, w], pool);
    let planes = y.len() / (h * w).max(1);
    let mut out = vec![0.0f32; planes * ph * pw];
    let mut argmax = vec![0u32; planes * ph * pw];
    out.par_chunks_mut((ph * pw).max(1))
        .zip(argmax.par_chunks_mut((ph * pw).max(1)))
        .zip(y.par_chunks((h * w).max(1)))
        .for_each(|((out, argmax), plane)| pool_planes(plane, [h, w], pool, out, argmax));
    (out, argmax)
}

/// [`forward`] of consecutive `[h, w]` planes `y` on the calling thread, into `out` and `argmax` (one
/// pooled plane each per plane of `y`).
pub fn pool_planes(
    y: &[f32],
    [h, w]: [usize; 2],
    pool: usize,
    out: &mut [f32],
    argmax: &mut [u32],
) {
    let [ph, pw] = pooled_hw([h, w], pool);
    let cells = (ph * pw).max(1);
    for ((plane, out), argmax) in y
        .chunks((h * w).max(1))
        .zip(out.chunks_mut(cells))
        .zip(argmax.chunks_mut(cells))
    {
        for py in 0..ph {
            for px in 0..pw {
                let mut best = f32::NEG_INFINITY;
                let mut at = 0;
                for i in 0..pool {
                    let row = (py * pool + i) * w + px * pool;
                    for (j, &v) in plane[row..row + pool].iter().enumerate() {
                        if v > best {
                            best = v;
                            at = row + j;
                        }
                    }
                }
                out[py * pw + px] = best.max(0.0);
                argmax[py * pw + px] = if best > 0.0 { at as u32 } else { ZERO };
            }
        }
    }
}

/// The gradient of the convolution's output `[planes, h, w]` from that of [`forward`]'s result.
pub fn backward(argmax: &[u32], dpooled: &[f32], [h, w]: [usize; 2], pool: usize) -> Vec<f32> {
    let [ph, pw] = pooled_hw([h, w], pool);
    let cells = (ph * pw).max(1);
    let planes = argmax.len() / cells;
    let mut dy = vec![0.0f32; planes * h * w];
    dy.par_chunks_mut((h * w).max(1))
        .zip(argmax.par_chunks(cells).zip(dpooled.par_chunks(cells)))
        .for_each(|(dy, (argmax, dpooled))| {
            for (&at, &g) in argmax.iter().zip(dpooled) {
                if at != ZERO {
                    dy[at as usize] += g;
                }
            }
        });
    dy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_takes_the_rectified_maximum_and_routes_its_gradient() {
        // One 4×5 plane (the last column is dropped by floor rounding), pool 2.
        #[rustfmt::skip]
        let y = [
            1.0, -2.0,  0.5, 3.0, 9.0,
            0.0,  4.0, -1.0, 2.0, 9.0,
           -1.0, -2.0,  5.0, 5.0, 9.0,
           -3.0, -4.0,  1.0, 0.0, 9.0,
        ];
        let (out, argmax) = forward(&y, [4, 5], 2);
        assert_eq!(out, [4.0, 3.0, 0.0, 5.0]);
        assert_eq!(argmax, [6, 3, ZERO, 12]);
        let dy = backward(&argmax, &[1.0, 2.0, 3.0, 4.0], [4, 5], 2);
        let mut expected = vec![0.0; 20];
        // The all-negative window (max −1 → relu 0) passes no gradient.
        expected[6] = 1.0;
        expected[3] = 2.0;
        expected[12] = 4.0;
        assert_eq!(dy, expected);
        // Pool 1 is the ReLU alone.
        let (out, _) = forward(&y[..5], [1, 5], 1);
        assert_eq!(out, [1.0, 0.0, 0.5, 3.0, 9.0]);
    }
}
