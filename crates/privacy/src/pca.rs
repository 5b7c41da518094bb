//! Differentially private PCA (the projection Abadi et al. 2016 put before their MNIST network): every
//! example scaled to unit L2 norm, the sum of their outer products Σ xxᵀ released with the Gaussian
//! mechanism (its L2 sensitivity is max ‖x‖² = 1), and the examples projected onto the top singular
//! vectors of the noised matrix. burn's `linalg::svd` does the decomposition.

use crate::training::Features;
use crate::{PrivacyError, RdpAccountant};
use burn::prelude::*;
use rand::rngs::StdRng;

/// A projection onto `components` principal directions.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// Row-major `[components, dim]`: each row a unit direction.
    pub directions: Vec<f32>,
    /// Input features.
    pub dim: usize,
    /// Output features.
    pub components: usize,
}

/// Fits a private PCA of `data` with noise multiplier `noise_multiplier` (σ: the noise on each entry of
/// Σ xxᵀ is N(0, σ²)), composing its one Gaussian mechanism into `accountant`. `device` computes the
/// product and the SVD (a plain device).
pub fn dp_pca(
    data: &Features,
    components: usize,
    noise_multiplier: f64,
    accountant: &mut RdpAccountant,
    rng: &mut StdRng,
    device: &Device,
) -> Result<Projection, PrivacyError> {
    let dim = data.dim;
    if components == 0 || components > dim {
        return Err(PrivacyError::Model(format!(
            "{components} principal components of {dim} features: they must be 1..={dim}"
        )));
    }
    if !(noise_multiplier > 0.0 && noise_multiplier.is_finite()) {
        return Err(PrivacyError::NoiseMultiplier(noise_multiplier));
    }
    let unit = unit_rows(data);
    let x = Tensor::<2>::from_data(TensorData::new(unit, [data.len(), dim]), device);
    let gram = x.clone().transpose().matmul(x);
    let mut values = gram
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| PrivacyError::Model(format!("cannot read Σxxᵀ back: {e:?}")))?;
    // Symmetric noise: each entry of the upper triangle drawn once and mirrored.
    let noise = crate::dp_sgd::gaussian(rng, dim * (dim + 1) / 2, noise_multiplier as f32);
    let mut k = 0;
    for i in 0..dim {
        for j in i..dim {
            values[i * dim + j] += noise[k];
            if i != j {
                values[j * dim + i] += noise[k];
            }
            k += 1;
        }
    }
    accountant.compose_poisson_gaussian(1.0, noise_multiplier, 1)?;
    let noised = Tensor::<2>::from_data(TensorData::new(values, [dim, dim]), device);
    let (u, _s, _vt) = burn::linalg::svd::<2, 1>(noised, 100);
    let top = u.slice([0..dim, 0..components]).transpose();
    let directions = top
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| PrivacyError::Model(format!("cannot read the directions back: {e:?}")))?;
    Ok(Projection {
        directions,
        dim,
        components,
    })
}

fn unit_rows(data: &Features) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.values.len());
    for i in 0..data.len() {
        let row = data.row(i);
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        out.extend(row.iter().map(|v| v * scale));
    }
    out
}

impl Projection {
    /// `data`'s examples, each scaled to unit norm (as the fit saw them) and projected: `components`
    /// features each. Refuses features of another width.
    pub fn apply(&self, data: &Features, device: &Device) -> Result<Features, PrivacyError> {
        if data.dim != self.dim {
            return Err(PrivacyError::Model(format!(
                "examples of {} features for a projection of {}",
                data.dim, self.dim
            )));
        }
        let x = Tensor::<2>::from_data(
            TensorData::new(unit_rows(data), [data.len(), self.dim]),
            device,
        );
        let p = Tensor::<2>::from_data(
            TensorData::new(self.directions.clone(), [self.components, self.dim]),
            device,
        );
        let values = x
            .matmul(p.transpose())
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| PrivacyError::Model(format!("cannot read the projection back: {e:?}")))?;
        Features::new(values, self.components, data.labels.clone())
    }
}
