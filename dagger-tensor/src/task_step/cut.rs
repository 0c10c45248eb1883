//! Cutting an optimized step into segments: runs of a topological order on
//! one device, at most a given length, ended at every all-reduce (see the
//! [module docs](super)).

use crate::{TensorGraph, TensorOp};

/// The order the segments are cut in: the graph's, except that each
/// all-reduce comes right after its operand (the graph appends them after
/// the whole backward pass), so that the segments before it can end there
/// and its task overlap the rest of backward. Still topological: an
/// all-reduce needs only its operand, and its users come after it.
pub(super) fn cut_order(g: &TensorGraph) -> Vec<usize> {
    let mut order: Vec<usize> = (0..g.nodes().len()).collect();
    order.sort_by_key(|&i| match g.nodes()[i].op {
        TensorOp::AllReduce { .. } => (g.nodes()[i].inputs[0].index(), 1, i),
        _ => (i, 0, i),
    });
    order
}

/// The segment of each computed node (`None` for inputs, constants,
/// parameters and all-reduces): runs of consecutive nodes of `order` on one
/// device, at most `max` long, cut at every all-reduce (its operand must be
/// ready before it, its users wait for it).
pub(super) fn cut(
    g: &TensorGraph,
    order: &[usize],
    device_of: &[usize],
    max: usize,
) -> Vec<Option<usize>> {
    let mut segment_of = vec![None; g.nodes().len()];
    let (mut current, mut len, mut device) = (None::<usize>, 0, usize::MAX);
    let mut next = 0;
    for &i in order {
        let node = &g.nodes()[i];
        if is_all_reduce(&node.op) {
            current = None;
            continue;
        }
        if is_leaf(&node.op) {
            continue;
        }
        if current.is_none() || device_of[i] != device || len == max {
            current = Some(next);
            next += 1;
            len = 0;
            device = device_of[i];
        }
        segment_of[i] = current;
        len += 1;
    }
    segment_of
}

/// Inputs, constants and parameters: values no task computes.
pub(super) fn is_leaf(op: &TensorOp) -> bool {
    matches!(
        op,
        TensorOp::Input { .. } | TensorOp::Const { .. } | TensorOp::Param { .. }
    )
}

/// All-reduces: collectives between workers, each a task of its own.
pub(super) fn is_all_reduce(op: &TensorOp) -> bool {
    matches!(op, TensorOp::AllReduce { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{optimize, FuseOptions};

    /// `x -> tanh(x W1) W2 -> mse`, its gradients and SGD updates.
    fn two_layer_step() -> TensorGraph {
        let mut g = TensorGraph::new();
        let x = g.input("x", [4, 3]);
        let y = g.input("y", [4, 2]);
        let w1 = g.param("w1", [3, 5]);
        let w2 = g.param("w2", [5, 2]);
        let h = g.matmul(x, w1).unwrap();
        let h = g.unary(crate::Unary::Tanh, h).unwrap();
        let out = g.matmul(h, w2).unwrap();
        let loss = g.mse(out, y).unwrap();
        let grads = crate::autodiff::append_grad(&mut g, loss, &[w1, w2]).unwrap();
        for (w, dw) in [w1, w2].into_iter().zip(grads) {
            let step = g.scale(dw, 0.1).unwrap();
            let new = g.sub(w, step).unwrap();
            g.add_update(w, new).unwrap();
        }
        g.set_outputs(vec![loss]).unwrap();
        g
    }

    #[test]
    fn one_segment_per_node_cuts_runs_and_names_them() {
        let g = two_layer_step();
        let (opt, _) = optimize(&g, FuseOptions::default());
        let devices = vec![0; opt.nodes().len()];
        let order = cut_order(&opt);
        let per_node = cut(&opt, &order, &devices, 1);
        let computed = opt.nodes().iter().filter(|n| !is_leaf(&n.op)).count();
        assert_eq!(per_node.iter().flatten().max(), Some(&(computed - 1)));
        let whole = cut(&opt, &order, &devices, usize::MAX);
        assert!(whole.iter().flatten().all(|&s| s == 0));
        // A change of device starts a segment.
        let alternating: Vec<usize> = (0..opt.nodes().len()).map(|i| i % 2).collect();
        let cut_by_device = cut(&opt, &order, &alternating, usize::MAX);
        for (i, s) in cut_by_device.iter().enumerate() {
            if let Some(s) = s {
                let same = (0..i).filter(|&j| cut_by_device[j] == Some(*s));
                assert!(same.into_iter().all(|j| alternating[j] == alternating[i]));
            }
        }
    }
}
