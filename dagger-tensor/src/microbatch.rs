//! Micro-batch unrolling: the pass that makes pipeline parallelism a
//! property of the graph rather than of a trainer.
//!
//! [`micro_batches`] takes a forward graph built for one micro-batch (its
//! inputs `[b, ..]`, a scalar loss that is a mean over the `b` rows) and
//! returns the graph of a whole batch of `m` micro-batches: inputs
//! `[m * b, ..]` under the same names, each sliced into its `m` row blocks,
//! the forward computation repeated on each block with the parameters
//! shared, and the loss the mean of the `m` losses, which is the whole
//! batch's mean. Autodiff of that loss accumulates each parameter's
//! gradient over the micro-batches, so a training step built on it
//! updates once per batch, as GPipe and 1F1B do.
//!
//! Placed over devices by layers (the partitioner) and lowered to tasks,
//! the `m` copies of a stage are independent tasks: micro-batch `k + 1`'s
//! first stage runs while micro-batch `k`'s second stage does, which is
//! the pipeline, scheduled by the runtime's own policies instead of a
//! hand-written order.
//!
//! # Examples
//!
//! ```
//! use dagger_tensor::{micro_batches, TensorGraph};
//!
//! let mut g = TensorGraph::new();
//! let x = g.input("x", [2, 3]);
//! let w = g.param("w", [3, 1]);
//! let y = g.matmul(x, w).unwrap();
//! let loss = g.mean(y, &[0, 1], false).unwrap();
//! let (whole, total) = micro_batches(&g, loss, 4).unwrap();
//! assert_eq!(whole.shape(whole.lookup("x").unwrap()).dims(), [8, 3]);
//! assert_eq!(whole.params().len(), 1, "the parameter is shared");
//! assert!(whole.shape(total).dims().is_empty());
//! ```

use super::allreduce::next_bucket;
use super::error::{shape_error, TensorError, TensorResult};
use super::graph::{Tensor, TensorGraph};
use super::op::{ParallelGroup, TensorOp};
use super::shape::Shape;

/// The graph of `micro` micro-batches of `forward` and its loss (see the
/// [module docs](self)). `forward` must have no updates or data-parallel
/// all-reduces yet (build the training step on the result); its
/// tensor-parallel sums (a `BlockStack` shard's) are repeated with it.
pub fn micro_batches(
    forward: &TensorGraph,
    loss: Tensor,
    micro: usize,
) -> TensorResult<(TensorGraph, Tensor)> {
    let op = "micro_batches";
    if micro == 0 {
        return Err(shape_error(
            op,
            "0 micro-batches: a batch needs at least one",
        ));
    }
    if !forward.shape(loss).dims().is_empty() {
        return Err(TensorError::LossNotScalar {
            value: loss.0,
            shape: forward.shape(loss).clone(),
        });
    }
    if !forward.updates().is_empty() {
        return Err(shape_error(
            op,
            "the graph already updates parameters: unroll the forward graph, then build the step",
        ));
    }
    let mut whole = TensorGraph::new();
    let n = forward.nodes().len();
    // Leaves made once: inputs at the whole batch's size, shared
    // parameters and constants.
    let mut shared: Vec<Option<Tensor>> = vec![None; n];
    for (i, node) in forward.nodes().iter().enumerate() {
        shared[i] = match &node.op {
            TensorOp::Input { name } => {
                let dims = node.shape.dims();
                let Some(&rows) = dims.first() else {
                    return Err(shape_error(
                        op,
                        format!("input `{name}` is a scalar: it has no rows to split"),
                    ));
                };
                let mut full = dims.to_vec();
                full[0] = rows * micro;
                Some(whole.input(name, Shape::from(full)))
            }
            TensorOp::Param { .. } | TensorOp::Const { .. } => {
                Some(whole.apply(node.op.clone(), &[], Some(&node.shape))?)
            }
            TensorOp::AllReduce {
                group: ParallelGroup::Data,
                ..
            } => {
                return Err(shape_error(
                    op,
                    format!(
                        "%{i} is a data-parallel all-reduce: unroll before adding data parallelism"
                    ),
                ))
            }
            _ => None,
        };
    }
    let mut losses = Vec::with_capacity(micro);
    for m in 0..micro {
        let mut copy: Vec<Option<Tensor>> = vec![None; n];
        for (i, node) in forward.nodes().iter().enumerate() {
            copy[i] = Some(match (&node.op, shared[i]) {
                (TensorOp::Input { .. }, Some(full)) => {
                    let rows = node.shape.dims()[0];
                    whole.slice(full, 0, m * rows, (m + 1) * rows)?
                }
                (_, Some(leaf)) => leaf,
                (_, None) => {
                    let inputs: Vec<Tensor> = node
                        .inputs
                        .iter()
                        .map(|a| copy[a.index()].expect("operands come first"))
                        .collect();
                    // A tensor-parallel sum of each micro-batch in a bucket
                    // of its own.
                    let op = match node.op {
                        TensorOp::AllReduce { group, .. } => TensorOp::AllReduce {
                            bucket: next_bucket(&whole),
                            group,
                        },
                        ref other => other.clone(),
                    };
                    whole.apply(op, &inputs, Some(&node.shape))?
                }
            });
        }
        losses.push(copy[loss.index()].expect("the loss is a node"));
    }
    let mut total = losses[0];
    for &l in &losses[1..] {
        total = whole.add(total, l)?;
    }
    let total = whole.scale(total, 1.0 / micro as f32)?;
    whole.set_outputs(vec![total])?;
    Ok((whole, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-layer model on `rows` rows and its mean squared error.
    fn model(rows: usize) -> (TensorGraph, Tensor) {
        let mut g = TensorGraph::new();
        let x = g.input("x", [rows, 3]);
        let y = g.input("y", [rows, 1]);
        let w = g.param("w", [3, 1]);
        let out = g.matmul(x, w).unwrap();
        let loss = g.mse(out, y).unwrap();
        g.set_outputs(vec![loss]).unwrap();
        (g, loss)
    }

    #[test]
    fn the_unrolled_graph_shares_parameters_and_slices_every_input() {
        let (g, loss) = model(2);
        let (whole, total) = micro_batches(&g, loss, 3).unwrap();
        assert_eq!(whole.params().len(), 1);
        assert_eq!(whole.shape(whole.lookup("x").unwrap()).dims(), [6, 3]);
        assert_eq!(whole.shape(whole.lookup("y").unwrap()).dims(), [6, 1]);
        let slices = whole
            .nodes()
            .iter()
            .filter(|n| matches!(n.op, TensorOp::Slice { .. }))
            .count();
        assert_eq!(slices, 6, "3 micro-batches of 2 inputs");
        let matmuls = whole
            .nodes()
            .iter()
            .filter(|n| matches!(n.op, TensorOp::MatMul { .. }))
            .count();
        assert_eq!(matmuls, 3);
        assert_eq!(whole.outputs(), [total]);
    }

    #[test]
    fn what_cannot_be_unrolled_is_refused_naming_it() {
        let (g, loss) = model(2);
        let err = micro_batches(&g, loss, 0).unwrap_err().to_string();
        assert!(err.contains("0 micro-batches"), "{err}");
        let x = g.lookup("x").unwrap();
        let err = micro_batches(&g, x, 2).unwrap_err().to_string();
        assert!(err.contains("must be a scalar"), "{err}");
        let mut updated = g.clone();
        let w = updated.lookup("w").unwrap();
        let w2 = updated.scale(w, 0.5).unwrap();
        updated.add_update(w, w2).unwrap();
        let err = micro_batches(&updated, loss, 2).unwrap_err().to_string();
        assert!(err.contains("already updates"), "{err}");
    }
}
