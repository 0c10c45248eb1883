//! Graphviz export: `dot -Tsvg` draws a graph.
//!
//! Inputs are drawn as ellipses, constants as plain text, calls as boxes
//! (fused chains as double boxes), outputs with a bold border. An edge is
//! labelled with its argument position when its consumer takes more than one.

use crate::graph::{ConstValue, Graph, Op};
use std::fmt::Write as _;

/// The graph as a Graphviz `digraph`.
pub fn to_dot(g: &Graph) -> String {
    let mut out =
        String::from("digraph dagger {\n  rankdir=TB;\n  node [fontname=\"monospace\"];\n");
    for id in g.node_ids() {
        let node = g.node(id).expect("live node");
        let ty = g.output_type(id).unwrap_or("?");
        let (what, shape) = match &node.op {
            Op::Input { index, .. } => (format!("input {index}"), "ellipse"),
            Op::Const {
                value: ConstValue::Host(slot),
                ..
            } => (format!("const #{slot}"), "plaintext"),
            Op::Const {
                value: ConstValue::Json(v),
                ..
            } => (format!("const {v}"), "plaintext"),
            Op::Call(t) => (g.task(*t).name.clone(), "box"),
            Op::Fused(ts) => {
                let names: Vec<&str> = ts.iter().map(|t| g.task(*t).name.as_str()).collect();
                (names.join(" > "), "box3d")
            }
        };
        let mut label = match &node.label {
            Some(l) => format!("{l} = {what}"),
            None => what,
        };
        label.push_str("\\n: ");
        label.push_str(ty);
        let bold = if g.outputs().contains(&id) {
            ", penwidth=2"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  n{} [label={}, shape={shape}{bold}];",
            id.index(),
            quote(&label)
        );
    }
    for id in g.node_ids() {
        let args = g.args(id);
        for (port, producer) in &args {
            if args.len() > 1 {
                let _ = writeln!(
                    out,
                    "  n{} -> n{} [label=\"{}\"];",
                    producer.index(),
                    id.index(),
                    port.0
                );
            } else {
                let _ = writeln!(out, "  n{} -> n{};", producer.index(), id.index());
            }
        }
    }
    out.push_str("}\n");
    out
}

/// A Graphviz string literal (`\n` escapes are kept as line breaks).
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_every_node_and_edge() {
        let g = crate::from_json(
            r#"{"tasks": [{"name": "t::add", "params": ["u64", "u64"], "output": "u64"}],
                "inputs": [{"id": "x", "type": "u64"}],
                "nodes": [{"id": "s", "call": "t::add", "args": ["x", "x"]}],
                "outputs": ["s"]}"#,
        )
        .unwrap();
        let dot = super::to_dot(&g);
        assert!(dot.starts_with("digraph dagger {"));
        assert!(
            dot.contains("n0 [label=\"x = input 0\\n: u64\", shape=ellipse];"),
            "{dot}"
        );
        assert!(
            dot.contains("n1 [label=\"s = t::add\\n: u64\", shape=box, penwidth=2];"),
            "{dot}"
        );
        assert!(
            dot.contains("n0 -> n1 [label=\"0\"];") && dot.contains("n0 -> n1 [label=\"1\"];"),
            "{dot}"
        );
    }
}
