//! Elementwise fusion: trees of elementwise ops become one kernel.
//!
//! Run separately, a chain `relu(x * w + b)` reads and writes every element
//! three times; fused, once. The pass walks the nodes from last to first.
//! Each elementwise node not yet taken roots a group, which then absorbs,
//! depth first, every elementwise operand that has this group as its only
//! user, is not returned or stored as an update, and has the root's shape
//! (so nothing is computed twice). Constants are inlined. A group becomes one
//! [`TensorOp::Fused`] node whose [`Kernel`] loads each remaining operand by
//! a [`Broadcast`] pattern. A group with an operand broadcast another way
//! shrinks to its root; a root that cannot load its own operands stays
//! unfused (the runtime runs it with a general broadcasting loop). Every
//! other elementwise node ends up in a kernel, so with `max_ops: 1` the pass
//! gives the unfused baseline: one kernel per op. Last, a sum whose operand
//! is a group with no other user becomes that kernel's [`Reduce`] (when it
//! sums rows, columns or everything): `sum((a - b)^2)` is one pass over the
//! data. A sum over any other value becomes a kernel of its own.

use super::graph::{Rewrite, Tensor, TensorGraph, TensorNode};
use super::kernel::{Broadcast, Kernel, KernelStep, Reduce, Reduction};
use super::op::TensorOp;
use std::collections::HashMap;

/// Options of the fusion pass.
#[derive(Clone, Copy, Debug)]
pub struct FuseOptions {
    /// Most elementwise ops in one kernel (1: no fusion, one kernel per op).
    pub max_ops: usize,
}

impl Default for FuseOptions {
    fn default() -> Self {
        FuseOptions {
            max_ops: usize::MAX,
        }
    }
}

/// What the pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuseReport {
    /// Kernels made.
    pub kernels: usize,
    /// Elementwise ops they hold in all.
    pub ops: usize,
    /// Kernels ending in a reduction.
    pub reductions: usize,
}

/// The passes every back end runs before compiling a graph: dead nodes
/// dropped, elementwise trees fused, and what fusion left unused dropped.
pub fn optimize(g: &TensorGraph, options: FuseOptions) -> (TensorGraph, FuseReport) {
    let (g, _) = super::dce(g);
    let (g, report) = fuse(&g, options);
    let (g, _) = super::dce(&g);
    (g, report)
}

/// The graph with elementwise trees fused (see the [module docs](self)).
pub fn fuse(g: &TensorGraph, options: FuseOptions) -> (TensorGraph, FuseReport) {
    let n = g.nodes.len();
    let mut users = vec![0usize; n];
    for node in &g.nodes {
        for v in &node.inputs {
            users[v.index()] += 1;
        }
    }
    let mut pinned = vec![false; n];
    for &v in g.outputs.iter().chain(g.updates.iter().map(|(_, v)| v)) {
        pinned[v.index()] = true;
    }
    let fusable = |i: usize| matches!(g.nodes[i].op, TensorOp::Unary(_) | TensorOp::Binary(_));
    // root[i]: the group node i belongs to.
    let mut root: Vec<Option<usize>> = vec![None; n];
    let mut kernels: HashMap<usize, (Kernel, Vec<Tensor>)> = HashMap::new();
    for r in (0..n).rev() {
        if root[r].is_some() || !fusable(r) {
            continue;
        }
        let mut members = vec![r];
        let mut stack = vec![r];
        while let Some(m) = stack.pop() {
            for v in &g.nodes[m].inputs {
                let p = v.index();
                let absorb = fusable(p)
                    && root[p].is_none()
                    && users[p] == 1
                    && !pinned[p]
                    && g.nodes[p].shape == g.nodes[r].shape
                    && members.len() < options.max_ops
                    && !members.contains(&p);
                if absorb {
                    members.push(p);
                    stack.push(p);
                }
            }
        }
        members.sort_unstable();
        // A group with an operand no kernel can load shrinks to its root;
        // the operands it let go root groups of their own later.
        let built = build_kernel(g, &members, r)
            .map(|k| (k, members))
            .or_else(|| build_kernel(g, &[r], r).map(|k| (k, vec![r])));
        if let Some((kernel, members)) = built {
            for &m in &members {
                root[m] = Some(r);
            }
            kernels.insert(r, kernel);
        }
    }
    // A sum over a group (its only user) joins it as the kernel's
    // reduction; a sum over any other value becomes a kernel that loads it.
    for (i, node) in g.nodes.iter().enumerate() {
        let axes = match &node.op {
            TensorOp::Sum { axes, .. } => axes.clone(),
            TensorOp::SumTo => Reduction::summed_axes(g.shape(node.inputs[0]), &node.shape),
            _ => continue,
        };
        let p = node.inputs[0].index();
        let domain = g.nodes[p].shape.clone();
        let Some(kind) = Reduction::of(&domain, &axes) else {
            continue;
        };
        let reduce = Some(Reduce { kind, domain });
        let absorbed = root[p] == Some(p) && users[p] == 1 && !pinned[p];
        let (mut kernel, operands) = match kernels.remove(&p) {
            Some(group) if absorbed => group,
            group => {
                if let Some(group) = group {
                    kernels.insert(p, group);
                }
                (
                    Kernel {
                        steps: vec![KernelStep::Load(0)],
                        reduce: None,
                    },
                    vec![Tensor(p as u32)],
                )
            }
        };
        kernel.reduce = reduce;
        root[i] = Some(i);
        kernels.insert(i, (kernel, operands));
    }
    let mut report = FuseReport::default();
    let mut rw = Rewrite::new(g);
    for (i, group) in root.iter().enumerate() {
        let v = Tensor(i as u32);
        match (group, kernels.remove(&i)) {
            (Some(_), Some((kernel, operands))) => {
                report.kernels += 1;
                report.ops += kernel.op_count();
                report.reductions += usize::from(kernel.reduce.is_some());
                let inputs = operands.iter().map(|&o| rw.mapped(o)).collect();
                rw.emit(
                    v,
                    TensorNode {
                        op: TensorOp::Fused(kernel),
                        inputs,
                        shape: g.nodes[i].shape.clone(),
                    },
                );
            }
            (Some(_), None) => {} // inside a kernel
            (None, _) => rw.copy(v),
        }
    }
    (rw.finish(), report)
}

/// The kernel of a group (members ascending, root last) and its operands,
/// or `None` when an operand is broadcast in a way kernels do not load.
fn build_kernel(g: &TensorGraph, members: &[usize], root: usize) -> Option<(Kernel, Vec<Tensor>)> {
    let out = &g.nodes[root].shape;
    let mut kernel = Kernel::default();
    let mut operands: Vec<Tensor> = Vec::new();
    let mut step_of: HashMap<usize, u32> = HashMap::new();
    for &m in members {
        let node = &g.nodes[m];
        let mut args = Vec::with_capacity(2);
        for &v in &node.inputs {
            let step = match step_of.get(&v.index()) {
                Some(&s) => s,
                None => {
                    let source = g.node(v);
                    let step = match source.op {
                        TensorOp::Const { value } => kernel.push(KernelStep::Const(value)),
                        _ => {
                            Broadcast::of(&source.shape, out)?;
                            let slot = operands.iter().position(|&o| o == v).unwrap_or_else(|| {
                                operands.push(v);
                                operands.len() - 1
                            });
                            kernel.push(KernelStep::Load(slot as u32))
                        }
                    };
                    step_of.insert(v.index(), step);
                    step
                }
            };
            args.push(step);
        }
        let step = match node.op {
            TensorOp::Unary(op) => KernelStep::Unary(op, args[0]),
            TensorOp::Binary(op) => KernelStep::Binary(op, args[0], args[1]),
            _ => unreachable!("only elementwise nodes join groups"),
        };
        step_of.insert(m, kernel.push(step));
    }
    Some((kernel, operands))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dce::dce;
    use crate::Unary;

    fn layer() -> (TensorGraph, Tensor) {
        let mut g = TensorGraph::new();
        let x = g.input("x", [4, 3]);
        let w = g.param("w", [3, 2]);
        let b = g.param("b", [2]);
        let h = g.matmul(x, w).unwrap();
        let z = g.add(h, b).unwrap();
        let a = g.relu(z).unwrap();
        let y = g.scale(a, 0.5).unwrap();
        g.set_outputs(vec![y]).unwrap();
        (g, y)
    }

    #[test]
    fn a_chain_with_a_bias_becomes_one_kernel() {
        let (g, _) = layer();
        let (f, report) = fuse(&g, FuseOptions::default());
        let (f, _) = dce(&f);
        assert_eq!(
            report,
            FuseReport {
                kernels: 1,
                ops: 3,
                reductions: 0
            }
        );
        let last = f.node(f.outputs()[0]);
        let TensorOp::Fused(k) = &last.op else {
            panic!("{f}")
        };
        assert_eq!(
            k.to_string(),
            "t0 = load 0; t1 = load 1; t2 = add(t0, t1); t3 = relu(t2); t4 = 0.5; t5 = mul(t3, t4)"
        );
        assert_eq!(last.inputs.len(), 2);
        // Matmul, add, relu, const and mul became matmul and one kernel.
        assert_eq!(f.nodes().len(), 5, "{f}");
    }

    #[test]
    fn max_ops_one_gives_one_kernel_per_op() {
        let (g, _) = layer();
        let (_, report) = fuse(&g, FuseOptions { max_ops: 1 });
        assert_eq!(
            report,
            FuseReport {
                kernels: 3,
                ops: 3,
                reductions: 0
            }
        );
    }

    #[test]
    fn a_sum_over_a_chain_joins_its_kernel() {
        let mut g = TensorGraph::new();
        let a = g.input("a", [8, 5]);
        let b = g.input("b", [5]);
        let d = g.sub(a, b).unwrap();
        let sq = g.unary(Unary::Square, d).unwrap();
        let rows = g.sum(sq, &[1], false).unwrap();
        let bias_grad = g.sum_to(a, [5]).unwrap();
        g.set_outputs(vec![rows, bias_grad]).unwrap();
        let (f, report) = fuse(&g, FuseOptions::default());
        let (f, _) = dce(&f);
        assert_eq!(
            report,
            FuseReport {
                kernels: 2,
                ops: 2,
                reductions: 2
            }
        );
        let TensorOp::Fused(k) = &f.node(f.outputs()[0]).op else {
            panic!("{f}")
        };
        assert_eq!(
            k.to_string(),
            "t0 = load 0; t1 = load 1; t2 = sub(t0, t1); t3 = square(t2); sum rows of [8, 5]"
        );
        assert_eq!(f.shape(f.outputs()[0]).dims(), &[8]);
        let TensorOp::Fused(k) = &f.node(f.outputs()[1]).op else {
            panic!("{f}")
        };
        assert_eq!(k.reduce.as_ref().unwrap().kind, Reduction::Columns);
    }

    #[test]
    fn shared_and_returned_values_stay_materialized() {
        let mut g = TensorGraph::new();
        let x = g.input("x", [8]);
        let e = g.unary(Unary::Exp, x).unwrap();
        let a = g.unary(Unary::Neg, e).unwrap();
        let b = g.mul(e, a).unwrap();
        g.set_outputs(vec![a, b]).unwrap();
        let (_, report) = fuse(&g, FuseOptions::default());
        // exp has two users and neg is returned: three kernels.
        assert_eq!(report.kernels, 3);
    }
}
