//! The recurrent models learn on small real subsets: sequential MNIST (images read row by row) and
//! characters of the vendored Shakespeare.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use kiln_data::{ImageBatcher, ImageFolder, PixelNormalizer, TokenBatcher, TokenWindows};
use kiln_models::{CellKind, CharLmConfig, RecurrentConfig, SequenceClassifierConfig};
use kiln_train::{StepOutput, Supervised};
use std::sync::Arc;

/// Mean loss of `model` over `batches`.
fn mean_loss<M: Supervised>(model: &M, batches: &[M::Batch]) -> f32
where
    M::Batch: Clone,
{
    let total: f32 = batches
        .iter()
        .map(|b| model.forward_step(b.clone()).loss().into_scalar::<f32>())
        .sum();
    total / batches.len() as f32
}

/// `passes` passes of Adam over `batches`; returns the trained model.
fn train<M: Supervised>(mut model: M, batches: &[M::Batch], passes: usize, lr: f64) -> M
where
    M::Batch: Clone,
{
    let mut optim = AdamConfig::new().init();
    for _ in 0..passes {
        for batch in batches {
            let loss = model.forward_step(batch.clone()).loss();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
    }
    model
}

#[test]
fn each_recurrent_classifier_learns_sequential_mnist_rows() {
    let mnist = ImageFolder::mnist().unwrap();
    let images = mnist.train.take(256);
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&images), 28, 28);
    let device = Device::flex().autodiff();
    let items: Vec<_> = (0..images.len()).map(|i| images.get(i).unwrap()).collect();
    let batches: Vec<_> = items
        .chunks(32)
        .map(|c| batcher.batch(c.to_vec(), &device))
        .collect();
    for cell in [CellKind::Rnn, CellKind::Gru, CellKind::Lstm] {
        device.seed(5);
        let model = SequenceClassifierConfig::new(RecurrentConfig::new(cell, 28, 32), 10)
            .init(&device)
            .unwrap();
        let before = mean_loss(&model, &batches);
        let model = train(model, &batches, 3, 1e-2);
        let after = mean_loss(&model, &batches);
        assert!(
            after < 0.8 * before,
            "{cell}: loss {before:.3} → {after:.3} after 24 steps"
        );
    }
}

#[test]
fn the_character_language_model_learns_shakespeare() {
    let corpus = kiln_data::text::shakespeare().unwrap();
    let head = Arc::new(corpus.train[..16 * 33 * 4].to_vec());
    let windows = TokenWindows::new(head, 32).unwrap();
    let device = Device::flex().autodiff();
    let items: Vec<_> = (0..windows.len())
        .map(|i| windows.get(i).unwrap())
        .collect();
    let batches: Vec<_> = items
        .chunks(16)
        .map(|c| TokenBatcher.batch(c.to_vec(), &device))
        .collect();
    device.seed(2);
    let model = CharLmConfig::new(CellKind::Lstm, corpus.vocab.len())
        .with_d_embedding(16)
        .with_d_hidden(64)
        .init(&device)
        .unwrap();
    let before = mean_loss(&model, &batches);
    let model = train(model, &batches, 5, 1e-2);
    let after = mean_loss(&model, &batches);
    // Uniform over the vocabulary is ln(85) ≈ 4.44 nats; unigram frequencies alone give about 3.3.
    assert!(before > 4.0, "untrained loss {before}");
    assert!(after < 3.0, "loss {before:.3} → {after:.3} nats/char");
}
