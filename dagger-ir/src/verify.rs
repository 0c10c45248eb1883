//! The verifier: is a graph well formed?
//!
//! [`verify`] checks that the graph is acyclic (and names a cycle when it is
//! not), that every call has exactly one argument per parameter, that every
//! argument has its parameter's type, that fused chains fit together, and
//! that inputs, constants and outputs are what they claim: every type name
//! reads as a type, a graph file's constant fits its declared type, and a
//! task's cost is finite and not negative. Every pass keeps
//! these properties; the pass manager can re-check them after each pass.

use crate::cycle::walk_back;
use crate::error::{IrError, Result};
use crate::graph::{ConstValue, Cost, Graph, NodeId, Op, TaskRef, TaskSig};
use crate::types::{check_constant, check_type_name};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A deterministic topological order (Kahn's algorithm, smallest ready id
/// first), or the cycle that prevents one.
pub fn topo_order(g: &Graph) -> Result<Vec<NodeId>> {
    let bound = g
        .petgraph()
        .node_indices()
        .map(|i| i.index() + 1)
        .max()
        .unwrap_or(0);
    let mut indegree = vec![0usize; bound];
    for id in g.node_ids() {
        indegree[id.index()] = g.args(id).len();
    }
    let mut ready: BinaryHeap<Reverse<usize>> = g
        .node_ids()
        .filter(|id| indegree[id.index()] == 0)
        .map(|id| Reverse(id.index()))
        .collect();
    let mut order = Vec::with_capacity(g.node_count());
    while let Some(Reverse(i)) = ready.pop() {
        let id = NodeId::new(i);
        order.push(id);
        for (user, _) in g.users(id) {
            indegree[user.index()] -= 1;
            if indegree[user.index()] == 0 {
                ready.push(Reverse(user.index()));
            }
        }
    }
    if order.len() < g.node_count() {
        return Err(IrError::Cycle {
            path: find_cycle(g, &indegree),
        });
    }
    Ok(order)
}

/// A cycle among the nodes left with unsatisfied arguments, by name (see
/// [`crate::cycle`]).
fn find_cycle(g: &Graph, indegree: &[usize]) -> Vec<String> {
    let start = g
        .node_ids()
        .find(|id| indegree[id.index()] > 0)
        .expect("a node is left over when there is a cycle");
    let cycle = walk_back(start.index(), indegree.len(), |at| {
        g.args(NodeId::new(at))
            .into_iter()
            .map(|(_, p)| p.index())
            .find(|&p| indegree[p] > 0)
            .expect("a node on a cycle has a producer on it")
    });
    cycle
        .into_iter()
        .map(|n| g.display_name(NodeId::new(n)))
        .collect()
}

/// Checks that `g` is well formed (see the [module docs](self)).
pub fn verify(g: &Graph) -> Result<()> {
    topo_order(g)?;
    for (t, sig) in g.tasks().iter().enumerate() {
        if let Err(message) = check_task(sig) {
            let caller = g.node_ids().find(|&id| {
                g.node(id).is_some_and(|n| match &n.op {
                    Op::Call(r) => r.0 as usize == t,
                    Op::Fused(rs) => rs.contains(&TaskRef(t as u32)),
                    _ => false,
                })
            });
            return Err(match caller {
                Some(id) => IrError::Malformed {
                    node: g.display_name(id),
                    message: format!("calls `{}`, whose {message}", sig.name),
                },
                None => IrError::BadTask {
                    task: sig.name.clone(),
                    message,
                },
            });
        }
    }
    for id in g.node_ids() {
        verify_node(g, id)?;
    }
    for (i, &input) in g.inputs().iter().enumerate() {
        match g.node(input).map(|n| &n.op) {
            Some(Op::Input { index, .. }) if *index as usize == i => {}
            _ => {
                return Err(IrError::Malformed {
                    node: g.display_name(input),
                    message: format!("is listed as input {i} but is not `input {i}`"),
                })
            }
        }
    }
    for &o in g.outputs() {
        if g.node(o).is_none() {
            return Err(IrError::Malformed {
                node: format!("%{}", o.index()),
                message: "is an output but does not exist".into(),
            });
        }
    }
    Ok(())
}

/// What is wrong with a task's signature: a type that does not read as a
/// type, or a cost that is negative or not finite.
fn check_task(sig: &TaskSig) -> std::result::Result<(), String> {
    if let Cost::Seconds(s) = sig.cost {
        if !(s.is_finite() && s >= 0.0) {
            return Err(format!(
                "cost is {s} seconds (a cost is finite and not negative)"
            ));
        }
    }
    for (i, p) in sig.params.iter().enumerate() {
        check_type_name(p).map_err(|e| format!("parameter {i} has type {p:?}: {e}"))?;
    }
    check_type_name(&sig.output).map_err(|e| format!("output has type {:?}: {e}", sig.output))
}

fn verify_node(g: &Graph, id: NodeId) -> Result<()> {
    let node = g.node(id).expect("node_ids yields live nodes");
    let args = g.args(id);
    let steps = match &node.op {
        Op::Input { ty, .. } | Op::Const { ty, .. } => {
            let malformed = |message| IrError::Malformed {
                node: g.display_name(id),
                message,
            };
            check_type_name(ty).map_err(|e| malformed(format!("has type {ty:?}: {e}")))?;
            if let Op::Const {
                value: ConstValue::Json(v),
                ..
            } = &node.op
            {
                check_constant(v, ty).map_err(|e| malformed(format!("the constant {e}")))?;
            }
            if !args.is_empty() {
                return Err(IrError::Malformed {
                    node: g.display_name(id),
                    message: "an input or constant cannot take arguments".into(),
                });
            }
            if let Op::Input { index, .. } = node.op {
                if g.inputs().get(index as usize) != Some(&id) {
                    return Err(IrError::Malformed {
                        node: g.display_name(id),
                        message: format!("is `input {index}` but not the graph's input {index}"),
                    });
                }
            }
            return Ok(());
        }
        Op::Call(t) => std::slice::from_ref(t),
        Op::Fused(ts) => ts.as_slice(),
    };
    let Some(&first) = steps.first() else {
        return Err(IrError::Malformed {
            node: g.display_name(id),
            message: "a fused node needs at least one task".into(),
        });
    };
    for &t in steps {
        if t.0 as usize >= g.tasks().len() {
            return Err(IrError::Malformed {
                node: g.display_name(id),
                message: format!("refers to task #{} missing from the task table", t.0),
            });
        }
    }
    let sig = g.task(first);
    if args.len() != sig.params.len() {
        return Err(IrError::Arity {
            node: g.display_name(id),
            task: sig.name.clone(),
            expected: sig.params.len(),
            found: args.len(),
        });
    }
    for (expected_port, &(port, producer)) in args.iter().enumerate() {
        if port.0 as usize != expected_port {
            let (port, problem) = if (port.0 as usize) < expected_port {
                (port.0, "given twice")
            } else {
                (expected_port as u32, "missing")
            };
            return Err(IrError::BadArgument {
                node: g.display_name(id),
                task: sig.name.clone(),
                port,
                problem,
            });
        }
        let found = g.output_type(producer).unwrap_or("?");
        let expected = &sig.params[expected_port];
        if found != expected {
            return Err(IrError::TypeMismatch {
                node: g.display_name(id),
                task: sig.name.clone(),
                port: port.0,
                expected: expected.clone(),
                found: found.to_string(),
                producer: g.display_name(producer),
            });
        }
    }
    for pair in steps.windows(2) {
        let (prev, next) = (g.task(pair[0]), g.task(pair[1]));
        if next.params.len() != 1 || next.params[0] != prev.output {
            return Err(IrError::Malformed {
                node: g.display_name(id),
                message: format!(
                    "fused step `{}` ({}) cannot take the {} that `{}` produces",
                    next.name,
                    next.params.join(", "),
                    prev.output,
                    prev.name
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{ConstValue, Port, TaskSig};

    fn sig(name: &str, params: &[&str], output: &str) -> TaskSig {
        TaskSig::new(name, params, output)
    }

    #[test]
    fn topo_order_is_deterministic_and_cycles_are_named() {
        let mut g = Graph::new();
        let inc = g.intern_task(sig("t::inc", &["u64"], "u64"));
        let x = g.add_input("u64", Some("x"));
        let a = g.add_call(inc, &[x], Some("a"));
        let b = g.add_call(inc, &[x], Some("b"));
        assert_eq!(topo_order(&g).unwrap(), vec![x, a, b]);
        // Close a cycle a -> c -> a by hand.
        let c = g.add_call(inc, &[a], Some("c"));
        g.add_edge(c, a, Port(1));
        match topo_order(&g) {
            Err(IrError::Cycle { path }) => {
                assert_eq!(path.first(), path.last());
                assert!(
                    path.contains(&"`a`".to_string()) && path.contains(&"`c`".to_string()),
                    "{path:?}"
                );
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
        let _ = b;
    }

    #[test]
    fn a_long_cycle_is_named_by_its_first_nodes_and_its_length() {
        let mut g = Graph::new();
        let inc = g.intern_task(sig("t::inc", &["u64"], "u64"));
        let first = g.add_call(inc, &[], Some("c0"));
        let mut last = first;
        for k in 1..100_000 {
            last = g.add_call(inc, &[last], Some(&format!("c{k}")));
        }
        g.add_edge(last, first, Port(0));
        let e = verify(&g).unwrap_err();
        let IrError::Cycle { path } = &e else {
            panic!("expected a cycle, got {e:?}");
        };
        assert_eq!(path.len(), 100_001);
        let message = e.to_string();
        assert!(message.len() < 300, "{} bytes: {message}", message.len());
        assert!(
            message.starts_with("graph has a cycle: `c")
                && message.contains("(100000 nodes, the first 8 shown)"),
            "{message}"
        );
        assert_eq!(message.matches("`c").count(), 8, "{message}");
    }

    #[test]
    fn bad_costs_types_and_constants_are_refused_naming_the_node() {
        let refuse = |g: &Graph, want: &str| {
            let e = verify(g).unwrap_err().to_string();
            assert!(e.contains(want), "expected {want:?} in: {e}");
        };
        let mut g = Graph::new();
        let inc = g.intern_task(TaskSig {
            cost: Cost::Seconds(-1.0),
            ..sig("t::inc", &["u64"], "u64")
        });
        let x = g.add_input("u64", Some("x"));
        let y = g.add_call(inc, &[x], Some("y"));
        g.set_outputs(vec![y]);
        refuse(
            &g,
            "node `y`: calls `t::inc`, whose cost is -1 seconds (a cost is finite and not negative)",
        );
        g.tasks[0].cost = Cost::Seconds(0.5);
        verify(&g).unwrap();

        g.tasks[0].output = String::new();
        refuse(
            &g,
            "node `y`: calls `t::inc`, whose output has type \"\": a type cannot be empty",
        );
        g.tasks[0].output = "u64".into();
        g.tasks[0].params[0] = "Vec<<u64".into();
        refuse(
            &g,
            "node `y`: calls `t::inc`, whose parameter 0 has type \"Vec<<u64\"",
        );
        g.tasks[0].params[0] = "u64".into();

        g.intern_task(TaskSig {
            cost: Cost::Seconds(f64::NAN),
            ..sig("t::unused", &[], "u64")
        });
        refuse(&g, "task `t::unused`: its cost is NaN seconds");
        g.tasks[1].cost = Cost::Unknown;

        let bad_input = g.add_input("Vec<u64", Some("v"));
        refuse(
            &g,
            "node `v`: has type \"Vec<u64\": the `<` at byte 3 is never closed",
        );
        g.remove_node(bad_input);

        let hello = g.add_const("u64", ConstValue::Json("hello".into()), Some("h"));
        refuse(
            &g,
            "node `h`: the constant \"hello\" is not a u64: expected an integer from 0 to",
        );
        g.remove_node(hello);
        g.add_const("u64", ConstValue::Json(7.into()), Some("seven"));
        g.add_const("u64", ConstValue::Host(0), Some("held"));
        verify(&g).unwrap();
    }

    #[test]
    fn arity_ports_and_types_are_checked() {
        let mut g = Graph::new();
        let add = g.intern_task(sig("t::add", &["u64", "u64"], "u64"));
        let shout = g.intern_task(sig("t::shout", &["String"], "String"));
        let x = g.add_input("u64", Some("x"));
        let s = g.add_const("String", ConstValue::Json("hi".into()), Some("s"));
        let one = g.add_call(add, &[x], Some("one"));
        assert!(matches!(
            verify(&g),
            Err(IrError::Arity {
                expected: 2,
                found: 1,
                ..
            })
        ));
        g.remove_node(one);

        let wrong = g.add_call(shout, &[x], Some("wrong"));
        let e = verify(&g).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `wrong`: argument 0 of `t::shout` must be String, but `x` produces u64"
        );
        g.remove_node(wrong);

        let twice = g.add_call(add, &[], Some("twice"));
        g.add_edge(x, twice, Port(0));
        g.add_edge(x, twice, Port(0));
        assert!(
            matches!(
                verify(&g),
                Err(IrError::BadArgument {
                    problem: "given twice",
                    ..
                })
            ),
            "{:?}",
            verify(&g)
        );
        g.remove_node(twice);

        let ok = g.add_call(shout, &[s], None);
        g.set_outputs(vec![ok]);
        verify(&g).unwrap();
    }
}
