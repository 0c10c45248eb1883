//! Chain fusion: linear chains of cheap tasks become one node.
//!
//! Scheduling a task costs the runtime a few hundred nanoseconds; a chain of
//! tiny tasks pays that at every link while gaining nothing, because a chain
//! runs in sequence anyway. For an edge `a -> b` where `b` takes one
//! argument, `a` has no other user and is not an output, both want the same
//! device, and every task involved is estimated (by its cost hint) to take
//! less than [`PassCtx::fusion_threshold`], the two become one
//! [`Op::Fused`] node running `a`'s steps then `b`'s. One walk in
//! topological order fuses whole chains.

use crate::error::Result;
use crate::graph::{Device, Graph, NodeId, Op, TaskRef};
use crate::pass::{PassCtx, Report};

/// Fuses chains of cheap tasks (see the [module docs](self)).
pub fn fuse(g: &mut Graph, ctx: &PassCtx) -> Result<Report> {
    let order = crate::topo_order(g)?;
    let bound = order.iter().map(|id| id.index() + 1).max().unwrap_or(0);
    let mut users = vec![0usize; bound];
    for &id in &order {
        users[id.index()] = g.user_count(id);
    }
    let mut merged = 0;
    for b in order {
        let Some(b_steps) = steps(g, b) else { continue };
        let args = g.args(b);
        let [(_, a)] = args.as_slice() else { continue };
        let a = *a;
        let Some(a_steps) = steps(g, a) else { continue };
        let fusable = users[a.index()] == 1
            && !g.outputs().contains(&a)
            && device(g, &a_steps) == device(g, &b_steps)
            && device(g, &a_steps).is_some()
            && a_steps
                .iter()
                .chain(&b_steps)
                .all(|&t| cheap(g, t, ctx.fusion_threshold));
        if !fusable {
            continue;
        }
        let label = g.node(b).and_then(|n| n.label.clone());
        g.redirect_users(b, a);
        g.remove_node(b);
        users[a.index()] = users[b.index()];
        let node = g.node_mut(a).expect("producer exists");
        node.op = Op::Fused(a_steps.into_iter().chain(b_steps).collect());
        node.label = label;
        merged += 1;
    }
    Ok(Report::new("fuse", merged))
}

/// The tasks a call or fused node runs, in order.
fn steps(g: &Graph, id: NodeId) -> Option<Vec<TaskRef>> {
    match &g.node(id)?.op {
        Op::Call(t) => Some(vec![*t]),
        Op::Fused(ts) => Some(ts.clone()),
        Op::Input { .. } | Op::Const { .. } => None,
    }
}

/// The one device all `steps` ask for, if they agree.
fn device(g: &Graph, steps: &[TaskRef]) -> Option<Device> {
    let first = g.task(*steps.first()?).device;
    steps
        .iter()
        .all(|t| g.task(*t).device == first)
        .then_some(first)
}

fn cheap(g: &Graph, t: TaskRef, threshold: f64) -> bool {
    g.task(t).cost.seconds().is_some_and(|s| s < threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Cost, TaskSig};

    fn sig(name: &str, seconds: f64) -> TaskSig {
        TaskSig {
            cost: Cost::Seconds(seconds),
            ..TaskSig::new(name, &["u64"], "u64")
        }
    }

    #[test]
    fn a_chain_of_five_cheap_tasks_becomes_one_node() {
        let mut g = Graph::new();
        let inc = g.intern_task(sig("t::inc", 1e-7));
        let x = g.add_input("u64", None);
        let mut v = x;
        for i in 0..5 {
            v = g.add_call(inc, &[v], Some(&format!("s{i}")));
        }
        g.set_outputs(vec![v]);
        let r = fuse(&mut g, &PassCtx::default()).unwrap();
        assert_eq!(r.changed, 4);
        assert_eq!(g.node_count(), 2);
        let out = g.outputs()[0];
        assert_eq!(g.node(out).unwrap().op, Op::Fused(vec![inc; 5]));
        assert_eq!(g.node(out).unwrap().label.as_deref(), Some("s4"));
        crate::verify(&g).unwrap();
    }

    #[test]
    fn expensive_tasks_fan_outs_and_outputs_stop_fusion() {
        let mut g = Graph::new();
        let cheap = g.intern_task(sig("t::cheap", 1e-7));
        let slow = g.intern_task(sig("t::slow", 1.0));
        let x = g.add_input("u64", None);
        let a = g.add_call(cheap, &[x], None);
        let b = g.add_call(slow, &[a], None);
        let c = g.add_call(cheap, &[b], None);
        let d1 = g.add_call(cheap, &[c], None);
        let d2 = g.add_call(cheap, &[c], None);
        let e = g.add_call(cheap, &[d1], None);
        g.set_outputs(vec![e, d2, d1]);
        let r = fuse(&mut g, &PassCtx::default()).unwrap();
        assert_eq!(
            r.changed, 0,
            "slow breaks a-b-c, c fans out, d1 is an output"
        );
        assert_eq!(g.node_count(), 7);
    }
}
