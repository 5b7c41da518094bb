//! Structured pruning: whole neurons of `Linear` layers and whole channels of `Conv2d` layers are removed
//! by the L1 or L2 norm of their weights, and the layers really shrink, the next layer's inputs with them, so
//! the pruned model is smaller and faster, not just sparser.
//!
//! burn's modules are plain structs with public parameters, so the smaller layers are the same burn types
//! with their weights cut down by `select` (nothing is copied into hand-written layers).

use crate::CompressError;
use burn::module::{Param, RunningState};
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use kiln_models::cnn::ConvBlock;
use kiln_models::{Cnn, Mlp};
use serde::{Deserialize, Serialize};

/// The norm that ranks neurons and channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// Sum of absolute values.
    L1,
    /// Euclidean norm.
    L2,
}

/// Indices (in increasing order) of the `keep` largest `scores`.
fn top_indices(scores: Vec<f32>, keep: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(keep);
    order.sort_unstable();
    order
}

/// `norm` of `weights` over every dimension but `keep_dim`: one score per slice along it.
fn scores<const D: usize>(
    weights: Tensor<D>,
    keep_dim: usize,
    norm: Norm,
) -> Result<Vec<f32>, CompressError> {
    let n = weights.dims()[keep_dim];
    let moved = weights.swap_dims(0, keep_dim);
    let total = moved.shape().num_elements();
    let rows: Tensor<2> = moved.reshape([n, total / n.max(1)]);
    let per_row = match norm {
        Norm::L1 => rows.abs().sum_dim(1),
        Norm::L2 => rows.powi_scalar(2).sum_dim(1).sqrt(),
    };
    per_row
        .reshape([n])
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| CompressError::ReadBack {
            what: "the norms of the rows to rank".into(),
            message: format!("{e:?}"),
        })
}

fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let ids: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(ids, [indices.len()]), device)
}

fn param<const D: usize>(tensor: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(tensor)
}

/// How many of `n` units stay when `fraction` of them go (at least one).
fn kept(n: usize, fraction: f64) -> Result<usize, CompressError> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(CompressError::Config {
            what: "structured pruning fraction",
            message: format!("{fraction} is not in [0, 1)"),
        });
    }
    Ok(((n as f64) * (1.0 - fraction)).round().max(1.0) as usize)
}

/// Keeps the output neurons `keep` of `layer` (`[in, out]` weights).
fn keep_outputs(layer: &Linear, keep: &Tensor<1, Int>) -> Linear {
    Linear {
        weight: param(layer.weight.val().select(1, keep.clone())),
        bias: layer
            .bias
            .as_ref()
            .map(|b| param(b.val().select(0, keep.clone()))),
    }
}

/// Keeps the input rows `keep` of `layer`.
fn keep_inputs(layer: &Linear, keep: &Tensor<1, Int>) -> Linear {
    Linear {
        weight: param(layer.weight.val().select(0, keep.clone())),
        bias: layer.bias.as_ref().map(|b| param(b.val())),
    }
}

/// Removes the `fraction` of each hidden layer's neurons with the smallest incoming-weight `norm`, and the
/// matching inputs of the layer after it. Returns the smaller model and the neurons kept per hidden layer.
pub fn prune_mlp_neurons(
    mlp: &Mlp,
    fraction: f64,
    norm: Norm,
) -> Result<(Mlp, Vec<usize>), CompressError> {
    let mut mlp = mlp.clone();
    let mut sizes = Vec::new();
    for i in 0..mlp.hidden.len() {
        let weight = mlp.hidden[i].weight.val();
        let device = weight.device();
        let n = weight.dims()[1];
        let keep = index_tensor(
            &top_indices(scores(weight, 1, norm)?, kept(n, fraction)?),
            &device,
        );
        sizes.push(keep.dims()[0]);
        mlp.hidden[i] = keep_outputs(&mlp.hidden[i], &keep);
        if i + 1 < mlp.hidden.len() {
            mlp.hidden[i + 1] = keep_inputs(&mlp.hidden[i + 1], &keep);
        } else {
            mlp.output = keep_inputs(&mlp.output, &keep);
        }
    }
    Ok((mlp, sizes))
}

/// Keeps output channels `keep` of a convolution block (its batch norm too).
fn keep_block_outputs(block: &ConvBlock, keep: &Tensor<1, Int>) -> ConvBlock {
    let conv = &block.conv;
    ConvBlock {
        conv: Conv2d {
            weight: param(conv.weight.val().select(0, keep.clone())),
            bias: conv
                .bias
                .as_ref()
                .map(|b| param(b.val().select(0, keep.clone()))),
            ..conv.clone()
        },
        norm: block.norm.as_ref().map(|norm| {
            let mut norm = norm.clone();
            norm.gamma = param(norm.gamma.val().select(0, keep.clone()));
            norm.beta = param(norm.beta.val().select(0, keep.clone()));
            norm.running_mean =
                RunningState::new(norm.running_mean.value().select(0, keep.clone()));
            norm.running_var = RunningState::new(norm.running_var.value().select(0, keep.clone()));
            norm
        }),
    }
}

/// Removes the `fraction` of each convolution's output channels with the smallest filter `norm`, with the
/// matching input channels of the next convolution and the matching flattened features of the first fully
/// connected layer. Returns the smaller model and the channels kept per block. Grouped convolutions are not
/// supported.
pub fn prune_cnn_channels(
    cnn: &Cnn,
    fraction: f64,
    norm: Norm,
) -> Result<(Cnn, Vec<usize>), CompressError> {
    if cnn.blocks.iter().any(|b| b.conv.groups != 1) {
        return Err(CompressError::Config {
            what: "structured pruning",
            message: "grouped convolutions are not supported".into(),
        });
    }
    let mut cnn = cnn.clone();
    let mut sizes = Vec::new();
    for i in 0..cnn.blocks.len() {
        let weight = cnn.blocks[i].conv.weight.val();
        let device = weight.device();
        let channels = weight.dims()[0];
        let kept_channels = top_indices(scores(weight, 0, norm)?, kept(channels, fraction)?);
        let keep = index_tensor(&kept_channels, &device);
        sizes.push(kept_channels.len());
        cnn.blocks[i] = keep_block_outputs(&cnn.blocks[i], &keep);
        if i + 1 < cnn.blocks.len() {
            let next = &cnn.blocks[i + 1].conv;
            cnn.blocks[i + 1].conv = Conv2d {
                weight: param(next.weight.val().select(1, keep)),
                ..next.clone()
            };
        } else {
            // The flattened features are channel-major: channel c owns rows c·hw .. (c+1)·hw.
            let first = cnn.hidden.first().unwrap_or(&cnn.output);
            let hw = first.weight.dims()[0] / channels.max(1);
            let rows: Vec<usize> = kept_channels
                .iter()
                .flat_map(|&c| c * hw..(c + 1) * hw)
                .collect();
            let rows = index_tensor(&rows, &device);
            match cnn.hidden.first_mut() {
                Some(layer) => *layer = keep_inputs(layer, &rows),
                None => cnn.output = keep_inputs(&cnn.output, &rows),
            }
        }
    }
    Ok((cnn, sizes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::tensor::{Distribution, Tolerance};
    use kiln_models::{CnnConfig, MlpConfig};

    #[test]
    fn pruned_mlp_neurons_shrink_the_layers_and_keep_the_surviving_paths_exact() {
        let device = Device::flex();
        device.seed(6);
        let mut mlp = MlpConfig::new(12, vec![10, 8], 3).init(&device).unwrap();
        // Zero the incoming weights of neurons 0..5 of the first hidden layer: they are the ones to go,
        // and as they output relu(bias) only, zero their biases too so removing them changes nothing.
        let w = mlp.hidden[0].weight.val();
        let mask = Tensor::<2>::ones([12, 10], &device)
            .slice_assign([0..12, 0..5], Tensor::zeros([12, 5], &device));
        mlp.hidden[0].weight = param(w * mask);
        let b = mlp.hidden[0].bias.as_ref().unwrap().val();
        mlp.hidden[0].bias = Some(param(b.slice_assign(0..5, Tensor::zeros([5], &device))));
        let x = Tensor::<2>::random([4, 12], Distribution::Default, &device);
        let (pruned, sizes) = prune_mlp_neurons(&mlp, 0.5, Norm::L2).unwrap();
        assert_eq!(sizes, vec![5, 4]);
        assert_eq!(pruned.hidden[0].weight.dims(), [12, 5]);
        assert_eq!(pruned.hidden[1].weight.dims(), [5, 4]);
        assert_eq!(pruned.output.weight.dims(), [4, 3]);
        assert!(pruned.num_params() < mlp.num_params());
        // Pruning only the first layer's dead neurons (the second layer untouched) keeps outputs equal.
        let (first_only, _) = prune_mlp_neurons(
            &Mlp {
                hidden: vec![mlp.hidden[0].clone()],
                output: keep_inputs(
                    &mlp.hidden[1],
                    &index_tensor(&(0..10).collect::<Vec<_>>(), &device),
                ),
                ..mlp.clone()
            },
            0.5,
            Norm::L1,
        )
        .unwrap();
        let hidden_before = mlp.hidden[1].forward(burn::tensor::activation::relu(
            mlp.hidden[0].forward(x.clone()),
        ));
        let hidden_after = first_only.output.forward(burn::tensor::activation::relu(
            first_only.hidden[0].forward(x),
        ));
        hidden_after
            .into_data()
            .assert_approx_eq::<f32>(&hidden_before.into_data(), Tolerance::absolute(1e-5));
        assert!(prune_mlp_neurons(&mlp, 1.0, Norm::L1).is_err());
    }

    #[test]
    fn pruned_cnn_channels_shrink_convolutions_and_the_first_dense_layer() {
        let device = Device::flex();
        device.seed(7);
        let cnn = CnnConfig::new(1, 12, 12, 4)
            .with_channels(vec![8, 6])
            .with_hidden(vec![16])
            .with_batch_norm(true)
            .init(&device)
            .unwrap();
        let (pruned, sizes) = prune_cnn_channels(&cnn, 0.5, Norm::L1).unwrap();
        assert_eq!(sizes, vec![4, 3]);
        assert_eq!(pruned.blocks[0].conv.weight.dims()[0], 4);
        assert_eq!(pruned.blocks[1].conv.weight.dims()[..2], [3, 4]);
        let hw = cnn.hidden[0].weight.dims()[0] / 6;
        assert_eq!(pruned.hidden[0].weight.dims(), [3 * hw, 16]);
        let x = Tensor::<4>::random([2, 1, 12, 12], Distribution::Default, &device);
        assert_eq!(pruned.try_forward(x).unwrap().dims(), [2, 4]);
        assert!(pruned.num_params() < cnn.num_params());
    }
}
