//! Dead-node elimination: drops every node no output or update needs.
//!
//! Inputs and parameters are always kept, so the names a caller feeds and
//! the state a model saves do not depend on which passes ran.

use super::graph::{Rewrite, Tensor, TensorGraph};
use super::op::TensorOp;

/// The graph without nodes that no output or update depends on; returns it
/// and the number of nodes dropped.
pub fn dce(g: &TensorGraph) -> (TensorGraph, usize) {
    let mut live = vec![false; g.nodes.len()];
    for &v in &g.outputs {
        live[v.index()] = true;
    }
    for &(p, v) in &g.updates {
        live[p.index()] = true;
        live[v.index()] = true;
    }
    for (i, node) in g.nodes.iter().enumerate().rev() {
        if matches!(node.op, TensorOp::Input { .. } | TensorOp::Param { .. }) {
            live[i] = true;
        }
        if live[i] {
            for v in &node.inputs {
                live[v.index()] = true;
            }
        }
    }
    let mut rw = Rewrite::new(g);
    for (i, &keep) in live.iter().enumerate() {
        if keep {
            rw.copy(Tensor(i as u32));
        }
    }
    let dropped = live.iter().filter(|&&l| !l).count();
    (rw.finish(), dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_what_no_output_needs() {
        let mut g = TensorGraph::new();
        let x = g.input("x", [3]);
        let unused = g.input("unused", [3]);
        let a = g.relu(x).unwrap();
        let _dead = g.unary(crate::Unary::Exp, a).unwrap();
        let b = g.scale(a, 2.0).unwrap();
        g.set_outputs(vec![b]).unwrap();
        let (d, dropped) = dce(&g);
        assert_eq!(dropped, 1);
        assert_eq!(d.nodes().len(), 5);
        assert_eq!(d.by_name("unused"), Some(unused));
        assert_eq!(d.shape(d.outputs()[0]).dims(), &[3]);
    }
}
