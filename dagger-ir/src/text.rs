//! The IR's text form: stable, line-oriented, meant for people and snapshot tests.
//!
//! ```text
//! graph(%0: String, %1: u64) -> (Vec<String>, usize) {
//!   task @wc::split(String, u64) -> Vec<String>  cost=1e-6 device=cpu pure
//!   task @wc::count(Vec<String>) -> usize
//!   %0 = input 0 : String  // doc
//!   %1 = input 1 : u64
//!   %2 = const #0 : u64  // 3
//!   %3 = call @wc::split(%0, %1) : Vec<String>  // w
//!   %4 = fused [@wc::a, @wc::b](%3) : usize
//!   return (%3, %4)
//! }
//! ```
//!
//! Nodes are numbered densely in [`topo_order`](crate::topo_order), so the
//! text of a graph does not depend on the ids its passes left behind. The task
//! table lists the tasks live nodes call, in table order, with their hints
//! when not the defaults. `#k` is host constant slot k; graph-file constants
//! print their JSON. A `// name` comment gives the node's label.

use crate::graph::{ConstValue, Cost, Device, Graph, NodeId, Op};
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// The text form of `g` (also what `Display` prints).
pub fn to_text(g: &Graph) -> String {
    let mut out = String::new();
    write_text(g, &mut out).expect("writing to a String cannot fail");
    out
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_text(self, f)
    }
}

fn write_text(g: &Graph, out: &mut impl fmt::Write) -> fmt::Result {
    // A cyclic graph has no topological order: print it in id order.
    let order = crate::topo_order(g).unwrap_or_else(|_| g.node_ids().collect());
    let number: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let name = |id: &NodeId| {
        number
            .get(id)
            .map_or_else(|| format!("%?{}", id.index()), |n| format!("%{n}"))
    };

    let inputs: Vec<String> = g
        .inputs()
        .iter()
        .map(|&i| format!("{}: {}", name(&i), g.output_type(i).unwrap_or("?")))
        .collect();
    let outputs: Vec<&str> = g
        .outputs()
        .iter()
        .map(|&o| g.output_type(o).unwrap_or("?"))
        .collect();
    writeln!(
        out,
        "graph({}) -> ({}) {{",
        inputs.join(", "),
        outputs.join(", ")
    )?;

    let used: BTreeSet<u32> = order
        .iter()
        .filter_map(|&id| g.node(id))
        .flat_map(|n| match &n.op {
            Op::Call(t) => vec![t.0],
            Op::Fused(ts) => ts.iter().map(|t| t.0).collect(),
            Op::Input { .. } | Op::Const { .. } => vec![],
        })
        .collect();
    for &t in &used {
        let sig = &g.tasks()[t as usize];
        write!(
            out,
            "  task @{}({}) -> {}",
            sig.name,
            sig.params.join(", "),
            sig.output
        )?;
        let mut hints = Vec::new();
        match sig.cost {
            Cost::Unknown => {}
            Cost::Seconds(s) => hints.push(format!("cost={s:e}")),
            Cost::Dynamic => hints.push("cost=dynamic".into()),
        }
        match sig.device {
            Device::Any => {}
            Device::Cpu => hints.push("device=cpu".into()),
            Device::Gpu => hints.push("device=gpu".into()),
        }
        if sig.pure {
            hints.push("pure".into());
        }
        if !hints.is_empty() {
            write!(out, "  {}", hints.join(" "))?;
        }
        writeln!(out)?;
    }

    for id in &order {
        let node = g.node(*id).expect("ordered nodes exist");
        let args: Vec<String> = g.args(*id).iter().map(|(_, p)| name(p)).collect();
        let ty = g.output_type(*id).unwrap_or("?");
        let body = match &node.op {
            Op::Input { index, .. } => format!("input {index}"),
            Op::Const {
                value: ConstValue::Host(slot),
                ..
            } => format!("const #{slot}"),
            Op::Const {
                value: ConstValue::Json(v),
                ..
            } => format!("const {v}"),
            Op::Call(t) => format!("call @{}({})", g.task(*t).name, args.join(", ")),
            Op::Fused(ts) => {
                let steps: Vec<String> =
                    ts.iter().map(|t| format!("@{}", g.task(*t).name)).collect();
                format!("fused [{}]({})", steps.join(", "), args.join(", "))
            }
        };
        write!(out, "  {} = {body} : {ty}", name(id))?;
        if let Some(label) = &node.label {
            write!(out, "  // {label}")?;
        }
        writeln!(out)?;
    }
    let outs: Vec<String> = g.outputs().iter().map(name).collect();
    if outs.len() == 1 {
        writeln!(out, "  return {}", outs[0])?;
    } else {
        writeln!(out, "  return ({})", outs.join(", "))?;
    }
    out.write_str("}\n")
}

#[cfg(test)]
mod tests {
    use crate::graph::{ConstValue, Cost, Device, Graph, Op, TaskSig};

    #[test]
    fn prints_the_documented_form() {
        let mut g = Graph::new();
        let split = g.intern_task(TaskSig {
            name: "wc::split".into(),
            params: vec!["String".into(), "u64".into()],
            output: "Vec<String>".into(),
            cost: Cost::Seconds(1e-6),
            device: Device::Cpu,
            pure: true,
        });
        let count = g.intern_task(TaskSig {
            name: "wc::count".into(),
            params: vec!["Vec<String>".into()],
            output: "usize".into(),
            cost: Cost::Unknown,
            device: Device::Any,
            pure: false,
        });
        let unused = g.intern_task(TaskSig {
            name: "wc::unused".into(),
            params: vec![],
            output: "()".into(),
            cost: Cost::Unknown,
            device: Device::Any,
            pure: false,
        });
        let _ = unused;
        let doc = g.add_input("String", Some("doc"));
        let n = g.add_input("u64", None);
        let three = g.add_const("u64", ConstValue::Host(0), Some("3"));
        let w = g.add_call(split, &[doc, n], Some("w"));
        let c = g.add_call(count, &[w], None);
        let j = g.add_const("u64", ConstValue::Json(42.into()), None);
        g.node_mut(c).unwrap().op = Op::Fused(vec![count]);
        g.set_outputs(vec![w, c]);
        let _ = (three, j);
        assert_eq!(
            g.to_string(),
            "graph(%0: String, %1: u64) -> (Vec<String>, usize) {
  task @wc::split(String, u64) -> Vec<String>  cost=1e-6 device=cpu pure
  task @wc::count(Vec<String>) -> usize
  %0 = input 0 : String  // doc
  %1 = input 1 : u64
  %2 = const #0 : u64  // 3
  %3 = call @wc::split(%0, %1) : Vec<String>  // w
  %4 = fused [@wc::count](%3) : usize
  %5 = const 42 : u64
  return (%3, %4)
}
"
        );
    }
}
