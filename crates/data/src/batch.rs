//! burn [`Batcher`]s: items in memory → tensors on a device.

use crate::augment::{AugmentationConfig, Augmenter};
use crate::image::ImageItem;
use crate::normalize::{PixelNormalizer, Standardizer};
use crate::tabular::RegressionItem;
use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;

/// A batch of labelled greyscale images. Recurrent models read it as sequences (sequential MNIST):
/// `[batch, height, width]` is `height` steps of `width` features, row by row.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// Normalised pixels. Shape: `[batch, height, width]`.
    pub images: Tensor<3>,
    /// Class indices. Shape: `[batch]`.
    pub labels: Tensor<1, Int>,
}

/// Turns [`ImageItem`]s into an [`ImageBatch`], normalising pixels with training-split statistics and,
/// for training batchers, augmenting them on the fly.
#[derive(Debug, Clone)]
pub struct ImageBatcher {
    /// The normalisation applied to every pixel.
    pub normalizer: PixelNormalizer,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Augmentation applied before normalisation (give it to the training batcher only).
    pub augmenter: Option<Augmenter>,
}

impl ImageBatcher {
    /// A batcher for `height × width` images.
    pub fn new(normalizer: PixelNormalizer, height: usize, width: usize) -> Self {
        Self {
            normalizer,
            height,
            width,
            augmenter: None,
        }
    }

    /// The same batcher, augmenting every image with `config` from a generator seeded with `seed`
    /// (no augmentation when `config` switches nothing on).
    pub fn with_augmentation(mut self, config: AugmentationConfig, seed: u64) -> Self {
        self.augmenter = config.is_active().then(|| Augmenter::new(config, seed));
        self
    }
}

impl Batcher<ImageItem, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        let n = items.len();
        let mut pixels = Vec::with_capacity(n * self.height * self.width);
        let mut labels = Vec::with_capacity(n);
        for item in &items {
            match &self.augmenter {
                Some(a) => pixels.extend(
                    a.apply(&item.pixels, self.height, self.width)
                        .into_iter()
                        .map(|p| self.normalizer.apply_unit(p)),
                ),
                None => pixels.extend(item.pixels.iter().map(|&p| self.normalizer.apply(p))),
            }
            labels.push(item.label as i64);
        }
        ImageBatch {
            images: Tensor::from_data(
                TensorData::new(pixels, [n, self.height, self.width]),
                device,
            ),
            labels: Tensor::from_data(TensorData::new(labels, [n]), device),
        }
    }
}

/// A batch of regression rows.
#[derive(Debug, Clone)]
pub struct TabularBatch {
    /// Standardised features. Shape: `[batch, features]`.
    pub features: Tensor<2>,
    /// Targets (standardised when the batcher has a target standardiser). Shape: `[batch, 1]`.
    pub targets: Tensor<2>,
}

/// Turns [`RegressionItem`]s into a [`TabularBatch`], standardising with training-split statistics.
#[derive(Debug, Clone)]
pub struct TabularBatcher {
    /// Feature standardisation.
    pub features: Standardizer,
    /// Target standardisation; `None` keeps targets as they are.
    pub target: Option<Standardizer>,
}

impl Batcher<RegressionItem, TabularBatch> for TabularBatcher {
    fn batch(&self, items: Vec<RegressionItem>, device: &Device) -> TabularBatch {
        let n = items.len();
        let width = items.first().map_or(0, |i| i.features.len());
        let mut features = Vec::with_capacity(n * width);
        let mut targets = Vec::with_capacity(n);
        for item in items {
            let mut row = item.features;
            self.features.apply(&mut row);
            features.extend(row);
            let mut t = [item.target];
            if let Some(s) = &self.target {
                s.apply(&mut t);
            }
            targets.push(t[0]);
        }
        TabularBatch {
            features: Tensor::from_data(TensorData::new(features, [n, width]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n, 1]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_batch_has_shapes_and_normalised_values() {
        let device = Device::flex();
        let b = ImageBatcher::new(PixelNormalizer::unit(), 1, 2);
        let batch = b.batch(
            vec![
                ImageItem {
                    pixels: vec![0, 255],
                    label: 3,
                },
                ImageItem {
                    pixels: vec![255, 0],
                    label: 1,
                },
            ],
            &device,
        );
        assert_eq!(batch.images.dims(), [2, 1, 2]);
        assert_eq!(
            batch.images.to_data().try_to_vec::<f32>().unwrap(),
            [0.0, 1.0, 1.0, 0.0]
        );
        assert_eq!(
            batch
                .labels
                .to_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap(),
            [3, 1]
        );
    }

    #[test]
    fn augmenting_batcher_keeps_labels_and_shapes_and_changes_pixels() {
        let device = Device::flex();
        let items: Vec<ImageItem> = (0..4u8)
            .map(|label| ImageItem {
                pixels: (0..64).map(|v| (v * 4) as u8).collect(),
                label,
            })
            .collect();
        let plain = ImageBatcher::new(PixelNormalizer::unit(), 8, 8);
        let augmenting = plain
            .clone()
            .with_augmentation(AugmentationConfig::standard(), 1);
        let a = plain.batch(items.clone(), &device);
        let b = augmenting.batch(items.clone(), &device);
        assert_eq!(b.images.dims(), [4, 8, 8]);
        assert_eq!(
            b.labels
                .to_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap(),
            [0, 1, 2, 3]
        );
        let (va, vb) = (
            a.images.to_data().try_to_vec::<f32>().unwrap(),
            b.images.to_data().try_to_vec::<f32>().unwrap(),
        );
        assert!(va.iter().zip(&vb).filter(|(x, y)| x != y).count() > 100);
        // Same seed, same batches.
        let again = plain
            .with_augmentation(AugmentationConfig::standard(), 1)
            .batch(items, &device);
        assert_eq!(again.images.to_data().try_to_vec::<f32>().unwrap(), vb);
    }

    #[test]
    fn tabular_batch_standardises() {
        let device = Device::flex();
        let s = Standardizer {
            mean: vec![1.0],
            std: vec![2.0],
        };
        let b = TabularBatcher {
            features: s.clone(),
            target: Some(s),
        };
        let batch = b.batch(
            vec![RegressionItem {
                features: vec![5.0],
                target: 3.0,
            }],
            &device,
        );
        assert_eq!(batch.features.to_data().try_to_vec::<f32>().unwrap(), [2.0]);
        assert_eq!(batch.targets.dims(), [1, 1]);
        assert_eq!(batch.targets.to_data().try_to_vec::<f32>().unwrap(), [1.0]);
    }
}
