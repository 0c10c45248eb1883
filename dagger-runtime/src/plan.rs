//! From IR to something the executor runs: a [`Plan`].
//!
//! Compiling a graph runs the standard passes (verify, dead-node elimination,
//! common-subexpression elimination, chain fusion), orders the nodes
//! topologically, resolves every task by its registered name to its entry
//! point (checking that the graph's signature for it is the registered one),
//! and lays the edges out in flat arrays (compressed sparse rows), so that a
//! run is a few array reads and atomic decrements per node.

use crate::datum::Datum;
use crate::device::DeviceInvoke;
use crate::error::RunError;
use crate::size::SizeFn;
use crate::task::{lookup, Bodies, Body, CostHint, Invoke, TaskDef};
use crate::trace::TaskName;
use dagger_ir::model::{HistoryModel, Platform, ProcKind, Processor};
use dagger_ir::sched::Problem;
use dagger_ir::{topo_order, ConstValue, Graph, Op, PassCtx, PassManager, TaskRef};
use petgraph::visit::NodeIndexable;
use std::collections::HashMap;
use std::sync::Arc;

/// What one node of a plan does.
pub enum Kernel {
    /// Graph input `i`.
    Input(usize),
    /// A constant value.
    Const(Datum),
    /// One task call, with the task's device body if it has one.
    Call {
        /// The task's registered name.
        name: &'static str,
        /// Its CPU body.
        invoke: Invoke,
        /// Its device body, if it has one.
        device: Option<DeviceInvoke>,
    },
    /// A fused chain of calls, applied in order (on CPU workers: fused
    /// chains have no device body).
    Fused {
        /// The chain's name (its tasks' names joined).
        name: Arc<str>,
        /// Each task of the chain: name and CPU body.
        steps: Vec<(&'static str, Invoke)>,
    },
    /// A task made at run time (a closure, e.g. a lowered tensor kernel
    /// group), with the seconds its maker predicts for it on a CPU worker.
    Body {
        /// Its name, as the graph's signature gives it.
        name: Arc<str>,
        /// What it runs.
        body: Body,
        /// Predicted seconds, used until the cost model has measured it.
        seconds: Option<f64>,
    },
}

impl Kernel {
    pub(crate) fn is_task(&self) -> bool {
        !matches!(self, Kernel::Input(_) | Kernel::Const(_))
    }

    /// The name of the task that takes this node's arguments (the first of
    /// a fused chain), or `None` for inputs and constants.
    fn first_name(&self) -> Option<&str> {
        match self {
            Kernel::Call { name, .. } => Some(name),
            Kernel::Fused { steps, .. } => Some(steps[0].0),
            Kernel::Body { name, .. } => Some(name),
            Kernel::Input(_) | Kernel::Const(_) => None,
        }
    }

    /// The name of the task that makes this node's result (the last of a
    /// fused chain), or `None` for inputs and constants.
    fn last_name(&self) -> Option<&str> {
        match self {
            Kernel::Fused { steps, .. } => Some(steps[steps.len() - 1].0),
            other => other.first_name(),
        }
    }

    /// The name a trace shows for this node.
    pub fn trace_name(&self) -> TaskName {
        match self {
            Kernel::Call { name, .. } => TaskName::Static(name),
            Kernel::Fused { name, .. } | Kernel::Body { name, .. } => {
                TaskName::Shared(name.clone())
            }
            Kernel::Input(_) => TaskName::Static("input"),
            Kernel::Const(_) => TaskName::Static("const"),
        }
    }
}

/// A compiled graph: kernels in topological order and the edges between them.
///
/// Its nodes are read by other executors too (the cluster's runs across
/// ranks): [`Plan::kernels`], [`Plan::args_of`].
pub struct Plan {
    pub(crate) kernels: Vec<Kernel>,
    /// `args[arg_start[i]..arg_start[i+1]]`: producers of node i's arguments, in port order.
    pub(crate) arg_start: Vec<u32>,
    pub(crate) args: Vec<u32>,
    /// `users[user_start[i]..user_start[i+1]]`: consumers of node i, one entry per edge.
    pub(crate) user_start: Vec<u32>,
    pub(crate) users: Vec<u32>,
    /// For each node, how many of its arguments come from task nodes.
    pub(crate) task_args: Vec<u32>,
    /// Output nodes, in order.
    pub(crate) outputs: Vec<u32>,
    /// Number of graph inputs.
    pub(crate) inputs: usize,
    /// Size functions of each task's parameters, by task name.
    sizes: HashMap<&'static str, Vec<Option<SizeFn>>>,
    /// Size function of each task's result, by task name.
    output_sizes: HashMap<&'static str, SizeFn>,
    /// The optimised graph the plan was made from.
    graph: Graph,
}

impl Plan {
    /// Optimises `graph` with the standard passes and resolves its tasks.
    pub fn compile(graph: &Graph, consts: &[Datum]) -> Result<Plan, RunError> {
        Self::compile_with(graph, consts, &Bodies::default())
    }

    /// [`compile`](Self::compile), resolving the tasks named in `bodies` to
    /// those bodies (tasks made at run time) and the others by the registry.
    pub fn compile_with(
        graph: &Graph,
        consts: &[Datum],
        bodies: &Bodies,
    ) -> Result<Plan, RunError> {
        let mut graph = graph.clone();
        PassManager::standard().run(&mut graph, &PassCtx::from_env())?;
        let order = topo_order(&graph)?;
        let mut dense = vec![u32::MAX; graph.petgraph().node_bound()];
        for (i, &id) in order.iter().enumerate() {
            dense[id.index()] = i as u32;
        }
        let mut resolved: HashMap<TaskRef, &'static TaskDef> = HashMap::new();
        let mut sizes = HashMap::new();
        let mut output_sizes = HashMap::new();
        let mut resolve = |t: TaskRef| -> Result<&'static TaskDef, RunError> {
            if let Some(&r) = resolved.get(&t) {
                return Ok(r);
            }
            let sig = graph.task(t);
            let def = lookup(&sig.name).ok_or_else(|| RunError::UnknownTask {
                name: sig.name.clone(),
            })?;
            let (params, output) = (def.signature)();
            if params != sig.params || output != sig.output {
                return Err(RunError::SignatureMismatch {
                    name: sig.name.clone(),
                    registered: format!("({}) -> {output}", params.join(", ")),
                    in_graph: format!("({}) -> {}", sig.params.join(", "), sig.output),
                });
            }
            resolved.insert(t, def);
            let wire = (def.wire)();
            sizes.insert(def.name, wire.param_sizes);
            if let Some(f) = wire.output_size {
                output_sizes.insert(def.name, f);
            }
            Ok(def)
        };

        let n = order.len();
        let mut kernels = Vec::with_capacity(n);
        let (mut arg_start, mut args, mut task_args) =
            (vec![0u32], Vec::new(), Vec::with_capacity(n));
        let mut user_count = vec![0u32; n];
        for &id in &order {
            let node = graph.node(id).expect("topo_order yields live nodes");
            kernels.push(match &node.op {
                Op::Input { index, .. } => Kernel::Input(*index as usize),
                Op::Const { value: ConstValue::Host(slot), .. } => Kernel::Const(
                    consts
                        .get(*slot as usize)
                        .cloned()
                        .ok_or_else(|| RunError::Unsupported(format!("constant slot {slot} is missing")))?,
                ),
                Op::Const { ty, value: ConstValue::Json(v) } => {
                    return Err(RunError::Unsupported(format!(
                        "the constant {v} : {ty} comes from a graph file; only constants made in Rust can run"
                    )))
                }
                Op::Call(t) => match bodies.get(&graph.task(*t).name) {
                    Some(made) => Kernel::Body {
                        name: graph.task(*t).name.as_str().into(),
                        body: made.body.clone(),
                        seconds: made.seconds,
                    },
                    None => {
                        let def = resolve(*t)?;
                        Kernel::Call {
                            name: def.name,
                            invoke: def.invoke,
                            device: def.device_body,
                        }
                    }
                },
                Op::Fused(ts) => {
                    let steps = ts
                        .iter()
                        .map(|&t| resolve(t).map(|d| (d.name, d.invoke)))
                        .collect::<Result<Vec<_>, _>>()?;
                    let name: Vec<&str> = steps.iter().map(|s| s.0).collect();
                    Kernel::Fused {
                        name: format!("fused[{}]", name.join(" > ")).into(),
                        steps,
                    }
                }
            });
            let mut from_tasks = 0;
            for (_, p) in graph.args(id) {
                let p = dense[p.index()];
                args.push(p);
                user_count[p as usize] += 1;
                if !matches!(
                    graph.node(order[p as usize]).map(|n| &n.op),
                    Some(Op::Input { .. } | Op::Const { .. })
                ) {
                    from_tasks += 1;
                }
            }
            task_args.push(from_tasks);
            arg_start.push(args.len() as u32);
        }
        let mut user_start = vec![0u32; n + 1];
        for i in 0..n {
            user_start[i + 1] = user_start[i] + user_count[i];
        }
        let mut fill = user_start.clone();
        let mut users = vec![0u32; args.len()];
        for consumer in 0..n {
            for &p in &args[arg_start[consumer] as usize..arg_start[consumer + 1] as usize] {
                users[fill[p as usize] as usize] = consumer as u32;
                fill[p as usize] += 1;
            }
        }
        let outputs = graph.outputs().iter().map(|o| dense[o.index()]).collect();
        Ok(Plan {
            kernels,
            arg_start,
            args,
            user_start,
            users,
            task_args,
            outputs,
            inputs: graph.inputs().len(),
            sizes,
            output_sizes,
            graph,
        })
    }

    /// The graph after the passes, as it runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Number of nodes that run a task (calls and fused chains).
    pub fn task_count(&self) -> usize {
        self.kernels.iter().filter(|k| k.is_task()).count()
    }

    /// The plan's tasks as a scheduling problem on the processors of
    /// `platform` (this process's workers, sharing memory: no communication
    /// cost): each task costs its measured mean in `model` for the
    /// processor's kind and its inputs' size bucket ([`predicted_bytes`](Self::predicted_bytes))
    /// if there is one, else its `cost` hint, divided by the processor's
    /// speed, else 10 µs. On a GPU, a task with a device body costs its
    /// measured GPU time, else its CPU estimate over the GPU's speed plus
    /// copying its inputs in and its result out over the host-device link;
    /// a task without one costs infinity (no scheduler puts it there).
    /// Returns the problem and, for each of its tasks, the plan node.
    pub fn problem(&self, platform: &Platform, model: &HistoryModel) -> (Problem, Vec<usize>) {
        let nodes: Vec<usize> = (0..self.kernels.len())
            .filter(|&i| self.kernels[i].is_task())
            .collect();
        let mut index = vec![usize::MAX; self.kernels.len()];
        for (k, &i) in nodes.iter().enumerate() {
            index[i] = k;
        }
        let (in_bytes, out_bytes) = self.predicted_bytes(model);
        let estimate = |name: &str, kind: ProcKind, bytes: u64| {
            model
                .estimate(name, kind, bytes)
                .or_else(|| {
                    lookup(name).and_then(|d| match d.cost {
                        CostHint::Seconds(s) => Some(s),
                        CostHint::Unknown | CostHint::Dynamic(_) => None,
                    })
                })
                .unwrap_or(10e-6)
        };
        let cost = nodes
            .iter()
            .map(|&i| {
                let bytes = in_bytes[i];
                let seconds = |kind| match &self.kernels[i] {
                    Kernel::Call { name, .. } => estimate(name, kind, bytes),
                    Kernel::Body { name, seconds, .. } => model
                        .estimate(name, kind, bytes)
                        .or(*seconds)
                        .unwrap_or(10e-6),
                    Kernel::Fused { steps, .. } => steps
                        .iter()
                        .map(|(name, _)| estimate(name, kind, bytes))
                        .sum(),
                    Kernel::Input(_) | Kernel::Const(_) => 0.0,
                };
                let transfers = platform.host_device.transfer_time(bytes)
                    + platform.host_device.transfer_time(out_bytes[i]);
                let on = |p: &Processor| match (p.kind, &self.kernels[i]) {
                    // A device body copies its inputs in and its result
                    // out: measured on the device, else the CPU estimate
                    // over the device's speed plus those copies.
                    (
                        ProcKind::Gpu,
                        Kernel::Call {
                            name,
                            device: Some(_),
                            ..
                        },
                    ) => model
                        .estimate(name, ProcKind::Gpu, bytes)
                        .unwrap_or_else(|| seconds(ProcKind::Cpu) / p.speed + transfers),
                    (ProcKind::Gpu, _) => f64::INFINITY,
                    (kind, _) => seconds(kind) / p.speed,
                };
                platform.processors.iter().map(on).collect()
            })
            .collect();
        let mut succ = vec![Vec::new(); nodes.len()];
        let mut pred = vec![Vec::new(); nodes.len()];
        for (k, &i) in nodes.iter().enumerate() {
            for &p in self.args_of(i) {
                let from = index[p as usize];
                if from != usize::MAX {
                    succ[from].push((k, 0.0));
                    pred[k].push((from, 0.0));
                }
            }
        }
        let ids = nodes
            .iter()
            .map(|&i| format!("{}#{i}", self.kernels[i].trace_name().as_str()))
            .collect();
        (
            Problem {
                processors: platform.processors.len(),
                ids,
                cost,
                succ,
                pred,
            },
            nodes,
        )
    }

    /// Predicted bytes of each node's inputs and of its output, before the
    /// run: constants are measured (when their type tells its size), graph
    /// inputs count 0 (not known yet), and a task's output is its size
    /// measured in earlier runs for inputs of about this size (`model`,
    /// when calibrated), else as large as its largest input (true of tile
    /// kernels and maps; merges and reductions are under-estimated).
    pub fn predicted_bytes(&self, model: &HistoryModel) -> (Vec<u64>, Vec<u64>) {
        let n = self.kernels.len();
        let (mut input, mut output) = (vec![0u64; n], vec![0u64; n]);
        for i in 0..n {
            let Some(name) = self.kernels[i].first_name() else {
                continue;
            };
            let sizes = self.sizes.get(name);
            for (port, &p) in self.args_of(i).iter().enumerate() {
                let bytes = match &self.kernels[p as usize] {
                    Kernel::Const(d) => sizes
                        .and_then(|s| s.get(port).copied().flatten())
                        .map_or(0, |f| f(d)),
                    Kernel::Input(_) => 0,
                    Kernel::Call { .. } | Kernel::Fused { .. } | Kernel::Body { .. } => {
                        output[p as usize]
                    }
                };
                input[i] += bytes;
                output[i] = output[i].max(bytes);
            }
            if let (Kernel::Call { .. }, Some(measured)) =
                (&self.kernels[i], model.output_bytes(name, input[i]))
            {
                output[i] = measured;
            }
        }
        (input, output)
    }

    /// Bytes of task node `i`'s result `value` (0 for types that do not
    /// tell their size).
    pub(crate) fn output_bytes(&self, i: usize, value: &Datum) -> u64 {
        let Some(name) = self.kernels[i].last_name() else {
            return 0;
        };
        self.output_sizes.get(name).map_or(0, |f| f(value))
    }

    /// Bytes of the arguments of task node `i` (0 for types that do not
    /// tell their size).
    pub(crate) fn input_bytes(&self, i: usize, args: &[Option<Datum>]) -> u64 {
        let Some(sizes) = self.kernels[i].first_name().and_then(|n| self.sizes.get(n)) else {
            return 0;
        };
        args.iter()
            .zip(sizes)
            .map(|(a, f)| match (a, f) {
                (Some(d), Some(f)) => f(d),
                _ => 0,
            })
            .sum()
    }

    /// The nodes whose values are the graph's outputs, in order.
    pub fn outputs(&self) -> &[u32] {
        &self.outputs
    }

    /// Every node's kernel, in topological order (node `i` is `kernels()[i]`).
    pub fn kernels(&self) -> &[Kernel] {
        &self.kernels
    }

    /// The nodes whose values are node `i`'s arguments, in port order.
    pub fn args_of(&self, i: usize) -> &[u32] {
        &self.args[self.arg_start[i] as usize..self.arg_start[i + 1] as usize]
    }

    /// The nodes that take node `i`'s value as an argument.
    pub fn users_of(&self, i: usize) -> &[u32] {
        &self.users[self.user_start[i] as usize..self.user_start[i + 1] as usize]
    }
}
