//! Multi-layer perceptron classifier: `Linear → activation → dropout` per hidden layer, then a linear
//! output layer giving class logits.

use crate::check;
use crate::hooks::{HookedClassifier, Layer, LayerInputHook, NoHook};
use crate::{ModelError, check_shape};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid, tanh};
use kiln_core::{BatchError, ClassificationOutput, Supervised, loss};
use kiln_data::ImageBatch;
use serde::{Deserialize, Serialize};

/// The non-linearity between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
}

impl Activation {
    /// Applies the activation.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Relu => relu(x),
            Self::Tanh => tanh(x),
            Self::Sigmoid => sigmoid(x),
        }
    }
}

/// Configuration of an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Number of input features (pixels for images).
    pub num_features: usize,
    /// Sizes of the hidden layers, input side first; empty gives a linear (softmax-regression) model.
    pub hidden: Vec<usize>,
    /// Number of classes.
    pub num_classes: usize,
    /// The activation after each hidden layer.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// Dropout probability after each hidden activation (training only).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl MlpConfig {
    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<Mlp, ModelError> {
        let invalid = |field: &'static str, message: String| ModelError::Config {
            model: "mlp",
            field,
            message,
        };
        if self.num_features == 0 || self.num_classes < 2 || self.hidden.contains(&0) {
            return Err(invalid(
                "num_features, num_classes, hidden",
                format!(
                    "features ({}), classes ({}) and hidden sizes ({:?}) must be positive, with 2+ classes",
                    self.num_features, self.num_classes, self.hidden
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(invalid(
                "dropout",
                format!("dropout must be in [0, 1), got {}", self.dropout),
            ));
        }
        let mut sizes = vec![self.num_features];
        sizes.extend(&self.hidden);
        let hidden = sizes
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        let last = *sizes.last().unwrap_or(&self.num_features);
        Ok(Mlp {
            hidden,
            output: LinearConfig::new(last, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
        })
    }
}

/// Multi-layer perceptron classifier.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Hidden layers, input side first.
    pub hidden: Vec<Linear>,
    /// Output layer (logits).
    pub output: Linear,
    /// Dropout after each hidden activation.
    pub dropout: Dropout,
    /// The activation (a setting, not a parameter).
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    /// Class logits.
    ///
    /// # Shapes
    /// - `features`: `[batch, num_features]`
    /// - returns `[batch, num_classes]`
    pub fn try_forward(&self, features: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        self.try_forward_hooked(features, &mut NoHook)
    }

    /// [`Self::try_forward`] with `hook` applied to the input of each layer (`hidden.{i}`, `output`).
    pub fn try_forward_hooked<H: LayerInputHook>(
        &self,
        features: Tensor<2>,
        hook: &mut H,
    ) -> Result<Tensor<2>, ModelError> {
        let first = self.hidden.first().unwrap_or(&self.output);
        let [d_input, _] = first.weight.dims();
        check_shape("mlp", &[None, Some(d_input)], &features.dims())?;
        let mut x = features;
        for (i, layer) in self.hidden.iter().enumerate() {
            x = hook.layer_input(Layer::Hidden(i), x);
            x = self
                .dropout
                .forward(self.activation.apply(layer.forward(x)));
        }
        Ok(self.output.forward(hook.layer_input(Layer::Output, x)))
    }

    /// [`Self::try_forward`] for inputs already known to fit.
    ///
    /// # Panics
    /// On a wrong input shape, with the message of [`ModelError::Shape`].
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        self.try_forward(features).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Logits for images, flattened row by row.
    ///
    /// # Shapes
    /// - `images`: `[batch, height, width]` with `height · width = num_features`
    /// - returns `[batch, num_classes]`
    pub fn try_forward_images(&self, images: Tensor<3>) -> Result<Tensor<2>, ModelError> {
        let [n, h, w] = images.dims();
        self.try_forward(images.reshape([n, h * w]))
    }

    /// Predicted classes for images, `[batch]`.
    pub fn predict(&self, images: Tensor<3>) -> Result<Tensor<1, Int>, ModelError> {
        let n = images.dims()[0];
        Ok(self.try_forward_images(images)?.argmax(1).reshape([n]))
    }
}

impl Supervised for Mlp {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    fn forward_step(&self, batch: ImageBatch) -> ClassificationOutput {
        self.forward_step_hooked(batch, &mut NoHook)
    }

    fn check_batch(&self, batch: &ImageBatch) -> Result<(), BatchError> {
        let [n, h, w] = batch.images.dims();
        let logits = self.try_forward(batch.images.clone().reshape([n, h * w]))?;
        Ok(check::labels_within("mlp", &logits, &batch.labels)?)
    }
}

impl HookedClassifier for Mlp {
    fn forward_step_hooked<H: LayerInputHook>(
        &self,
        batch: ImageBatch,
        hook: &mut H,
    ) -> ClassificationOutput {
        let [n, h, w] = batch.images.dims();
        let logits = self
            .try_forward_hooked(batch.images.reshape([n, h * w]), hook)
            .unwrap_or_else(|e| panic!("{e}"));
        loss::classification_output(logits, batch.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_for_several_depths_and_a_wrong_shape() {
        let d = Device::flex();
        for hidden in [vec![], vec![8], vec![16, 8]] {
            let m = MlpConfig::new(12, hidden.clone(), 3).init(&d).unwrap();
            assert_eq!(m.hidden.len(), hidden.len());
            assert_eq!(
                m.try_forward_images(Tensor::zeros([2, 3, 4], &d))
                    .unwrap()
                    .dims(),
                [2, 3]
            );
        }
        let m = MlpConfig::new(12, vec![8], 3).init(&d).unwrap();
        let err = m.try_forward(Tensor::zeros([2, 10], &d)).unwrap_err();
        assert!(err.to_string().contains("[2, 10]"), "{err}");
        assert!(matches!(
            MlpConfig::new(12, vec![0], 3).init(&d),
            Err(ModelError::Config { field, .. }) if field.contains("hidden")
        ));
        let err = MlpConfig::new(12, vec![4], 3)
            .with_dropout(1.5)
            .init(&d)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ModelError::Config {
                    field: "dropout",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "invalid mlp config, dropout: dropout must be in [0, 1), got 1.5"
        );
    }

    #[test]
    fn activations_and_config_round_trip() {
        let d = Device::flex();
        let x = Tensor::<1>::from_data([-1.0, 0.0, 2.0], &d);
        assert_eq!(
            Activation::Relu
                .apply(x.clone())
                .to_data()
                .try_to_vec::<f32>()
                .unwrap(),
            [0.0, 0.0, 2.0]
        );
        assert!(
            (Activation::Sigmoid
                .apply(x.clone())
                .to_data()
                .try_to_vec::<f32>()
                .unwrap()[1]
                - 0.5)
                .abs()
                < 1e-6
        );
        assert!(
            (Activation::Tanh
                .apply(x)
                .to_data()
                .try_to_vec::<f32>()
                .unwrap()[2]
                - 2f32.tanh())
            .abs()
                < 1e-6
        );
        let c = MlpConfig::new(784, vec![256, 128], 10)
            .with_activation(Activation::Tanh)
            .with_dropout(0.2);
        let back: MlpConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(
            (back.hidden, back.activation, back.dropout),
            (vec![256, 128], Activation::Tanh, 0.2)
        );
    }
}
