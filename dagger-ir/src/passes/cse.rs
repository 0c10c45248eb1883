//! Common-subexpression elimination.
//!
//! Two calls of the same `pure` task on the same arguments (the same
//! producers on the same ports) compute the same value: the later one (in
//! topological order) is removed and its users read the earlier one. Since
//! merging two nodes can make their users identical, one walk in topological
//! order merges whole duplicated chains. Graph-file constants of equal type
//! and value merge too; host constants never do (their values are opaque).

use crate::error::Result;
use crate::graph::{ConstValue, Graph, NodeId, Op};
use crate::pass::{PassCtx, Report};
use std::collections::HashMap;

/// What identifies a node's value.
#[derive(PartialEq, Eq, Hash)]
enum Key {
    Call(Vec<u32>, Vec<NodeId>),
    Const(String, String),
}

/// Merges duplicate pure calls and equal constants (see the [module docs](self)).
pub fn cse(g: &mut Graph, _ctx: &PassCtx) -> Result<Report> {
    let order = crate::topo_order(g)?;
    let mut seen: HashMap<Key, NodeId> = HashMap::new();
    let mut merged = 0;
    for id in order {
        let Some(key) = key(g, id) else { continue };
        match seen.get(&key) {
            Some(&first) => {
                g.redirect_users(id, first);
                g.remove_node(id);
                merged += 1;
            }
            None => {
                seen.insert(key, id);
            }
        }
    }
    Ok(Report::new("cse", merged))
}

fn key(g: &Graph, id: NodeId) -> Option<Key> {
    let node = g.node(id)?;
    let tasks = match &node.op {
        Op::Call(t) => vec![*t],
        Op::Fused(ts) => ts.clone(),
        Op::Const {
            ty,
            value: ConstValue::Json(v),
        } => return Some(Key::Const(ty.clone(), v.to_string())),
        Op::Const {
            value: ConstValue::Host(_),
            ..
        }
        | Op::Input { .. } => return None,
    };
    if !tasks.iter().all(|t| g.task(*t).pure) {
        return None;
    }
    let args = g.args(id).into_iter().map(|(_, p)| p).collect();
    Some(Key::Call(tasks.iter().map(|t| t.0).collect(), args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::TaskSig;

    fn sig(name: &str, params: usize, pure: bool) -> TaskSig {
        TaskSig {
            pure,
            ..TaskSig::new(name, &vec!["u64"; params], "u64")
        }
    }

    #[test]
    fn merges_duplicate_chains_and_keeps_different_arguments_apart() {
        let mut g = Graph::new();
        let f = g.intern_task(sig("t::f", 1, true));
        let add = g.intern_task(sig("t::add", 2, true));
        let x = g.add_input("u64", Some("x"));
        let y = g.add_input("u64", Some("y"));
        let a1 = g.add_call(f, &[x], None);
        let a2 = g.add_call(f, &[x], None);
        let b1 = g.add_call(f, &[a1], None);
        let b2 = g.add_call(f, &[a2], None);
        let other = g.add_call(f, &[y], None);
        let s = g.add_call(add, &[b1, b2], None);
        let swapped = g.add_call(add, &[other, b1], None);
        let swapped2 = g.add_call(add, &[b1, other], None);
        g.set_outputs(vec![s, b2, swapped, swapped2]);
        let r = cse(&mut g, &PassCtx::default()).unwrap();
        assert_eq!(r.changed, 2, "a2 and b2 merge into a1 and b1");
        assert_eq!(g.outputs(), &[s, b1, swapped, swapped2]);
        assert_eq!(
            g.args(s).iter().map(|a| a.1).collect::<Vec<_>>(),
            vec![b1, b1]
        );
        assert!(g.node(other).is_some(), "a call on other arguments stays");
        crate::verify(&g).unwrap();
    }

    #[test]
    fn leaves_impure_calls_alone() {
        let mut g = Graph::new();
        let f = g.intern_task(sig("t::io", 1, false));
        let x = g.add_input("u64", None);
        let a = g.add_call(f, &[x], None);
        let b = g.add_call(f, &[x], None);
        g.set_outputs(vec![a, b]);
        assert_eq!(cse(&mut g, &PassCtx::default()).unwrap().changed, 0);
    }
}
