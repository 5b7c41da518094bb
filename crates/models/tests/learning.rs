//! The sequence and graph models learn on small real subsets: recurrent and Transformer classifiers on
//! sequential MNIST (images read row by row), recurrent and Transformer language models on characters of the
//! vendored Shakespeare, the encoder–decoder on Bible verse pairs, TransE and DistMult on Kinships.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use kiln_core::{StepOutput, Supervised};
use kiln_data::parallel::{kjv_rv1909, split_bible_by_books};
use kiln_data::{
    ImageBatcher, ImageFolder, PairBatcher, PixelNormalizer, TokenBatcher, TokenWindows,
    TranslationData, TripleBatcher,
};
use kiln_models::{
    CellKind, CharLmConfig, EncoderStackConfig, KgEmbeddingConfig, KgScorer, PositionKind,
    RecurrentConfig, Seq2SeqConfig, SequenceClassifierConfig, TransformerClassifierConfig,
    TransformerLmConfig,
};
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

/// Eight batches of 32 MNIST training images on `device`.
fn mnist_batches(device: &Device) -> Vec<kiln_data::ImageBatch> {
    let mnist = ImageFolder::mnist().unwrap();
    let images = mnist.train.take(256);
    let batcher = ImageBatcher::new(PixelNormalizer::fit(&images), 28, 28);
    let items: Vec<_> = (0..images.len()).map(|i| images.get(i).unwrap()).collect();
    items
        .chunks(32)
        .map(|c| batcher.batch(c.to_vec(), device))
        .collect()
}

/// Four batches of 16 windows of 32 characters from the start of Shakespeare, and the vocabulary size.
fn shakespeare_batches(device: &Device) -> (Vec<kiln_data::TokenBatch>, usize) {
    let corpus = kiln_data::text::shakespeare().unwrap();
    let head = Arc::new(corpus.train[..16 * 33 * 4].to_vec());
    let windows = TokenWindows::new(head, 32).unwrap();
    let items: Vec<_> = (0..windows.len())
        .map(|i| windows.get(i).unwrap())
        .collect();
    let batches = items
        .chunks(16)
        .map(|c| TokenBatcher.batch(c.to_vec(), device))
        .collect();
    (batches, corpus.vocab.len())
}

#[test]
fn each_recurrent_classifier_learns_sequential_mnist_rows() {
    let device = Device::flex().autodiff();
    let batches = mnist_batches(&device);
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
    let device = Device::flex().autodiff();
    let (batches, vocab) = shakespeare_batches(&device);
    device.seed(2);
    let model = CharLmConfig::new(CellKind::Lstm, vocab)
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

#[test]
fn the_transformer_classifier_learns_sequential_mnist_rows() {
    let device = Device::flex().autodiff();
    let batches = mnist_batches(&device);
    device.seed(5);
    let stack = EncoderStackConfig::new(32)
        .with_n_heads(4)
        .with_d_ff(64)
        .with_max_len(28);
    let model = TransformerClassifierConfig::new(28, 10, stack)
        .init(&device)
        .unwrap();
    let before = mean_loss(&model, &batches);
    let model = train(model, &batches, 3, 3e-3);
    let after = mean_loss(&model, &batches);
    assert!(
        after < 0.8 * before,
        "loss {before:.3} → {after:.3} after 24 steps"
    );
}

#[test]
fn the_transformer_language_model_learns_shakespeare() {
    let device = Device::flex().autodiff();
    let (batches, vocab) = shakespeare_batches(&device);
    device.seed(2);
    let stack = EncoderStackConfig::new(32)
        .with_n_heads(4)
        .with_d_ff(64)
        .with_dropout(0.0)
        .with_positions(PositionKind::Learned)
        .with_max_len(32);
    let model = TransformerLmConfig::new(vocab, stack)
        .init(&device)
        .unwrap();
    let before = mean_loss(&model, &batches);
    let model = train(model, &batches, 5, 1e-2);
    let after = mean_loss(&model, &batches);
    assert!(before > 4.0, "untrained loss {before}");
    assert!(after < 3.0, "loss {before:.3} → {after:.3} nats/char");
}

#[test]
fn the_encoder_decoder_learns_bible_verse_pairs() {
    let split = split_bible_by_books(&kjv_rv1909().unwrap(), 10).unwrap();
    let train_pairs = &split.train[..128];
    let data = TranslationData::build(train_pairs, 1, 4000);
    let device = Device::flex().autodiff();
    let encoded = data.encode(train_pairs);
    let items: Vec<_> = (0..encoded.len())
        .map(|i| encoded.get(i).unwrap())
        .collect();
    let batcher = PairBatcher { max_len: 24 };
    let batches: Vec<_> = items
        .chunks(32)
        .map(|c| batcher.batch(c.to_vec(), &device))
        .collect();
    device.seed(3);
    let stack = EncoderStackConfig::new(32)
        .with_n_heads(4)
        .with_d_ff(64)
        .with_dropout(0.0)
        .with_max_len(24);
    let model = Seq2SeqConfig::new(
        data.source_vocab.len(),
        data.target_vocab.len(),
        stack.clone(),
        stack,
    )
    .init(&device)
    .unwrap();
    let before = mean_loss(&model, &batches);
    let model = train(model, &batches, 6, 3e-3);
    let after = mean_loss(&model, &batches);
    assert!(
        after < 0.7 * before,
        "loss {before:.3} → {after:.3} nats/word after 24 steps"
    );
}

#[test]
fn transe_and_distmult_learn_kinships() {
    let graph = kiln_data::kg::vendored("kinships").unwrap();
    let device = Device::flex().autodiff();
    let batcher = TripleBatcher::new(graph.entities.len(), 8, 1);
    let batches: Vec<_> = graph.train[..1024]
        .chunks(128)
        .map(|c| batcher.batch(c.to_vec(), &device))
        .collect();
    for scorer in [KgScorer::TransE, KgScorer::DistMult] {
        device.seed(4);
        let model = KgEmbeddingConfig::new(scorer, graph.entities.len(), graph.relations.len())
            .with_dim(32)
            .init(&device)
            .unwrap();
        let before = mean_loss(&model, &batches);
        let model = train(model, &batches, 5, 1e-2);
        let after = mean_loss(&model, &batches);
        assert!(
            after < 0.8 * before,
            "{scorer:?}: loss {before:.3} → {after:.3} after 40 steps"
        );
    }
}
