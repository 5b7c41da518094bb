//! Import of `torch.nn.RNN` / `GRU` / `LSTM` weights saved as safetensors from `state_dict()`.
//!
//! Loaded through burn's `SafetensorsStore`; PyTorch's flat names (`weight_ih_l1_reverse`, …) are remapped
//! onto [`Recurrent`]'s (`layers.1.reverse.weight_ih`). The layouts are the same, so nothing is transposed.
//! Every tensor of the model must be in the file with its shape, and nothing else may be: a file for another
//! cell, hidden size, depth or direction count is an error naming the tensors that do not fit.

use super::layer::Recurrent;
use crate::ModelError;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use std::path::Path;

/// Loads PyTorch weights into `model`. `prefix` is the name of the recurrent module inside the saved
/// `state_dict` (`""` for a bare `nn.LSTM`, `"rnn."` for a field `self.rnn`).
pub fn load_torch_recurrent(
    model: &mut Recurrent,
    path: &Path,
    prefix: &str,
) -> Result<(), ModelError> {
    let file_error = |message: String| ModelError::File {
        path: path.to_path_buf(),
        message,
    };
    if !path.is_file() {
        return Err(file_error("no such file".into()));
    }
    let prefix = regex_escape(prefix);
    let mut store = SafetensorsStore::from_file(path)
        .with_key_remapping(
            format!(r"^{prefix}(weight|bias)_(ih|hh)_l(\d+)_reverse$"),
            "layers.$3.reverse.${1}_$2",
        )
        .with_key_remapping(
            format!(r"^{prefix}(weight|bias)_(ih|hh)_l(\d+)$"),
            "layers.$3.forward.${1}_$2",
        )
        .allow_partial(true);
    let described = format!(
        "does not fit a {} with {} layer(s), {} direction(s), hidden size {}",
        model.cell,
        model.layers.len(),
        model.directions(),
        model.d_hidden
    );
    // burn's store reports shape mismatches itself (as an error), and unreadable files the same way.
    let result = model
        .load_from(&mut store)
        .map_err(|e| file_error(format!("{described}: {e}")))?;
    let problems = load_problems(&result, |_| true);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(file_error(format!("{described}: {}", problems.join("; "))))
    }
}

/// What went wrong loading a PyTorch file: shape errors, the model's tensors the file lacks, and those of
/// the file's tensors `counts` accepts that found no place in the model.
pub(crate) fn load_problems(
    result: &burn::store::ApplyResult,
    counts: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut problems: Vec<String> = result.errors.iter().map(|e| format!("{e:?}")).collect();
    problems.extend(
        result
            .missing
            .iter()
            .map(|(name, _)| format!("missing tensor for `{name}`")),
    );
    problems.extend(
        result
            .unused
            .iter()
            .filter(|name| counts(name))
            .map(|name| format!("tensor `{name}` has no place in this model")),
    );
    problems
}

/// `text` with regex metacharacters escaped.
pub(crate) fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = r"\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}
