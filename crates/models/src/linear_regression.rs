//! Linear regression: `y = x W + b`, trained with mean squared error.

use crate::{ModelError, check_shape};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use kiln_core::{BatchError, RegressionOutput, Supervised, loss};
use kiln_data::TabularBatch;

/// Configuration of a [`LinearRegression`].
#[derive(Config, Debug)]
pub struct LinearRegressionConfig {
    /// Number of input features.
    pub num_features: usize,
    /// Number of outputs predicted.
    #[config(default = 1)]
    pub num_outputs: usize,
}

impl LinearRegressionConfig {
    /// Builds the model on `device` (weights initialised as burn's `Linear`).
    pub fn init(&self, device: &Device) -> Result<LinearRegression, ModelError> {
        if self.num_features == 0 || self.num_outputs == 0 {
            return Err(ModelError::Config {
                model: "linear_regression",
                field: "num_features, num_outputs",
                message: "num_features and num_outputs must be at least 1".into(),
            });
        }
        Ok(LinearRegression {
            linear: LinearConfig::new(self.num_features, self.num_outputs).init(device),
        })
    }
}

/// Linear regression.
#[derive(Module, Debug)]
pub struct LinearRegression {
    /// The affine map.
    pub linear: Linear,
}

impl LinearRegression {
    /// # Shapes
    /// - `features`: `[batch, num_features]`
    /// - returns `[batch, num_outputs]`
    pub fn try_forward(&self, features: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let [d_input, _] = self.linear.weight.dims();
        check_shape(
            "linear_regression",
            &[None, Some(d_input)],
            &features.dims(),
        )?;
        Ok(self.linear.forward(features))
    }

    /// [`Self::try_forward`] for inputs already known to fit.
    ///
    /// # Panics
    /// On a wrong input shape, with the message of [`ModelError::Shape`].
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        self.try_forward(features).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Predictions for a batch of (standardised) features. Same shapes as [`Self::try_forward`].
    pub fn predict(&self, features: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        self.try_forward(features)
    }
}

impl Supervised for LinearRegression {
    type Batch = TabularBatch;
    type Output = RegressionOutput;

    fn forward_step(&self, batch: TabularBatch) -> RegressionOutput {
        let output = self.forward(batch.features);
        let loss = loss::mse(output.clone(), batch.targets.clone());
        RegressionOutput::new(loss, output, batch.targets)
    }

    fn check_batch(&self, batch: &TabularBatch) -> Result<(), BatchError> {
        let output = self.try_forward(batch.features.clone())?;
        let [n, outputs] = output.dims();
        check_shape(
            "linear_regression targets",
            &[Some(n), Some(outputs)],
            &batch.targets.dims(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_shapes_and_wrong_shape_error() {
        let d = Device::flex();
        let m = LinearRegressionConfig::new(3).init(&d).unwrap();
        assert_eq!(m.forward(Tensor::zeros([5, 3], &d)).dims(), [5, 1]);
        let err = m.try_forward(Tensor::zeros([5, 4], &d)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linear_regression: input of shape [5, 4] does not match the expected [_, 3]"
        );
        assert!(LinearRegressionConfig::new(0).init(&d).is_err());
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = LinearRegressionConfig::new(10).with_num_outputs(2);
        let json = serde_json::to_string(&c).unwrap();
        let back: LinearRegressionConfig = serde_json::from_str(&json).unwrap();
        assert_eq!((back.num_features, back.num_outputs), (10, 2));
    }
}
