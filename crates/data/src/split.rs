//! Seeded splits of a dataset's indices.

use crate::DataError;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Indices of a dataset split into training, validation and (optionally) test parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIndices {
    /// Training indices.
    pub train: Vec<usize>,
    /// Validation indices.
    pub valid: Vec<usize>,
    /// Test indices (empty when the dataset has its own test set).
    pub test: Vec<usize>,
}

/// Shuffles `0..n` with `seed` and holds out `valid_fraction` of it for validation; the rest trains.
pub fn train_valid_split(
    n: usize,
    valid_fraction: f64,
    seed: u64,
) -> Result<SplitIndices, DataError> {
    train_valid_test_split(n, valid_fraction, 0.0, seed)
}

/// Shuffles `0..n` with `seed` and cuts it into train / validation / test by the given fractions.
/// Every part that is asked for gets at least one item, and training keeps at least one.
pub fn train_valid_test_split(
    n: usize,
    valid_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> Result<SplitIndices, DataError> {
    let valid_ok = (0.0..1.0).contains(&valid_fraction);
    let test_ok = (0.0..1.0).contains(&test_fraction);
    if !valid_ok || !test_ok || valid_fraction + test_fraction >= 1.0 {
        return Err(DataError::InvalidSplit(format!(
            "fractions valid={valid_fraction}, test={test_fraction} must be in [0, 1) and sum below 1"
        )));
    }
    let part = |f: f64| {
        if f > 0.0 {
            ((n as f64 * f).round() as usize).max(1)
        } else {
            0
        }
    };
    let (n_valid, n_test) = (part(valid_fraction), part(test_fraction));
    if n_valid + n_test >= n {
        return Err(DataError::InvalidSplit(format!(
            "{n} items leave nothing to train on after {n_valid} validation and {n_test} test items"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let test = order.split_off(n - n_test);
    let valid = order.split_off(n - n_test - n_valid);
    Ok(SplitIndices {
        train: order,
        valid,
        test,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_seeded_partition() {
        let s = train_valid_test_split(100, 0.1, 0.2, 7).unwrap();
        assert_eq!((s.train.len(), s.valid.len(), s.test.len()), (70, 10, 20));
        let mut all: Vec<usize> = [s.train.clone(), s.valid.clone(), s.test.clone()].concat();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(s, train_valid_test_split(100, 0.1, 0.2, 7).unwrap());
        assert_ne!(s, train_valid_test_split(100, 0.1, 0.2, 8).unwrap());
    }

    #[test]
    fn impossible_splits_are_errors() {
        assert!(train_valid_split(10, 1.5, 0).is_err());
        assert!(train_valid_test_split(10, 0.5, 0.5, 0).is_err());
        assert!(train_valid_split(1, 0.5, 0).is_err());
    }
}
