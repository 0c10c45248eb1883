//! The JSON graph file: hand-writable, and what `dagger ir` reads.
//!
//! ```json
//! {
//!   "tasks": [{"name": "wc::split", "params": ["String", "u64"], "output": "Vec<String>",
//!              "cost": {"seconds": 1e-6}, "device": "cpu", "pure": true}],
//!   "inputs": [{"id": "doc", "type": "String"}],
//!   "nodes": [
//!     {"id": "n", "const": 3, "type": "u64"},
//!     {"id": "w", "call": "wc::split", "args": ["doc", "n"]},
//!     {"id": "f", "fused": ["wc::a", "wc::b"], "args": ["w"]}
//!   ],
//!   "outputs": ["w"]
//! }
//! ```
//!
//! Ids are strings and become the nodes' labels; `args` name inputs or nodes
//! defined anywhere in the file. `cost`, `device` and `pure` are optional;
//! a cost is `"unknown"`, `"dynamic"` or `{"seconds": S}` with `S` finite
//! and not negative. Types are Rust type names (`Vec<String>`), and a
//! `"const"` must be readable as its `"type"` (`"hello"` is no `u64`).
//! A constant is either `"const": <JSON>` or `"host": <slot>` (a value held
//! by the program that built the graph). Reading a file verifies it: a cycle,
//! an unknown id, an unknown task, a wrong arity or a type mismatch is an
//! error naming the culprit.

use crate::error::{IrError, Result};
use crate::graph::{ConstValue, Graph, NodeId, Op, Port, TaskSig};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tasks: Vec<TaskSig>,
    #[serde(default)]
    inputs: Vec<InputEntry>,
    #[serde(default)]
    nodes: Vec<NodeEntry>,
    outputs: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputEntry {
    id: String,
    #[serde(rename = "type")]
    ty: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeEntry {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none", rename = "const")]
    constant: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "type")]
    ty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    call: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fused: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
}

/// Reads and verifies a graph file.
pub fn from_json(text: &str) -> Result<Graph> {
    let file: File = serde_json::from_str(text).map_err(|e| IrError::Json(e.to_string()))?;
    let mut g = Graph::new();
    let mut ids: HashMap<String, NodeId> = HashMap::new();
    let define = |ids: &mut HashMap<String, NodeId>, name: &str, id: NodeId| {
        if ids.insert(name.to_string(), id).is_some() {
            return Err(IrError::Duplicate {
                what: "node id",
                name: name.to_string(),
            });
        }
        Ok(())
    };
    for sig in file.tasks {
        if g.task_by_name(&sig.name).is_some() {
            return Err(IrError::Duplicate {
                what: "task",
                name: sig.name,
            });
        }
        g.intern_task(sig);
    }
    for input in &file.inputs {
        let id = g.add_input(input.ty.clone(), Some(&input.id));
        define(&mut ids, &input.id, id)?;
    }
    let mut pending = Vec::new();
    for n in &file.nodes {
        let malformed = |message: &str| IrError::Malformed {
            node: format!("`{}`", n.id),
            message: message.into(),
        };
        let task = |name: &str| {
            g.task_by_name(name).ok_or_else(|| IrError::UnknownTask {
                node: n.id.clone(),
                task: name.into(),
            })
        };
        let op = match (&n.constant, n.host, &n.call, &n.fused) {
            (Some(v), None, None, None) => Op::Const {
                ty: n
                    .ty
                    .clone()
                    .ok_or_else(|| malformed("a constant needs a \"type\""))?,
                value: ConstValue::Json(v.clone()),
            },
            (None, Some(slot), None, None) => Op::Const {
                ty: n
                    .ty
                    .clone()
                    .ok_or_else(|| malformed("a constant needs a \"type\""))?,
                value: ConstValue::Host(slot),
            },
            (None, None, Some(name), None) => Op::Call(task(name)?),
            (None, None, None, Some(names)) => {
                Op::Fused(names.iter().map(|s| task(s)).collect::<Result<_>>()?)
            }
            _ => {
                return Err(malformed(
                    "needs exactly one of \"const\", \"host\", \"call\" or \"fused\"",
                ))
            }
        };
        let id = g.add_node(crate::graph::Node {
            op,
            label: Some(n.id.as_str().into()),
        });
        define(&mut ids, &n.id, id)?;
        pending.push((id, &n.id, &n.args));
    }
    let lookup = |name: &str, context: String| {
        ids.get(name).copied().ok_or_else(|| IrError::UnknownNode {
            name: name.into(),
            context,
        })
    };
    for (id, name, args) in pending {
        for (port, arg) in args.iter().enumerate() {
            let from = lookup(arg, format!("node `{name}`"))?;
            g.add_edge(from, id, Port(port as u32));
        }
    }
    let outputs = file
        .outputs
        .iter()
        .map(|o| lookup(o, "\"outputs\"".into()))
        .collect::<Result<Vec<_>>>()?;
    g.set_outputs(outputs);
    crate::verify(&g)?;
    Ok(g)
}

/// Writes a graph file (pretty-printed). Nodes without a label get ids `n<k>`.
pub fn to_json(g: &Graph) -> String {
    let order = crate::topo_order(g).unwrap_or_else(|_| g.node_ids().collect());
    let mut names: HashMap<NodeId, String> = HashMap::new();
    let mut taken: HashSet<String> = HashSet::new();
    for (k, &id) in order.iter().enumerate() {
        let label = g.node(id).and_then(|n| n.label.as_deref());
        let name = match label {
            Some(l) if !taken.contains(l) => l.to_string(),
            _ => format!("n{k}"),
        };
        taken.insert(name.clone());
        names.insert(id, name);
    }
    let inputs = g
        .inputs()
        .iter()
        .map(|&i| InputEntry {
            id: names[&i].clone(),
            ty: g.output_type(i).unwrap_or("?").into(),
        })
        .collect();
    let nodes = order
        .iter()
        .filter_map(|&id| {
            let node = g.node(id)?;
            let mut e = NodeEntry {
                id: names[&id].clone(),
                constant: None,
                host: None,
                ty: None,
                call: None,
                fused: None,
                args: g.args(id).iter().map(|(_, p)| names[p].clone()).collect(),
            };
            match &node.op {
                Op::Input { .. } => return None,
                Op::Const { ty, value } => {
                    e.ty = Some(ty.clone());
                    match value {
                        ConstValue::Json(v) => e.constant = Some(v.clone()),
                        ConstValue::Host(s) => e.host = Some(*s),
                    }
                }
                Op::Call(t) => e.call = Some(g.task(*t).name.clone()),
                Op::Fused(ts) => {
                    e.fused = Some(ts.iter().map(|t| g.task(*t).name.clone()).collect())
                }
            }
            Some(e)
        })
        .collect();
    let file = File {
        tasks: g.tasks().to_vec(),
        inputs,
        nodes,
        outputs: g.outputs().iter().map(|o| names[o].clone()).collect(),
    };
    serde_json::to_string_pretty(&file).expect("graph files always serialise") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "tasks": [
            {"name": "wc::split", "params": ["String", "u64"], "output": "Vec<String>", "cost": {"seconds": 1e-6}, "device": "cpu", "pure": true},
            {"name": "wc::count", "params": ["Vec<String>"], "output": "usize"}
        ],
        "inputs": [{"id": "doc", "type": "String"}],
        "nodes": [
            {"id": "c", "call": "wc::count", "args": ["w"]},
            {"id": "n", "const": 3, "type": "u64"},
            {"id": "w", "call": "wc::split", "args": ["doc", "n"]}
        ],
        "outputs": ["c", "w"]
    }"#;

    #[test]
    fn reads_nodes_in_any_order_and_round_trips() {
        let g = from_json(GOOD).unwrap();
        let text = g.to_string();
        assert!(
            text.contains("%2 = call @wc::split(%0, %1) : Vec<String>  // w"),
            "{text}"
        );
        assert!(
            text.contains("%3 = call @wc::count(%2) : usize  // c"),
            "{text}"
        );
        let again = from_json(&to_json(&g)).unwrap();
        assert_eq!(again.to_string(), text);
    }

    fn err(json: &str) -> String {
        from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn rejects_bad_files_naming_the_culprit() {
        let cyclic = r#"{"tasks": [{"name": "t::inc", "params": ["u64"], "output": "u64"}],
            "nodes": [{"id": "a", "call": "t::inc", "args": ["c"]},
                      {"id": "b", "call": "t::inc", "args": ["a"]},
                      {"id": "c", "call": "t::inc", "args": ["b"]}],
            "outputs": ["c"]}"#;
        let e = err(cyclic);
        assert!(e.starts_with("graph has a cycle: "), "{e}");
        assert!(
            e.contains("`a`") && e.contains("`b`") && e.contains("`c`"),
            "{e}"
        );

        let mismatch = GOOD.replace(r#""args": ["w"]"#, r#""args": ["n"]"#);
        assert_eq!(
            err(&mismatch),
            "node `c`: argument 0 of `wc::count` must be Vec<String>, but `n` produces u64"
        );

        let arity = GOOD.replace(r#""args": ["doc", "n"]"#, r#""args": ["doc"]"#);
        assert_eq!(
            err(&arity),
            "node `w` calls `wc::split` with 1 arguments, but it takes 2"
        );

        let unknown = GOOD.replace(r#""args": ["w"]"#, r#""args": ["ww"]"#);
        assert_eq!(err(&unknown), "node `c` refers to unknown node `ww`");

        let task = GOOD.replace(r#""call": "wc::count""#, r#""call": "wc::cnt""#);
        assert_eq!(
            err(&task),
            "node `c` calls unknown task `wc::cnt` (not in the file's \"tasks\")"
        );

        let dup = GOOD.replace(r#""id": "n""#, r#""id": "w""#);
        assert_eq!(err(&dup), "duplicate node id `w`");

        let half = GOOD.replace(r#"{"seconds": 1e-6}"#, "0.5");
        let e = err(&half);
        assert!(
            e.contains(r#"a cost is "unknown", "dynamic" or {"seconds": S}, not 0.5"#)
                && e.contains("line 3"),
            "{e}"
        );
        let negative = GOOD.replace("1e-6", "-1");
        assert_eq!(
            err(&negative),
            "node `w`: calls `wc::split`, whose cost is -1 seconds (a cost is finite and not negative)"
        );
        let hello = GOOD.replace(r#""const": 3"#, r#""const": "hello""#);
        assert_eq!(
            err(&hello),
            "node `n`: the constant \"hello\" is not a u64: expected an integer from 0 to 18446744073709551615"
        );
        let nested = GOOD.replace(r#""output": "usize""#, r#""output": "Vec<<u64""#);
        assert!(
            err(&nested)
                .starts_with("node `c`: calls `wc::count`, whose output has type \"Vec<<u64\""),
            "{}",
            err(&nested)
        );
        let empty = GOOD.replace(r#""output": "usize""#, r#""output": """#);
        assert!(
            err(&empty).contains("a type cannot be empty"),
            "{}",
            err(&empty)
        );

        let e = err("{\"tasks\": [,]}");
        assert!(
            e.starts_with("malformed graph file: ") && e.contains("line 1 column"),
            "{e}"
        );
    }
}
