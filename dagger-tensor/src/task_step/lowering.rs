//! The lowering itself: cutting the optimized graph into segments, each
//! segment's own tensor graph (once per worker of the data x tensor grid),
//! the all-reduce tasks between workers, and the task graph joining them
//! (see the [module docs](super)).

use super::bodies::{self, Compiled, Source};
use super::cut::is_all_reduce;
use super::{
    LowerError, LowerOptions, SegmentInfo, SegmentPlace, StepFeed, Target, TaskStep, Tensors,
};
use crate::backend::BackendError;
use crate::{node_flops, streamed_bytes, ParallelGroup, Tensor, TensorGraph, TensorOp};
use dagger_ir::{NodeId, TaskSig};
use dagger_runtime::builder::{GraphBuilder, Value};
use dagger_runtime::task::{Body, TaskBody};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a parameter's value lives between steps.
#[derive(Clone, Copy, Debug)]
pub(super) enum ParamHome {
    /// In this segment's executable (in each replica).
    Resident(usize),
    /// In the step (it travels).
    Travelling,
}

/// What is built in topological order: a segment (in every replica), or an
/// all-reduce node.
enum Unit {
    Segment(usize),
    AllReduce(usize),
}

/// A value's task and output slot, by replica and node.
type Produced = HashMap<(usize, usize), (Value<Tensors>, usize)>;

/// The lowering of one optimized graph, cut into segments.
pub(super) struct Lowering<'a> {
    g: &'a TensorGraph,
    /// The order segments were cut in (see [`cut_order`]).
    order: &'a [usize],
    device_of: &'a [usize],
    segment_of: Vec<Option<usize>>,
    options: LowerOptions,
    /// What the segments compile for.
    target: Target<'a>,
    /// Nodes needed outside their own segment (by other tasks or as the
    /// step's results).
    escapes: Vec<bool>,
    /// Where each parameter lives.
    home: HashMap<usize, ParamHome>,
}

impl<'a> Lowering<'a> {
    pub(super) fn new(
        g: &'a TensorGraph,
        order: &'a [usize],
        device_of: &'a [usize],
        segment_of: Vec<Option<usize>>,
        options: LowerOptions,
        target: Target<'a>,
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
            order,
            device_of,
            segment_of,
            options,
            target,
            escapes,
            home,
        }
    }

    pub(super) fn build(self) -> Result<TaskStep, LowerError> {
        let g = self.g;
        let count = self.segment_of.iter().flatten().max().map_or(0, |s| s + 1);
        let mut members = vec![Vec::new(); count];
        let mut units = Vec::new();
        for &i in self.order {
            match self.segment_of[i] {
                Some(s) => {
                    if members[s].is_empty() {
                        units.push(Unit::Segment(s));
                    }
                    members[s].push(i);
                }
                None if is_all_reduce(&g.nodes()[i].op) => units.push(Unit::AllReduce(i)),
                None => {}
            }
        }
        let b = GraphBuilder::new();
        let feed = b.input::<StepFeed>("feed");
        let mut produced = Produced::new();
        let workers = self.options.workers();
        let mut segments = Vec::new();
        let mut product_shares = HashMap::new();
        let mut compiled = vec![Vec::new(); workers];
        for unit in units {
            match unit {
                Unit::Segment(k) => {
                    for (w, of_worker) in compiled.iter_mut().enumerate() {
                        let (info, segment) =
                            self.segment(&b, feed.id(), k, w, &members[k], &mut produced)?;
                        let share = if info.seconds > 0.0 {
                            info.product_seconds / info.seconds
                        } else {
                            0.0
                        };
                        product_shares.insert(info.name.clone(), share);
                        if w == 0 {
                            segments.push(info);
                        }
                        of_worker.push(segment);
                    }
                }
                Unit::AllReduce(v) => self.all_reduce(&b, v, &mut produced)?,
            }
        }
        let travelling_updates: Vec<(String, usize)> = g
            .updates()
            .iter()
            .filter(|(p, _)| matches!(self.home[&p.index()], ParamHome::Travelling))
            .map(|(p, v)| (param_name(g, *p), v.index()))
            .collect();
        // Worker 0's outputs (every worker's are equal after the
        // all-reduces), then each worker's travelling parameters' new values.
        let mut results: Vec<(usize, usize)> = g.outputs().iter().map(|v| (0, v.index())).collect();
        let mut updated = Vec::new();
        for w in 0..workers {
            for (name, v) in &travelling_updates {
                results.push((w, *v));
                updated.push(param_key(name, w, workers));
            }
        }
        let result = gather(&b, &results, &produced)?;
        let params = g
            .params()
            .into_iter()
            .map(|p| (param_name(g, p), self.home[&p.index()]))
            .collect();
        let inputs = g
            .nodes()
            .iter()
            .filter_map(|n| match &n.op {
                TensorOp::Input { name } => Some(name.clone()),
                _ => None,
            })
            .collect();
        Ok(TaskStep {
            dag: b.finish(result),
            segments,
            product_shares,
            compiled,
            params,
            inputs,
            travelling: HashMap::new(),
            outputs: g.outputs().len(),
            updated,
            data: self.options.data,
            travelling_bytes: g
                .params()
                .into_iter()
                .filter(|p| matches!(self.home[&p.index()], ParamHome::Travelling))
                .map(|p| g.shape(p).numel() * 4)
                .sum(),
        })
    }

    /// Segment `k` of worker `w`: compiled, and added to the task graph.
    fn segment(
        &self,
        b: &GraphBuilder,
        feed: NodeId,
        k: usize,
        w: usize,
        nodes: &[usize],
        produced: &mut Produced,
    ) -> Result<(SegmentInfo, Arc<Compiled>), LowerError> {
        let g = self.g;
        let (sub, sources, producers, outs) = self.subgraph(k, w, nodes, produced)?;
        let place = SegmentPlace {
            worker: w,
            device: self.device_of[nodes[0]],
            devices: self.target.devices,
        };
        let backend = self.target.backend;
        let exe = backend.compile_at(place, &sub, self.options.fuse)?;
        let planned_bytes = exe.stats().planned_bytes;
        // Its products' work; the bytes its other nodes stream and the
        // copies of its operands in and its outputs out; what running a
        // task costs.
        let copied: usize = sub
            .nodes()
            .iter()
            .filter(|n| matches!(n.op, TensorOp::Input { .. }))
            .chain(sub.outputs().iter().map(|&v| sub.node(v)))
            .map(|n| n.shape.numel() * 4)
            .sum();
        let options = &self.options;
        let (mut flops, mut streamed) = (0.0, 0u64);
        for v in nodes.iter().map(|&i| Tensor(i as u32)) {
            if matches!(g.node(v).op, TensorOp::MatMul { .. }) {
                flops += node_flops(g, v);
            }
            streamed += streamed_bytes(g, v);
        }
        let product_seconds = flops / options.flops_per_second;
        let seconds = product_seconds
            + streamed as f64 / options.stream_bytes_per_second
            + copied as f64 / options.copy_bytes_per_second
            + options.task_seconds;
        let name = self.segment_name(k, w, nodes);
        let segment = Arc::new(Compiled {
            exe: Mutex::new(exe),
            sources,
            outputs: outs.len(),
        });
        let mut args = vec![feed];
        args.extend(producers.iter().map(|v| v.id()));
        let task = call(
            b,
            &name,
            Some(dagger_ir::type_name::<StepFeed>()),
            bodies::segment(segment.clone()),
            seconds,
            &args,
        );
        for (slot, &v) in outs.iter().enumerate() {
            produced.insert((w, v), (task, slot));
        }
        let info = SegmentInfo {
            name,
            device: place.device,
            backend: backend.name_at(place),
            nodes: nodes.to_vec(),
            seconds,
            product_seconds,
            flops,
            streamed_bytes: streamed as usize,
            copied_bytes: copied,
            planned_bytes,
        };
        Ok((info, segment))
    }

    /// All-reduce node `v`: for each of its groups (a data-parallel one
    /// per shard `t`, a tensor-parallel one per replica `d`), one task
    /// reducing the operand over the group's workers (the mean over
    /// replicas, the sum over shards), whose result the group's workers read.
    fn all_reduce(
        &self,
        b: &GraphBuilder,
        v: usize,
        produced: &mut Produced,
    ) -> Result<(), LowerError> {
        let node = self.g.node(Tensor(v as u32));
        let TensorOp::AllReduce { group, .. } = node.op else {
            unreachable!("units of this kind are all-reduces")
        };
        let (data, tensor) = (self.options.data, self.options.tensor);
        // The groups, each as its workers `d * tensor + t`.
        let groups: Vec<Vec<usize>> = match group {
            ParallelGroup::Data => (0..tensor)
                .map(|t| (0..data).map(|d| d * tensor + t).collect())
                .collect(),
            ParallelGroup::Tensor => (0..data)
                .map(|d| (0..tensor).map(|t| d * tensor + t).collect())
                .collect(),
        };
        let operand = node.inputs[0].index();
        for (g, members) in groups.iter().enumerate() {
            let mut args = Vec::new();
            let mut picks = Vec::new();
            for &w in members {
                let (task, slot) = *produced
                    .get(&(w, operand))
                    .ok_or_else(|| not_computed(operand))?;
                args.push(task.id());
                picks.push(slot);
            }
            // Each member's copy read, the result written.
            let bytes = node.shape.numel() * 4 * (args.len() + 1);
            let seconds =
                bytes as f64 / self.options.copy_bytes_per_second + self.options.task_seconds;
            let which = if groups.len() > 1 {
                format!(
                    ".{}{g}",
                    if group == ParallelGroup::Data {
                        "t"
                    } else {
                        "d"
                    }
                )
            } else {
                String::new()
            };
            let mean = group == ParallelGroup::Data;
            let task = call(
                b,
                &format!("step.all_reduce%{v}{which}"),
                None,
                bodies::reduce_over_workers(picks, mean),
                seconds,
                &args,
            );
            for &w in members {
                produced.insert((w, v), (task, 0));
            }
        }
        Ok(())
    }

    /// Segment `k`'s own tensor graph in worker `w`, where each of its
    /// inputs comes from, the tasks it takes values from (in argument order
    /// after the feed), and the nodes it outputs.
    #[allow(clippy::type_complexity)]
    fn subgraph(
        &self,
        k: usize,
        w: usize,
        nodes: &[usize],
        produced: &Produced,
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
                    Entry::Vacant(new) => {
                        let operand = Operand { k, w, produced };
                        *new.insert(operand.of(self, &mut sub, *a, &mut sources, &mut producers)?)
                    }
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

    /// `step.s<k>:` (`step.w<w>.s<k>:` with several workers) and the
    /// segment's first ops.
    fn segment_name(&self, k: usize, w: usize, nodes: &[usize]) -> String {
        let ops: Vec<String> = nodes
            .iter()
            .take(3)
            .map(|&i| {
                let op = self.g.node(Tensor(i as u32)).op.to_string();
                op.split(['(', ' ']).next().unwrap_or("op").to_string()
            })
            .collect();
        let more = if nodes.len() > 3 { "+..." } else { "" };
        let worker = if self.options.workers() > 1 {
            format!("w{w}.")
        } else {
            String::new()
        };
        format!("step.{worker}s{k}:{}{more}", ops.join("+"))
    }
}

/// Where the operands of segment `k` of worker `w` come from.
struct Operand<'p> {
    k: usize,
    w: usize,
    produced: &'p Produced,
}

impl Operand<'_> {
    /// Operand `a`, as a value of `sub`: an input of it fed from the step
    /// or from another task, a resident parameter, or a constant.
    fn of(
        &self,
        lowering: &Lowering,
        sub: &mut TensorGraph,
        a: Tensor,
        sources: &mut Vec<(String, Source)>,
        producers: &mut Vec<Value<Tensors>>,
    ) -> Result<Tensor, LowerError> {
        let node = lowering.g.node(a);
        let shape = node.shape.clone();
        let mut fed = |name: String, source: Source, sub: &mut TensorGraph| {
            sources.push((name.clone(), source));
            sub.input(&name, shape.clone())
        };
        Ok(match &node.op {
            TensorOp::Input { name } => {
                let options = &lowering.options;
                let key = share_key(name, self.w / options.tensor, options.data);
                fed(name.clone(), Source::Feed(key), sub)
            }
            TensorOp::Param { name } => match lowering.home[&a.index()] {
                ParamHome::Resident(s) if s == self.k => sub.param(name, shape.clone()),
                _ => {
                    let key = param_key(name, self.w, lowering.options.workers());
                    fed(name.clone(), Source::Feed(key), sub)
                }
            },
            TensorOp::Const { .. } => sub
                .apply(node.op.clone(), &[], Some(&shape))
                .map_err(BackendError::from)?,
            _ => {
                let (task, slot) = *self
                    .produced
                    .get(&(self.w, a.index()))
                    .ok_or_else(|| not_computed(a.index()))?;
                let arg = match producers.iter().position(|p| p.id() == task.id()) {
                    Some(at) => at,
                    None => {
                        producers.push(task);
                        producers.len() - 1
                    }
                } + 1;
                fed(format!("%{}", a.index()), Source::Task { arg, slot }, sub)
            }
        })
    }
}

/// The feed's key of input `name` in data-parallel replica `d`: the name
/// itself with one replica, else `name#d` (the replica's share).
pub(super) fn share_key(name: &str, d: usize, replicas: usize) -> String {
    if replicas == 1 {
        name.to_string()
    } else {
        format!("{name}#{d}")
    }
}

/// The feed's key of travelling parameter `name` of worker `w`: the name
/// itself with one worker, else `name@w` (each worker holds its own: a
/// shard, or a replica's copy).
pub(super) fn param_key(name: &str, w: usize, workers: usize) -> String {
    if workers == 1 {
        name.to_string()
    } else {
        format!("{name}@{w}")
    }
}

fn not_computed(v: usize) -> LowerError {
    LowerError::Unsupported(format!(
        "%{v} is an input or parameter, or computed after its user: no task makes it"
    ))
}

fn param_name(g: &TensorGraph, p: Tensor) -> String {
    match &g.node(p).op {
        TensorOp::Param { name } => name.clone(),
        other => unreachable!("{other} is not a parameter"),
    }
}

/// Adds a task made at run time named `name` on `args`: the first of type
/// `first` (the step's feed) when given, the others `Tensors`; it returns
/// `Tensors`.
fn call(
    b: &GraphBuilder,
    name: &str,
    first: Option<String>,
    body: Body,
    seconds: f64,
    args: &[NodeId],
) -> Value<Tensors> {
    let tensors = dagger_ir::type_name::<Tensors>();
    let mut params: Vec<String> = first.into_iter().collect();
    params.resize(args.len(), tensors.clone());
    let sig = TaskSig {
        params,
        ..TaskSig::new(name, &[], tensors)
    };
    b.call_body(
        sig,
        TaskBody {
            body,
            seconds: Some(seconds),
        },
        args,
    )
}

/// The step's last task: gathers the values of `results` (worker, node)
/// from the tasks that produced them, in order.
fn gather(
    b: &GraphBuilder,
    results: &[(usize, usize)],
    produced: &Produced,
) -> Result<Value<Tensors>, LowerError> {
    let mut args: Vec<Value<Tensors>> = Vec::new();
    let mut picks = Vec::new();
    for &(w, v) in results {
        let (task, slot) = *produced.get(&(w, v)).ok_or_else(|| not_computed(v))?;
        let arg = match args.iter().position(|a| a.id() == task.id()) {
            Some(at) => at,
            None => {
                args.push(task);
                args.len() - 1
            }
        };
        picks.push((arg, slot));
    }
    let ids: Vec<NodeId> = args.iter().map(|a| a.id()).collect();
    Ok(call(
        b,
        "step.results",
        None,
        bodies::gather(picks),
        0.0,
        &ids,
    ))
}
