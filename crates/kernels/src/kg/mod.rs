//! Knowledge-graph triple scores read straight from the embedding tables, as one op.
//!
//! Scoring a batch of triples with generic ops gathers three `[triples, dim]` copies of embedding rows (for a
//! batch of 256 positives with 50 negatives each at dim 200, 10 MB apiece), combines them element-wise in
//! several passes, and in the backward pass scatters three gradients of that size back into the tables —
//! memory traffic, single-threaded on flex, for what is a few floating-point operations per element.
//! [`triple_scores`] reads the rows where they are (the tables stay in cache), writes one score per triple,
//! and accumulates the tables' gradients directly, both ways spread over rayon's threads ([`cpu`]).

pub mod cpu;
mod op;

use burn::prelude::*;
use std::sync::Arc;

/// How a triple's score combines its head, relation and tail embedding rows `h`, `r`, `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripleScore {
    /// TransE (Bordes et al. 2013): `−Σ |h + r − t|`, the negated L1 distance of the translated head from
    /// the tail.
    NegativeL1Translation,
    /// DistMult (Yang et al. 2015): `Σ h · r · t`.
    Trilinear,
}

/// The scores of the triples `ids` (flattened `(head, relation, tail)` rows) against the tables, `[triples]`.
///
/// # Shapes
/// - `entities`: `[num_entities, dim]`; `relations`: `[num_relations, dim]`
/// - `ids`: `3 · triples` ids, each head and tail below `num_entities` and each relation below
///   `num_relations`
/// - returns `[triples]`
///
/// Call only where [`crate::on_flex_f32`] holds for both tables; the caller checks the ids (the kernel
/// panics on an id outside its table).
pub fn triple_scores(
    entities: Tensor<2>,
    relations: Tensor<2>,
    ids: Arc<[u32]>,
    score: TripleScore,
) -> Tensor<1> {
    op::fused(entities, relations, ids, score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// The same scores from generic ops: rows gathered with `select`, combined element-wise.
    fn generic(
        entities: Tensor<2>,
        relations: Tensor<2>,
        ids: &[u32],
        score: TripleScore,
    ) -> Tensor<1> {
        let device = entities.device();
        let n = ids.len() / 3;
        let column = |c: usize| {
            let col: Vec<i64> = ids.iter().skip(c).step_by(3).map(|&i| i as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(col, [n]), &device)
        };
        let h = entities.clone().select(0, column(0));
        let r = relations.select(0, column(1));
        let t = entities.select(0, column(2));
        match score {
            TripleScore::NegativeL1Translation => (h + r - t).abs().sum_dim(1).reshape([n]).neg(),
            TripleScore::Trilinear => (h * r * t).sum_dim(1).reshape([n]),
        }
    }

    #[test]
    fn forward_and_gradients_equal_the_generic_ops() {
        let device = Device::flex().autodiff();
        for (num_entities, num_relations, dim, triples) in [(5, 2, 3, 7), (40, 6, 33, 5000)] {
            let ids: Vec<u32> = (0..triples as u32)
                .flat_map(|i| {
                    [
                        (i * 7) % num_entities,
                        (i * 5) % num_relations,
                        (i * 11 + 3) % num_entities,
                    ]
                })
                .collect();
            let ids: Arc<[u32]> = ids.into();
            let table = |rows: u32, seed: u32| {
                let data = TensorData::new(values(rows as usize * dim, seed), [rows as usize, dim]);
                Tensor::<2>::from_data(data, &device).require_grad()
            };
            let (entities, relations) = (table(num_entities, 1), table(num_relations, 2));
            let weights =
                Tensor::<1>::from_data(TensorData::new(values(triples, 3), [triples]), &device);
            for score in [TripleScore::NegativeL1Translation, TripleScore::Trilinear] {
                let run = |fused: bool| {
                    let out = if fused {
                        triple_scores(entities.clone(), relations.clone(), ids.clone(), score)
                    } else {
                        generic(entities.clone(), relations.clone(), &ids, score)
                    };
                    let grads = (out.clone() * weights.clone()).sum().backward();
                    let grad = |t: &Tensor<2>| t.grad(&grads).expect("a gradient").into_data();
                    (out.inner().into_data(), grad(&entities), grad(&relations))
                };
                let (fused, generic) = (run(true), run(false));
                let tol = burn::tensor::Tolerance::absolute(1e-4);
                fused.0.assert_approx_eq::<f32>(&generic.0, tol);
                fused.1.assert_approx_eq::<f32>(&generic.1, tol);
                fused.2.assert_approx_eq::<f32>(&generic.2, tol);
            }
        }
    }
}
