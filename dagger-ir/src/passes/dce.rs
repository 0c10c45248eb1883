//! Dead-node elimination.
//!
//! A node is dead when no graph output depends on it. Dead constants and dead
//! calls of `pure` tasks are removed; calls of impure tasks are effects (they
//! write files, send messages) and stay even when nothing reads their value.
//! Inputs are never removed: they are the graph's signature.

use crate::error::Result;
use crate::graph::{Graph, NodeId, Op};
use crate::pass::{PassCtx, Report};

/// Removes dead pure nodes (see the [module docs](self)).
pub fn dce(g: &mut Graph, _ctx: &PassCtx) -> Result<Report> {
    let bound = g.node_ids().map(|i| i.index() + 1).max().unwrap_or(0);
    let mut live = vec![false; bound];
    let mut stack: Vec<NodeId> = g.outputs().to_vec();
    // Effects are roots too: what they read must be computed.
    stack.extend(g.node_ids().filter(|&id| !removable(g, id)));
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut live[id.index()], true) {
            continue;
        }
        stack.extend(g.args(id).into_iter().map(|(_, p)| p));
    }
    let dead: Vec<NodeId> = g.node_ids().filter(|id| !live[id.index()]).collect();
    for &id in &dead {
        g.remove_node(id);
    }
    Ok(Report::new("dce", dead.len()))
}

/// Whether a node may be dropped when unused.
fn removable(g: &Graph, id: NodeId) -> bool {
    match g.node(id).map(|n| &n.op) {
        Some(Op::Const { .. }) => true,
        Some(Op::Call(t)) => g.task(*t).pure,
        Some(Op::Fused(ts)) => ts.iter().all(|t| g.task(*t).pure),
        Some(Op::Input { .. }) | None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{ConstValue, TaskSig};

    fn sig(name: &str, pure: bool) -> TaskSig {
        TaskSig {
            pure,
            ..TaskSig::new(name, &["u64"], "u64")
        }
    }

    #[test]
    fn drops_unused_pure_work_and_keeps_effects() {
        let mut g = Graph::new();
        let pure = g.intern_task(sig("t::pure", true));
        let effect = g.intern_task(sig("t::log", false));
        let x = g.add_input("u64", Some("x"));
        let c = g.add_const("u64", ConstValue::Json(1.into()), None);
        let used = g.add_call(pure, &[x], Some("used"));
        let unused = g.add_call(pure, &[c], Some("unused"));
        let unused2 = g.add_call(pure, &[unused], Some("unused2"));
        let logged = g.add_call(effect, &[x], Some("logged"));
        g.set_outputs(vec![used]);
        let r = dce(&mut g, &PassCtx::default()).unwrap();
        assert_eq!(r.changed, 3, "unused, unused2 and the constant go");
        assert!(g.node(unused).is_none() && g.node(unused2).is_none() && g.node(c).is_none());
        assert!(g.node(logged).is_some(), "an effect stays");
        assert!(g.node(x).is_some() && g.node(used).is_some());
        crate::verify(&g).unwrap();
    }
}
