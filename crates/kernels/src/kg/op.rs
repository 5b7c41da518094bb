//! The triple scores as a burn backend extension: a flex kernel, and under autodiff a hand-written backward.

use super::{TripleScore, cpu};
use crate::flex::{dense, slice, tensor};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use std::sync::Arc;

/// The fused triple scores, on the backends that have them.
#[backend_extension(Flex, Autodiff)]
pub trait FusedTripleScoreOps: Backend {
    /// See [`super::triple_scores`].
    fn fused_triple_scores(
        entities: FloatTensor<Self>,
        relations: FloatTensor<Self>,
        ids: Arc<[u32]>,
        score: TripleScore,
    ) -> FloatTensor<Self>;
}

/// Calls the op through burn's dispatch.
pub(super) fn fused(
    entities: Tensor<2>,
    relations: Tensor<2>,
    ids: Arc<[u32]>,
    score: TripleScore,
) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as FusedTripleScoreOps>::fused_triple_scores(
        entities.into_dispatch(),
        relations.into_dispatch(),
        ids,
        score,
    ))
}

/// The width of the tables' rows.
fn dim(entities: &FlexTensor) -> usize {
    entities.layout().shape().dims::<2>()[1]
}

/// Runs the forward kernel on dense tables.
fn forward(
    entities: &FlexTensor,
    relations: &FlexTensor,
    ids: &[u32],
    score: TripleScore,
) -> FlexTensor {
    let out = cpu::forward(slice(entities), slice(relations), dim(entities), ids, score);
    let n = out.len();
    tensor(out, &[n])
}

impl FusedTripleScoreOps for Flex {
    fn fused_triple_scores(
        entities: FloatTensor<Self>,
        relations: FloatTensor<Self>,
        ids: Arc<[u32]>,
        score: TripleScore,
    ) -> FloatTensor<Self> {
        forward(&dense(&entities), &dense(&relations), &ids, score)
    }
}

/// The tables' gradients.
#[derive(Debug)]
struct FusedTripleScoreBackward;

/// What the backward pass keeps: the dense tables, the ids and the score.
#[derive(Debug)]
struct Saved {
    entities: FlexTensor,
    relations: FlexTensor,
    ids: Arc<[u32]>,
    score: TripleScore,
}

impl Backward<Flex, 2> for FusedTripleScoreBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        let d_scores = dense(&grads.consume::<Flex>(&ops.node));
        let [node_entities, node_relations] = ops.parents;
        let (d_entities, d_relations) = cpu::backward(
            slice(&saved.entities),
            slice(&saved.relations),
            dim(&saved.entities),
            &saved.ids,
            slice(&d_scores),
            saved.score,
        );
        if let Some(node) = node_entities {
            let shape = saved.entities.layout().shape().clone();
            grads.register::<Flex>(node.id, tensor(d_entities, &shape));
        }
        if let Some(node) = node_relations {
            let shape = saved.relations.layout().shape().clone();
            grads.register::<Flex>(node.id, tensor(d_relations, &shape));
        }
    }
}

impl<C: CheckpointStrategy> FusedTripleScoreOps for Autodiff<Flex, C> {
    fn fused_triple_scores(
        entities: FloatTensor<Self>,
        relations: FloatTensor<Self>,
        ids: Arc<[u32]>,
        score: TripleScore,
    ) -> FloatTensor<Self> {
        let (entities, entities_node) = entities.into_parts();
        let (relations, relations_node) = relations.into_parts();
        let (entities, relations) = (dense(&entities), dense(&relations));
        match FusedTripleScoreBackward
            .prepare::<C>([entities_node, relations_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = forward(&entities, &relations, &ids, score);
                let saved = Saved {
                    entities,
                    relations,
                    ids,
                    score,
                };
                prep.finish(Arc::new(saved), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&entities, &relations, &ids, score)),
        }
    }
}
