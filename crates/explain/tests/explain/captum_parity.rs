//! Parity with Captum 0.9: an MLP and a CNN exported from PyTorch (`state_dict()` safetensors) load into
//! Kiln's models through `kiln_models::torch`, give PyTorch's logits, and every method gives Captum's
//! attributions of the same four MNIST digits (SmoothGrad with the noise Captum's NoiseTunnel drew) — within 1e-4 of the largest attribution's size. The fixtures
//! are written by `scripts/make_captum_fixtures.py`.

use burn::prelude::*;
use kiln_explain::{Explainer, Quadrature, grad_cam};
use kiln_models::torch::{TorchCnnNames, load_torch_cnn, load_torch_mlp};
use kiln_models::{Cnn, CnnConfig, Mlp, MlpConfig, ModelError};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/captum")
        .join(name)
}

/// The tensors of a fixture's `io` file.
struct Io(Vec<u8>);

impl Io {
    fn open(model: &str) -> Self {
        Self(std::fs::read(fixture(&format!("{model}.io.safetensors"))).unwrap())
    }

    fn values(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let file = safetensors::SafeTensors::deserialize(&self.0).unwrap();
        let view = file.tensor(name).unwrap();
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (values, view.shape().to_vec())
    }

    fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        let (values, shape) = self.values(name);
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn targets(&self) -> Vec<usize> {
        self.values("targets")
            .0
            .iter()
            .map(|&t| t as usize)
            .collect()
    }
}

const BLACK: f32 = (0.0 - 0.1307) / 0.3081;

/// Asserts `ours` equals Captum's `name` within 1e-4 of the reference's largest magnitude.
fn assert_close<const D: usize>(io: &Io, name: &str, ours: Tensor<D>) {
    let (reference, shape) = io.values(name);
    assert_eq!(ours.dims().to_vec(), shape, "{name}: shape");
    let ours = ours
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{name}: an all-zero reference cannot tell");
    let worst = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("{name}: largest difference {worst:.1e}, largest value {scale:.1e}");
    assert!(
        worst <= 1e-4 * scale,
        "{name}: differs from Captum by {worst:e} (largest attribution {scale:e})"
    );
}

fn mlp(device: &Device) -> Mlp {
    let mut model = MlpConfig::new(784, vec![32, 16], 10).init(device).unwrap();
    load_torch_mlp(
        &mut model,
        &fixture("mlp.weights.safetensors"),
        &["fc1", "fc2", "out"],
    )
    .unwrap();
    model
}

const CNN_NAMES: TorchCnnNames = TorchCnnNames {
    convs: &["block1.0", "block2.0"],
    norms: &[],
    linears: &["fc1", "out"],
};

fn cnn_config() -> CnnConfig {
    CnnConfig::new(1, 28, 28, 10)
        .with_channels(vec![4, 8])
        .with_hidden(vec![16])
}

fn cnn(device: &Device) -> Cnn {
    let mut model = cnn_config().init(device).unwrap();
    load_torch_cnn(&mut model, &fixture("cnn.weights.safetensors"), CNN_NAMES).unwrap();
    model
}

fn check_methods<M>(model: &M, io: &Io, device: &Device)
where
    M: kiln_core::Supervised<
            Batch = kiln_data::ImageBatch,
            Output = kiln_core::ClassificationOutput,
        > + burn::module::Module,
{
    let explainer = Explainer::new(model, device);
    let x: Tensor<3> = io.tensor("x", device);
    let targets = io.targets();
    assert_close(io, "logits", explainer.logits(x.clone()).inner());
    assert_close(
        io,
        "saliency",
        explainer.saliency(x.clone(), &targets).unwrap(),
    );
    assert_close(
        io,
        "input_x_gradient",
        explainer.input_x_gradient(x.clone(), &targets).unwrap(),
    );
    let baseline = Tensor::full(x.dims(), BLACK, device);
    let ig = explainer
        .integrated_gradients(x.clone(), baseline, &targets, 32, Quadrature::GaussLegendre)
        .unwrap();
    assert_close(io, "integrated_gradients", ig.attributions);
    let (delta, _) = io.values("integrated_gradients_delta");
    for (ours, theirs) in ig.delta.iter().zip(&delta) {
        assert!(
            (ours - theirs).abs() < 1e-5,
            "IG delta {ours} against Captum's {theirs}"
        );
    }
    assert_close(
        io,
        "occlusion",
        explainer
            .occlusion(x.clone(), &targets, (4, 4), (4, 4), BLACK)
            .unwrap(),
    );
    // NoiseTunnel's draw: row b · samples + k is sample k of image b.
    let (noise, shape) = io.values("smoothgrad_noise");
    let [batch, h, w] = x.dims();
    let samples = shape[0] / batch;
    let draws: Vec<Tensor<3>> = (0..samples)
        .map(|k| {
            let mut values = Vec::with_capacity(batch * h * w);
            for b in 0..batch {
                let row = (b * samples + k) * h * w;
                values.extend_from_slice(&noise[row..row + h * w]);
            }
            Tensor::from_data(TensorData::new(values, [batch, h, w]), device)
        })
        .collect();
    assert_close(
        io,
        "smoothgrad",
        explainer
            .smoothgrad_with_noise(x.clone(), &targets, &draws)
            .unwrap(),
    );
    assert!(explainer.smoothgrad_with_noise(x, &targets, &[]).is_err());
}

#[test]
fn the_mlp_gives_captums_attributions() {
    let device = Device::flex();
    check_methods(&mlp(&device), &Io::open("mlp"), &device);
}

#[test]
fn the_cnn_gives_captums_attributions_and_grad_cam() {
    let device = Device::flex();
    let model = cnn(&device);
    let io = Io::open("cnn");
    check_methods(&model, &io, &device);
    let cam = grad_cam(&model, &device, io.tensor("x", &device), &io.targets(), 1).unwrap();
    assert_close(&io, "grad_cam", cam);
}

#[test]
fn weights_of_another_model_or_wrong_names_are_refused_with_the_reason() {
    let device = Device::flex();
    // The MLP's file into the CNN: its `fc1` is 784 → 32, the CNN's hidden layer 392 → 16.
    let mut model = cnn_config().init(&device).unwrap();
    let err =
        load_torch_cnn(&mut model, &fixture("mlp.weights.safetensors"), CNN_NAMES).unwrap_err();
    assert!(matches!(err, ModelError::File { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("mlp.weights.safetensors")
            && text.contains("hidden.0.weight")
            && text.contains("[784, 32]"),
        "{text}"
    );
    // A name list that does not fit the model's layers.
    let mut model = MlpConfig::new(784, vec![32, 16], 10).init(&device).unwrap();
    let err = load_torch_mlp(
        &mut model,
        &fixture("mlp.weights.safetensors"),
        &["fc1", "out"],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("2 PyTorch layer names for an MLP of 3"),
        "{err}"
    );
    // Names that are not in the file.
    let err = load_torch_mlp(
        &mut model,
        &fixture("mlp.weights.safetensors"),
        &["fc1", "fc2", "head"],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("missing tensor for `output.weight`"), "{err}");
    // A missing file.
    let err = load_torch_mlp(&mut model, &fixture("none.safetensors"), &["a", "b", "c"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("none.safetensors") && err.contains("no such file"),
        "{err}"
    );
}
