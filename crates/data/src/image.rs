//! Labelled image datasets read from IDX image/label pairs (MNIST, Fashion-MNIST, KMNIST, EMNIST, or your
//! own), and the folder layout that holds a train and a test pair.

use crate::DataError;
use crate::idx::IdxArray;
use burn::data::dataset::{Dataset, DatasetError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One labelled greyscale image: `height × width` bytes, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageItem {
    /// Pixels, 0–255, row-major.
    pub pixels: Vec<u8>,
    /// The class index.
    pub label: u8,
}

/// A set of same-sized greyscale images with class labels, held in memory.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    /// All pixels, image after image; shared so that subsets are cheap to make.
    pixels: Arc<Vec<u8>>,
    labels: Arc<Vec<u8>>,
    /// Indices into `pixels`/`labels` that this dataset (or subset) holds.
    indices: Vec<usize>,
    height: usize,
    width: usize,
}

impl ImageDataset {
    /// Builds a dataset from raw pixels (`labels.len() × height × width` bytes) and labels.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<u8>,
        height: usize,
        width: usize,
    ) -> Result<Self, DataError> {
        if pixels.len() != labels.len() * height * width {
            return Err(DataError::InvalidSplit(format!(
                "{} pixel bytes do not make {} images of {height}×{width}",
                pixels.len(),
                labels.len()
            )));
        }
        Ok(Self {
            indices: (0..labels.len()).collect(),
            pixels: Arc::new(pixels),
            labels: Arc::new(labels),
            height,
            width,
        })
    }

    /// Reads an IDX image file (3 dimensions: count × height × width) and its IDX label file (1 dimension),
    /// each gzipped or raw, and checks that they hold the same number of items.
    pub fn from_idx(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Self, DataError> {
        let (images, labels) = (images.as_ref(), labels.as_ref());
        let img = IdxArray::read(images, 3)?;
        let lab = IdxArray::read(labels, 1)?;
        if img.dims[0] != lab.dims[0] {
            return Err(DataError::CountMismatch {
                images: images.to_path_buf(),
                image_count: img.dims[0],
                labels: labels.to_path_buf(),
                label_count: lab.dims[0],
            });
        }
        if img.dims[0] == 0 {
            return Err(DataError::Empty {
                path: images.to_path_buf(),
            });
        }
        Self::new(img.data, lab.data, img.dims[1], img.dims[2])
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of classes: one more than the largest label in the whole underlying file.
    pub fn num_classes(&self) -> usize {
        self.labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1)
    }

    /// The label of item `i` of this dataset.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[self.indices[i]]
    }

    /// The pixels of item `i` of this dataset.
    pub fn pixels(&self, i: usize) -> &[u8] {
        let n = self.height * self.width;
        let start = self.indices[i] * n;
        &self.pixels[start..start + n]
    }

    /// A dataset holding the items at `indices` (positions in this dataset), sharing the pixel buffer.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            pixels: Arc::clone(&self.pixels),
            labels: Arc::clone(&self.labels),
            indices: indices.iter().map(|&i| self.indices[i]).collect(),
            height: self.height,
            width: self.width,
        }
    }

    /// The first `n` items (all of them if there are fewer).
    pub fn take(&self, n: usize) -> Self {
        let n = n.min(self.indices.len());
        self.subset(&(0..n).collect::<Vec<_>>())
    }

    /// Mean and standard deviation of all pixels of this dataset, scaled to 0–1.
    pub fn pixel_stats(&self) -> (f32, f32) {
        let (mut sum, mut sum_sq, mut count) = (0f64, 0f64, 0usize);
        for i in 0..self.indices.len() {
            for &p in self.pixels(i) {
                let v = p as f64 / 255.0;
                sum += v;
                sum_sq += v * v;
            }
            count += self.height * self.width;
        }
        let mean = sum / count.max(1) as f64;
        let var = (sum_sq / count.max(1) as f64 - mean * mean).max(0.0);
        (mean as f32, var.sqrt() as f32)
    }
}

impl Dataset<ImageItem> for ImageDataset {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        Ok(ImageItem {
            pixels: self.pixels(index).to_vec(),
            label: self.label(index),
        })
    }

    fn len(&self) -> usize {
        self.indices.len()
    }
}

/// A folder holding the four standard IDX files of an MNIST-like dataset:
/// `{train,t10k}-{images-idx3,labels-idx1}-ubyte`, each optionally gzipped (`.gz`).
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The training images.
    pub train: ImageDataset,
    /// The test images.
    pub test: ImageDataset,
}

impl ImageFolder {
    /// Loads the training and test pairs from `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        let dir = dir.as_ref();
        let train = ImageDataset::from_idx(
            find(dir, "train-images-idx3-ubyte", "training images")?,
            find(dir, "train-labels-idx1-ubyte", "training labels")?,
        )?;
        let test = ImageDataset::from_idx(
            find(dir, "t10k-images-idx3-ubyte", "test images")?,
            find(dir, "t10k-labels-idx1-ubyte", "test labels")?,
        )?;
        // A model is built for one image size: a mismatch would only show when the test batches arrive,
        // after training.
        if (train.height(), train.width()) != (test.height(), test.width()) {
            return Err(DataError::ImageSizeMismatch {
                dir: dir.to_path_buf(),
                train_height: train.height(),
                train_width: train.width(),
                test_height: test.height(),
                test_width: test.width(),
            });
        }
        Ok(Self { train, test })
    }

    /// The vendored MNIST (`data/mnist`).
    pub fn mnist() -> Result<Self, DataError> {
        Self::load(crate::data_dir().join("mnist"))
    }
}

/// Finds `stem` or `stem.gz` in `dir`.
fn find(dir: &Path, stem: &str, wanted: &str) -> Result<PathBuf, DataError> {
    let candidates = [dir.join(stem), dir.join(format!("{stem}.gz"))];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| DataError::MissingFile {
            dir: dir.to_path_buf(),
            wanted: wanted.to_string(),
            tried: format!("{stem}, {stem}.gz"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, arr: &IdxArray) -> PathBuf {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&arr.to_bytes()))
            .unwrap();
        path
    }

    fn images(n: usize) -> IdxArray {
        IdxArray {
            dims: vec![n, 2, 2],
            data: (0..n * 4).map(|v| v as u8).collect(),
        }
    }

    fn labels(n: usize) -> IdxArray {
        IdxArray {
            dims: vec![n],
            data: (0..n).map(|v| (v % 3) as u8).collect(),
        }
    }

    #[test]
    fn loads_a_folder_of_raw_idx_files_not_only_mnist() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "train-images-idx3-ubyte", &images(5));
        write(dir.path(), "train-labels-idx1-ubyte", &labels(5));
        write(dir.path(), "t10k-images-idx3-ubyte", &images(2));
        write(dir.path(), "t10k-labels-idx1-ubyte", &labels(2));
        let folder = ImageFolder::load(dir.path()).unwrap();
        assert_eq!(folder.train.len(), 5);
        assert_eq!(folder.test.len(), 2);
        assert_eq!(folder.train.num_classes(), 3);
        assert_eq!(folder.train.get(1).unwrap().pixels, vec![4, 5, 6, 7]);
    }

    #[test]
    fn train_and_test_images_of_different_sizes_are_refused_at_loading() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "train-images-idx3-ubyte", &images(5));
        write(dir.path(), "train-labels-idx1-ubyte", &labels(5));
        let wide = IdxArray {
            dims: vec![2, 2, 3],
            data: vec![0; 12],
        };
        write(dir.path(), "t10k-images-idx3-ubyte", &wide);
        write(dir.path(), "t10k-labels-idx1-ubyte", &labels(2));
        let err = ImageFolder::load(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::ImageSizeMismatch {
                    train_height: 2,
                    train_width: 2,
                    test_height: 2,
                    test_width: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("2x2") && err.to_string().contains("2x3"),
            "{err}"
        );
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let i = write(dir.path(), "i", &images(5));
        let l = write(dir.path(), "l", &labels(4));
        let err = ImageDataset::from_idx(&i, &l).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            DataError::CountMismatch {
                image_count: 5,
                label_count: 4,
                ..
            }
        ));
        assert!(msg.contains("/i ") && msg.contains("/l "), "{msg}");
    }

    #[test]
    fn missing_file_and_missing_folder_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "train-images-idx3-ubyte", &images(5));
        let err = ImageFolder::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("training labels"), "{err}");
        let err =
            ImageDataset::from_idx(dir.path().join("nope"), dir.path().join("nope2")).unwrap_err();
        assert!(
            matches!(err, DataError::Io { .. }) && err.to_string().contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn subsets_share_pixels_and_keep_labels() {
        let ds = ImageDataset::new((0..24).collect(), vec![0, 1, 2, 0, 1, 2], 2, 2).unwrap();
        let sub = ds.subset(&[4, 1]);
        assert_eq!(sub.len(), 2);
        assert_eq!(
            sub.get(0).unwrap(),
            ImageItem {
                pixels: vec![16, 17, 18, 19],
                label: 1
            }
        );
        assert_eq!(sub.subset(&[1]).get(0).unwrap().label, 1);
    }

    #[test]
    fn a_truncated_gzip_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let real = crate::data_dir().join("mnist/t10k-labels-idx1-ubyte.gz");
        let bytes = std::fs::read(real).unwrap();
        let cut = dir.path().join("t10k-labels-idx1-ubyte.gz");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = IdxArray::read(&cut, 1).unwrap_err();
        assert!(
            err.to_string().contains("t10k-labels-idx1-ubyte.gz"),
            "{err}"
        );
    }

    #[test]
    fn vendored_mnist_has_the_canonical_shape() {
        let m = ImageFolder::mnist().unwrap();
        assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
        assert_eq!(
            (m.train.height(), m.train.width(), m.train.num_classes()),
            (28, 28, 10)
        );
        // The first training label of MNIST is a 5, the first test label a 7.
        assert_eq!((m.train.label(0), m.test.label(0)), (5, 7));
    }
}
