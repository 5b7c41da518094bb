//! Transformers, on burn's attention and encoder modules: the [`stack`] every model shares (positions,
//! layers, masks), an encoder [`classifier`], a decoder-only language model ([`lm`]), an encoder–decoder
//! for translation ([`seq2seq`]), burn's layers run on Kiln's fused kernels ([`fused`]), decoding one
//! position at a time with cached keys and values ([`cache`]), and the import of PyTorch's multi-head
//! attention weights ([`attention`]).

pub mod attention;
pub mod cache;
pub mod classifier;
pub mod fused;
pub mod lm;
pub mod seq2seq;
pub mod stack;

pub use attention::load_torch_mha;
pub use cache::DecodingCache;
pub use classifier::{TransformerClassifier, TransformerClassifierConfig};
pub use lm::{TransformerLm, TransformerLmConfig};
pub use seq2seq::{Seq2Seq, Seq2SeqConfig};
pub use stack::{
    DecoderStack, DecoderStackConfig, EncoderStack, EncoderStackConfig, PositionKind, Positions,
};
