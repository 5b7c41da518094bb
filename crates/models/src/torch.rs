//! Import of PyTorch `state_dict()` weights, saved as safetensors, of `nn.Linear` / `nn.Conv2d` stacks into
//! the [`Mlp`] and the [`Cnn`].
//!
//! A PyTorch model names its layers as its author chose (`fc1`, `0`, `features.3`), so the caller lists
//! the PyTorch names of the layers in forward order; they are remapped onto Kiln's (`hidden.0`, `output`,
//! `blocks.1.conv`, `blocks.1.norm`) and loaded through burn's `SafetensorsStore` with its
//! `PyTorchToBurnAdapter`, which transposes linear weights (`[out, in]` → `[in, out]`) and renames batch
//! norm's `weight`/`bias` to `gamma`/`beta`. Convolution kernels have the same layout in both.
//!
//! Every tensor of the model must be in the file with its shape, and every tensor of the listed layers must
//! find its place (batch norm's `num_batches_tracked`, which burn does not keep, excepted); anything else is
//! an error naming the tensors that do not fit. Tensors of layers not listed are ignored, so a file may hold
//! more than the stack (a training wrapper, a loss module).

use crate::recurrent::torch::{load_problems, regex_escape};
use crate::{Cnn, Mlp, ModelError};
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use std::path::Path;

/// Loads the weights of a PyTorch stack of `nn.Linear` layers into `model`: `linears` are the PyTorch
/// names of its layers in forward order (`["fc1", "fc2", "out"]`, or `["0", "2", "4"]` for an
/// `nn.Sequential`), one per hidden layer and the output layer last.
pub fn load_torch_mlp(model: &mut Mlp, path: &Path, linears: &[&str]) -> Result<(), ModelError> {
    let expected = model.hidden.len() + 1;
    if linears.len() != expected {
        return Err(file_error(
            path,
            format!(
                "{} PyTorch layer names for an MLP of {expected} linear layers ({} hidden + output)",
                linears.len(),
                model.hidden.len()
            ),
        ));
    }
    let mut names = Vec::new();
    for (i, name) in linears[..expected - 1].iter().enumerate() {
        names.push((*name, format!("hidden.{i}")));
    }
    names.push((linears[expected - 1], "output".into()));
    let described = format!(
        "does not fit an MLP {}-{}",
        model
            .hidden
            .first()
            .map_or(model.output.weight.dims()[0], |l| l.weight.dims()[0]),
        model
            .hidden
            .iter()
            .map(|l| l.weight.dims()[1].to_string())
            .chain([model.output.weight.dims()[1].to_string()])
            .collect::<Vec<_>>()
            .join("-")
    );
    load(model, path, &names, &described)
}

/// The PyTorch names of a [`Cnn`]'s layers, each list in forward order.
#[derive(Debug, Clone, Copy)]
pub struct TorchCnnNames<'a> {
    /// One `nn.Conv2d` per convolution block (`["conv1", "conv2"]`, `["features.0", "features.3"]`).
    pub convs: &'a [&'a str],
    /// One `nn.BatchNorm2d` per block where the model has batch norm; empty otherwise.
    pub norms: &'a [&'a str],
    /// One `nn.Linear` per hidden layer, then the output layer.
    pub linears: &'a [&'a str],
}

/// Loads the weights of a PyTorch convolutional network into `model` (same architecture: convolution,
/// optional batch norm, activation and max-pooling per block, flatten in PyTorch's `[C, H, W]` order, then
/// linear layers).
pub fn load_torch_cnn(
    model: &mut Cnn,
    path: &Path,
    names: TorchCnnNames,
) -> Result<(), ModelError> {
    let blocks = model.blocks.len();
    let norms = model.blocks.iter().filter(|b| b.norm.is_some()).count();
    let linears = model.hidden.len() + 1;
    if names.convs.len() != blocks || names.norms.len() != norms || names.linears.len() != linears {
        return Err(file_error(
            path,
            format!(
                "PyTorch names for {} convolutions, {} batch norms and {} linear layers; the CNN has {blocks}, \
                 {norms} and {linears}",
                names.convs.len(),
                names.norms.len(),
                names.linears.len()
            ),
        ));
    }
    let mut remap = Vec::new();
    for (i, name) in names.convs.iter().enumerate() {
        remap.push((*name, format!("blocks.{i}.conv")));
    }
    for (i, name) in names.norms.iter().enumerate() {
        remap.push((*name, format!("blocks.{i}.norm")));
    }
    for (i, name) in names.linears[..linears - 1].iter().enumerate() {
        remap.push((*name, format!("hidden.{i}")));
    }
    remap.push((names.linears[linears - 1], "output".into()));
    let described = format!(
        "does not fit a CNN of {blocks} block(s) with channels {:?} and {} hidden layer(s)",
        model
            .blocks
            .iter()
            .map(|b| b.conv.weight.dims()[0])
            .collect::<Vec<_>>(),
        model.hidden.len()
    );
    load(model, path, &remap, &described)
}

fn file_error(path: &Path, message: String) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        message,
    }
}

/// Loads `path` into `model`, every tensor `<torch>.<param>` renamed `<kiln>.<param>` for each pair of
/// `names`; tensors of other layers are dropped.
fn load<M: ModuleSnapshot>(
    model: &mut M,
    path: &Path,
    names: &[(&str, String)],
    described: &str,
) -> Result<(), ModelError> {
    if !path.is_file() {
        return Err(file_error(path, "no such file".into()));
    }
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true);
    for (torch, kiln) in names {
        store = store.with_key_remapping(
            format!(r"^{}\.([A-Za-z_]+)$", regex_escape(torch)),
            format!("{kiln}.$1"),
        );
    }
    let result = model
        .load_from(&mut store)
        .map_err(|e| file_error(path, format!("{described}: {e}")))?;
    let ours = |name: &str| {
        names
            .iter()
            .any(|(_, kiln)| name.starts_with(&format!("{kiln}.")))
            && !name.ends_with(".num_batches_tracked")
    };
    let problems = load_problems(&result, ours);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(file_error(
            path,
            format!("{described}: {}", problems.join("; ")),
        ))
    }
}
