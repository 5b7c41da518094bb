//! The triple-score kernels on plain slices: scores forward, and the tables' gradients backward.

use super::TripleScore;
use crate::simd::multiversion;
use rayon::prelude::*;

/// Triples per block of forward work.
const BLOCK: usize = 512;

/// Fewest triples worth a thread of their own in the backward pass (each thread sums into its own copy of
/// the tables' gradients, which are then added up).
const MIN_TRIPLES_PER_THREAD: usize = 2048;

/// Row `i` of a `[_, dim]` table.
#[inline(always)]
fn row(table: &[f32], dim: usize, i: u32) -> &[f32] {
    let start = i as usize * dim;
    &table[start..start + dim]
}

/// `dst += src`, element-wise.
#[inline(always)]
fn add_into(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

multiversion! {
    /// `out[i] = −Σ |h + r − t|` for each triple `i` of `ids`.
    fn translation_scores(entities: &[f32], relations: &[f32], dim: usize, ids: &[u32], out: &mut [f32]) {
        for (o, t) in out.iter_mut().zip(ids.chunks_exact(3)) {
            let (h, r, tail) = (row(entities, dim, t[0]), row(relations, dim, t[1]), row(entities, dim, t[2]));
            let mut sum = 0.0f32;
            for d in 0..dim {
                sum += (h[d] + r[d] - tail[d]).abs();
            }
            *o = -sum;
        }
    }
}

multiversion! {
    /// `out[i] = Σ h · r · t` for each triple `i` of `ids`.
    fn trilinear_scores(entities: &[f32], relations: &[f32], dim: usize, ids: &[u32], out: &mut [f32]) {
        for (o, t) in out.iter_mut().zip(ids.chunks_exact(3)) {
            let (h, r, tail) = (row(entities, dim, t[0]), row(relations, dim, t[1]), row(entities, dim, t[2]));
            let mut sum = 0.0f32;
            for d in 0..dim {
                sum += h[d] * r[d] * tail[d];
            }
            *o = sum;
        }
    }
}

multiversion! {
    /// Adds each triple's gradient to `d_entities` and `d_relations`, given the scores' gradient `d_scores`:
    /// with `s = sign(h + r − t)` (0 at 0, as burn's and PyTorch's `abs`), `∂/∂h = ∂/∂r = −s`, `∂/∂t = s`.
    /// `scratch` has length at least `dim`.
    fn translation_grads(
        entities: &[f32],
        relations: &[f32],
        dim: usize,
        ids: &[u32],
        d_scores: &[f32],
        d_entities: &mut [f32],
        d_relations: &mut [f32],
        scratch: &mut [f32],
    ) {
        let scratch = &mut scratch[..dim];
        for (&g, t) in d_scores.iter().zip(ids.chunks_exact(3)) {
            let (h, r, tail) = (row(entities, dim, t[0]), row(relations, dim, t[1]), row(entities, dim, t[2]));
            for d in 0..dim {
                let x = h[d] + r[d] - tail[d];
                let sign = if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { 0.0 };
                scratch[d] = -g * sign;
            }
            let (hs, rs, ts) = (t[0] as usize * dim, t[1] as usize * dim, t[2] as usize * dim);
            add_into(&mut d_entities[hs..hs + dim], scratch);
            add_into(&mut d_relations[rs..rs + dim], scratch);
            for (d, s) in d_entities[ts..ts + dim].iter_mut().zip(scratch.iter()) {
                *d -= s;
            }
        }
    }
}

multiversion! {
    /// Adds each triple's gradient to `d_entities` and `d_relations`, given the scores' gradient `d_scores`:
    /// `∂/∂h = r · t`, `∂/∂r = h · t`, `∂/∂t = h · r`. `scratch` has length `3 · dim`.
    fn trilinear_grads(
        entities: &[f32],
        relations: &[f32],
        dim: usize,
        ids: &[u32],
        d_scores: &[f32],
        d_entities: &mut [f32],
        d_relations: &mut [f32],
        scratch: &mut [f32],
    ) {
        let (dh, rest) = scratch.split_at_mut(dim);
        let (dr, dt) = rest.split_at_mut(dim);
        let dt = &mut dt[..dim];
        for (&g, t) in d_scores.iter().zip(ids.chunks_exact(3)) {
            let (h, r, tail) = (row(entities, dim, t[0]), row(relations, dim, t[1]), row(entities, dim, t[2]));
            for d in 0..dim {
                dh[d] = g * r[d] * tail[d];
                dr[d] = g * h[d] * tail[d];
                dt[d] = g * h[d] * r[d];
            }
            let (hs, rs, ts) = (t[0] as usize * dim, t[1] as usize * dim, t[2] as usize * dim);
            add_into(&mut d_entities[hs..hs + dim], dh);
            add_into(&mut d_relations[rs..rs + dim], dr);
            add_into(&mut d_entities[ts..ts + dim], dt);
        }
    }
}

/// The score of every triple in `ids` (flattened `(head, relation, tail)`), rows of width `dim`.
pub fn forward(
    entities: &[f32],
    relations: &[f32],
    dim: usize,
    ids: &[u32],
    score: TripleScore,
) -> Vec<f32> {
    let mut out = vec![0.0f32; ids.len() / 3];
    out.par_chunks_mut(BLOCK)
        .zip(ids.par_chunks(3 * BLOCK))
        .for_each(|(out, ids)| match score {
            TripleScore::NegativeL1Translation => {
                translation_scores(entities, relations, dim, ids, out)
            }
            TripleScore::Trilinear => trilinear_scores(entities, relations, dim, ids, out),
        });
    out
}

/// The gradients of the tables (`[entities]`, `[relations]`, each flattened) given the scores' gradient.
///
/// The triples are split into one contiguous part per thread, each summing into zeroed tables of its own,
/// and the parts are added in order, so the result does not depend on how rayon schedules them.
pub fn backward(
    entities: &[f32],
    relations: &[f32],
    dim: usize,
    ids: &[u32],
    d_scores: &[f32],
    score: TripleScore,
) -> (Vec<f32>, Vec<f32>) {
    let triples = d_scores.len();
    let threads = rayon::current_num_threads()
        .min(triples / MIN_TRIPLES_PER_THREAD)
        .max(1);
    let per_part = triples.div_ceil(threads).max(1);
    let parts: Vec<(Vec<f32>, Vec<f32>)> = d_scores
        .par_chunks(per_part)
        .zip(ids.par_chunks(3 * per_part))
        .map(|(d_scores, ids)| {
            let mut d_entities = vec![0.0f32; entities.len()];
            let mut d_relations = vec![0.0f32; relations.len()];
            let mut scratch = vec![0.0f32; 3 * dim];
            let grads = match score {
                TripleScore::NegativeL1Translation => translation_grads,
                TripleScore::Trilinear => trilinear_grads,
            };
            grads(
                entities,
                relations,
                dim,
                ids,
                d_scores,
                &mut d_entities,
                &mut d_relations,
                &mut scratch,
            );
            (d_entities, d_relations)
        })
        .collect();
    let mut parts = parts.into_iter();
    let (mut d_entities, mut d_relations) = parts
        .next()
        .unwrap_or_else(|| (vec![0.0; entities.len()], vec![0.0; relations.len()]));
    for (e, r) in parts {
        add_into(&mut d_entities, &e);
        add_into(&mut d_relations, &r);
    }
    (d_entities, d_relations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// The score of one triple in f64, and its gradient by central finite differences.
    fn score_f64(h: &[f64], r: &[f64], t: &[f64], score: TripleScore) -> f64 {
        match score {
            TripleScore::NegativeL1Translation => -(0..h.len())
                .map(|d| (h[d] + r[d] - t[d]).abs())
                .sum::<f64>(),
            TripleScore::Trilinear => (0..h.len()).map(|d| h[d] * r[d] * t[d]).sum(),
        }
    }

    /// Entities 5 × dim 7, relations 3 × 7, triples with repeated entities (including head = tail).
    fn case() -> (Vec<f32>, Vec<f32>, usize, Vec<u32>) {
        let dim = 7;
        let ids = vec![0, 1, 2, 3, 0, 3, 4, 2, 1, 2, 2, 2, 0, 1, 4];
        (values(5 * dim, 1), values(3 * dim, 2), dim, ids)
    }

    #[test]
    fn scores_equal_the_formula() {
        let (e, r, dim, ids) = case();
        for score in [TripleScore::NegativeL1Translation, TripleScore::Trilinear] {
            let out = forward(&e, &r, dim, &ids, score);
            for (i, t) in ids.chunks_exact(3).enumerate() {
                let f = |table: &[f32], id: u32| -> Vec<f64> {
                    row(table, dim, id).iter().map(|&x| x as f64).collect()
                };
                let want = score_f64(&f(&e, t[0]), &f(&r, t[1]), &f(&e, t[2]), score);
                assert!(
                    (out[i] as f64 - want).abs() < 1e-5,
                    "{score:?} triple {i}: {} against {want}",
                    out[i]
                );
            }
        }
    }

    #[test]
    fn gradients_equal_finite_differences_of_the_weighted_scores() {
        let (e, r, dim, ids) = case();
        let weights: Vec<f32> = values(ids.len() / 3, 3);
        for score in [TripleScore::NegativeL1Translation, TripleScore::Trilinear] {
            let (de, dr) = backward(&e, &r, dim, &ids, &weights, score);
            // L(E, R) = Σ_i w_i · score_i, in f64.
            let loss = |e: &[f64], r: &[f64]| -> f64 {
                ids.chunks_exact(3)
                    .zip(&weights)
                    .map(|(t, &w)| {
                        let row = |table: &[f64], id: u32| {
                            table[id as usize * dim..(id as usize + 1) * dim].to_vec()
                        };
                        w as f64 * score_f64(&row(e, t[0]), &row(r, t[1]), &row(e, t[2]), score)
                    })
                    .sum()
            };
            let e64: Vec<f64> = e.iter().map(|&x| x as f64).collect();
            let r64: Vec<f64> = r.iter().map(|&x| x as f64).collect();
            let step = 1e-6;
            for (table, grad, is_entities) in [(&e64, &de, true), (&r64, &dr, false)] {
                for j in 0..table.len() {
                    let mut plus = table.clone();
                    let mut minus = table.clone();
                    plus[j] += step;
                    minus[j] -= step;
                    let numeric = if is_entities {
                        (loss(&plus, &r64) - loss(&minus, &r64)) / (2.0 * step)
                    } else {
                        (loss(&e64, &plus) - loss(&e64, &minus)) / (2.0 * step)
                    };
                    assert!(
                        (grad[j] as f64 - numeric).abs() < 1e-4,
                        "{score:?} {} [{j}]: {} against {numeric}",
                        if is_entities { "entities" } else { "relations" },
                        grad[j]
                    );
                }
            }
        }
    }

    #[test]
    fn the_backward_split_over_threads_equals_one_part() {
        // Enough triples for several parts: the per-thread sums added in order equal a single pass.
        let dim = 16;
        let (entities, relations) = (values(40 * dim, 4), values(6 * dim, 5));
        let triples = 3 * MIN_TRIPLES_PER_THREAD + 17;
        let ids: Vec<u32> = (0..triples as u32)
            .flat_map(|i| [(i * 7) % 40, (i * 5) % 6, (i * 11 + 3) % 40])
            .collect();
        let d_scores = values(triples, 6);
        for score in [TripleScore::NegativeL1Translation, TripleScore::Trilinear] {
            let (de, dr) = backward(&entities, &relations, dim, &ids, &d_scores, score);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("a one-thread pool");
            let (de1, dr1) =
                pool.install(|| backward(&entities, &relations, dim, &ids, &d_scores, score));
            let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3);
            assert!(close(&de, &de1) && close(&dr, &dr1), "{score:?}");
        }
    }
}
