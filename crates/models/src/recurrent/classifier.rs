//! Sequence classifier: a recurrent stack read by its last step (the final states of the top layer's
//! directions) or by the mean of its outputs over the real steps, then a linear layer giving class logits.
//! Images are read as sequences of rows (sequential MNIST: 28 steps of 28 pixels).

use super::layer::{Recurrent, RecurrentConfig};
use crate::check;
use crate::{ModelError, check_shape};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use kiln_core::{BatchError, ClassificationOutput, Supervised, loss};
use kiln_data::ImageBatch;
use serde::{Deserialize, Serialize};

/// How a sequence becomes one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The top layer's final state of each direction (after the last real step; step 0 for the reverse one).
    #[default]
    Last,
    /// The mean of the top layer's outputs over the real steps.
    Mean,
}

/// Configuration of a [`SequenceClassifier`].
#[derive(Config, Debug)]
pub struct SequenceClassifierConfig {
    /// The recurrent stack.
    pub recurrent: RecurrentConfig,
    /// Number of classes.
    pub num_classes: usize,
    /// How the sequence is pooled.
    #[config(default = "Pooling::Last")]
    pub pooling: Pooling,
}

impl SequenceClassifierConfig {
    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<SequenceClassifier, ModelError> {
        if self.num_classes < 2 {
            return Err(ModelError::Config {
                model: "sequence classifier",
                field: "num_classes",
                message: format!("needs 2+ classes, got {}", self.num_classes),
            });
        }
        let recurrent = self.recurrent.init(device)?;
        Ok(SequenceClassifier {
            output: LinearConfig::new(recurrent.d_output(), self.num_classes).init(device),
            recurrent,
            pooling: self.pooling,
        })
    }
}

/// A recurrent sequence classifier.
#[derive(Module, Debug)]
pub struct SequenceClassifier {
    /// The recurrent stack.
    pub recurrent: Recurrent,
    /// Output layer (logits).
    pub output: Linear,
    /// How the sequence is pooled.
    #[module(skip)]
    pub pooling: Pooling,
}

impl SequenceClassifier {
    /// Class logits.
    ///
    /// # Shapes
    /// - `x`: `[batch, steps, d_input]`; `mask`: optional `[batch, steps]`, `true` on real steps
    /// - returns `[batch, num_classes]`
    pub fn try_forward(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<2>, ModelError> {
        let [batch, _, _] = x.dims();
        let (outputs, state) = self.recurrent.try_forward(x, None, mask.clone())?;
        let features = match self.pooling {
            Pooling::Last => {
                let dirs = self.recurrent.directions();
                let slots = state.h.dims()[0];
                state
                    .h
                    .slice([slots - dirs..slots, 0..batch, 0..self.recurrent.d_hidden])
                    .swap_dims(0, 1)
                    .reshape([batch, self.recurrent.d_output()])
            }
            Pooling::Mean => match mask {
                // Padded steps output zeros, so the sum runs over real steps only.
                Some(mask) => {
                    let counts = mask.float().sum_dim(1).clamp_min(1.0);
                    outputs
                        .sum_dim(1)
                        .reshape([batch, self.recurrent.d_output()])
                        / counts
                }
                None => outputs
                    .mean_dim(1)
                    .reshape([batch, self.recurrent.d_output()]),
            },
        };
        Ok(self.output.forward(features))
    }

    /// Logits for images read row by row: `[batch, height, width]` is `height` steps of `width` features.
    pub fn try_forward_images(&self, images: Tensor<3>) -> Result<Tensor<2>, ModelError> {
        check_shape(
            "sequence classifier",
            &[None, None, Some(self.recurrent.d_input)],
            &images.dims(),
        )?;
        self.try_forward(images, None)
    }

    /// Predicted classes for images read row by row, `[batch]`.
    pub fn predict(&self, images: Tensor<3>) -> Result<Tensor<1, Int>, ModelError> {
        let n = images.dims()[0];
        Ok(self.try_forward_images(images)?.argmax(1).reshape([n]))
    }
}

impl Supervised for SequenceClassifier {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    fn forward_step(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self
            .try_forward_images(batch.images)
            .unwrap_or_else(|e| panic!("{e}"));
        loss::classification_output(logits, batch.labels)
    }

    fn check_batch(&self, batch: &ImageBatch) -> Result<(), BatchError> {
        let logits = self.try_forward_images(batch.images.clone())?;
        Ok(check::labels_within(
            "sequence classifier",
            &logits,
            &batch.labels,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recurrent::CellKind;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    #[test]
    fn logits_shapes_for_both_poolings_and_a_wrong_width_is_named() {
        let device = Device::flex();
        for pooling in [Pooling::Last, Pooling::Mean] {
            let model = SequenceClassifierConfig::new(
                RecurrentConfig::new(CellKind::Gru, 28, 8).with_bidirectional(true),
                10,
            )
            .with_pooling(pooling)
            .init(&device)
            .unwrap();
            let images = Tensor::<3>::random([3, 28, 28], Distribution::Default, &device);
            assert_eq!(model.try_forward_images(images).unwrap().dims(), [3, 10]);
            let wrong = Tensor::<3>::zeros([3, 28, 20], &device);
            let err = model.try_forward_images(wrong).unwrap_err();
            assert!(err.to_string().contains("[_, _, 28]"), "{err}");
        }
    }

    #[test]
    fn mean_pooling_ignores_padding() {
        let device = Device::flex();
        device.seed(1);
        let model = SequenceClassifierConfig::new(RecurrentConfig::new(CellKind::Lstm, 2, 3), 2)
            .with_pooling(Pooling::Mean)
            .init(&device)
            .unwrap();
        let x = Tensor::<3>::random([1, 5, 2], Distribution::Default, &device);
        let mask = Tensor::<2, Bool>::from_data(
            TensorData::from([[true, true, true, false, false]]),
            &device,
        );
        let short = model
            .try_forward(x.clone().slice([0..1, 0..3, 0..2]), None)
            .unwrap();
        let padded = model.try_forward(x, Some(mask)).unwrap();
        padded
            .into_data()
            .assert_approx_eq::<f32>(&short.into_data(), Tolerance::absolute(1e-6));
    }
}
