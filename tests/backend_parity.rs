//! Same code on every backend: the same small models, with the same weights, give the same forward outputs
//! and the same weights after one training step on flex, ndarray and (with the `wgpu` feature) wgpu.

use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use kiln::data::{ImageBatch, synthetic};
use kiln::models::persist::{load_weights, save_weights};
use kiln::models::{LinearRegressionConfig, LogisticRegressionConfig, Mlp, MlpConfig};
use kiln::train::{DeviceChoice, StepOutput, Supervised};

const TOLERANCE: f32 = 1e-4;

fn devices() -> Vec<DeviceChoice> {
    let all: Vec<DeviceChoice> = DeviceChoice::available()
        .iter()
        .map(|d| d.parse().unwrap())
        .collect();
    assert!(
        all.len() >= 2,
        "parity needs at least two backends, have {all:?}"
    );
    all
}

/// A fixed batch of 6 "images" of 3×4 pixels with labels.
fn batch(device: &Device) -> ImageBatch {
    let pixels: Vec<f32> = (0..72)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
        .collect();
    ImageBatch {
        images: Tensor::from_data(TensorData::new(pixels, [6, 3, 4]), device),
        labels: Tensor::from_data(TensorData::new(vec![0i64, 1, 2, 3, 1, 0], [6]), device),
    }
}

fn assert_close(name: &str, reference: &[f32], other: &[f32], device: DeviceChoice) {
    assert_eq!(reference.len(), other.len());
    let worst = reference
        .iter()
        .zip(other)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= TOLERANCE,
        "{name} on {device}: max difference {worst}"
    );
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// The MLP trained for one SGD step on `device`, starting from the weights in `weights`.
fn mlp_after_one_step(
    weights: &std::path::Path,
    config: &MlpConfig,
    device: DeviceChoice,
) -> (Vec<f32>, Vec<f32>, f32) {
    let dev = device.device().autodiff();
    let model: Mlp = load_weights(config.init(&dev).unwrap(), weights).unwrap();
    let out = model.forward_step(batch(&dev));
    let loss = values(out.loss.clone())[0];
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    let mut optim = SgdConfig::new().init();
    let model = optim.step(0.1, model, grads);
    (
        values(model.hidden[0].weight.val()),
        values(model.output.weight.val()),
        loss,
    )
}

#[test]
fn mlp_forward_and_one_training_step_agree_across_backends() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("mlp.bpk");
    let config = MlpConfig::new(12, vec![16], 4);
    let reference_device = DeviceChoice::Flex.device();
    reference_device.seed(11);
    save_weights(&config.init(&reference_device).unwrap(), &weights).unwrap();

    let forward = |device: DeviceChoice| {
        let dev = device.device();
        let model: Mlp = load_weights(config.init(&dev).unwrap(), &weights).unwrap();
        values(model.try_forward_images(batch(&dev).images).unwrap())
    };
    let reference_out = forward(DeviceChoice::Flex);
    let (reference_w1, reference_w2, reference_loss) =
        mlp_after_one_step(&weights, &config, DeviceChoice::Flex);
    for device in devices().into_iter().skip(1) {
        assert_close("MLP forward", &reference_out, &forward(device), device);
        let (w1, w2, loss) = mlp_after_one_step(&weights, &config, device);
        assert!(
            (loss - reference_loss).abs() <= TOLERANCE,
            "loss on {device}: {loss} vs {reference_loss}"
        );
        assert_close(
            "MLP hidden weights after a step",
            &reference_w1,
            &w1,
            device,
        );
        assert_close(
            "MLP output weights after a step",
            &reference_w2,
            &w2,
            device,
        );
    }
}

#[test]
fn regressions_agree_across_backends() {
    let dir = tempfile::tempdir().unwrap();
    let (lin, log) = (dir.path().join("lin.bpk"), dir.path().join("log.bpk"));
    let flex = DeviceChoice::Flex.device();
    flex.seed(2);
    save_weights(&LinearRegressionConfig::new(2).init(&flex).unwrap(), &lin).unwrap();
    save_weights(
        &LogisticRegressionConfig::new(2, 2).init(&flex).unwrap(),
        &log,
    )
    .unwrap();
    let (x, _) = synthetic::two_blobs(8, 4);
    let outputs = |device: DeviceChoice| {
        let dev = device.device();
        let features = Tensor::<2>::from_data(TensorData::new(x.clone(), [8, 2]), &dev);
        let l = load_weights(LinearRegressionConfig::new(2).init(&dev).unwrap(), &lin).unwrap();
        let g = load_weights(
            LogisticRegressionConfig::new(2, 2).init(&dev).unwrap(),
            &log,
        )
        .unwrap();
        let mut v = values(l.forward(features.clone()));
        v.extend(values(g.predict_proba(features).unwrap()));
        v
    };
    let reference = outputs(DeviceChoice::Flex);
    for device in devices().into_iter().skip(1) {
        assert_close(
            "linear/logistic regression",
            &reference,
            &outputs(device),
            device,
        );
    }
}

#[test]
fn unknown_device_names_what_is_available() {
    let err = "cuda".parse::<DeviceChoice>().unwrap_err().to_string();
    assert!(err.contains("flex"), "{err}");
}

/// `model` (built by `init` on each device, with the weights saved in `weights`) after one SGD step on
/// the fixed batch: the loss before the step and the logits after it, which depend on every weight.
fn after_one_step<M>(
    init: &dyn Fn(&Device) -> M,
    weights: &std::path::Path,
    device: DeviceChoice,
    logits: &dyn Fn(&M, Tensor<3>) -> Tensor<2>,
) -> (f32, Vec<f32>)
where
    M: Supervised<Batch = ImageBatch>,
{
    let dev = device.device().autodiff();
    let model: M = load_weights(init(&dev), weights).unwrap();
    let out = model.forward_step(batch(&dev));
    let loss = values(out.loss().clone())[0];
    let grads = GradientsParams::from_grads(out.loss().backward(), &model);
    let model = SgdConfig::new().init().step(0.1, model, grads);
    (loss, values(logits(&model, batch(&dev).images)))
}

/// The same check for any image classifier: flex (where Kiln's fused kernels run) against every other
/// backend (burn's generic ops).
fn classifier_agrees_across_backends<M>(
    name: &str,
    init: &dyn Fn(&Device) -> M,
    logits: &dyn Fn(&M, Tensor<3>) -> Tensor<2>,
) where
    M: Supervised<Batch = ImageBatch>,
{
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.bpk");
    let flex = DeviceChoice::Flex.device();
    flex.seed(7);
    save_weights(&init(&flex), &weights).unwrap();
    let (reference_loss, reference) = after_one_step(init, &weights, DeviceChoice::Flex, logits);
    for device in devices().into_iter().skip(1) {
        let (loss, after) = after_one_step(init, &weights, device, logits);
        assert!(
            (loss - reference_loss).abs() <= TOLERANCE,
            "{name} loss on {device}: {loss} vs {reference_loss}"
        );
        assert_close(
            &format!("{name} logits after a step"),
            &reference,
            &after,
            device,
        );
    }
}

#[test]
fn cnn_agrees_across_backends() {
    let config = kiln::models::CnnConfig::new(1, 3, 4, 4)
        .with_channels(vec![3, 5])
        .with_kernel_sizes(vec![3, 2])
        .with_paddings(vec![1, 0])
        .with_pool(1)
        .with_hidden(vec![8]);
    classifier_agrees_across_backends(
        "CNN",
        &|dev| config.init(dev).unwrap(),
        &|m: &kiln::models::Cnn, images| m.try_forward_greyscale(images).unwrap(),
    );
}

#[test]
fn recurrent_classifiers_agree_across_backends() {
    use kiln::models::{CellKind, RecurrentConfig, SequenceClassifier, SequenceClassifierConfig};
    for cell in [CellKind::Rnn, CellKind::Gru, CellKind::Lstm] {
        // Rows of the 3×4 images as 3 steps of 4 features; two bidirectional layers.
        let config = SequenceClassifierConfig::new(
            RecurrentConfig::new(cell, 4, 5)
                .with_num_layers(2)
                .with_bidirectional(true),
            4,
        );
        classifier_agrees_across_backends(
            &format!("{cell} classifier"),
            &|dev| config.init(dev).unwrap(),
            &|m: &SequenceClassifier, images| m.try_forward_images(images).unwrap(),
        );
    }
}

#[test]
fn transformer_classifier_agrees_across_backends() {
    use kiln::models::transformer::{
        EncoderStackConfig, TransformerClassifier, TransformerClassifierConfig,
    };
    // Rows of the 3×4 images as 3 steps of 4 features; two layers of Kiln's fused attention, layer norm
    // and GELU on flex, burn's generic ones elsewhere. Pre- and post-norm; no dropout (each backend draws
    // its own masks).
    for norm_first in [true, false] {
        let stack = EncoderStackConfig::new(8)
            .with_n_heads(2)
            .with_n_layers(2)
            .with_d_ff(16)
            .with_dropout(0.0)
            .with_norm_first(norm_first)
            .with_max_len(3);
        let config = TransformerClassifierConfig::new(4, 4, stack);
        classifier_agrees_across_backends(
            &format!("Transformer classifier (norm_first {norm_first})"),
            &|dev| config.init(dev).unwrap(),
            &|m: &TransformerClassifier, images| m.try_forward(images, None).unwrap(),
        );
    }
}
