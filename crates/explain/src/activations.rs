//! Activation interpretation: what each layer of a model receives over a dataset — the mean and spread of
//! its input, the share of exact zeros, and the units (neurons, or channels of a convolution) that are zero
//! for every item: dead ReLUs.
//!
//! The statistics are read through the models' layer-input hooks ([`HookedClassifier`]), so they are what
//! the layers see in the real forward pass. The first layer's input is the image and is left out.
//!
//! For the recurrent classifiers, [`gate_saturation`] gives each gate's mean and the share of its values
//! saturated (a sigmoid below 0.05 or above 0.95, a tanh beyond ±0.95), where gradients vanish.

use crate::ExplainError;
use burn::prelude::*;
use kiln_data::ImageBatch;
use kiln_models::hooks::{HookedClassifier, Layer, LayerInputHook};

/// The statistics of one layer's input over a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStatistics {
    /// The layer whose input this is (`hidden.1`, `blocks.1.conv`, `output`).
    pub layer: String,
    /// Units of the input: features of a dense input, channels of a convolution's.
    pub units: usize,
    /// Mean of every element.
    pub mean: f64,
    /// Standard deviation of every element.
    pub std: f64,
    /// The share of elements exactly zero.
    pub zero_fraction: f64,
    /// The share of units zero for every item and position (dead ReLUs).
    pub dead_fraction: f64,
}

/// Running sums of one layer's input.
#[derive(Debug, Clone)]
struct Sums {
    layer: Layer,
    count: u64,
    sum: f64,
    sum_sq: f64,
    zeros: u64,
    alive: Vec<bool>,
}

/// The hook that reads every layer's input back and adds it to its sums.
struct Collect {
    sums: Vec<Sums>,
    position: usize,
    error: Option<ExplainError>,
}

impl LayerInputHook for Collect {
    fn layer_input<const D: usize>(&mut self, layer: Layer, input: Tensor<D>) -> Tensor<D> {
        let index = self.position;
        self.position += 1;
        // The first layer reads the image.
        if index == 0 || self.error.is_some() {
            return input;
        }
        let dims = input.dims();
        let units = if D >= 2 { dims[1] } else { 1 };
        let per_unit: usize = dims[2..].iter().product();
        let values = match input
            .clone()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
        {
            Ok(v) => v,
            Err(e) => {
                self.error = Some(ExplainError::Argument(format!(
                    "cannot read the input of {layer}: {e:?}"
                )));
                return input;
            }
        };
        let slot = index - 1;
        if self.sums.len() <= slot {
            self.sums.push(Sums {
                layer,
                count: 0,
                sum: 0.0,
                sum_sq: 0.0,
                zeros: 0,
                alive: vec![false; units],
            });
        }
        let s = &mut self.sums[slot];
        for (i, &v) in values.iter().enumerate() {
            let v = f64::from(v);
            s.sum += v;
            s.sum_sq += v * v;
            if v == 0.0 {
                s.zeros += 1;
            } else {
                s.alive[(i / per_unit.max(1)) % units] = true;
            }
        }
        s.count += values.len() as u64;
        input
    }
}

/// The statistics of every layer's input (but the first's) of `model` over `batches`, computed in
/// inference mode on `batches`' device.
pub fn activation_statistics<M, I>(
    model: &M,
    batches: I,
) -> Result<Vec<LayerStatistics>, ExplainError>
where
    M: HookedClassifier,
    I: IntoIterator<Item = ImageBatch>,
{
    let model = model.valid();
    let mut collect = Collect {
        sums: Vec::new(),
        position: 0,
        error: None,
    };
    let mut seen = false;
    for batch in batches {
        collect.position = 0;
        let _ = model.forward_step_hooked(batch, &mut collect);
        if let Some(e) = collect.error.take() {
            return Err(e);
        }
        seen = true;
    }
    if !seen {
        return Err(ExplainError::Argument(
            "activation statistics need at least one batch".into(),
        ));
    }
    Ok(collect
        .sums
        .into_iter()
        .map(|s| {
            let n = s.count.max(1) as f64;
            let mean = s.sum / n;
            LayerStatistics {
                layer: s.layer.to_string(),
                units: s.alive.len(),
                mean,
                std: (s.sum_sq / n - mean * mean).max(0.0).sqrt(),
                zero_fraction: s.zeros as f64 / n,
                dead_fraction: s.alive.iter().filter(|a| !**a).count() as f64
                    / s.alive.len().max(1) as f64,
            }
        })
        .collect())
}

/// One gate of one recurrent layer and direction over a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct GateStatistics {
    /// The layer, from 0 at the input.
    pub layer: usize,
    /// Whether this is the reverse direction.
    pub reverse: bool,
    /// The gate (`input`, `forget`, `cell`, `output`; `reset`, `update`, `new`; `hidden`).
    pub gate: &'static str,
    /// Mean value.
    pub mean: f64,
    /// Share of values saturated: a sigmoid gate below 0.05 or above 0.95, a tanh beyond ±0.95.
    pub saturated_fraction: f64,
}

/// Gate statistics of `model` over `batches` of images read row by row (`[batch, rows, columns]`).
pub fn gate_saturation<I>(
    model: &kiln_models::SequenceClassifier,
    batches: I,
) -> Result<Vec<GateStatistics>, ExplainError>
where
    I: IntoIterator<Item = Tensor<3>>,
{
    let model = model.valid();
    // (layer, reverse, gate) → (count, sum, saturated)
    let mut sums: Vec<(usize, bool, &'static str, u64, f64, u64)> = Vec::new();
    for images in batches {
        for found in model.recurrent.gate_activations(images)? {
            for (gate, values) in found.gates {
                let tanh = matches!(gate, "cell" | "new" | "hidden");
                let v = values
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .map_err(|e| {
                        ExplainError::Argument(format!("cannot read gate {gate}: {e:?}"))
                    })?;
                let saturated = v
                    .iter()
                    .filter(|&&x| {
                        if tanh {
                            x.abs() > 0.95
                        } else {
                            !(0.05..=0.95).contains(&x)
                        }
                    })
                    .count() as u64;
                let sum: f64 = v.iter().map(|&x| f64::from(x)).sum();
                match sums
                    .iter_mut()
                    .find(|s| s.0 == found.layer && s.1 == found.reverse && s.2 == gate)
                {
                    Some(s) => {
                        s.3 += v.len() as u64;
                        s.4 += sum;
                        s.5 += saturated;
                    }
                    None => sums.push((
                        found.layer,
                        found.reverse,
                        gate,
                        v.len() as u64,
                        sum,
                        saturated,
                    )),
                }
            }
        }
    }
    if sums.is_empty() {
        return Err(ExplainError::Argument(
            "gate statistics need at least one batch".into(),
        ));
    }
    Ok(sums
        .into_iter()
        .map(
            |(layer, reverse, gate, count, sum, saturated)| GateStatistics {
                layer,
                reverse,
                gate,
                mean: sum / count.max(1) as f64,
                saturated_fraction: saturated as f64 / count.max(1) as f64,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use kiln_models::{CnnConfig, MlpConfig};

    fn batch(device: &Device, n: usize, seed: u64) -> ImageBatch {
        device.seed(seed);
        ImageBatch {
            images: Tensor::random(
                [n, 28, 28],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                device,
            ),
            labels: Tensor::zeros([n], device),
        }
    }

    #[test]
    fn dense_statistics_equal_a_direct_computation_and_find_killed_units() {
        let device = Device::flex();
        device.seed(1);
        let mut mlp = MlpConfig::new(784, vec![16], 10).init(&device).unwrap();
        // Units 0–3 of the hidden layer can never be positive.
        let bias = mlp.hidden[0].bias.as_ref().unwrap().val();
        let killed = Tensor::<1>::from_data(
            TensorData::new(
                (0..16)
                    .map(|u| if u < 4 { -1e6f32 } else { 0.0 })
                    .collect::<Vec<_>>(),
                [16],
            ),
            &device,
        );
        mlp.hidden[0].bias = Some(Param::from_tensor(bias + killed));
        let batches = [batch(&device, 32, 2), batch(&device, 32, 3)];
        let stats = activation_statistics(&mlp, batches.clone()).unwrap();
        assert_eq!(stats.len(), 1, "{stats:?}");
        let s = &stats[0];
        assert_eq!((s.layer.as_str(), s.units), ("output", 16));
        assert_eq!(s.dead_fraction, 0.25);
        // The same from the layer's own forward pass.
        let values: Vec<f32> = batches
            .iter()
            .flat_map(|b| {
                let x = b.images.clone().reshape([32, 784]);
                burn::tensor::activation::relu(mlp.hidden[0].forward(x))
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap()
            })
            .collect();
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let zeros = values.iter().filter(|v| **v == 0.0).count() as f64 / n;
        assert!((s.mean - mean).abs() < 1e-6, "{} against {mean}", s.mean);
        assert!(
            (s.std - var.sqrt()).abs() < 1e-5,
            "{} against {}",
            s.std,
            var.sqrt()
        );
        assert!((s.zero_fraction - zeros).abs() < 1e-12);
        assert!(s.zero_fraction >= 0.25);
    }

    #[test]
    fn every_convolution_and_dense_input_after_the_first_is_counted_by_channel() {
        let device = Device::flex();
        device.seed(4);
        let cnn = CnnConfig::new(1, 28, 28, 10).init(&device).unwrap();
        let stats = activation_statistics(&cnn, [batch(&device, 8, 5)]).unwrap();
        let layers: Vec<&str> = stats.iter().map(|s| s.layer.as_str()).collect();
        assert_eq!(layers.first(), Some(&"blocks.1.conv"), "{layers:?}");
        assert_eq!(layers.last(), Some(&"output"), "{layers:?}");
        for s in &stats {
            assert!(
                s.units > 1 && (0.0..=1.0).contains(&s.dead_fraction),
                "{s:?}"
            );
            assert!(s.std > 0.0, "{s:?}");
        }
    }

    #[test]
    fn no_batch_is_an_error() {
        let device = Device::flex();
        let mlp = MlpConfig::new(784, vec![4], 10).init(&device).unwrap();
        let err = activation_statistics(&mlp, Vec::new()).unwrap_err();
        assert!(err.to_string().contains("at least one batch"), "{err}");
    }

    #[test]
    fn gate_saturation_counts_every_gate_and_finds_a_saturated_forget_gate() {
        let device = Device::flex();
        device.seed(8);
        let mut lstm = kiln_models::SequenceClassifierConfig::new(
            kiln_models::RecurrentConfig::new(kiln_models::CellKind::Lstm, 28, 6),
            10,
        )
        .init(&device)
        .unwrap();
        // A forget bias of +20 holds the forget gate at 1 for every input.
        let bias = &mut lstm.recurrent.layers[0].forward.bias_ih;
        let shifted = Tensor::<1>::from_data(
            TensorData::new(
                (0..24)
                    .map(|i| if (6..12).contains(&i) { 20.0f32 } else { 0.0 })
                    .collect::<Vec<_>>(),
                [24],
            ),
            &device,
        );
        *bias = Param::from_tensor(bias.val() + shifted);
        let images = batch(&device, 4, 9).images;
        let stats = gate_saturation(&lstm, [images]).unwrap();
        let names: Vec<&str> = stats.iter().map(|s| s.gate).collect();
        assert_eq!(names, ["input", "forget", "cell", "output"]);
        let forget = &stats[1];
        assert_eq!(forget.saturated_fraction, 1.0);
        assert!(forget.mean > 0.999);
        assert!(stats[0].saturated_fraction < 1.0);
        assert!(gate_saturation(&lstm, Vec::new()).is_err());
    }
}
