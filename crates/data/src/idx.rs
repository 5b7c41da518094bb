//! The IDX file format (LeCun's MNIST format): a big-endian header `0x00 0x00 <type> <ndims>`, then
//! `ndims` big-endian `u32` sizes, then the data. Kiln reads unsigned-byte IDX files (type `0x08`), which
//! is what image and label files use, gzipped or raw.

use crate::DataError;
use crate::read::read_maybe_gzipped;
use std::path::Path;

/// The IDX type code of unsigned bytes.
const TYPE_U8: u8 = 0x08;

/// An IDX array of unsigned bytes: its dimensions and its data in row-major order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes of the dimensions, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// Reads an unsigned-byte IDX file with `rank` dimensions, checking the magic number, the rank and that
    /// the file holds exactly the data the header announces (a truncated file is an error; trailing bytes
    /// are an error too, since they mean the header is not what the writer meant).
    pub fn read(path: impl AsRef<Path>, rank: usize) -> Result<Self, DataError> {
        let path = path.as_ref();
        let bytes = read_maybe_gzipped(path)?;
        Self::parse(&bytes, rank, path)
    }

    /// Parses IDX bytes already in memory; `path` is only used in errors.
    pub fn parse(bytes: &[u8], rank: usize, path: &Path) -> Result<Self, DataError> {
        let truncated = |expected: usize| DataError::Truncated {
            path: path.to_path_buf(),
            expected,
            found: bytes.len(),
        };
        let magic = bytes.get(..4).ok_or_else(|| truncated(4))?;
        let found_magic = u32::from_be_bytes([magic[0], magic[1], magic[2], magic[3]]);
        if magic[0] != 0 || magic[1] != 0 || magic[2] != TYPE_U8 || magic[3] == 0 {
            return Err(DataError::BadMagic {
                path: path.to_path_buf(),
                found: found_magic,
            });
        }
        let found_rank = magic[3] as usize;
        if found_rank != rank {
            return Err(DataError::WrongRank {
                path: path.to_path_buf(),
                expected: rank,
                found: found_rank,
            });
        }
        let header_len = 4 + 4 * rank;
        let header = bytes
            .get(4..header_len)
            .ok_or_else(|| truncated(header_len))?;
        let dims: Vec<usize> = header
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        let count: usize = dims.iter().product();
        let body = &bytes[header_len..];
        if body.len() != count {
            return Err(DataError::Truncated {
                path: path.to_path_buf(),
                expected: count,
                found: body.len(),
            });
        }
        Ok(Self {
            dims,
            data: body.to_vec(),
        })
    }

    /// Encodes the array as IDX bytes (uncompressed); the inverse of [`IdxArray::parse`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0, 0, TYPE_U8, self.dims.len() as u8];
        for &d in &self.dims {
            out.extend_from_slice(&(d as u32).to_be_bytes());
        }
        out.extend_from_slice(&self.data);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sample() -> IdxArray {
        IdxArray {
            dims: vec![2, 2, 3],
            data: (0..12).collect(),
        }
    }

    #[test]
    fn round_trips() {
        let a = sample();
        let parsed = IdxArray::parse(&a.to_bytes(), 3, Path::new("x")).unwrap();
        assert_eq!(parsed, a);
    }

    #[test]
    fn truncated_body_names_file_and_sizes() {
        let mut bytes = sample().to_bytes();
        bytes.truncate(bytes.len() - 5);
        let err = IdxArray::parse(&bytes, 3, &PathBuf::from("imgs.idx")).unwrap_err();
        assert!(matches!(
            err,
            DataError::Truncated {
                expected: 12,
                found: 7,
                ..
            }
        ));
        assert!(err.to_string().contains("imgs.idx"), "{err}");
    }

    #[test]
    fn truncated_header_is_an_error() {
        let err = IdxArray::parse(&[0, 0, 8, 3, 0, 0], 3, Path::new("h")).unwrap_err();
        assert!(matches!(err, DataError::Truncated { .. }), "{err}");
    }

    #[test]
    fn wrong_magic_and_rank() {
        let mut bytes = sample().to_bytes();
        bytes[2] = 0x0D; // float data
        let err = IdxArray::parse(&bytes, 3, Path::new("f")).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::BadMagic {
                    found: 0x0000_0D03,
                    ..
                }
            ),
            "{err}"
        );
        let err = IdxArray::parse(&sample().to_bytes(), 1, Path::new("f")).unwrap_err();
        assert!(matches!(
            err,
            DataError::WrongRank {
                expected: 1,
                found: 3,
                ..
            }
        ));
    }
}
