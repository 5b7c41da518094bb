//! Attributions on real MNIST digits: gradients equal finite differences, integrated gradients are
//! complete, occlusion of one pixel of a linear model is its gradient × input, class maximisation raises
//! the target logit (MLP and Transformer classifier), and bad arguments are errors.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use kiln_data::{ImageBatcher, ImageFolder, PixelNormalizer};
use kiln_explain::{ExplainError, Explainer, Quadrature, grad_cam};
use kiln_models::{
    CellKind, CnnConfig, LogisticRegressionConfig, MlpConfig, RecurrentConfig,
    SequenceClassifierConfig,
};

/// Four normalised MNIST test digits `[4, 28, 28]` and their labels.
fn digits(device: &Device) -> (Tensor<3>, Vec<usize>) {
    let mnist = ImageFolder::mnist().unwrap();
    let train = mnist.train.subset(&(0..500).collect::<Vec<_>>());
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&train), 28, 28);
    let items: Vec<_> = (0..4).map(|i| mnist.test.get(i).unwrap()).collect();
    let labels = items.iter().map(|i| i.label as usize).collect();
    (batcher.batch(items, device).images, labels)
}

fn values(t: Tensor<3>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn saliency_is_the_absolute_finite_difference_of_the_target_logit() {
    let device = Device::flex();
    device.seed(1);
    let model = MlpConfig::new(784, vec![32], 10).init(&device).unwrap();
    let (images, targets) = digits(&device);
    let explainer = Explainer::new(&model, &device);
    let saliency = values(explainer.saliency(images.clone(), &targets).unwrap());
    let (gradient, _) = explainer.gradient(images.clone(), &targets).unwrap();
    let gradient = values(gradient);
    let eps = 1e-2f32;
    for &(row, col) in &[(14usize, 14usize), (10, 20), (5, 5)] {
        let bump = |sign: f32| {
            let mut v = values(images.clone());
            v[row * 28 + col] += sign * eps;
            let t = Tensor::<3>::from_data(TensorData::new(v, [4, 28, 28]), &device);
            values(
                explainer
                    .target_scores(t, &targets)
                    .unwrap()
                    .reshape([4, 1, 1]),
            )[0]
        };
        let fd = (bump(1.0) - bump(-1.0)) / (2.0 * eps);
        let g = gradient[row * 28 + col];
        assert!(
            (fd - g).abs() < 1e-3 * (1.0 + g.abs()),
            "pixel ({row}, {col}): {fd} vs {g}"
        );
        assert!((saliency[row * 28 + col] - g.abs()).abs() < 1e-6);
    }
}

#[test]
fn integrated_gradients_are_complete_on_the_mlp_and_the_cnn() {
    let device = Device::flex();
    device.seed(2);
    let (images, targets) = digits(&device);
    let baselines = Tensor::zeros_like(&images);
    let mlp = MlpConfig::new(784, vec![32], 10).init(&device).unwrap();
    let cnn = CnnConfig::new(1, 28, 28, 10)
        .with_channels(vec![4, 8])
        .with_hidden(vec![16])
        .init(&device)
        .unwrap();
    let mlp_ig = Explainer::new(&mlp, &device)
        .integrated_gradients(
            images.clone(),
            baselines.clone(),
            &targets,
            64,
            Quadrature::GaussLegendre,
        )
        .unwrap();
    let cnn_ig = Explainer::new(&cnn, &device)
        .integrated_gradients(
            images,
            baselines,
            &targets,
            64,
            Quadrature::RiemannTrapezoid,
        )
        .unwrap();
    for (name, ig) in [("mlp", mlp_ig), ("cnn", cnn_ig)] {
        assert_eq!(ig.attributions.dims(), [4, 28, 28]);
        for d in &ig.delta {
            assert!(
                d.abs() < 2e-2,
                "{name}: completeness gap {d} (all: {:?})",
                ig.delta
            );
        }
    }
}

#[test]
fn occluding_one_pixel_of_a_linear_model_removes_its_gradient_times_input() {
    let device = Device::flex();
    device.seed(3);
    let model = LogisticRegressionConfig::new(784, 10)
        .init(&device)
        .unwrap();
    let (images, targets) = digits(&device);
    let explainer = Explainer::new(&model, &device);
    let occlusion = values(
        explainer
            .occlusion(images.clone(), &targets, (1, 1), (1, 1), 0.0)
            .unwrap(),
    );
    let ixg = values(explainer.input_x_gradient(images, &targets).unwrap());
    for (o, x) in occlusion.iter().zip(&ixg) {
        assert!((o - x).abs() < 1e-4, "{o} vs {x}");
    }
}

#[test]
fn larger_windows_and_strides_cover_every_pixel_they_reach() {
    let device = Device::flex();
    let model = MlpConfig::new(784, vec![16], 10).init(&device).unwrap();
    let (images, targets) = digits(&device);
    let explainer = Explainer::new(&model, &device);
    // 28 = 3 × 8 + 4: windows of 8 at stride 8 leave the last 4 rows and columns uncovered (0).
    let map = values(
        explainer
            .occlusion(images, &targets, (8, 8), (8, 8), 0.0)
            .unwrap(),
    );
    assert!(map[27 * 28 + 27] == 0.0 && map[26] == 0.0);
    assert!(map[..24].iter().any(|v| *v != 0.0));
}

#[test]
fn grad_cam_maps_a_cnn_block_at_its_resolution_and_smoothgrad_runs_on_a_recurrent_model() {
    let device = Device::flex();
    device.seed(4);
    let (images, targets) = digits(&device);
    let cnn = CnnConfig::new(1, 28, 28, 10)
        .with_channels(vec![4, 8])
        .with_hidden(vec![16])
        .init(&device)
        .unwrap();
    assert_eq!(
        grad_cam(&cnn, &device, images.clone(), &targets, 0)
            .unwrap()
            .dims(),
        [4, 14, 14]
    );
    assert_eq!(
        grad_cam(&cnn, &device, images.clone(), &targets, 1)
            .unwrap()
            .dims(),
        [4, 7, 7]
    );
    let err = grad_cam(&cnn, &device, images.clone(), &targets, 2).unwrap_err();
    assert!(err.to_string().contains("block 2"), "{err}");
    let lstm = SequenceClassifierConfig::new(RecurrentConfig::new(CellKind::Lstm, 28, 16), 10)
        .init(&device)
        .unwrap();
    let smooth = Explainer::new(&lstm, &device)
        .smoothgrad(images, &targets, 4, 0.1)
        .unwrap();
    assert_eq!(smooth.dims(), [4, 28, 28]);
    assert!(values(smooth).iter().all(|v| v.is_finite() && *v >= 0.0));
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let device = Device::flex();
    let model = MlpConfig::new(784, vec![8], 10).init(&device).unwrap();
    let (images, _) = digits(&device);
    let explainer = Explainer::new(&model, &device);
    assert!(matches!(
        explainer.saliency(images.clone(), &[1, 2]),
        Err(ExplainError::Argument(_))
    ));
    let err = explainer
        .occlusion(images.clone(), &[0, 1, 2, 3], (29, 1), (1, 1), 0.0)
        .unwrap_err();
    assert!(err.to_string().contains("29×1"), "{err}");
    let wrong = Tensor::<3>::zeros([4, 28, 27], &device);
    assert!(
        explainer
            .integrated_gradients(images, wrong, &[0, 1, 2, 3], 8, Quadrature::default())
            .is_err()
    );
}

#[test]
fn class_maximisation_raises_the_target_logit_within_the_pixel_range() {
    let device = Device::flex();
    device.seed(6);
    let mlp = MlpConfig::new(784, vec![32], 10).init(&device).unwrap();
    let transformer = kiln_models::TransformerClassifierConfig {
        d_input: 28,
        num_classes: 10,
        stack: kiln_models::EncoderStackConfig::new(16)
            .with_n_heads(2)
            .with_n_layers(1)
            .with_d_ff(32)
            .with_dropout(0.0)
            .with_max_len(28),
    }
    .init(&device)
    .unwrap();
    let targets: Vec<usize> = (0..10).collect();
    // Noisy starts: a blank image is the same at every row, which a Transformer cannot tell apart.
    let start = Tensor::<3>::random(
        [10, 28, 28],
        burn::tensor::Distribution::Normal(0.0, 0.5),
        &device,
    );
    let range = (-0.42, 2.82);
    let check = |found: kiln_explain::ClassImages| {
        let before = found.before.into_data().try_to_vec::<f32>().unwrap();
        let after = found.after.into_data().try_to_vec::<f32>().unwrap();
        for (b, a) in before.iter().zip(&after) {
            assert!(a > &(b + 0.1), "target logit {b} → {a}");
        }
        let pixels = values(found.images);
        assert!(pixels.iter().all(|p| (range.0..=range.1).contains(p)));
        assert!(pixels.len() == 10 * 784);
    };
    check(
        Explainer::new(&mlp, &device)
            .maximise_classes(start.clone(), &targets, 30, 0.5, 0.01, range)
            .unwrap(),
    );
    check(
        Explainer::new(&transformer, &device)
            .maximise_classes(start.clone(), &targets, 30, 1.0, 0.01, range)
            .unwrap(),
    );
    let err = Explainer::new(&mlp, &device)
        .maximise_classes(start, &targets, 30, 0.0, 0.01, range)
        .unwrap_err();
    assert!(err.to_string().contains("lr > 0"), "{err}");
}
