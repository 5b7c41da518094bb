//! Logistic regression: binary (one logit, sigmoid, binary cross-entropy) when there are two classes,
//! multinomial (one logit per class, softmax, cross-entropy) otherwise.

use crate::check;
use crate::{ModelError, check_shape};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};
use kiln_core::{BatchError, ClassificationOutput, Supervised, loss};
use kiln_data::ImageBatch;

/// Configuration of a [`LogisticRegression`].
#[derive(Config, Debug)]
pub struct LogisticRegressionConfig {
    /// Number of input features (pixels for images).
    pub num_features: usize,
    /// Number of classes; 2 gives the binary model.
    pub num_classes: usize,
}

impl LogisticRegressionConfig {
    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<LogisticRegression, ModelError> {
        if self.num_features == 0 || self.num_classes < 2 {
            return Err(ModelError::Config {
                model: "logistic_regression",
                field: "num_features, num_classes",
                message: format!(
                    "needs at least 1 feature and 2 classes, got {} and {}",
                    self.num_features, self.num_classes
                ),
            });
        }
        let outputs = if self.num_classes == 2 {
            1
        } else {
            self.num_classes
        };
        Ok(LogisticRegression {
            linear: LinearConfig::new(self.num_features, outputs).init(device),
        })
    }
}

/// Logistic regression.
#[derive(Module, Debug)]
pub struct LogisticRegression {
    /// Features → logits (one logit in the binary case).
    pub linear: Linear,
}

impl LogisticRegression {
    /// Whether this is the binary (sigmoid) model.
    pub fn is_binary(&self) -> bool {
        self.linear.weight.dims()[1] == 1
    }

    /// Raw scores.
    ///
    /// # Shapes
    /// - `features`: `[batch, num_features]`
    /// - returns `[batch, 1]` (binary: the log-odds of class 1) or `[batch, num_classes]`
    pub fn try_forward(&self, features: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let [d_input, _] = self.linear.weight.dims();
        check_shape(
            "logistic_regression",
            &[None, Some(d_input)],
            &features.dims(),
        )?;
        Ok(self.linear.forward(features))
    }

    /// Class logits in the multinomial layout, `[batch, num_classes]`; the binary model's log-odds `z`
    /// become `[0, z]`, whose softmax is `[1 - σ(z), σ(z)]`.
    pub fn try_class_logits(&self, features: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let z = self.try_forward(features)?;
        Ok(if self.is_binary() {
            Tensor::cat(vec![z.zeros_like(), z], 1)
        } else {
            z
        })
    }

    /// Class probabilities, `[batch, num_classes]`.
    pub fn predict_proba(&self, features: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let z = self.try_forward(features)?;
        Ok(if self.is_binary() {
            let p = sigmoid(z);
            Tensor::cat(vec![p.ones_like() - p.clone(), p], 1)
        } else {
            softmax(z, 1)
        })
    }

    /// Predicted classes, `[batch]`.
    pub fn predict(&self, features: Tensor<2>) -> Result<Tensor<1, Int>, ModelError> {
        let n = features.dims()[0];
        Ok(self.try_class_logits(features)?.argmax(1).reshape([n]))
    }

    /// Loss and class logits for flattened inputs and labels.
    pub fn loss_and_logits(
        &self,
        features: Tensor<2>,
        labels: Tensor<1, Int>,
    ) -> (Tensor<1>, Tensor<2>) {
        let z = self.try_forward(features).unwrap_or_else(|e| panic!("{e}"));
        if self.is_binary() {
            let n = z.dims()[0];
            let loss = loss::binary_cross_entropy(z.clone().reshape([n]), labels);
            (loss, Tensor::cat(vec![z.zeros_like(), z], 1))
        } else {
            (loss::cross_entropy(z.clone(), labels), z)
        }
    }
}

impl Supervised for LogisticRegression {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    /// Flattens each `[height, width]` image into `height · width` features.
    fn forward_step(&self, batch: ImageBatch) -> ClassificationOutput {
        let [n, h, w] = batch.images.dims();
        let (loss, logits) =
            self.loss_and_logits(batch.images.reshape([n, h * w]), batch.labels.clone());
        ClassificationOutput::new(loss, logits, batch.labels)
    }

    fn check_batch(&self, batch: &ImageBatch) -> Result<(), BatchError> {
        let [n, h, w] = batch.images.dims();
        let logits = self.try_class_logits(batch.images.clone().reshape([n, h * w]))?;
        Ok(check::labels_within(
            "logistic_regression",
            &logits,
            &batch.labels,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{GradientsParams, SgdConfig};
    use kiln_data::synthetic::two_blobs;

    #[test]
    fn shapes_binary_and_multinomial() {
        let d = Device::flex();
        let bin = LogisticRegressionConfig::new(4, 2).init(&d).unwrap();
        let multi = LogisticRegressionConfig::new(4, 5).init(&d).unwrap();
        let x = Tensor::<2>::zeros([3, 4], &d);
        assert!(bin.is_binary() && !multi.is_binary());
        assert_eq!(bin.try_forward(x.clone()).unwrap().dims(), [3, 1]);
        assert_eq!(bin.predict_proba(x.clone()).unwrap().dims(), [3, 2]);
        assert_eq!(multi.predict(x.clone()).unwrap().dims(), [3]);
        let p = multi
            .predict_proba(x)
            .unwrap()
            .sum_dim(1)
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(p.iter().all(|v| (v - 1.0).abs() < 1e-5));
        assert!(multi.try_forward(Tensor::zeros([3, 7], &d)).is_err());
        assert!(LogisticRegressionConfig::new(4, 1).init(&d).is_err());
    }

    /// Binary logistic regression separates the seeds' two blobs with plain gradient descent.
    #[test]
    fn binary_model_learns_two_blobs() {
        let d = Device::flex().autodiff();
        d.seed(1);
        let (x, y) = two_blobs(200, 3);
        let x = Tensor::<2>::from_data(TensorData::new(x, [200, 2]), &d);
        let y = Tensor::<1, Int>::from_data(
            TensorData::new(y.iter().map(|&v| v as i64).collect(), [200]),
            &d,
        );
        let mut model = LogisticRegressionConfig::new(2, 2).init(&d).unwrap();
        let mut optim = SgdConfig::new().init();
        let first = model
            .loss_and_logits(x.clone(), y.clone())
            .0
            .into_scalar::<f32>();
        for _ in 0..30 {
            let (loss, _) = model.loss_and_logits(x.clone(), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.5, model, grads);
        }
        let (loss, _) = model.loss_and_logits(x.clone(), y.clone());
        let last = loss.into_scalar::<f32>();
        let predicted = model.predict(x).unwrap();
        let acc = predicted.equal(y).int().sum().into_scalar::<i64>() as f32 / 200.0;
        assert!(last < first * 0.5, "loss {first} -> {last}");
        assert!(acc > 0.95, "accuracy {acc}");
    }
}
