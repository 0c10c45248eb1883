//! Bucketed gradient all-reduce, inserted for data-parallel training.
//!
//! [`insert_all_reduce`] gives every gradient an
//! [`AllReduce`](TensorOp::AllReduce) node and groups the gradients into
//! buckets of about `bucket_bytes`, in the order backward produces them
//! (the last layer's first), as PyTorch's DistributedDataParallel does. The
//! runtime sends a bucket as soon as its last gradient is computed, so the
//! reduction of the late layers overlaps the backward pass of the early ones.
//!
//! [`drop_lone_all_reduces`] removes the all-reduces a grid makes the
//! identity (a group of one worker), so a step built for any split runs
//! with no collective where it has nothing to reduce.

use super::error::TensorResult;
use super::graph::{Rewrite, Tensor, TensorGraph};
use super::op::{ParallelGroup, TensorOp};

/// Appends an all-reduce (mean over workers) of each of `grads` and returns
/// the reduced values, in the same order. Buckets hold gradients in the
/// order they are computed, each up to `bucket_bytes` (at least one), and
/// are numbered after those already in the graph.
pub fn insert_all_reduce(
    g: &mut TensorGraph,
    grads: &[Tensor],
    bucket_bytes: usize,
) -> TensorResult<Vec<Tensor>> {
    let mut by_readiness: Vec<usize> = (0..grads.len()).collect();
    by_readiness.sort_by_key(|&k| grads[k].index());
    let mut reduced = vec![Tensor(0); grads.len()];
    let first = next_bucket(g);
    let (mut bucket, mut filled) = (first, 0usize);
    for k in by_readiness {
        let bytes = g.shape(grads[k]).numel() * 4;
        if filled > 0 && filled + bytes > bucket_bytes {
            bucket += 1;
            filled = 0;
        }
        filled += bytes;
        reduced[k] = g.apply(
            TensorOp::AllReduce {
                bucket,
                group: ParallelGroup::Data,
            },
            &[grads[k]],
            None,
        )?;
    }
    Ok(reduced)
}

/// A bucket number no all-reduce of `g` uses yet.
pub fn next_bucket(g: &TensorGraph) -> u32 {
    g.nodes()
        .iter()
        .filter_map(|n| match n.op {
            TensorOp::AllReduce { bucket, .. } => Some(bucket + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// The graph without the all-reduces whose group, on a grid of `data`
/// replicas x `tensor` shards, has one worker (the data-parallel ones when
/// `data` is 1, the tensor-parallel ones when `tensor` is 1): a mean or a
/// sum over one copy is that copy, so their users read the operand. Returns
/// it and how many were dropped.
pub fn drop_lone_all_reduces(g: &TensorGraph, data: usize, tensor: usize) -> (TensorGraph, usize) {
    let mut rw = Rewrite::new(g);
    let mut dropped = 0;
    for (i, node) in g.nodes().iter().enumerate() {
        let v = Tensor(i as u32);
        let lone = match node.op {
            TensorOp::AllReduce { group, .. } => match group {
                ParallelGroup::Data => data == 1,
                ParallelGroup::Tensor => tensor == 1,
            },
            _ => false,
        };
        if lone {
            rw.alias(v, rw.mapped(node.inputs[0]));
            dropped += 1;
        } else {
            rw.copy(v);
        }
    }
    (rw.finish(), dropped)
}

/// The sum over the workers of `partial` (a tensor-parallel layer's
/// partial result), in a bucket of its own.
pub fn all_reduce_sum(g: &mut TensorGraph, partial: Tensor) -> TensorResult<Tensor> {
    let bucket = next_bucket(g);
    g.apply(
        TensorOp::AllReduce {
            bucket,
            group: ParallelGroup::Tensor,
        },
        &[partial],
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_backward_order_and_size() {
        let mut g = TensorGraph::new();
        let w1 = g.param("w1", [100, 100]); // 40 kB
        let w2 = g.param("w2", [10, 10]); // 400 B
        let x = g.input("x", [4, 100]);
        let h = g.matmul(x, w1).unwrap();
        let h = g.slice(h, 1, 0, 10).unwrap();
        let z = g.matmul(h, w2).unwrap();
        let loss = g.sum(z, &[0, 1], false).unwrap();
        let grads = crate::autodiff::append_grad(&mut g, loss, &[w1, w2]).unwrap();
        // w2's gradient is computed first (the last layer).
        assert!(grads[1].index() < grads[0].index());
        let reduced = insert_all_reduce(&mut g, &grads, 1000).unwrap();
        let bucket = |g: &TensorGraph, v: Tensor| match g.node(v).op {
            TensorOp::AllReduce { bucket, .. } => bucket,
            _ => panic!("not an all-reduce"),
        };
        assert_eq!((bucket(&g, reduced[1]), bucket(&g, reduced[0])), (0, 1));
        let one = insert_all_reduce(&mut g, &grads, 1 << 20).unwrap();
        assert_eq!(
            (bucket(&g, one[1]), bucket(&g, one[0])),
            (2, 2),
            "numbered after the first two"
        );
        assert_eq!(g.shape(reduced[0]).dims(), &[100, 100]);
    }

    #[test]
    fn all_reduces_of_one_worker_are_dropped_for_their_operand() {
        let mut g = TensorGraph::new();
        let x = g.input("x", [2, 3]);
        let w = g.param("w", [3, 3]);
        let partial = g.matmul(x, w).unwrap();
        let joined = all_reduce_sum(&mut g, partial).unwrap();
        let mean = insert_all_reduce(&mut g, &[joined], 1 << 20).unwrap()[0];
        let out = g.relu(mean).unwrap();
        g.set_outputs(vec![out, joined]).unwrap();
        let count = |g: &TensorGraph, group: ParallelGroup| {
            g.nodes()
                .iter()
                .filter(|n| matches!(n.op, TensorOp::AllReduce { group: k, .. } if k == group))
                .count()
        };
        // One shard: the sum goes, the mean over 2 replicas stays.
        let (d, dropped) = drop_lone_all_reduces(&g, 2, 1);
        assert_eq!(dropped, 1);
        assert_eq!(
            (
                count(&d, ParallelGroup::Tensor),
                count(&d, ParallelGroup::Data)
            ),
            (0, 1)
        );
        // The output that was the sum is now the product.
        assert!(matches!(d.node(d.outputs()[1]).op, TensorOp::MatMul { .. }));
        let mean = d.node(d.outputs()[0]).inputs[0];
        assert_eq!(d.node(mean).inputs[0], d.outputs()[1]);
        // A 2 x 2 grid keeps both; one worker keeps neither.
        assert_eq!(drop_lone_all_reduces(&g, 2, 2).1, 0);
        let (one, dropped) = drop_lone_all_reduces(&g, 1, 1);
        assert_eq!((dropped, one.nodes().len()), (2, g.nodes().len() - 2));
    }
}
