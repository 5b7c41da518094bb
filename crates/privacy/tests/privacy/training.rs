//! DP-SGD's training loop and the private PCA: the PCA finds a dominant direction and pays for it in ε;
//! training on real MNIST learns within its budget; bad shapes and settings are errors.

use burn::data::dataset::Dataset;
use burn::prelude::*;
use kiln_data::ImageFolder;
use kiln_models::MlpConfig;
use kiln_privacy::{DpSgd, DpTraining, Features, RdpAccountant, accuracy, dp_pca, train_dp_sgd};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn mnist(range: std::ops::Range<usize>) -> Features {
    let folder = ImageFolder::mnist().expect("the vendored MNIST");
    let indices: Vec<usize> = range.collect();
    let features = Features::from_images(&folder.train, &indices).expect("features");
    // The same pixels, by hand.
    let item = folder.train.get(indices[0]).expect("item");
    assert_eq!(features.row(0)[200], f32::from(item.pixels[200]) / 255.0);
    assert_eq!(features.labels[0], i64::from(item.label));
    features
}

#[test]
fn private_pca_finds_the_dominant_direction_and_spends_epsilon() {
    // 500 points along (3, 4, 0, …)/5 with a little spread in the other 7 coordinates.
    let mut rng = StdRng::seed_from_u64(1);
    let dim = 10;
    let mut values = Vec::new();
    for _ in 0..500 {
        let t: f32 = rng.random_range(0.5..1.0);
        let mut row = vec![0.0f32; dim];
        row[0] = 0.6 * t;
        row[1] = 0.8 * t;
        for v in row.iter_mut().skip(3) {
            *v = rng.random_range(-0.05..0.05);
        }
        values.extend(row);
    }
    let data = Features::new(values, dim, vec![0; 500]).expect("features");
    let mut accountant = RdpAccountant::new();
    let device = Device::flex();
    let projection = dp_pca(&data, 2, 1.0, &mut accountant, &mut rng, &device).expect("pca");
    let first = &projection.directions[..dim];
    let alignment = (0.6 * first[0] + 0.8 * first[1]).abs();
    assert!(alignment > 0.99, "first direction {first:?}");
    let epsilon = accountant.epsilon(1e-5).expect("ε").0;
    assert!(
        epsilon > 1.0,
        "one Gaussian release with σ = 1 cost only ε = {epsilon}"
    );
    let projected = projection.apply(&data, &device).expect("apply");
    assert_eq!((projected.dim, projected.len()), (2, 500));
    // Unit-norm rows projected onto the dominant direction: |⟨x, u⟩| ≈ 1.
    assert!(projected.row(0)[0].abs() > 0.95, "{:?}", projected.row(0));
    let wrong = Features::new(vec![0.0; 12], 3, vec![0; 4]).expect("features");
    assert!(projection.apply(&wrong, &device).is_err());
    assert!(dp_pca(&data, 0, 1.0, &mut accountant, &mut rng, &device).is_err());
    assert!(dp_pca(&data, 11, 1.0, &mut accountant, &mut rng, &device).is_err());
    assert!(dp_pca(&data, 2, 0.0, &mut accountant, &mut rng, &device).is_err());
}

#[test]
fn dp_sgd_learns_mnist_within_its_budget() {
    let train = mnist(0..1500);
    let valid = mnist(1500..2000);
    let device = Device::flex().autodiff();
    device.seed(5);
    let model = MlpConfig::new(784, vec![64], 10)
        .init(&device)
        .expect("mlp");
    let before = accuracy(&model, &valid).expect("accuracy");
    let config = DpTraining {
        epochs: 4,
        lot: 100,
        step: DpSgd {
            clip_norm: 1.0,
            noise_multiplier: 0.8,
            lr: 0.5,
        },
        delta: 1e-5,
        seed: 2,
    };
    let mut accountant = RdpAccountant::new();
    let mut seen = 0;
    let (model, epochs) = train_dp_sgd(model, &train, &valid, &config, &mut accountant, |_| {
        seen += 1
    })
    .expect("training");
    assert_eq!((seen, epochs.len()), (4, 4));
    let after = accuracy(&model, &valid).expect("accuracy");
    assert!(
        after > 0.6 && after > before + 0.3,
        "validation accuracy {before} → {after}"
    );
    assert!(
        epochs.windows(2).all(|w| w[0].epsilon < w[1].epsilon),
        "{epochs:?}"
    );
    // The accountant saw exactly the run's steps: q = 100 / 1500, 15 steps an epoch.
    let mut check = RdpAccountant::new();
    check
        .compose_poisson_gaussian(100.0 / 1500.0, f64::from(0.8f32), 60)
        .expect("compose");
    let expected = check.epsilon(1e-5).expect("ε").0;
    assert!(
        (epochs[3].epsilon - expected).abs() < 1e-9 * expected,
        "{} vs {expected}",
        epochs[3].epsilon
    );
}

#[test]
fn bad_features_and_lots_are_refused() {
    assert!(Features::new(vec![0.0; 10], 3, vec![0; 3]).is_err());
    let folder = ImageFolder::mnist().expect("the vendored MNIST");
    let err = Features::from_images(&folder.test, &[3, 10_000]).expect_err("outside the test set");
    assert!(err.to_string().contains("image 10000"), "{err}");
    assert!(Features::new(vec![], 0, vec![]).is_err());
    let data = Features::new(vec![0.0; 12], 3, vec![0, 1, 0, 1]).expect("features");
    let device = Device::flex().autodiff();
    let model = MlpConfig::new(3, vec![4], 2).init(&device).expect("mlp");
    let mut config = DpTraining {
        epochs: 1,
        lot: 5,
        step: DpSgd {
            clip_norm: 1.0,
            noise_multiplier: 1.0,
            lr: 0.1,
        },
        delta: 1e-5,
        seed: 1,
    };
    let mut accountant = RdpAccountant::new();
    let err = train_dp_sgd(
        model.clone(),
        &data,
        &data,
        &config,
        &mut accountant,
        |_| {},
    )
    .expect_err("a lot larger than the data");
    assert!(err.to_string().contains("lot of 5 from 4"), "{err}");
    config.lot = 2;
    config.epochs = 0;
    assert!(train_dp_sgd(model, &data, &data, &config, &mut accountant, |_| {}).is_err());
}
