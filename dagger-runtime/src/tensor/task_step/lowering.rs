//! The lowering itself: cutting the optimized graph into segments, each
//! segment's own tensor graph and task body, and the task graph joining
//! them (see the [module docs](super)).

use super::{LowerError, LowerOptions, SegmentInfo, StepFeed, TaskStep, Tensors};
use crate::builder::{GraphBuilder, Value};
use crate::datum::Datum;
use crate::task::{Body, TaskBody};
use crate::tensor::backend::{Backend, BackendError, CpuBackend, Executable};
use crate::tensor::program::CompileOptions;
use dagger_ir::tensor::{node_flops, Tensor, TensorGraph, TensorOp};
use dagger_ir::TaskSig;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a segment input comes from.
#[derive(Clone, Debug)]
enum Source {
    /// The step's feed, by name (an input, or a travelling parameter).
    Feed(String),
    /// Output `slot` of the segment passed as task argument `arg`.
    Segment { arg: usize, slot: usize },
}

/// A segment compiled: its executable and what feeds each of its inputs.
pub(super) struct Compiled {
    pub(super) exe: Mutex<Box<dyn Executable + Send>>,
    sources: Vec<(String, Source)>,
    outputs: usize,
}

/// Where a parameter's value lives between steps.
#[derive(Clone, Copy, Debug)]
pub(super) enum ParamHome {
    /// In this segment's executable.
    Resident(usize),
    /// In the step (it travels).
    Travelling,
}

/// The segment of each computed node (`None` for inputs, constants and
/// parameters): runs of consecutive nodes on one device, at most `max` long.
pub(super) fn cut(g: &TensorGraph, device_of: &[usize], max: usize) -> Vec<Option<usize>> {
    let mut segment_of = vec![None; g.nodes().len()];
    let (mut current, mut len, mut device) = (None::<usize>, 0, usize::MAX);
    let mut next = 0;
    for (i, node) in g.nodes().iter().enumerate() {
        if is_leaf(&node.op) {
            continue;
        }
        if current.is_none() || device_of[i] != device || len == max {
            current = Some(next);
            next += 1;
            len = 0;
            device = device_of[i];
        }
        segment_of[i] = current;
        len += 1;
    }
    segment_of
}

/// Inputs, constants and parameters: values no task computes.
fn is_leaf(op: &TensorOp) -> bool {
    matches!(
        op,
        TensorOp::Input { .. } | TensorOp::Const { .. } | TensorOp::Param { .. }
    )
}

/// The lowering of one optimized graph, cut into segments.
pub(super) struct Lowering<'a> {
    g: &'a TensorGraph,
    device_of: &'a [usize],
    segment_of: Vec<Option<usize>>,
    options: LowerOptions,
    /// Nodes needed outside their own segment (by other segments or as the
    /// step's results).
    escapes: Vec<bool>,
    /// Where each parameter lives.
    home: HashMap<usize, ParamHome>,
}

impl<'a> Lowering<'a> {
    pub(super) fn new(
        g: &'a TensorGraph,
        device_of: &'a [usize],
        segment_of: Vec<Option<usize>>,
        options: LowerOptions,
    ) -> Self {
        let n = g.nodes().len();
        let mut users = vec![Vec::new(); n];
        for (i, node) in g.nodes().iter().enumerate() {
            for a in &node.inputs {
                users[a.index()].push(i);
            }
        }
        let mut home = HashMap::new();
        for p in g.params() {
            let update: Option<usize> = g
                .updates()
                .iter()
                .find(|(q, _)| *q == p)
                .map(|(_, v)| v.index());
            let mut touched = users[p.index()]
                .iter()
                .chain(update.iter())
                .map(|&u| segment_of[u]);
            let first = touched.next().flatten();
            let one = first.filter(|s| touched.all(|t| t == Some(*s)));
            home.insert(
                p.index(),
                one.map_or(ParamHome::Travelling, ParamHome::Resident),
            );
        }
        let mut escapes = vec![false; n];
        for (i, us) in users.iter().enumerate() {
            escapes[i] =
                segment_of[i].is_some() && us.iter().any(|&u| segment_of[u] != segment_of[i]);
        }
        for &v in g.outputs() {
            escapes[v.index()] = true;
        }
        for (p, v) in g.updates() {
            if matches!(home[&p.index()], ParamHome::Travelling) {
                escapes[v.index()] = true;
            }
        }
        Lowering {
            g,
            device_of,
            segment_of,
            options,
            escapes,
            home,
        }
    }

    pub(super) fn build(self) -> Result<TaskStep, LowerError> {
        let g = self.g;
        let count = self.segment_of.iter().flatten().max().map_or(0, |s| s + 1);
        let mut members = vec![Vec::new(); count];
        for (i, s) in self.segment_of.iter().enumerate() {
            if let Some(s) = s {
                members[*s].push(i);
            }
        }
        let b = GraphBuilder::new();
        let feed = b.input::<StepFeed>("feed");
        // Each escaping node: its segment's task and its output slot there.
        let mut produced: HashMap<usize, (Value<Tensors>, usize)> = HashMap::new();
        let (mut segments, mut compiled) = (Vec::new(), Vec::new());
        for (k, nodes) in members.iter().enumerate() {
            let (sub, sources, producers, outs) = self.subgraph(k, nodes, &produced)?;
            let exe = CpuBackend {
                options: CompileOptions {
                    fuse: self.options.fuse,
                },
            }
            .compile(&sub)?;
            let seconds = nodes
                .iter()
                .map(|&i| node_flops(g, Tensor(i as u32)))
                .sum::<f64>()
                / self.options.flops_per_second;
            let name = segment_name(g, k, nodes);
            let segment = Arc::new(Compiled {
                exe: Mutex::new(Box::new(exe)),
                sources,
                outputs: outs.len(),
            });
            let mut args = vec![feed.id()];
            args.extend(producers.iter().map(|v| v.id()));
            let types = vec![dagger_ir::type_name::<Tensors>(); producers.len()];
            let mut params = vec![dagger_ir::type_name::<StepFeed>()];
            params.extend(types);
            let sig = TaskSig {
                params,
                ..TaskSig::new(&name, &[], dagger_ir::type_name::<Tensors>())
            };
            let task: Value<Tensors> = b.call_body(
                sig,
                TaskBody {
                    body: segment_body(segment.clone()),
                    seconds: Some(seconds),
                },
                &args,
            );
            for (slot, &v) in outs.iter().enumerate() {
                produced.insert(v, (task, slot));
            }
            segments.push(SegmentInfo {
                name,
                device: self.device_of[nodes[0]],
                nodes: nodes.clone(),
                seconds,
            });
            compiled.push(segment);
        }
        let updated: Vec<(String, usize)> = g
            .updates()
            .iter()
            .filter(|(p, _)| matches!(self.home[&p.index()], ParamHome::Travelling))
            .map(|(p, v)| (param_name(g, *p), v.index()))
            .collect();
        let results: Vec<usize> = g
            .outputs()
            .iter()
            .map(|v| v.index())
            .chain(updated.iter().map(|(_, v)| *v))
            .collect();
        let result = gather(&b, &results, &produced)?;
        let params = g
            .params()
            .into_iter()
            .map(|p| (param_name(g, p), self.home[&p.index()]))
            .collect();
        Ok(TaskStep {
            dag: b.finish(result),
            segments,
            compiled,
            params,
            travelling: HashMap::new(),
            outputs: g.outputs().len(),
            updated: updated.into_iter().map(|(name, _)| name).collect(),
        })
    }

    /// Segment `k`'s own tensor graph, where each of its inputs comes from,
    /// the tasks it takes values from (in argument order after the feed),
    /// and the nodes it outputs.
    #[allow(clippy::type_complexity)]
    fn subgraph(
        &self,
        k: usize,
        nodes: &[usize],
        produced: &HashMap<usize, (Value<Tensors>, usize)>,
    ) -> Result<
        (
            TensorGraph,
            Vec<(String, Source)>,
            Vec<Value<Tensors>>,
            Vec<usize>,
        ),
        LowerError,
    > {
        let g = self.g;
        let mut sub = TensorGraph::new();
        let mut map: HashMap<usize, Tensor> = HashMap::new();
        let mut sources = Vec::new();
        let mut producers: Vec<Value<Tensors>> = Vec::new();
        for &i in nodes {
            let node = g.node(Tensor(i as u32));
            let mut inputs = Vec::with_capacity(node.inputs.len());
            for a in &node.inputs {
                let v = match map.entry(a.index()) {
                    Entry::Occupied(known) => *known.get(),
                    Entry::Vacant(new) => *new.insert(self.operand(
                        &mut sub,
                        k,
                        *a,
                        produced,
                        &mut sources,
                        &mut producers,
                    )?),
                };
                inputs.push(v);
            }
            let v = sub
                .apply(node.op.clone(), &inputs, Some(&node.shape))
                .map_err(BackendError::from)?;
            map.insert(i, v);
        }
        for (p, v) in g.updates() {
            if matches!(self.home[&p.index()], ParamHome::Resident(s) if s == k) {
                sub.add_update(map[&p.index()], map[&v.index()])
                    .map_err(BackendError::from)?;
            }
        }
        let outs: Vec<usize> = nodes.iter().copied().filter(|&i| self.escapes[i]).collect();
        sub.set_outputs(outs.iter().map(|i| map[i]).collect())
            .map_err(BackendError::from)?;
        Ok((sub, sources, producers, outs))
    }

    /// Operand `a` of a node of segment `k`, as a value of `sub`.
    fn operand(
        &self,
        sub: &mut TensorGraph,
        k: usize,
        a: Tensor,
        produced: &HashMap<usize, (Value<Tensors>, usize)>,
        sources: &mut Vec<(String, Source)>,
        producers: &mut Vec<Value<Tensors>>,
    ) -> Result<Tensor, LowerError> {
        let node = self.g.node(a);
        let shape = node.shape.clone();
        let mut fed = |name: String, source: Source, sub: &mut TensorGraph| {
            sources.push((name.clone(), source));
            sub.input(&name, shape.clone())
        };
        Ok(match &node.op {
            TensorOp::Input { name } => fed(name.clone(), Source::Feed(name.clone()), sub),
            TensorOp::Param { name } => match self.home[&a.index()] {
                ParamHome::Resident(s) if s == k => sub.param(name, shape.clone()),
                _ => fed(name.clone(), Source::Feed(name.clone()), sub),
            },
            TensorOp::Const { .. } => sub
                .apply(node.op.clone(), &[], Some(&shape))
                .map_err(BackendError::from)?,
            _ => {
                let (task, slot) = produced[&a.index()];
                let arg = match producers.iter().position(|p| p.id() == task.id()) {
                    Some(at) => at,
                    None => {
                        producers.push(task);
                        producers.len() - 1
                    }
                } + 1;
                fed(
                    format!("%{}", a.index()),
                    Source::Segment { arg, slot },
                    sub,
                )
            }
        })
    }
}

/// `step.s<k>:` and the segment's first ops.
fn segment_name(g: &TensorGraph, k: usize, nodes: &[usize]) -> String {
    let ops: Vec<String> = nodes
        .iter()
        .take(3)
        .map(|&i| {
            let op = g.node(Tensor(i as u32)).op.to_string();
            op.split(['(', ' ']).next().unwrap_or("op").to_string()
        })
        .collect();
    let more = if nodes.len() > 3 { "+..." } else { "" };
    format!("step.s{k}:{}{more}", ops.join("+"))
}

fn param_name(g: &TensorGraph, p: Tensor) -> String {
    match &g.node(p).op {
        TensorOp::Param { name } => name.clone(),
        other => unreachable!("{other} is not a parameter"),
    }
}

/// The task body of a segment: feed, run, pass the outputs on.
fn segment_body(segment: Arc<Compiled>) -> Body {
    Arc::new(move |args: &mut [Option<Datum>]| {
        let read = |arg: usize| args[arg].as_ref();
        let feed = read(0)
            .and_then(|d| d.downcast_ref::<StepFeed>())
            .ok_or("the step's feed is missing")?;
        let mut exe = segment.exe.lock().unwrap_or_else(|p| p.into_inner());
        for (name, source) in &segment.sources {
            let data = match source {
                Source::Feed(key) => feed
                    .0
                    .get(key)
                    .ok_or_else(|| format!("`{key}` was not fed before the run"))?,
                Source::Segment { arg, slot } => read(*arg)
                    .and_then(|d| d.downcast_ref::<Tensors>())
                    .and_then(|t| t.0.get(*slot))
                    .ok_or("a segment's operand is missing")?,
            };
            exe.set(name, data).map_err(|e| e.to_string())?;
        }
        exe.run().map_err(|e| e.to_string())?;
        let outputs = (0..segment.outputs)
            .map(|k| exe.read_output(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Datum::new(Tensors(outputs)))
    })
}

/// The step's last task: gathers the values of `results` from the tasks
/// that produced them, in order.
fn gather(
    b: &GraphBuilder,
    results: &[usize],
    produced: &HashMap<usize, (Value<Tensors>, usize)>,
) -> Result<Value<Tensors>, LowerError> {
    let mut args: Vec<Value<Tensors>> = Vec::new();
    let mut picks = Vec::new();
    for v in results {
        let (task, slot) = *produced.get(v).ok_or_else(|| {
            LowerError::Unsupported(format!(
                "result %{v} is an input or parameter, not computed by the step"
            ))
        })?;
        let arg = match args.iter().position(|a| a.id() == task.id()) {
            Some(at) => at,
            None => {
                args.push(task);
                args.len() - 1
            }
        };
        picks.push((arg, slot));
    }
    let body: Body = Arc::new(move |inputs: &mut [Option<Datum>]| {
        let mut out = Vec::with_capacity(picks.len());
        for &(arg, slot) in &picks {
            let t = inputs[arg]
                .as_ref()
                .and_then(|d| d.downcast_ref::<Tensors>())
                .ok_or("a result is missing")?;
            out.push(t.0[slot].clone());
        }
        Ok(Datum::new(Tensors(out)))
    });
    let sig = TaskSig {
        params: vec![dagger_ir::type_name::<Tensors>(); args.len()],
        ..TaskSig::new("step.results", &[], dagger_ir::type_name::<Tensors>())
    };
    let ids: Vec<_> = args.iter().map(|a| a.id()).collect();
    Ok(b.call_body(
        sig,
        TaskBody {
            body,
            seconds: Some(0.0),
        },
        &ids,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagger_ir::tensor::{optimize, FuseOptions};

    /// `x -> tanh(x W1) W2 -> mse`, its gradients and SGD updates.
    fn two_layer_step() -> TensorGraph {
        let mut g = TensorGraph::new();
        let x = g.input("x", [4, 3]);
        let y = g.input("y", [4, 2]);
        let w1 = g.param("w1", [3, 5]);
        let w2 = g.param("w2", [5, 2]);
        let h = g.matmul(x, w1).unwrap();
        let h = g.unary(dagger_ir::tensor::Unary::Tanh, h).unwrap();
        let out = g.matmul(h, w2).unwrap();
        let loss = g.mse(out, y).unwrap();
        let grads = dagger_ir::tensor::autodiff::append_grad(&mut g, loss, &[w1, w2]).unwrap();
        for (w, dw) in [w1, w2].into_iter().zip(grads) {
            let step = g.scale(dw, 0.1).unwrap();
            let new = g.sub(w, step).unwrap();
            g.add_update(w, new).unwrap();
        }
        g.set_outputs(vec![loss]).unwrap();
        g
    }

    #[test]
    fn one_segment_per_node_cuts_runs_and_names_them() {
        let g = two_layer_step();
        let (opt, _) = optimize(&g, FuseOptions::default());
        let devices = vec![0; opt.nodes().len()];
        let per_node = cut(&opt, &devices, 1);
        let computed = opt.nodes().iter().filter(|n| !is_leaf(&n.op)).count();
        assert_eq!(per_node.iter().flatten().max(), Some(&(computed - 1)));
        let whole = cut(&opt, &devices, usize::MAX);
        assert!(whole.iter().flatten().all(|&s| s == 0));
        // A change of device starts a segment.
        let alternating: Vec<usize> = (0..opt.nodes().len()).map(|i| i % 2).collect();
        let cut_by_device = cut(&opt, &alternating, usize::MAX);
        for (i, s) in cut_by_device.iter().enumerate() {
            if let Some(s) = s {
                let same = (0..i).filter(|&j| cut_by_device[j] == Some(*s));
                assert!(same.into_iter().all(|j| alternating[j] == alternating[i]));
            }
        }
    }
}
