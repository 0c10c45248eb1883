//! Lowering a task graph of tensor ops (written in `dag!{}` with
//! [`ops`](super::ops)) to a [`TensorGraph`], where autodiff, fusion and
//! compilation apply.
//!
//! Every dag input becomes a tensor input or, when named in `params`, a
//! parameter, with the shape given for it; every op task becomes its IR op,
//! checked for shapes. Any other task of `Array`s returning an `Array`
//! becomes a [custom op](TensorOp::Custom), called by name when the
//! program runs and differentiated with the gradient task it declares
//! (`#[task(grad = ...)]`); its result's shape is found by running it once
//! on zeros when the graph is lowered. Anything else is an error that
//! names it.

use super::error::{Error, Result};
use super::ops::{op_named, OPS_PATH};
use super::Array;
use dagger_ir::graph::{Graph, Op};
use dagger_tensor::{call_custom, CustomOp, Shape, Tensor, TensorGraph, TensorOp};
use std::collections::HashMap;

/// The tensor graph of `graph`: `shapes` gives each dag input's shape, and
/// inputs named in `params` become parameters. Returns it with the graph's
/// outputs.
pub fn lower(
    graph: &Graph,
    shapes: &[(&str, Shape)],
    params: &[&str],
) -> Result<(TensorGraph, Vec<Tensor>)> {
    let mut g = TensorGraph::new();
    let mut of: HashMap<dagger_ir::NodeId, Tensor> = HashMap::new();
    for id in dagger_ir::topo_order(graph).map_err(Box::new)? {
        let node = graph.node(id).expect("ordered nodes exist");
        let shown = graph.display_name(id);
        let tensor = match &node.op {
            Op::Input { ty, .. } => {
                let name = node.label.as_deref().unwrap_or("").to_string();
                if ty != "Array" {
                    return Err(Error::Input {
                        name,
                        detail: format!("is {ty}, not Array"),
                    });
                }
                let shape = shapes
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, s)| s.clone())
                    .ok_or_else(|| Error::Input {
                        name: name.clone(),
                        detail: "no shape given for it".into(),
                    })?;
                if params.contains(&name.as_str()) {
                    g.param(&name, shape)
                } else {
                    g.input(&name, shape)
                }
            }
            Op::Const { .. } => {
                return Err(Error::NotAnOp {
                    node: shown,
                    detail: "a constant: pass it to the dag as an input instead".into(),
                })
            }
            Op::Call(t) => {
                let args: Vec<Tensor> = graph.args(id).iter().map(|(_, a)| of[a]).collect();
                apply(&mut g, &graph.task(*t).name, &args, &shown)?
            }
            Op::Fused(steps) => {
                let mut args: Vec<Tensor> = graph.args(id).iter().map(|(_, a)| of[a]).collect();
                for t in steps {
                    args = vec![apply(&mut g, &graph.task(*t).name, &args, &shown)?];
                }
                args[0]
            }
        };
        of.insert(id, tensor);
    }
    let outputs: Vec<Tensor> = graph.outputs().iter().map(|o| of[o]).collect();
    g.set_outputs(outputs.clone())?;
    Ok((g, outputs))
}

/// Adds the task `task` applied to `args`: an op of [`ops`](super::ops),
/// or a user task of arrays as a custom op.
fn apply(g: &mut TensorGraph, task: &str, args: &[Tensor], shown: &str) -> Result<Tensor> {
    let ranks: Vec<usize> = args.iter().map(|&a| g.shape(a).rank()).collect();
    if let Some(op) = task
        .strip_prefix(OPS_PATH)
        .and_then(|name| op_named(name, &ranks))
    {
        return Ok(g.apply(op, args, None)?);
    }
    let not_an_op = |detail: String| Error::NotAnOp {
        node: shown.to_string(),
        detail,
    };
    let def = dagger_runtime::task::lookup(task)
        .ok_or_else(|| not_an_op(format!("`{task}` is not a registered task")))?;
    let (params, output) = (def.signature)();
    if output != "Array" || params.iter().any(|p| p != "Array") {
        return Err(not_an_op(format!(
            "`{task}` ({} -> {output}) is neither a tensor op of dagger_nn::ops nor a task of Arrays returning an Array",
            params.join(", ")
        )));
    }
    let op = CustomOp {
        task: task.to_string(),
        grad: def.grad.map(|grad| grad().name.to_string()),
        output: None,
    };
    // The result's shape: the task run once on zeros of the operands' shapes.
    let zeros = args
        .iter()
        .map(|&a| Array::zeros(g.shape(a).clone()))
        .collect();
    let shape = Shape(call_custom(&op, zeros)?.shape);
    Ok(g.apply(TensorOp::Custom(op), args, Some(&shape))?)
}
