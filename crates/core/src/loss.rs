//! The losses Kiln trains with, as thin functions over burn's loss modules (so that every model computes
//! them the same way, and tests can check them against hand-computed values).

use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLossConfig, MseLoss, Reduction};
use burn::prelude::*;

/// Mean squared error.
///
/// # Shapes
/// - `predictions`, `targets`: `[batch, outputs]`
/// - returns `[1]`
pub fn mse(predictions: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    MseLoss::new().forward(predictions, targets, Reduction::Mean)
}

/// Softmax cross-entropy from logits, averaged over the batch.
///
/// # Shapes
/// - `logits`: `[batch, classes]`, `targets`: `[batch]` class indices
/// - returns `[1]`
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, targets)
}

/// Binary cross-entropy from logits (the numerically stable form of sigmoid followed by BCE), averaged.
///
/// # Shapes
/// - `logits`: `[batch]`, `targets`: `[batch]` with values 0 or 1
/// - returns `[1]`
pub fn binary_cross_entropy(logits: Tensor<1>, targets: Tensor<1, Int>) -> Tensor<1> {
    BinaryCrossEntropyLossConfig::new()
        .with_logits(true)
        .init(&logits.device())
        .forward(logits, targets)
}

/// The learner's output for a classifier: cross-entropy of `logits` against `labels`, with both kept for
/// the metrics.
///
/// # Shapes
/// - `logits`: `[batch, classes]`, `labels`: `[batch]`
pub fn classification_output(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
) -> crate::ClassificationOutput {
    let loss = cross_entropy(logits.clone(), labels.clone());
    crate::ClassificationOutput::new(loss, logits, labels)
}

/// Softmax cross-entropy over the real steps of a padded batch: steps whose target is
/// [`PAD_ID`](crate::PAD_ID) count neither in the sum nor in the mean (burn's pad-aware loss, on the
/// device: no mask is read back).
///
/// # Shapes
/// - `logits`: `[batch × steps, vocab]`, `targets`: `[batch × steps]`
/// - returns `[1]`
pub fn padded_cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    CrossEntropyLossConfig::new()
        .with_pad_tokens(Some(vec![crate::PAD_ID as usize]))
        .init(&logits.device())
        .forward(logits, targets)
}

/// The learner's output for a sequence model: [`padded_cross_entropy`] of the logits of every step against
/// the targets, with both kept for the pad-aware metrics.
///
/// # Shapes
/// - `logits`: `[batch, steps, vocab]`, `targets`: `[batch, steps]` with [`PAD_ID`](crate::PAD_ID) on
///   padded steps
pub fn token_output(logits: Tensor<3>, targets: Tensor<2, Int>) -> crate::TokenOutput {
    let [batch, steps, vocab] = logits.dims();
    let loss = padded_cross_entropy(
        logits.clone().reshape([batch * steps, vocab]),
        targets.clone().reshape([batch * steps]),
    );
    crate::TokenOutput::new(loss, logits, targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn losses_equal_hand_computed_values() {
        let d = Device::flex();
        let p = Tensor::<2>::from_data([[1.0, 2.0], [3.0, 5.0]], &d);
        let t = Tensor::<2>::from_data([[1.0, 0.0], [3.0, 2.0]], &d);
        assert!((scalar(mse(p, t)) - 13.0 / 4.0).abs() < 1e-6);

        // CE of logits [0, ln 3] with target 1: -ln(3/4).
        let logits = Tensor::<2>::from_data([[0.0, 3f32.ln()]], &d);
        let ce = scalar(cross_entropy(logits, Tensor::from_data([1], &d)));
        assert!((ce - (-(0.75f32).ln())).abs() < 1e-6, "{ce}");

        // BCE of logit 0 is ln 2 whatever the label; of logit 2 with label 1 it is ln(1 + e^-2).
        let bce = scalar(binary_cross_entropy(
            Tensor::from_data([0.0, 2.0], &d),
            Tensor::from_data([0, 1], &d),
        ));
        let expected = (2f32.ln() + (1.0 + (-2f32).exp()).ln()) / 2.0;
        assert!((bce - expected).abs() < 1e-6, "{bce} vs {expected}");
    }

    #[test]
    fn padded_steps_count_neither_in_the_sum_nor_in_the_mean() {
        let d = Device::flex();
        // Two rows of three steps; the last step of the second row is padding (target PAD_ID = 0), and
        // its logits are wild: they must not matter.
        let logits = Tensor::<3>::from_data(
            [
                [[0.0, 3f32.ln(), 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]],
                [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [90.0, -50.0, 7.0]],
            ],
            &d,
        );
        let targets = Tensor::<2, Int>::from_data([[1, 2, 2], [1, 1, 0]], &d);
        let out = token_output(logits.clone(), targets);
        let real = cross_entropy(
            Tensor::<2>::from_data(
                [
                    [0.0, 3f32.ln(), 0.0],
                    [1.0, 0.0, 0.0],
                    [0.0, 0.0, 2.0],
                    [0.0, 0.0, 0.0],
                    [0.5, 0.5, 0.0],
                ],
                &d,
            ),
            Tensor::from_data([1, 2, 2, 1, 1], &d),
        );
        assert!((scalar(out.loss) - scalar(real)).abs() < 1e-6);
        assert_eq!(out.logits.dims(), [2, 3, 3]);
        assert_eq!(out.targets.dims(), [2, 3]);
    }
}
