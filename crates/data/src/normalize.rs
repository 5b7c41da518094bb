//! Normalisation whose statistics come from the training split only, applied unchanged to validation and
//! test data.

use crate::image::ImageDataset;
use crate::tabular::RegressionDataset;
use serde::{Deserialize, Serialize};

/// Per-feature standardisation `(x - mean) / std`, fitted on training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Per-feature means.
    pub mean: Vec<f32>,
    /// Per-feature standard deviations (a constant feature gets 1, so it maps to 0 rather than NaN).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits means and standard deviations of the rows given.
    pub fn fit<'a>(rows: impl IntoIterator<Item = &'a [f32]>) -> Self {
        let mut sum: Vec<f64> = Vec::new();
        let mut sum_sq: Vec<f64> = Vec::new();
        let mut n = 0usize;
        for row in rows {
            if sum.is_empty() {
                sum = vec![0.0; row.len()];
                sum_sq = vec![0.0; row.len()];
            }
            for (j, &v) in row.iter().enumerate() {
                sum[j] += v as f64;
                sum_sq[j] += (v as f64) * (v as f64);
            }
            n += 1;
        }
        let n = n.max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| {
                let sd = (sq / n - m * m).max(0.0).sqrt();
                if sd > 1e-12 { sd as f32 } else { 1.0 }
            })
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }

    /// Fits the features of a regression dataset.
    pub fn fit_features(data: &RegressionDataset) -> Self {
        Self::fit(data.items.iter().map(|i| i.features.as_slice()))
    }

    /// Fits the target of a regression dataset (a one-element standardiser).
    pub fn fit_target(data: &RegressionDataset) -> Self {
        let targets: Vec<[f32; 1]> = data.items.iter().map(|i| [i.target]).collect();
        Self::fit(targets.iter().map(|t| t.as_slice()))
    }

    /// Standardises a row in place.
    pub fn apply(&self, row: &mut [f32]) {
        for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
            *v = (*v - m) / s;
        }
    }

    /// Maps a standardised value of feature `j` back to its original scale.
    pub fn invert(&self, j: usize, value: f32) -> f32 {
        value * self.std[j] + self.mean[j]
    }
}

/// Pixel normalisation for images: bytes scaled to 0–1, then `(x - mean) / std` with statistics of the
/// training images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelNormalizer {
    /// Mean pixel value (0–1 scale).
    pub mean: f32,
    /// Pixel standard deviation (0–1 scale).
    pub std: f32,
}

impl PixelNormalizer {
    /// Fits the statistics of a (training) image dataset.
    pub fn fit(train: &ImageDataset) -> Self {
        let (mean, std) = train.pixel_stats();
        Self {
            mean,
            std: if std > 1e-12 { std } else { 1.0 },
        }
    }

    /// No normalisation beyond scaling bytes to 0–1.
    pub fn unit() -> Self {
        Self {
            mean: 0.0,
            std: 1.0,
        }
    }

    /// Normalises one byte.
    pub fn apply(&self, pixel: u8) -> f32 {
        self.apply_unit(pixel as f32 / 255.0)
    }

    /// Normalises a pixel already on the 0–1 scale (e.g. after augmentation).
    pub fn apply_unit(&self, pixel: f32) -> f32 {
        (pixel - self.mean) / self.std
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardizer_gives_zero_mean_unit_variance() {
        let rows = [vec![1.0, 5.0], vec![3.0, 5.0]];
        let s = Standardizer::fit(rows.iter().map(|r| r.as_slice()));
        assert_eq!(s.mean, [2.0, 5.0]);
        assert_eq!(s.std, [1.0, 1.0]); // the constant column gets 1, not 0
        let mut r = vec![3.0, 5.0];
        s.apply(&mut r);
        assert_eq!(r, [1.0, 0.0]);
        assert_eq!(s.invert(0, 1.0), 3.0);
    }

    #[test]
    fn pixel_normalizer_uses_training_statistics() {
        let ds = ImageDataset::new(vec![0, 255, 0, 255], vec![0, 1], 1, 2).unwrap();
        let n = PixelNormalizer::fit(&ds);
        assert!((n.mean - 0.5).abs() < 1e-6 && (n.std - 0.5).abs() < 1e-6);
        assert!((n.apply(255) - 1.0).abs() < 1e-6);
    }
}
