//! Convolutional classifier: `[conv → (batch-norm) → activation → max-pool]` blocks, flatten, fully
//! connected hidden layers with dropout, and a linear output of class logits. The flattened size is computed
//! from the image size, kernel sizes, paddings and pooling, never hard-coded.

use crate::check;
use crate::hooks::{HookedClassifier, Layer, LayerInputHook, NoHook};
use crate::mlp::Activation;
use crate::{ModelError, check_shape};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use kiln_core::{BatchError, ClassificationOutput, Supervised, loss};
use kiln_data::ImageBatch;
use kiln_kernels::conv;

/// Configuration of a [`Cnn`]. The default layers are the seeds' network: conv(1→32, 3×3, pad 1) – ReLU –
/// max-pool 2 – conv(32→64, 3×3, pad 1) – ReLU – max-pool 2 – flatten – fc 128 – ReLU – fc classes.
#[derive(Config, Debug)]
pub struct CnnConfig {
    /// Input channels (1 for greyscale).
    pub in_channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Output channels of each convolution block.
    #[config(default = "vec![32, 64]")]
    pub channels: Vec<usize>,
    /// Square kernel size of each convolution (one per block).
    #[config(default = "vec![3, 3]")]
    pub kernel_sizes: Vec<usize>,
    /// Zero padding on every side of each convolution (one per block).
    #[config(default = "vec![1, 1]")]
    pub paddings: Vec<usize>,
    /// Max-pooling window and stride after each block (1 disables pooling).
    #[config(default = 2)]
    pub pool: usize,
    /// Sizes of the fully connected hidden layers.
    #[config(default = "vec![128]")]
    pub hidden: Vec<usize>,
    /// Batch normalisation after each convolution.
    #[config(default = false)]
    pub batch_norm: bool,
    /// Dropout probability before each fully connected layer after the first.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// The activation.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
}

impl CnnConfig {
    /// LeNet-5 (LeCun et al. 1998) for `height × width` greyscale images: conv 6@5×5 (padded by 2, as
    /// for 28×28 MNIST) – pool – conv 16@5×5 – pool – fc 120 – fc 84 – classes; ReLU and max-pooling, the
    /// usual modern reading.
    pub fn lenet5(height: usize, width: usize, num_classes: usize) -> Self {
        Self::new(1, height, width, num_classes)
            .with_channels(vec![6, 16])
            .with_kernel_sizes(vec![5, 5])
            .with_paddings(vec![2, 0])
            .with_hidden(vec![120, 84])
    }

    /// `(channels, height, width)` after the convolution blocks, or an error naming the block where the
    /// image became empty or the per-block lists that disagree.
    pub fn feature_shape(&self) -> Result<[usize; 3], ModelError> {
        let invalid = |field: &'static str, message: String| ModelError::Config {
            model: "cnn",
            field,
            message,
        };
        let blocks = self.channels.len();
        if self.kernel_sizes.len() != blocks || self.paddings.len() != blocks {
            return Err(invalid(
                "channels, kernel_sizes, paddings",
                format!(
                    "channels ({blocks}), kernel_sizes ({}) and paddings ({}) need one entry per block",
                    self.kernel_sizes.len(),
                    self.paddings.len()
                ),
            ));
        }
        let (mut h, mut w) = (self.height, self.width);
        for (i, (&k, &p)) in self.kernel_sizes.iter().zip(&self.paddings).enumerate() {
            if k == 0 || h + 2 * p < k || w + 2 * p < k {
                return Err(invalid(
                    "kernel_sizes, paddings, height, width",
                    format!(
                        "block {i}: a {k}×{k} kernel does not fit a {h}×{w} input padded by {p}"
                    ),
                ));
            }
            (h, w) = (h + 2 * p - k + 1, w + 2 * p - k + 1);
            (h, w) = (h / self.pool.max(1), w / self.pool.max(1));
            if h == 0 || w == 0 {
                return Err(invalid(
                    "pool",
                    format!("block {i}: pooling by {} leaves an empty image", self.pool),
                ));
            }
        }
        let c = self.channels.last().copied().unwrap_or(self.in_channels);
        Ok([c, h, w])
    }

    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<Cnn, ModelError> {
        if self.in_channels == 0
            || self.num_classes < 2
            || self.channels.contains(&0)
            || self.hidden.contains(&0)
        {
            return Err(ModelError::Config {
                model: "cnn",
                field: "channels, hidden, num_classes",
                message: "channels, hidden sizes must be positive and there must be 2+ classes"
                    .into(),
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::Config {
                model: "cnn",
                field: "dropout",
                message: format!("dropout must be in [0, 1), got {}", self.dropout),
            });
        }
        let [c, h, w] = self.feature_shape()?;
        let mut inputs = vec![self.in_channels];
        inputs.extend(&self.channels);
        let blocks = inputs
            .windows(2)
            .zip(self.kernel_sizes.iter().zip(&self.paddings))
            .map(|(io, (&k, &p))| ConvBlock {
                conv: Conv2dConfig::new([io[0], io[1]], [k, k])
                    .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                    .init(device),
                norm: self
                    .batch_norm
                    .then(|| BatchNormConfig::new(io[1]).init(device)),
            })
            .collect();
        let mut sizes = vec![c * h * w];
        sizes.extend(&self.hidden);
        let hidden = sizes
            .windows(2)
            .map(|s| LinearConfig::new(s[0], s[1]).init(device))
            .collect();
        Ok(Cnn {
            blocks,
            pool: (self.pool > 1).then(|| MaxPool2dConfig::new([self.pool, self.pool]).init()),
            hidden,
            output: LinearConfig::new(*sizes.last().unwrap_or(&(c * h * w)), self.num_classes)
                .init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
            input: [self.in_channels, self.height, self.width],
        })
    }
}

/// The stride and padding of `conv` where Kiln's fused convolution computes it for input `x` (flex, f32
/// weights, groups 1, dilation 1, symmetric padding), else `None`.
fn fused_spec(conv: &Conv2d, x: &Tensor<4>) -> Option<conv::ConvSpec> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some([top, left])
        }
        _ => None,
    }?;
    // Quantized weights (kiln-compress's int8 models) are not f32 and take burn's path.
    let fusable = conv.groups == 1
        && conv.dilation == [1, 1]
        && kiln_kernels::on_flex_f32(x)
        && kiln_kernels::on_flex_f32(&conv.weight.val())
        && conv
            .bias
            .as_ref()
            .is_none_or(|b| kiln_kernels::on_flex_f32(&b.val()));
    fusable.then_some(conv::ConvSpec {
        stride: conv.stride,
        padding,
    })
}

/// `conv.forward(x)`: on flex as Kiln's fused convolution (whose gradients are single GEMMs,
/// [`kiln_kernels::conv`]), elsewhere — and for grouped, dilated or asymmetrically padded convolutions —
/// as burn's.
pub fn convolve(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match fused_spec(conv, &x) {
        Some(spec) => conv::conv2d(
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            spec,
        ),
        None => conv.forward(x),
    }
}

/// `pool(relu(conv(x)))` (no pool: `relu(conv(x))`), as one fused op where [`convolve`] would fuse and the
/// pooling is burn's default `MaxPool2dConfig::new([k, k])` (stride = kernel, no padding, floor rounding);
/// otherwise the three ops one after the other.
pub fn convolve_relu_pool(conv: &Conv2d, pool: Option<&MaxPool2d>, x: Tensor<4>) -> Tensor<4> {
    let pool_size = match pool {
        None => Some(1),
        Some(p) => {
            let [k, _] = p.kernel_size;
            (p.kernel_size == [k, k]
                && p.stride == [k, k]
                && p.dilation == [1, 1]
                && !p.ceil_mode
                && matches!(p.padding, PaddingConfig2d::Valid))
            .then_some(k)
        }
    };
    match (fused_spec(conv, &x), pool_size) {
        (Some(spec), Some(k)) => conv::conv2d_relu_pool(
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            spec,
            k,
        ),
        _ => {
            let y = burn::tensor::activation::relu(convolve(conv, x));
            match pool {
                Some(pool) => pool.forward(y),
                None => y,
            }
        }
    }
}

/// One convolution block.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// The convolution.
    pub conv: Conv2d,
    /// Optional batch normalisation.
    pub norm: Option<BatchNorm>,
}

/// Convolutional classifier.
#[derive(Module, Debug)]
pub struct Cnn {
    /// Convolution blocks.
    pub blocks: Vec<ConvBlock>,
    /// Pooling after each block.
    pub pool: Option<MaxPool2d>,
    /// Fully connected hidden layers.
    pub hidden: Vec<Linear>,
    /// Output layer (logits).
    pub output: Linear,
    /// Dropout before the fully connected layers after the first.
    pub dropout: Dropout,
    /// The activation.
    #[module(skip)]
    pub activation: Activation,
    /// Expected `(channels, height, width)` of an input image.
    #[module(skip)]
    pub input: [usize; 3],
}

impl Cnn {
    /// Class logits.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - returns `[batch, num_classes]`
    pub fn try_forward(&self, images: Tensor<4>) -> Result<Tensor<2>, ModelError> {
        self.try_forward_hooked(images, &mut NoHook)
    }

    /// [`Self::try_forward`] with `hook` applied to the input of each weight layer (`blocks.{i}.conv`,
    /// `hidden.{i}`, `output`).
    pub fn try_forward_hooked<H: LayerInputHook>(
        &self,
        images: Tensor<4>,
        hook: &mut H,
    ) -> Result<Tensor<2>, ModelError> {
        let [c, h, w] = self.input;
        check_shape("cnn", &[None, Some(c), Some(h), Some(w)], &images.dims())?;
        let features = self.run_blocks(images, 0, hook);
        Ok(self.run_head(features, hook))
    }

    /// The output of convolution block `block` (after its activation and pooling), the layer Grad-CAM
    /// explains.
    ///
    /// # Shapes
    /// - `images`: `[batch, channels, height, width]`
    /// - returns `[batch, channels of the block, height', width']`
    pub fn block_output(&self, images: Tensor<4>, block: usize) -> Result<Tensor<4>, ModelError> {
        let [c, h, w] = self.input;
        check_shape("cnn", &[None, Some(c), Some(h), Some(w)], &images.dims())?;
        if block >= self.blocks.len() {
            return Err(ModelError::Argument {
                model: "cnn",
                argument: "block",
                message: format!("block {block} of {} convolution blocks", self.blocks.len()),
            });
        }
        let mut x = images;
        for i in 0..=block {
            x = self.run_block(i, x, &mut NoHook);
        }
        Ok(x)
    }

    /// Logits from the output of convolution block `block` ([`Self::block_output`]): the rest of the
    /// forward pass.
    pub fn logits_from_block(&self, features: Tensor<4>, block: usize) -> Tensor<2> {
        let x = self.run_blocks(features, block + 1, &mut NoHook);
        self.run_head(x, &mut NoHook)
    }

    /// Convolution blocks `first..`.
    fn run_blocks<H: LayerInputHook>(
        &self,
        mut x: Tensor<4>,
        first: usize,
        hook: &mut H,
    ) -> Tensor<4> {
        for i in first..self.blocks.len() {
            x = self.run_block(i, x, hook);
        }
        x
    }

    /// Convolution block `i`.
    fn run_block<H: LayerInputHook>(&self, i: usize, x: Tensor<4>, hook: &mut H) -> Tensor<4> {
        let block = &self.blocks[i];
        let input = hook.layer_input(Layer::Conv(i), x);
        if block.norm.is_none() && self.activation == Activation::Relu {
            return convolve_relu_pool(&block.conv, self.pool.as_ref(), input);
        }
        let mut x = convolve(&block.conv, input);
        if let Some(norm) = &block.norm {
            x = norm.forward(x);
        }
        x = self.activation.apply(x);
        if let Some(pool) = &self.pool {
            x = pool.forward(x);
        }
        x
    }

    /// The fully connected layers on the last block's output.
    fn run_head<H: LayerInputHook>(&self, x: Tensor<4>, hook: &mut H) -> Tensor<2> {
        let n = x.dims()[0];
        let mut x: Tensor<2> = x.reshape([n as i32, -1]);
        for (i, layer) in self.hidden.iter().enumerate() {
            if i > 0 {
                x = self.dropout.forward(x);
            }
            x = hook.layer_input(Layer::Hidden(i), x);
            x = self.activation.apply(layer.forward(x));
        }
        let x = hook.layer_input(Layer::Output, self.dropout.forward(x));
        self.output.forward(x)
    }

    /// Logits for greyscale images `[batch, height, width]` (a channel axis is added).
    pub fn try_forward_greyscale(&self, images: Tensor<3>) -> Result<Tensor<2>, ModelError> {
        let [n, h, w] = images.dims();
        self.try_forward(images.reshape([n, 1, h, w]))
    }

    /// Predicted classes for greyscale images `[batch, height, width]`, shape `[batch]`.
    pub fn predict(&self, images: Tensor<3>) -> Result<Tensor<1, Int>, ModelError> {
        let n = images.dims()[0];
        Ok(self.try_forward_greyscale(images)?.argmax(1).reshape([n]))
    }
}

impl Supervised for Cnn {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    fn forward_step(&self, batch: ImageBatch) -> ClassificationOutput {
        self.forward_step_hooked(batch, &mut NoHook)
    }

    fn check_batch(&self, batch: &ImageBatch) -> Result<(), BatchError> {
        let [n, h, w] = batch.images.dims();
        let logits = self.try_forward(batch.images.clone().reshape([n, 1, h, w]))?;
        Ok(check::labels_within("cnn", &logits, &batch.labels)?)
    }
}

impl HookedClassifier for Cnn {
    fn forward_step_hooked<H: LayerInputHook>(
        &self,
        batch: ImageBatch,
        hook: &mut H,
    ) -> ClassificationOutput {
        let [n, h, w] = batch.images.dims();
        let logits = self
            .try_forward_hooked(batch.images.reshape([n, 1, h, w]), hook)
            .unwrap_or_else(|e| panic!("{e}"));
        loss::classification_output(logits, batch.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kiln's fused convolution and burn's `Conv2d` give the same outputs and the same gradients of the
    /// input, weight and bias, for strides, paddings, odd sizes and no bias; so do the fused convolution,
    /// ReLU and max pooling (pool 1, 2 and 3: odd sizes drop a last row or column) and burn's three ops.
    #[test]
    fn fused_convolution_equals_burns_with_gradients() {
        use burn::tensor::{Distribution, Tolerance};
        let device = Device::flex().autodiff();
        let cases = [
            // (batch, in, out, h, w, kernel, stride, padding, bias)
            (
                2,
                3,
                4,
                5,
                6,
                [3, 3],
                [1, 1],
                PaddingConfig2d::Explicit(1, 1, 1, 1),
                true,
            ),
            (
                3,
                2,
                5,
                7,
                5,
                [5, 3],
                [2, 1],
                PaddingConfig2d::Explicit(2, 0, 2, 0),
                true,
            ),
            (1, 1, 2, 4, 4, [2, 2], [2, 2], PaddingConfig2d::Valid, false),
            (4, 6, 3, 9, 8, [3, 3], [1, 1], PaddingConfig2d::Valid, true),
        ];
        // (epilogue: none, or ReLU and a pool of this size)
        let epilogues = [None, Some(1), Some(2), Some(3)];
        for (batch, c_in, c_out, h, w, kernel, stride, padding, bias) in cases {
            for epilogue in epilogues {
                device.seed(5);
                let conv = Conv2dConfig::new([c_in, c_out], kernel)
                    .with_stride(stride)
                    .with_padding(padding.clone())
                    .with_bias(bias)
                    .init(&device);
                let pool = epilogue
                    .filter(|&k| k > 1)
                    .map(|k| MaxPool2dConfig::new([k, k]).init());
                let burn_path = |x: Tensor<4>| {
                    let y = conv.forward(x);
                    match epilogue {
                        None => y,
                        Some(_) => {
                            let y = burn::tensor::activation::relu(y);
                            pool.as_ref().map_or(y.clone(), |p| p.forward(y))
                        }
                    }
                };
                let x = Tensor::<4>::random(
                    [batch, c_in, h, w],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                )
                .require_grad();
                // The same loss weights in both runs (drawn once: tests run in parallel on one seeded
                // device).
                let y_dims = burn_path(x.clone()).dims();
                if y_dims.contains(&0) {
                    continue; // a pool larger than the output
                }
                let weights = Tensor::<4>::random(y_dims, Distribution::Normal(0.0, 1.0), &device);
                let run = |fused: bool| {
                    let y = match (fused, epilogue) {
                        (true, None) => convolve(&conv, x.clone()),
                        (true, Some(_)) => convolve_relu_pool(&conv, pool.as_ref(), x.clone()),
                        (false, _) => burn_path(x.clone()),
                    };
                    let grads = (y.clone() * weights.clone()).sum().backward();
                    let mut out = vec![
                        y.inner().into_data(),
                        x.grad(&grads).expect("x grad").into_data(),
                        conv.weight
                            .val()
                            .grad(&grads)
                            .expect("weight grad")
                            .into_data(),
                    ];
                    out.extend(
                        conv.bias
                            .as_ref()
                            .map(|b| b.val().grad(&grads).expect("bias grad").into_data()),
                    );
                    out
                };
                let (fused, burn) = (run(true), run(false));
                assert_eq!(fused.len(), burn.len());
                for (a, b) in fused.iter().zip(&burn) {
                    a.assert_approx_eq::<f32>(b, Tolerance::absolute(1e-4));
                }
            }
        }
    }

    #[test]
    fn flattened_size_is_computed_for_several_image_sizes_and_channels() {
        let d = Device::flex();
        for (c, h, w) in [(1, 28, 28), (3, 32, 32), (1, 16, 20), (2, 9, 9)] {
            let cfg = CnnConfig::new(c, h, w, 5)
                .with_batch_norm(true)
                .with_dropout(0.1);
            let [fc, fh, fw] = cfg.feature_shape().unwrap();
            assert_eq!((fc, fh, fw), (64, h / 4, w / 4));
            let m = cfg.init(&d).unwrap();
            assert_eq!(
                m.try_forward(Tensor::zeros([2, c, h, w], &d))
                    .unwrap()
                    .dims(),
                [2, 5]
            );
        }
        let lenet = CnnConfig::lenet5(28, 28, 10);
        assert_eq!(lenet.feature_shape().unwrap(), [16, 5, 5]);
        let m = lenet.init(&d).unwrap();
        assert_eq!(
            m.predict(Tensor::zeros([3, 28, 28], &d)).unwrap().dims(),
            [3]
        );
        // LeNet-5's 61,706 parameters for 10 classes (with max-pooling, which has none).
        assert_eq!(m.num_params(), 61_706);
    }

    #[test]
    fn wrong_shapes_and_impossible_configs_are_errors() {
        let d = Device::flex();
        let m = CnnConfig::new(1, 28, 28, 10).init(&d).unwrap();
        let err = m
            .try_forward(Tensor::zeros([2, 3, 28, 28], &d))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cnn: input of shape [2, 3, 28, 28] does not match the expected [_, 1, 28, 28]"
        );
        assert!(
            m.try_forward_greyscale(Tensor::zeros([2, 27, 28], &d))
                .is_err()
        );
        let err = CnnConfig::new(1, 4, 4, 10)
            .with_channels(vec![8, 8, 8])
            .with_kernel_sizes(vec![3, 3, 3])
            .with_paddings(vec![1, 1, 1])
            .init(&d)
            .unwrap_err();
        assert!(err.to_string().contains("block 2"), "{err}");
        let err = CnnConfig::new(1, 28, 28, 10)
            .with_kernel_sizes(vec![3])
            .init(&d)
            .unwrap_err();
        assert!(err.to_string().contains("one entry per block"), "{err}");
    }
}
