//! Memory planning: which buffer holds each value, reusing buffers by liveness.
//!
//! Inputs, parameters and constants get buffers of their own that live as
//! long as the program. A reshape shares its operand's buffer. Every other
//! value takes a free buffer (the smallest that fits, else the largest one
//! grown, else a new one) and gives it back after its last use; outputs and
//! update values are never given back. An elementwise node gives back its
//! dying operands of its own shape before taking its buffer, so it may run
//! in place: it writes element `i` only after reading their element `i`.
//! (A broadcast operand is read again after that; it is given back after.)
//! A parameter's update computed elementwise by the parameter's last
//! reader (an optimizer step) is written into the parameter's own buffer.
//! The runtime allocates the plan's buffers once; a run allocates nothing.

use super::graph::TensorGraph;
use super::op::TensorOp;

/// Where each value of a graph lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The buffer of each value, by value index.
    pub buffer_of: Vec<usize>,
    /// Size of each buffer in elements.
    pub sizes: Vec<usize>,
    /// Buffers of inputs, parameters and constants (never shared).
    pub persistent: Vec<bool>,
}

impl MemoryPlan {
    /// Bytes of all buffers (`f32` elements).
    pub fn bytes(&self) -> usize {
        self.sizes.iter().sum::<usize>() * 4
    }
}

/// Bytes the graph would take with one buffer per value.
pub fn unplanned_bytes(g: &TensorGraph) -> usize {
    g.nodes.iter().map(|n| n.shape.numel()).sum::<usize>() * 4
}

/// Plans the buffers of `g` (see the [module docs](self)).
pub fn plan_memory(g: &TensorGraph) -> MemoryPlan {
    let n = g.nodes.len();
    // The value whose buffer each value uses (itself, or a reshape's source).
    let mut owner: Vec<usize> = (0..n).collect();
    for (i, node) in g.nodes.iter().enumerate() {
        if node.op == TensorOp::Reshape {
            owner[i] = owner[node.inputs[0].index()];
        }
    }
    let mut last_use: Vec<usize> = (0..n).collect();
    for (i, node) in g.nodes.iter().enumerate() {
        for v in &node.inputs {
            let o = owner[v.index()];
            last_use[o] = last_use[o].max(i);
        }
    }
    for &v in g.outputs.iter().chain(g.updates.iter().map(|(_, v)| v)) {
        last_use[owner[v.index()]] = usize::MAX;
    }
    // An update computed elementwise from its parameter, as the
    // parameter's last reader, is written straight into the parameter's
    // buffer (an optimizer step in place: no copy after the run).
    let mut in_place_update: Vec<Option<usize>> = vec![None; n];
    for &(p, v) in &g.updates {
        let node = &g.nodes[v.index()];
        let direct = node.op.is_elementwise()
            && node.inputs.contains(&p)
            && node.shape == g.nodes[p.index()].shape;
        if direct && owner[v.index()] == v.index() && last_use[p.index()] == v.index() {
            in_place_update[v.index()] = Some(p.index());
        }
    }
    let mut plan = MemoryPlan {
        buffer_of: vec![0; n],
        sizes: Vec::new(),
        persistent: Vec::new(),
    };
    let mut free: Vec<usize> = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let size = node.shape.numel();
        let leaf = matches!(
            node.op,
            TensorOp::Input { .. } | TensorOp::Param { .. } | TensorOp::Const { .. }
        );
        if leaf {
            plan.buffer_of[i] = new_buffer(&mut plan, size, true);
            continue;
        }
        if let Some(p) = in_place_update[i] {
            plan.buffer_of[i] = plan.buffer_of[p];
            continue;
        }
        if owner[i] != i {
            plan.buffer_of[i] = plan.buffer_of[owner[i]];
            continue;
        }
        // Operands dying here, and whether each may share the result's
        // buffer: only an elementwise node's same-shaped operands, whose
        // element `i` is read just before element `i` is written.
        let dying: Vec<(usize, bool)> = node
            .inputs
            .iter()
            .map(|v| {
                (
                    owner[v.index()],
                    node.op.is_elementwise() && g.nodes[v.index()].shape == node.shape,
                )
            })
            .filter(|&(o, _)| last_use[o] == i && !plan.persistent[plan.buffer_of[o]])
            .collect();
        let release = |plan: &MemoryPlan, free: &mut Vec<usize>, early: bool| {
            for &(o, in_place) in &dying {
                let b = plan.buffer_of[o];
                if in_place == early && !free.contains(&b) {
                    free.push(b);
                }
            }
        };
        release(&plan, &mut free, true);
        plan.buffer_of[i] = take_buffer(&mut plan, &mut free, size);
        release(&plan, &mut free, false);
        if last_use[i] == i {
            free.push(plan.buffer_of[i]);
        }
    }
    plan
}

fn new_buffer(plan: &mut MemoryPlan, size: usize, persistent: bool) -> usize {
    plan.sizes.push(size);
    plan.persistent.push(persistent);
    plan.sizes.len() - 1
}

fn take_buffer(plan: &mut MemoryPlan, free: &mut Vec<usize>, size: usize) -> usize {
    let fitting = free
        .iter()
        .enumerate()
        .filter(|(_, &b)| plan.sizes[b] >= size)
        .min_by_key(|(_, &b)| plan.sizes[b]);
    let pick = fitting.or_else(|| free.iter().enumerate().max_by_key(|(_, &b)| plan.sizes[b]));
    match pick.map(|(k, &b)| (k, b)) {
        Some((k, b)) => {
            free.swap_remove(k);
            plan.sizes[b] = plan.sizes[b].max(size);
            b
        }
        None => new_buffer(plan, size, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Unary;

    #[test]
    fn a_chain_ping_pongs_between_two_buffers_or_runs_in_place() {
        let mut g = TensorGraph::new();
        let x = g.input("x", [1000]);
        let mut v = x;
        for _ in 0..6 {
            v = g.unary(Unary::Exp, v).unwrap();
        }
        g.set_outputs(vec![v]).unwrap();
        let plan = plan_memory(&g);
        // One input buffer, and the whole chain in one buffer (in place).
        assert_eq!(plan.sizes, vec![1000, 1000]);
        assert!(plan.bytes() * 3 < unplanned_bytes(&g));
    }

    #[test]
    fn an_optimizer_step_updates_its_parameter_in_place() {
        let mut g = TensorGraph::new();
        let w = g.param("w", [8]);
        let x = g.input("x", [8]);
        let grad = g.mul(w, x).unwrap();
        let step = g.scale(grad, 0.1).unwrap();
        let new = g.sub(w, step).unwrap();
        g.add_update(w, new).unwrap();
        let plan = plan_memory(&g);
        assert_eq!(plan.buffer_of[new.index()], plan.buffer_of[w.index()]);
        // Not when the old value is still read later.
        let mut g2 = TensorGraph::new();
        let w = g2.param("w", [8]);
        let new = g2.scale(w, 0.5).unwrap();
        let later = g2.add(w, new).unwrap();
        g2.add_update(w, new).unwrap();
        g2.set_outputs(vec![later]).unwrap();
        let plan = plan_memory(&g2);
        assert_ne!(plan.buffer_of[new.index()], plan.buffer_of[w.index()]);
    }

    #[test]
    fn live_values_never_share_a_buffer() {
        let mut g = TensorGraph::new();
        let a = g.input("a", [4, 4]);
        let b = g.input("b", [4, 4]);
        let p = g.matmul(a, b).unwrap();
        let q = g.matmul(p, a).unwrap();
        let r = g.reshape(q, [16]).unwrap();
        let s = g.matmul(p, q).unwrap(); // p and q both live here
        let t = g.reshape(s, [16]).unwrap();
        let u = g.add(r, t).unwrap();
        g.set_outputs(vec![u]).unwrap();
        let plan = plan_memory(&g);
        let buf = |v: crate::Tensor| plan.buffer_of[v.index()];
        assert_ne!(buf(p), buf(q));
        assert_ne!(buf(s), buf(p));
        assert_ne!(buf(s), buf(q));
        assert_eq!(buf(r), buf(q), "a reshape shares its operand's buffer");
        assert!(
            buf(u) == buf(q) || buf(u) == buf(s) || buf(u) == buf(p),
            "the sum reuses a dead buffer"
        );
    }
}
