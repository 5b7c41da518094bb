//! Transformer encoder classifier: each step's features projected to `d_model`, an [`EncoderStack`], the
//! mean over the steps, and a linear layer giving class logits. Images are read as sequences of rows
//! (sequential MNIST: 28 steps of 28 pixels), as the recurrent classifier reads them.

use super::stack::{EncoderStack, EncoderStackConfig};
use crate::check;
use crate::{ModelError, check_shape};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use kiln_core::{BatchError, ClassificationOutput, Supervised, loss};
use kiln_data::ImageBatch;

/// Configuration of a [`TransformerClassifier`].
#[derive(Config, Debug)]
pub struct TransformerClassifierConfig {
    /// Features per step (28 for MNIST rows).
    pub d_input: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// The encoder stack.
    pub stack: EncoderStackConfig,
}

impl TransformerClassifierConfig {
    /// Checks the config and builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<TransformerClassifier, ModelError> {
        if self.num_classes < 2 || self.d_input == 0 {
            return Err(ModelError::Config {
                model: "transformer_encoder",
                field: "num_classes, d_input",
                message: format!(
                    "needs 2+ classes (got {}) and positive d_input (got {})",
                    self.num_classes, self.d_input
                ),
            });
        }
        let stack = self.stack.init(device)?;
        Ok(TransformerClassifier {
            input: LinearConfig::new(self.d_input, self.stack.d_model).init(device),
            output: LinearConfig::new(self.stack.d_model, self.num_classes).init(device),
            stack,
        })
    }
}

/// A Transformer encoder over a sequence of feature vectors, pooled by the mean over real steps.
#[derive(Module, Debug)]
pub struct TransformerClassifier {
    /// Projects each step's features to `d_model`.
    pub input: Linear,
    /// Positions and encoder layers.
    pub stack: EncoderStack,
    /// Class logits from the pooled vector.
    pub output: Linear,
}

impl TransformerClassifier {
    /// Features per step.
    pub fn d_input(&self) -> usize {
        self.input.weight.dims()[0]
    }

    /// Class logits.
    ///
    /// # Shapes
    /// - `x`: `[batch, steps, d_input]`; `valid`: optional `[batch, steps]`, `true` on real steps
    /// - returns `[batch, num_classes]`
    pub fn try_forward(
        &self,
        x: Tensor<3>,
        valid: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<2>, ModelError> {
        check_shape(
            "transformer_encoder",
            &[None, None, Some(self.d_input())],
            &x.dims(),
        )?;
        let [batch, _, _] = x.dims();
        let d_model = self.stack.d_model;
        let encoded =
            self.stack
                .try_forward(super::fused::linear(&self.input, x), valid.clone(), false)?;
        let pooled = match valid {
            Some(valid) => {
                let weights = valid.float().unsqueeze_dim::<3>(2);
                let counts = weights.clone().sum_dim(1).clamp_min(1.0);
                (encoded * weights).sum_dim(1) / counts
            }
            None => encoded.mean_dim(1),
        };
        Ok(self.output.forward(pooled.reshape([batch, d_model])))
    }

    /// The attention weights of every encoder layer for `x` (see [`EncoderStack::attention_weights`]),
    /// `[batch, heads, steps, steps]` each.
    ///
    /// [`EncoderStack::attention_weights`]: super::EncoderStack::attention_weights
    pub fn attention_weights(
        &self,
        x: Tensor<3>,
        valid: Option<Tensor<2, Bool>>,
    ) -> Result<Vec<Tensor<4>>, ModelError> {
        check_shape(
            "transformer_encoder",
            &[None, None, Some(self.d_input())],
            &x.dims(),
        )?;
        self.stack
            .attention_weights(super::fused::linear(&self.input, x), valid, false)
    }

    /// Predicted classes for images read row by row, `[batch]`.
    pub fn predict(&self, images: Tensor<3>) -> Result<Tensor<1, Int>, ModelError> {
        let n = images.dims()[0];
        Ok(self.try_forward(images, None)?.argmax(1).reshape([n]))
    }
}

impl Supervised for TransformerClassifier {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    fn forward_step(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self
            .try_forward(batch.images, None)
            .unwrap_or_else(|e| panic!("{e}"));
        loss::classification_output(logits, batch.labels)
    }

    fn check_batch(&self, batch: &ImageBatch) -> Result<(), BatchError> {
        let logits = self.try_forward(batch.images.clone(), None)?;
        Ok(check::labels_within(
            "transformer classifier",
            &logits,
            &batch.labels,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    fn model(device: &Device) -> TransformerClassifier {
        device.seed(5);
        TransformerClassifierConfig::new(28, 10, EncoderStackConfig::new(16).with_max_len(28))
            .init(device)
            .unwrap()
    }

    #[test]
    fn logits_shape_and_a_wrong_width_is_named() {
        let device = Device::flex();
        let model = model(&device);
        let images = Tensor::<3>::random([3, 28, 28], Distribution::Default, &device);
        assert_eq!(model.try_forward(images, None).unwrap().dims(), [3, 10]);
        let err = model
            .try_forward(Tensor::<3>::zeros([3, 28, 20], &device), None)
            .unwrap_err();
        assert!(err.to_string().contains("[_, _, 28]"), "{err}");
        let err = TransformerClassifierConfig::new(28, 1, EncoderStackConfig::new(16))
            .init(&device)
            .unwrap_err();
        assert!(err.to_string().contains("2+ classes"), "{err}");
    }

    #[test]
    fn mean_pooling_ignores_padding() {
        let device = Device::flex();
        let model = model(&device);
        let x = Tensor::<3>::random([1, 5, 28], Distribution::Default, &device);
        let valid = Tensor::<2, Bool>::from_data([[true, true, true, false, false]], &device);
        let short = model
            .try_forward(x.clone().slice([0..1, 0..3, 0..28]), None)
            .unwrap();
        let padded = model.try_forward(x, Some(valid)).unwrap();
        padded
            .into_data()
            .assert_approx_eq::<f32>(&short.into_data(), Tolerance::absolute(1e-5));
    }
}
