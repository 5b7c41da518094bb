//! Import of `torch.nn.MultiheadAttention` weights (saved as safetensors from `state_dict()`) into burn's
//! `MultiHeadAttention`.
//!
//! PyTorch packs the query, key and value projections into one `in_proj_weight` `[3·d, d]` (and
//! `in_proj_bias` `[3·d]`) and stores weights as `[out, in]`; burn keeps one `Linear` each, `[in, out]`.
//! burn's store can rename and transpose but not split a tensor, so the file is read here and each block is
//! cut out and transposed by hand. Masks follow the same convention on both sides (`true` = not attended),
//! so burn's `MhaInput::mask_pad` takes PyTorch's `key_padding_mask` and `mask_attn` its boolean `attn_mask`.

use crate::ModelError;
use burn::module::Param;
use burn::nn::Linear;
use burn::nn::attention::MultiHeadAttention;
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// Loads the weights of a `torch.nn.MultiheadAttention` into `mha`. `prefix` is the module's name inside
/// the saved `state_dict` (`""` for a bare module, `"self_attn."` for a field). The file must hold
/// `in_proj_weight`, `out_proj.weight` and, where `mha` has biases, `in_proj_bias` and `out_proj.bias`, as
/// f32 tensors of the sizes `mha` has; anything else is an error naming the tensor.
pub fn load_torch_mha(
    mha: &mut MultiHeadAttention,
    path: &Path,
    prefix: &str,
) -> Result<(), ModelError> {
    let file_error = |message: String| ModelError::File {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| file_error(format!("not a safetensors file: {e}")))?;
    let d = mha.d_model;
    let device = mha.query.weight.device();
    let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ModelError> {
        let key = format!("{prefix}{name}");
        let view = file.tensor(&key).map_err(|_| {
            file_error(format!(
                "no tensor `{key}` (a torch.nn.MultiheadAttention with d_model {d} was expected; \
                 separate q/k/v projections, kdim/vdim ≠ embed_dim, are not supported)"
            ))
        })?;
        if view.dtype() != Dtype::F32 || view.shape() != shape {
            return Err(file_error(format!(
                "`{key}` is {:?} {:?}, expected F32 {shape:?} (d_model {d})",
                view.dtype(),
                view.shape()
            )));
        }
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let in_weight = read("in_proj_weight", &[3 * d, d])?;
    let out_weight = read("out_proj.weight", &[d, d])?;
    let in_bias = if mha.query.bias.is_some() {
        Some(read("in_proj_bias", &[3 * d])?)
    } else {
        None
    };
    let out_bias = if mha.output.bias.is_some() {
        Some(read("out_proj.bias", &[d])?)
    } else {
        None
    };
    let to_tensor = |rows: &[f32]| -> Tensor<2> {
        // PyTorch's [out, in] block → burn's [in, out].
        Tensor::<2>::from_data(TensorData::new(rows.to_vec(), [d, d]), &device).transpose()
    };
    let set = |linear: &mut Linear, weight: &[f32], bias: Option<&[f32]>| {
        linear.weight = Param::from_tensor(to_tensor(weight));
        if let Some(bias) = bias {
            linear.bias = Some(Param::from_tensor(Tensor::<1>::from_data(
                TensorData::new(bias.to_vec(), [d]),
                &device,
            )));
        }
    };
    for (k, linear) in [&mut mha.query, &mut mha.key, &mut mha.value]
        .into_iter()
        .enumerate()
    {
        let block = &in_weight[k * d * d..(k + 1) * d * d];
        set(
            linear,
            block,
            in_bias.as_ref().map(|b| &b[k * d..(k + 1) * d]),
        );
    }
    set(&mut mha.output, &out_weight, out_bias.as_deref());
    Ok(())
}
