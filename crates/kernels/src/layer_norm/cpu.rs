//! The raw f32 kernels of [`super::layer_norm`]: one pass per row for the statistics, one for the result,
//! and a backward pass that needs only the row's mean and reciprocal deviation. Blocks of rows are spread
//! over rayon's threads; the parameter gradients are summed per block, then across blocks.

use rayon::prelude::*;

/// Rows per block of work.
const ROWS_PER_BLOCK: usize = 32;

/// The forward pass over `x` (rows of `width`): returns `y` and, per row, `[mean, 1/√(var + eps)]`.
pub fn forward(
    x: &[f32],
    width: usize,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / width.max(1);
    let mut y = vec![0.0f32; x.len()];
    let mut stats = vec![0.0f32; 2 * rows];
    y.par_chunks_mut(ROWS_PER_BLOCK * width)
        .zip(stats.par_chunks_mut(2 * ROWS_PER_BLOCK))
        .zip(x.par_chunks(ROWS_PER_BLOCK * width))
        .for_each(|((y, stats), x)| {
            for ((y, stat), x) in y
                .chunks_exact_mut(width)
                .zip(stats.chunks_exact_mut(2))
                .zip(x.chunks_exact(width))
            {
                let mean = x.iter().sum::<f32>() / width as f32;
                let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
                let rstd = 1.0 / (var + eps).sqrt();
                match beta {
                    Some(beta) => {
                        for (((y, x), g), b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                            *y = (x - mean) * rstd * g + b;
                        }
                    }
                    None => {
                        for ((y, x), g) in y.iter_mut().zip(x).zip(gamma) {
                            *y = (x - mean) * rstd * g;
                        }
                    }
                }
                stat[0] = mean;
                stat[1] = rstd;
            }
        });
    (y, stats)
}

/// Gradients of the input, `gamma` and `beta`.
pub struct LayerNormGrads {
    /// Same shape as `x`.
    pub dx: Vec<f32>,
    /// `[width]`.
    pub dgamma: Vec<f32>,
    /// `[width]`.
    pub dbeta: Vec<f32>,
}

/// The backward pass: with `x̂ = (x − mean)·rstd` and `g = dy ∘ gamma`,
/// `dx = rstd · (g − mean(g) − x̂ · mean(g ∘ x̂))`, `dgamma = Σ dy ∘ x̂`, `dbeta = Σ dy`.
pub fn backward(
    x: &[f32],
    width: usize,
    gamma: &[f32],
    stats: &[f32],
    dy: &[f32],
) -> LayerNormGrads {
    let mut dx = vec![0.0f32; x.len()];
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(ROWS_PER_BLOCK * width)
        .zip(x.par_chunks(ROWS_PER_BLOCK * width))
        .zip(dy.par_chunks(ROWS_PER_BLOCK * width))
        .zip(stats.par_chunks(2 * ROWS_PER_BLOCK))
        .map(|(((dx, x), dy), stats)| {
            let mut dgamma = vec![0.0f32; width];
            let mut dbeta = vec![0.0f32; width];
            let mut xhat = vec![0.0f32; width];
            for (((dx, x), dy), stat) in dx
                .chunks_exact_mut(width)
                .zip(x.chunks_exact(width))
                .zip(dy.chunks_exact(width))
                .zip(stats.chunks_exact(2))
            {
                let (mean, rstd) = (stat[0], stat[1]);
                let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
                for ((((xh, x), dy), g), (dg, db)) in xhat
                    .iter_mut()
                    .zip(x)
                    .zip(dy)
                    .zip(gamma)
                    .zip(dgamma.iter_mut().zip(dbeta.iter_mut()))
                {
                    *xh = (x - mean) * rstd;
                    let gi = dy * g;
                    sum_g += gi;
                    sum_gx += gi * *xh;
                    *dg += dy * *xh;
                    *db += dy;
                }
                let (mean_g, mean_gx) = (sum_g / width as f32, sum_gx / width as f32);
                for (((dx, xh), dy), g) in dx.iter_mut().zip(&xhat).zip(dy).zip(gamma) {
                    *dx = rstd * (dy * g - mean_g - xh * mean_gx);
                }
            }
            (dgamma, dbeta)
        })
        .collect();
    let mut dgamma = vec![0.0f32; width];
    let mut dbeta = vec![0.0f32; width];
    for (g, b) in partials {
        dgamma.iter_mut().zip(&g).for_each(|(a, v)| *a += v);
        dbeta.iter_mut().zip(&b).for_each(|(a, v)| *a += v);
    }
    LayerNormGrads { dx, dgamma, dbeta }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values over [−2, 2).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        crate::testing::values(n, seed)
            .iter()
            .map(|v| 2.0 * v)
            .collect()
    }

    /// The layer norm by its definition, in f64.
    fn reference(x: &[f32], width: usize, gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
        x.chunks(width)
            .flat_map(|row| {
                let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / width as f64;
                let var = row
                    .iter()
                    .map(|&v| (f64::from(v) - mean).powi(2))
                    .sum::<f64>()
                    / width as f64;
                row.iter()
                    .zip(gamma)
                    .zip(beta)
                    .map(move |((&v, &g), &b)| {
                        (f64::from(v) - mean) / (var + eps).sqrt() * f64::from(g) + f64::from(b)
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_forward_pass_normalises_each_row() {
        // 70 rows: more than two blocks, the last one short.
        let (width, rows) = (7, 70);
        let (x, gamma, beta) = (values(width * rows, 1), values(width, 2), values(width, 3));
        let (y, _) = forward(&x, width, &gamma, Some(&beta), 1e-5);
        for (a, b) in y.iter().zip(reference(&x, width, &gamma, &beta, 1e-5)) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "{a} vs {b}");
        }
        let zeros = vec![0.0; width];
        let (y, _) = forward(&x, width, &gamma, None, 1e-5);
        for (a, b) in y.iter().zip(reference(&x, width, &gamma, &zeros, 1e-5)) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn the_gradients_equal_finite_differences() {
        let (width, rows) = (5, 40);
        let (x, gamma, beta) = (values(width * rows, 4), values(width, 5), values(width, 6));
        let dy = values(width * rows, 7);
        let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
            reference(x, width, gamma, beta, 1e-5)
                .iter()
                .zip(&dy)
                .map(|(y, g)| y * f64::from(*g))
                .sum()
        };
        let (_, stats) = forward(&x, width, &gamma, Some(&beta), 1e-5);
        let g = backward(&x, width, &gamma, &stats, &dy);
        let h = 1e-3f32;
        for (which, grad) in [(0, &g.dx), (1, &g.dgamma), (2, &g.dbeta)] {
            for i in 0..grad.len() {
                let mut inputs = [x.clone(), gamma.clone(), beta.clone()];
                inputs[which][i] += h;
                let up = loss(&inputs[0], &inputs[1], &inputs[2]);
                inputs[which][i] -= 2.0 * h;
                let down = loss(&inputs[0], &inputs[1], &inputs[2]);
                let fd = (up - down) / (2.0 * f64::from(h));
                assert!(
                    (fd - f64::from(grad[i])).abs() < 2e-3 * fd.abs().max(1.0),
                    "input {which} element {i}: {} vs {fd}",
                    grad[i]
                );
            }
        }
    }
}
