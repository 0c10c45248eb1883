//! Where a runtime packs the gradients of each all-reduce bucket, and when
//! it can send the bucket.
//!
//! [`insert_all_reduce`](super::insert_all_reduce) numbers the
//! [`AllReduce`](TensorOp::AllReduce) nodes' buckets; [`plan_buckets`]
//! turns that into what both runtimes (the CPU's `Program`, the GPU's
//! `GpuProgram`) execute: per bucket, each member's range in one packed
//! buffer and the node after which every member's operand exists, so the
//! bucket can be reduced while the rest of the backward pass runs.

use super::error::{TensorError, TensorResult};
use super::graph::{Tensor, TensorGraph};
use super::op::{ParallelGroup, TensorOp};
use std::ops::Range;

/// One all-reduce node of a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketMember {
    /// The all-reduce node's index.
    pub node: usize,
    /// The value it reduces.
    pub operand: Tensor,
    /// Where that value lies in the bucket's packed buffer.
    pub range: Range<usize>,
}

/// One bucket: the values reduced together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketPlan {
    /// Its all-reduce nodes, packed in graph order.
    pub members: Vec<BucketMember>,
    /// The group it reduces over (a data-parallel bucket is averaged, a
    /// tensor-parallel one summed).
    pub group: ParallelGroup,
    /// The node after which every member's operand exists.
    pub launch_after: usize,
}

impl BucketPlan {
    /// Elements in the packed buffer.
    pub fn len(&self) -> usize {
        self.members.last().map_or(0, |m| m.range.end)
    }

    /// Whether the bucket packs nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the reduction is the mean over the workers (else the sum).
    pub fn is_mean(&self) -> bool {
        self.group == ParallelGroup::Data
    }

    /// Where all-reduce node `node`'s value lies in the packed buffer.
    pub fn range_of(&self, node: usize) -> Option<Range<usize>> {
        self.members
            .iter()
            .find(|m| m.node == node)
            .map(|m| m.range.clone())
    }
}

/// The buckets of a graph, and each node's bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketPlans {
    /// In order of first appearance in the graph.
    pub buckets: Vec<BucketPlan>,
    /// Per node: the index into `buckets` of its bucket, if it is an
    /// all-reduce.
    pub of_node: Vec<Option<usize>>,
}

/// The buckets of `g`'s all-reduce nodes; an error, naming both nodes, if
/// an all-reduce would come before a gradient its bucket packs (it would
/// wait forever).
pub fn plan_buckets(g: &TensorGraph) -> TensorResult<BucketPlans> {
    let mut out = BucketPlans {
        buckets: Vec::new(),
        of_node: vec![None; g.nodes().len()],
    };
    let mut index_of: Vec<(u32, usize)> = Vec::new();
    for (i, node) in g.nodes().iter().enumerate() {
        let TensorOp::AllReduce { bucket, group } = node.op else {
            continue;
        };
        let b = match index_of.iter().find(|(id, _)| *id == bucket) {
            Some(&(_, b)) => b,
            None => {
                index_of.push((bucket, out.buckets.len()));
                out.buckets.push(BucketPlan {
                    members: Vec::new(),
                    group,
                    launch_after: 0,
                });
                out.buckets.len() - 1
            }
        };
        let operand = node.inputs[0];
        let plan = &mut out.buckets[b];
        let start = plan.len();
        plan.members.push(BucketMember {
            node: i,
            operand,
            range: start..start + node.shape.numel(),
        });
        plan.launch_after = plan.launch_after.max(operand.index());
        out.of_node[i] = Some(b);
    }
    for plan in &out.buckets {
        if let Some(m) = plan.members.iter().find(|m| m.node < plan.launch_after) {
            return Err(TensorError::Collective(format!(
                "all-reduce %{} comes before its bucket's last gradient %{}",
                m.node, plan.launch_after
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insert_all_reduce;

    #[test]
    fn members_are_packed_in_graph_order_and_sent_after_their_last_operand() {
        let mut g = TensorGraph::new();
        let a = g.input("a", [3]);
        let b = g.input("b", [2, 2]);
        let c = g.input("c", [5]);
        let reduced = insert_all_reduce(&mut g, &[a, b, c], 28).unwrap();
        let plans = plan_buckets(&g).unwrap();
        // a and b (12 + 16 bytes) fill the first bucket, c starts another.
        assert_eq!(plans.buckets.len(), 2);
        let first = &plans.buckets[0];
        assert_eq!(first.len(), 7);
        assert_eq!(first.launch_after, b.index());
        assert_eq!(first.range_of(reduced[1].index()), Some(3..7));
        assert!(first.is_mean());
        assert_eq!(plans.of_node[reduced[2].index()], Some(1));
        assert_eq!(plans.of_node[a.index()], None);
    }

    #[test]
    fn an_all_reduce_before_its_buckets_last_gradient_is_refused() {
        let mut g = TensorGraph::new();
        let a = g.input("a", [3]);
        let early = g
            .apply(
                TensorOp::AllReduce {
                    bucket: 0,
                    group: ParallelGroup::Data,
                },
                &[a],
                None,
            )
            .unwrap();
        let b = g.unary(crate::Unary::Exp, early).unwrap();
        g.apply(
            TensorOp::AllReduce {
                bucket: 0,
                group: ParallelGroup::Data,
            },
            &[b],
            None,
        )
        .unwrap();
        let err = plan_buckets(&g).unwrap_err().to_string();
        assert!(
            err.contains(&format!("%{}", early.index()))
                && err.contains(&format!("%{}", b.index())),
            "{err}"
        );
    }
}
