//! The one error type of `kiln-data`: every variant names the file (and, where it applies, the line, field
//! or dimension) that was wrong.

use std::path::PathBuf;

/// What can go wrong while reading or preparing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// An IDX file does not start with a valid magic number.
    #[error(
        "{path}: not an IDX file of unsigned bytes: magic number {found:#010x} (expected 0x0000080N)"
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The four bytes read, big-endian.
        found: u32,
    },
    /// An IDX file has a dimensionality other than the one asked for.
    #[error("{path}: expected an IDX file with {expected} dimension(s), found {found}")]
    WrongRank {
        /// The file.
        path: PathBuf,
        /// Dimensions expected (3 for images, 1 for labels).
        expected: usize,
        /// Dimensions in the header.
        found: usize,
    },
    /// A file ends before the data its header announces.
    #[error("{path}: truncated: header announces {expected} bytes of data, file holds {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes announced.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// An image file and a label file disagree on the number of items.
    #[error("{images} holds {image_count} images but {labels} holds {label_count} labels")]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Images it holds.
        image_count: usize,
        /// The label file.
        labels: PathBuf,
        /// Labels it holds.
        label_count: usize,
    },
    /// A folder lacks one of the files a dataset needs.
    #[error("{dir}: no {wanted} (looked for {tried})")]
    MissingFile {
        /// The folder searched.
        dir: PathBuf,
        /// What was wanted, e.g. "training images".
        wanted: String,
        /// The names tried.
        tried: String,
    },
    /// A row of a CSV/TSV file does not have as many fields as the header.
    #[error("{path}:{line}: expected {expected} fields (as in the header), found {found}")]
    FieldCount {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },
    /// A CSV/TSV field is not a number.
    #[error("{path}:{line}: field `{column}` is not a number: {value:?}")]
    NotANumber {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The column name from the header.
        column: String,
        /// The text found.
        value: String,
    },
    /// A table has no column of the requested name.
    #[error("{path}: no column named `{column}` (columns: {available})")]
    NoSuchColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The columns present, comma-separated.
        available: String,
    },
    /// A file holds no data rows or items.
    #[error("{path}: no data")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A split holds too few items for training or for the metric it is scored with.
    #[error(
        "{source_name}: the {split} split holds {found} item(s), at least {needed} needed: {why}"
    )]
    SplitTooSmall {
        /// The file or dataset the split comes from.
        source_name: String,
        /// Which split (`train`, `valid`, `test`).
        split: String,
        /// Items it holds.
        found: usize,
        /// Items needed.
        needed: usize,
        /// What needs them.
        why: String,
    },
    /// The training and test images of a folder differ in size.
    #[error(
        "{dir}: training images are {train_height}x{train_width} but test images are {test_height}x{test_width}"
    )]
    ImageSizeMismatch {
        /// The folder.
        dir: PathBuf,
        /// Training image height.
        train_height: usize,
        /// Training image width.
        train_width: usize,
        /// Test image height.
        test_height: usize,
        /// Test image width.
        test_width: usize,
    },
    /// A split or subset was asked for with impossible sizes.
    #[error("invalid split: {0}")]
    InvalidSplit(String),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
