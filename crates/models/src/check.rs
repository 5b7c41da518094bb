//! Checks of one batch against a model before training ([`kiln_core::Supervised::check_batch`]): ids and
//! labels within the tables and classes they index. Shapes are checked by each model's fallible forward.

use crate::error::ModelError;
use burn::prelude::*;

/// The smallest and largest of `ids` (which hold at least one element).
fn range<const D: usize>(
    model: &'static str,
    ids: &Tensor<D, Int>,
) -> Result<(i64, i64), ModelError> {
    let read = |t: Tensor<1, Int>| {
        t.to_data()
            .iter::<i64>()
            .next()
            .ok_or_else(|| ModelError::ReadBack {
                model,
                what: "ids",
                message: "an empty tensor".into(),
            })
    };
    let flat: Tensor<1, Int> = ids.clone().flatten(0, D - 1);
    Ok((read(flat.clone().min())?, read(flat.max())?))
}

/// The smallest or largest id of `ids` where one of them falls outside `0..size`.
fn first_outside<const D: usize>(
    model: &'static str,
    ids: &Tensor<D, Int>,
    size: usize,
) -> Result<Option<i64>, ModelError> {
    if ids.dims().contains(&0) {
        return Ok(None);
    }
    let (low, high) = range(model, ids)?;
    Ok([low, high]
        .into_iter()
        .find(|&id| id < 0 || id as usize >= size))
}

/// Every id of `ids` indexes a table of `size` rows.
pub(crate) fn ids_within<const D: usize>(
    model: &'static str,
    what: &'static str,
    ids: &Tensor<D, Int>,
    size: usize,
) -> Result<(), ModelError> {
    match first_outside(model, ids, size)? {
        Some(id) => Err(ModelError::IdOutOfRange {
            model,
            what,
            id,
            size,
        }),
        None => Ok(()),
    }
}

/// Every label of `labels` names one of the classes of `logits` (`[batch, classes]`).
pub(crate) fn labels_within<const D: usize>(
    model: &'static str,
    logits: &Tensor<2>,
    labels: &Tensor<D, Int>,
) -> Result<(), ModelError> {
    let classes = logits.dims()[1];
    match first_outside(model, labels, classes)? {
        Some(label) => Err(ModelError::LabelOutOfRange {
            model,
            label,
            classes,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_labels_outside_their_ranges_are_named() {
        let d = Device::flex();
        let ids = Tensor::<2, Int>::from_ints([[0, 3], [2, 1]], &d);
        ids_within("m", "token", &ids, 4).unwrap();
        let err = ids_within("m", "token", &ids, 3).unwrap_err().to_string();
        assert!(err.contains("token id 3") && err.contains("3"), "{err}");
        let negative = Tensor::<1, Int>::from_ints([0, -1], &d);
        assert!(ids_within("m", "token", &negative, 4).is_err());

        let logits = Tensor::<2>::zeros([2, 10], &d);
        labels_within("m", &logits, &Tensor::<1, Int>::from_ints([9, 0], &d)).unwrap();
        let err = labels_within("m", &logits, &Tensor::<1, Int>::from_ints([3, 10], &d))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("label 10") && err.contains("10 classes"),
            "{err}"
        );
    }
}
