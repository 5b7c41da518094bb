//! Recurrent models: RNN, GRU and LSTM stacks ([`layer`]), a sequence classifier ([`classifier`]), a
//! character-level language model with sampling ([`char_lm`]), and the import of PyTorch weights
//! ([`torch`]).

pub mod char_lm;
pub mod classifier;
pub mod layer;
pub mod torch;

pub use char_lm::{CharLm, CharLmConfig};
pub use classifier::{Pooling, SequenceClassifier, SequenceClassifierConfig};
pub use layer::{CellKind, GateActivations, Recurrent, RecurrentConfig, RecurrentState};
pub use torch::load_torch_recurrent;
