//! Attention interpretation of Kiln's Transformers: the per-layer, per-head attention maps the models return
//! (`TransformerClassifier::attention_weights`, `TransformerLm::attention_weights`), their mean over heads,
//! and attention rollout (Abnar & Zuidema 2020): each layer's head-averaged map mixed with the identity for
//! the residual connection, rows renormalised, multiplied from the first layer up, so that entry (i, j)
//! says how much of input step j reaches position i at the top of the stack.

use crate::ExplainError;
use burn::prelude::*;

/// The mean over heads of one layer's attention weights: `[batch, heads, q, k]` → `[batch, q, k]`.
pub fn head_mean(weights: Tensor<4>) -> Tensor<3> {
    let [batch, _, q, k] = weights.dims();
    weights.mean_dim(1).reshape([batch, q, k])
}

/// Attention rollout of `layers` (each `[batch, heads, steps, steps]`, first layer first): `[batch,
/// steps, steps]`. `residual` is the weight of the identity mixed into each layer's map (0.5 in Abnar &
/// Zuidema: the residual connection carries as much as the attention).
pub fn attention_rollout(layers: &[Tensor<4>], residual: f32) -> Result<Tensor<3>, ExplainError> {
    if !(0.0..=1.0).contains(&residual) {
        return Err(ExplainError::Argument(format!(
            "residual weight {residual}: it must lie in [0, 1]"
        )));
    }
    let first = layers.first().ok_or_else(|| {
        ExplainError::Argument("attention rollout needs at least one layer".into())
    })?;
    let [batch, _, q, k] = first.dims();
    if q != k {
        return Err(ExplainError::Argument(format!(
            "rollout needs self-attention ({q} queries, {k} keys)"
        )));
    }
    let device = first.device();
    let identity = Tensor::<2>::eye(q, &device)
        .reshape([1, q, q])
        .expand([batch, q, q]);
    let mut rollout = identity.clone();
    for (i, layer) in layers.iter().enumerate() {
        if layer.dims() != first.dims() {
            return Err(ExplainError::Argument(format!(
                "layer {i}'s weights are {:?}, layer 0's {:?}",
                layer.dims(),
                first.dims()
            )));
        }
        let mixed = head_mean(layer.clone()) * (1.0 - residual) + identity.clone() * residual;
        let mixed = mixed.clone() / mixed.sum_dim(2);
        rollout = mixed.matmul(rollout);
    }
    Ok(rollout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_models::{EncoderStackConfig, TransformerClassifierConfig, TransformerLmConfig};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn stack(norm_first: bool) -> EncoderStackConfig {
        EncoderStackConfig::new(16)
            .with_n_heads(2)
            .with_n_layers(2)
            .with_d_ff(32)
            .with_dropout(0.0)
            .with_norm_first(norm_first)
            .with_max_len(8)
    }

    #[test]
    fn classifier_maps_are_distributions_that_skip_padded_steps() {
        let device = Device::flex();
        device.seed(3);
        for norm_first in [true, false] {
            let model = TransformerClassifierConfig {
                d_input: 5,
                num_classes: 3,
                stack: stack(norm_first),
            }
            .init(&device)
            .unwrap();
            let x = Tensor::<3>::random([2, 6, 5], burn::tensor::Distribution::Default, &device);
            let valid = Tensor::<2, Bool>::from_data(
                TensorData::new(
                    vec![
                        true, true, true, true, true, true, true, true, true, true, false, false,
                    ],
                    [2, 6],
                ),
                &device,
            );
            let maps = model.attention_weights(x, Some(valid)).unwrap();
            assert_eq!(maps.len(), 2);
            for map in &maps {
                assert_eq!(map.dims(), [2, 2, 6, 6]);
                let w = values(map.clone());
                for row in w.chunks(6) {
                    let sum: f32 = row.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "a row sums to {sum}");
                }
                // Item 1's keys 4 and 5 are padding: no query attends to them.
                for head in 0..2 {
                    for query in 0..6 {
                        let at = |key: usize| w[((2 + head) * 6 + query) * 6 + key];
                        assert_eq!((at(4), at(5)), (0.0, 0.0));
                    }
                }
            }
        }
    }

    #[test]
    fn language_model_maps_are_causal() {
        let device = Device::flex();
        device.seed(4);
        let lm = TransformerLmConfig {
            vocab_size: 7,
            stack: stack(true).with_positions(kiln_models::PositionKind::Learned),
        }
        .init(&device)
        .unwrap();
        let tokens = Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64, 2, 3, 4, 5, 6, 0, 1], [1, 8]),
            &device,
        );
        for map in lm.attention_weights(tokens, None).unwrap() {
            let w = values(map);
            for head in 0..2 {
                for query in 0..8 {
                    for key in query + 1..8 {
                        assert_eq!(w[(head * 8 + query) * 8 + key], 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn rollout_multiplies_residual_mixed_layers() {
        let device = Device::flex();
        // One head, two steps. Layer 1: step 0 attends to step 1 only, step 1 to itself.
        let layer = |w: [f32; 4]| {
            Tensor::<4>::from_data(TensorData::new(w.to_vec(), [1, 1, 2, 2]), &device)
        };
        let a = layer([0.0, 1.0, 0.0, 1.0]);
        let b = layer([0.5, 0.5, 1.0, 0.0]);
        // With residual 0.5: A = [[.5, .5], [0, 1]], B = [[.75, .25], [.5, .5]]; rollout = B · A.
        let r = values(attention_rollout(&[a.clone(), b.clone()], 0.5).unwrap());
        let expected = [0.375, 0.625, 0.25, 0.75];
        for (x, y) in r.iter().zip(expected) {
            assert!((x - y).abs() < 1e-6, "{r:?} against {expected:?}");
        }
        // Without the residual, one layer's rollout is its map.
        let r = values(attention_rollout(std::slice::from_ref(&b), 0.0).unwrap());
        assert_eq!(r, vec![0.5, 0.5, 1.0, 0.0]);
        // Bad arguments.
        assert!(attention_rollout(&[], 0.5).is_err());
        assert!(attention_rollout(std::slice::from_ref(&a), 1.5).is_err());
        let other = Tensor::<4>::zeros([1, 1, 3, 3], &device);
        let err = attention_rollout(&[a, other], 0.5).unwrap_err().to_string();
        assert!(err.contains("layer 1"), "{err}");
    }
}
