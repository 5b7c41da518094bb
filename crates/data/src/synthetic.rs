//! Synthetic data for unit tests only (the seeds' snippets): never used for reported results.

use crate::tabular::{RegressionDataset, RegressionItem};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A standard normal sample (Box–Muller), so that tests need no extra crate.
fn normal(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// `n` points of `y = 3x + 2 + noise` with `x` uniform in [-1, 1] and Gaussian noise of standard
/// deviation `noise`.
pub fn linear_line(n: usize, noise: f32, seed: u64) -> RegressionDataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let items = (0..n)
        .map(|_| {
            let x: f32 = rng.random_range(-1.0..1.0);
            RegressionItem {
                features: vec![x],
                target: 3.0 * x + 2.0 + noise * normal(&mut rng),
            }
        })
        .collect();
    RegressionDataset {
        feature_names: vec!["x".into()],
        items,
    }
}

/// `n` points in two Gaussian blobs of unit variance centred at (-2, -2) (label 0) and (2, 2) (label 1),
/// alternating labels. Returns row-major features `[n, 2]` and labels.
pub fn two_blobs(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut features = Vec::with_capacity(2 * n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 2) as u8;
        let centre = if label == 0 { -2.0 } else { 2.0 };
        features.push(centre + normal(&mut rng));
        features.push(centre + normal(&mut rng));
        labels.push(label);
    }
    (features, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_follows_three_x_plus_two() {
        let d = linear_line(200, 0.0, 1);
        assert!(
            d.items
                .iter()
                .all(|i| (i.target - (3.0 * i.features[0] + 2.0)).abs() < 1e-5)
        );
        assert_eq!(linear_line(5, 0.1, 3), linear_line(5, 0.1, 3));
    }

    #[test]
    fn blobs_are_separated_by_label() {
        let (x, y) = two_blobs(400, 2);
        let mean0: f32 = (0..400)
            .filter(|&i| y[i] == 0)
            .map(|i| x[2 * i])
            .sum::<f32>()
            / 200.0;
        let mean1: f32 = (0..400)
            .filter(|&i| y[i] == 1)
            .map(|i| x[2 * i])
            .sum::<f32>()
            / 200.0;
        assert!(mean0 < -1.5 && mean1 > 1.5, "{mean0} {mean1}");
    }
}
