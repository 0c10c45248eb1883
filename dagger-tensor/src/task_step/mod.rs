//! A tensor step lowered to a task graph: the runtime's executor, policies,
//! traces and cost model run a training step like any other graph.
//!
//! [`lower_step`] takes a tensor graph (a training step: forward, backward
//! and the optimizer's updates, or any tensor program), runs the tensor
//! passes on it (dead nodes, fusion), places its nodes on devices (all on
//! one, or by the [partitioner](mod@crate::partition) under memory
//! limits) and cuts it into *segments*: runs of consecutive nodes, in the
//! graph's topological order, on one device and at most
//! [`LowerOptions::max_nodes`] long (`1`: every fused kernel, product or op
//! its own task). Runs of a topological order cannot form a cycle, so the
//! segments, with an edge wherever one uses another's value, are a DAG.
//!
//! Each segment becomes a task made at run time
//! ([`TaskBody`](dagger_runtime::task::TaskBody)): its nodes, as a tensor graph of their own, compiled once
//! by a [`Backend`](crate::Backend) into an
//! [`Executable`](crate::Executable); its operands from other
//! segments are that graph's inputs, the values other segments (or the
//! step's results) use are its outputs. A call feeds the operands, runs,
//! and passes its outputs on as one [`Tensors`] value. The tasks' names say
//! where they come from (`step.s3:matmul+fused`), so a trace shows each
//! kernel group as a span and the history model learns their times by
//! name; until it has, schedulers use the segment's predicted time: its
//! products' floating-point work over [`LowerOptions::flops_per_second`],
//! the bytes its nodes stream inside it over
//! [`LowerOptions::stream_bytes_per_second`], the bytes of its operands
//! copied in and its outputs out over
//! [`LowerOptions::copy_bytes_per_second`], and
//! [`LowerOptions::task_seconds`].
//!
//! Parameters are state. A parameter used, and updated, by one segment only
//! stays in that segment's executable, updated in place as in a
//! [`Program`](super::Program). One that several segments use travels:
//! the step holds its value, feeds it to the segments that read it, and
//! takes the updated value from the step's results for the next step.
//!
//! Data and tensor parallelism are passes over this graph: with
//! [`LowerOptions::data`] `D` and [`LowerOptions::tensor`] `T`, every
//! segment is made once per worker of the `D x T` grid (each its own
//! executables; worker `d * T + t` is shard `t` of replica `d`), each input
//! is split into `D` shares by rows (the shards of a replica see the same
//! share), and each all-reduce node becomes one task per group: the mean
//! over a shard's `D` replicas for data parallelism (the nodes
//! `Net::data_parallel_step` adds after the gradients and the loss), the
//! sum over a replica's `T` shards for tensor parallelism (Megatron's, in a
//! `BlockStack` net). Each all-reduce is cut right after its operand, so its
//! task overlaps the rest of the backward pass, as bucketed DDP does.
//!
//! Each segment compiles for the place it was put on: its device of the
//! placement, in its worker of the grid ([`SegmentPlace`]). A
//! [`SegmentBackend`] says what a place is: [`lower_step`] puts every place
//! on the cores ([`CpuBackend`]); [`lower_step_on`] takes any other, such
//! as `dagger_cuda::segments::CudaSegments`, which maps places to GPUs, so
//! that the stages of a pipeline placed over devices, or the shards of a
//! tensor-parallel grid, run each on its GPU. The tasks themselves are the
//! same: values travel between them through host memory (each segment
//! copies its operands in and its outputs out), and all-reduces sum or
//! average on the host. [`SegmentInfo::backend`] names what compiled each.
//!
//! # Examples
//!
//! ```
//! use dagger_tensor::TensorGraph;
//! use dagger_tensor::task_step::{lower_step, LowerOptions, StepPlacement};
//! use dagger_runtime::Runtime;
//!
//! // y = relu(x W), one update of W: W <- W - 0.5 * W.
//! let mut g = TensorGraph::new();
//! let x = g.input("x", [1, 2]);
//! let w = g.param("w", [2, 2]);
//! let xw = g.matmul(x, w).unwrap();
//! let y = g.relu(xw).unwrap();
//! let step = g.scale(w, 0.5).unwrap();
//! g.set_outputs(vec![y]).unwrap();
//! g.add_update(w, step).unwrap();
//! let options = LowerOptions { max_nodes: 1, ..LowerOptions::default() };
//! let mut lowered = lower_step(&g, &StepPlacement::OneDevice, options).unwrap();
//! lowered.set_param("w", &[1.0, 0.0, 0.0, 1.0]).unwrap();
//! let rt = Runtime::builder().threads(2).build();
//! let out = lowered.run(&rt, &[("x", &[3.0, -4.0])]).unwrap();
//! assert_eq!(out, [vec![3.0, 0.0]]);
//! assert_eq!(lowered.param("w").unwrap(), [0.5, 0.0, 0.0, 0.5]);
//! ```

mod bodies;
pub mod calibrate;
mod cut;
pub mod devices;
mod lowering;
mod predict;
pub mod strategy;

pub use devices::{SegmentBackend, SegmentPlace};

use crate::backend::BackendError;
use crate::{
    drop_lone_all_reduces, optimize, partition, CpuBackend, Device, FuseOptions, OutOfMemory,
    TensorError, TensorGraph,
};
use bodies::Compiled;
use cut::{cut, cut_order};
use dagger_runtime::dag::Dag;
use dagger_runtime::error::RunError;
use dagger_runtime::runtime::Runtime;
use lowering::{param_key, share_key, Lowering, ParamHome};
use std::collections::HashMap;
use std::sync::Arc;

/// Values passed between the tasks of a lowered step: a segment's outputs,
/// in its output order, reference-counted so that every task that reads
/// one shares it instead of copying it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensors(pub Vec<Arc<[f32]>>);

/// What one step is given: its inputs and the parameters that travel, by
/// name (shared with the step's own copies, not copied).
#[derive(Clone, Debug, Default)]
pub struct StepFeed(pub HashMap<String, Arc<[f32]>>);

/// Where a step's nodes run.
#[derive(Clone, Debug)]
pub enum StepPlacement {
    /// All on one device.
    OneDevice,
    /// Placed by the partitioner (HEFT under each device's memory limit) on
    /// `devices`, joined by `link`.
    Partition {
        /// The devices.
        devices: Vec<Device>,
        /// The link between any two of them.
        link: dagger_ir::model::Link,
    },
}

impl StepPlacement {
    /// Placed by the partitioner on `n` equal devices of `flops_per_second`
    /// and `memory_bytes` each (named `device0`, `device1`, ...), any two
    /// joined by `link`.
    pub fn equal_devices(
        n: usize,
        flops_per_second: f64,
        memory_bytes: u64,
        link: dagger_ir::model::Link,
    ) -> StepPlacement {
        let devices = (0..n)
            .map(|d| Device {
                name: format!("device{d}"),
                flops_per_second,
                memory_bytes,
            })
            .collect();
        StepPlacement::Partition { devices, link }
    }
}

/// How a step is lowered.
#[derive(Clone, Copy, Debug)]
pub struct LowerOptions {
    /// The most nodes one task holds (at least 1).
    pub max_nodes: usize,
    /// The fusion pass's options.
    pub fuse: FuseOptions,
    /// The floating-point rate of products a segment's predicted time
    /// assumes, until the cost model has measured it.
    pub flops_per_second: f64,
    /// The rate nodes stream their operands and results inside a segment
    /// (mostly in cache: a predicted time counts those bytes at it).
    pub stream_bytes_per_second: f64,
    /// The rate a segment's operands are copied in and its outputs out,
    /// and an all-reduce's operands read (values that cross tasks, and
    /// often cores: a predicted time counts those bytes at it).
    pub copy_bytes_per_second: f64,
    /// What running one task costs beyond its work (a predicted time adds
    /// it).
    pub task_seconds: f64,
    /// Bytes of the last-level cache the workers share
    /// (`calibrate::last_level_cache_bytes`): of a step whose workers hold
    /// `H > cache_bytes` bytes, the share `cache_bytes / H` of the streams
    /// comes from the cache at the streams' rate, the rest from memory at
    /// the copies'. `usize::MAX`: always the streams' rate.
    pub cache_bytes: usize,
    /// Data-parallel replicas (at least 1): each input is split into that
    /// many equal shares along its rows, and each data-parallel all-reduce
    /// node (`Net::data_parallel_step` puts them after the gradients and
    /// the loss) becomes a task averaging its operand over the replicas.
    pub data: usize,
    /// Tensor-parallel shards (at least 1): the graph is one shard's (a
    /// `BlockStack::net(batch, tensor)`), every shard sees its replica's
    /// whole share of the batch, and each tensor-parallel all-reduce
    /// becomes a task summing its operand over the shards.
    pub tensor: usize,
}

impl LowerOptions {
    /// Workers of the step, `data x tensor`: worker `d * tensor + t` is
    /// shard `t` of replica `d`, and every segment is made once per worker.
    pub fn workers(&self) -> usize {
        self.data * self.tensor
    }
}

impl Default for LowerOptions {
    /// Segments as long as placement allows; 5 GFLOP/s, 4 GB/s streams and
    /// copies, 20 us a task, no cache limit; one worker.
    fn default() -> Self {
        LowerOptions {
            max_nodes: usize::MAX,
            fuse: FuseOptions::default(),
            flops_per_second: 5e9,
            stream_bytes_per_second: 4e9,
            copy_bytes_per_second: 4e9,
            task_seconds: 20e-6,
            cache_bytes: usize::MAX,
            data: 1,
            tensor: 1,
        }
    }
}

/// Why a step could not be lowered or run.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// The graph holds what lowering does not take yet (tensor-parallel
    /// all-reduces), or the options do not fit it.
    #[error("lowering a step to tasks: {0}")]
    Unsupported(String),
    /// An input does not split into the replicas' equal shares.
    #[error(
        "input `{name}` has {elements} elements, which do not split into {replicas} equal shares"
    )]
    Uneven {
        /// The input.
        name: String,
        /// Its elements.
        elements: usize,
        /// The replicas.
        replicas: usize,
    },
    /// No placement fits the devices' memory.
    #[error(transparent)]
    OutOfMemory(#[from] OutOfMemory),
    /// A segment did not compile, or a name or size fed was wrong.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The task graph failed to run.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// One task of a lowered step, for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentInfo {
    /// The task's name.
    pub name: String,
    /// The device it was placed on (an index into the placement's devices).
    pub device: usize,
    /// What compiled it (worker 0's copy): the [`SegmentBackend::name_at`] of
    /// its place (`cpu`, `cuda:1`).
    pub backend: String,
    /// Its nodes, in the optimized graph.
    pub nodes: Vec<usize>,
    /// Its predicted seconds: `flops / flops_per_second + streamed_bytes /
    /// stream_bytes_per_second + copied_bytes / copy_bytes_per_second +
    /// task_seconds` of its [`LowerOptions`].
    pub seconds: f64,
    /// The part of `seconds` that is its products' work (what forks onto
    /// idle cores).
    pub product_seconds: f64,
    /// The floating-point work of its products.
    pub flops: f64,
    /// Bytes its nodes read and write
    /// ([`streamed_bytes`](crate::streamed_bytes)).
    pub streamed_bytes: usize,
    /// Bytes it copies: its operands in and its outputs out.
    pub copied_bytes: usize,
    /// Bytes of its executable's planned buffers (its parameters resident
    /// there, its activations, its operands' copies).
    pub planned_bytes: usize,
}

/// A training step lowered to a task graph (see the [module docs](self)).
pub struct TaskStep {
    dag: Dag<(StepFeed,), Tensors>,
    segments: Vec<SegmentInfo>,
    /// Each worker's segment task, by name: its products' share of its
    /// predicted seconds.
    product_shares: HashMap<String, f64>,
    /// Executables by worker and segment, shared with their tasks.
    compiled: Vec<Vec<Arc<Compiled>>>,
    /// Each parameter: its name and where it lives.
    params: Vec<(String, ParamHome)>,
    /// The step's inputs, by name.
    inputs: Vec<String>,
    /// The values of the travelling parameters, by feed key.
    travelling: HashMap<String, Arc<[f32]>>,
    /// The step's results: graph outputs, then the travelling parameters'
    /// updated values (by feed key).
    outputs: usize,
    updated: Vec<String>,
    /// Data-parallel replicas (inputs split in that many shares).
    data: usize,
    /// Bytes of one worker's travelling parameters.
    travelling_bytes: usize,
}

/// Lowers `graph` to a task graph placed by `placement`, every segment on
/// the cores (see the [module docs](self)).
pub fn lower_step(
    graph: &TensorGraph,
    placement: &StepPlacement,
    options: LowerOptions,
) -> Result<TaskStep, LowerError> {
    lower_step_on(graph, placement, options, &CpuBackend::default())
}

/// Lowers `graph` to a task graph placed by `placement`, each segment
/// compiled by `backend` for its place (see the [module docs](self)).
pub fn lower_step_on(
    graph: &TensorGraph,
    placement: &StepPlacement,
    options: LowerOptions,
    backend: &dyn SegmentBackend,
) -> Result<TaskStep, LowerError> {
    if options.data == 0 || options.tensor == 0 {
        return Err(LowerError::Unsupported(format!(
            "{} replicas x {} shards: a step needs at least one of each",
            options.data, options.tensor
        )));
    }
    // A grid's groups of one worker have nothing to reduce.
    let (lone_dropped, _) = drop_lone_all_reduces(graph, options.data, options.tensor);
    let (g, _) = optimize(&lone_dropped, options.fuse);
    let (device_of, devices) = match placement {
        StepPlacement::OneDevice => (vec![0; g.nodes().len()], 1),
        StepPlacement::Partition { devices, link } => {
            (partition(&g, devices, *link)?.device_of, devices.len())
        }
    };
    let order = cut_order(&g);
    let segment_of = cut(&g, &order, &device_of, options.max_nodes.max(1));
    let target = Target { backend, devices };
    let lowered = Lowering::new(&g, &order, &device_of, segment_of, options, target).build()?;
    let held = lowered.bytes_per_worker().saturating_mul(options.workers());
    if held > options.cache_bytes
        && options.stream_bytes_per_second != options.copy_bytes_per_second
    {
        // Too big for the cache: the share that fits streams from it, the
        // rest from memory. The bytes held are known once the segments are
        // compiled, so this lowers (and compiles) again: about twice the
        // time for such a step.
        let cached = options.cache_bytes as f64 / held as f64;
        let per_byte = cached / options.stream_bytes_per_second
            + (1.0 - cached) / options.copy_bytes_per_second;
        let blended = LowerOptions {
            stream_bytes_per_second: 1.0 / per_byte,
            cache_bytes: usize::MAX,
            ..options
        };
        return lower_step_on(graph, placement, blended, backend);
    }
    Ok(lowered)
}

/// What the segments compile for: the backend, and how many devices the
/// placement has.
#[derive(Clone, Copy)]
struct Target<'a> {
    backend: &'a dyn SegmentBackend,
    devices: usize,
}

/// The error of a worker index past the step's workers.
fn no_worker(w: usize, workers: usize) -> LowerError {
    LowerError::Unsupported(format!("worker {w}: the step has {workers} workers"))
}

impl TaskStep {
    /// The task graph, to run under any of the runtime's placements
    /// (`run_scheduled`, `run_with_policy`) with [`feed`](Self::feed) and
    /// [`finish`](Self::finish) around it.
    pub fn dag(&self) -> &Dag<(StepFeed,), Tensors> {
        &self.dag
    }

    /// Its tasks, in graph order.
    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    /// Bytes one worker holds: its executables' planned buffers and its
    /// travelling parameters.
    pub fn bytes_per_worker(&self) -> usize {
        let planned: usize = self.segments.iter().map(|s| s.planned_bytes).sum();
        planned + self.travelling_bytes
    }

    /// The parameters that travel between tasks (used or updated by more
    /// than one segment), in graph order; the others stay in their segment.
    pub fn travelling_params(&self) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(_, home)| matches!(home, ParamHome::Travelling))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Sets parameter `name` in every worker (where it lives: its
    /// segment's executable, or the step's travelling values).
    pub fn set_param(&mut self, name: &str, data: &[f32]) -> Result<(), LowerError> {
        for w in 0..self.compiled.len() {
            self.set_worker_param(w, name, data)?;
        }
        Ok(())
    }

    /// Sets parameter `name` of worker `w` alone (a tensor-parallel shard's
    /// own values).
    pub fn set_worker_param(
        &mut self,
        w: usize,
        name: &str,
        data: &[f32],
    ) -> Result<(), LowerError> {
        let workers = self.compiled.len();
        let worker = self.compiled.get(w).ok_or_else(|| no_worker(w, workers))?;
        match self.home_of(name)? {
            ParamHome::Resident(s) => {
                let mut exe = worker[s].exe.lock().unwrap_or_else(|p| p.into_inner());
                exe.set(name, data)?;
            }
            ParamHome::Travelling => {
                self.travelling
                    .insert(param_key(name, w, workers), data.into());
            }
        }
        Ok(())
    }

    /// The current value of parameter `name` (worker 0's: the replicas'
    /// are equal; a shard's own: [`worker_param`](Self::worker_param)).
    pub fn param(&self, name: &str) -> Result<Vec<f32>, LowerError> {
        self.worker_param(0, name)
    }

    /// The current value of parameter `name` in worker `w`.
    pub fn worker_param(&self, w: usize, name: &str) -> Result<Vec<f32>, LowerError> {
        let workers = self.compiled.len();
        let worker = self.compiled.get(w).ok_or_else(|| no_worker(w, workers))?;
        match self.home_of(name)? {
            ParamHome::Resident(s) => {
                let exe = worker[s].exe.lock().unwrap_or_else(|p| p.into_inner());
                Ok(exe.read(name)?)
            }
            ParamHome::Travelling => self
                .travelling
                .get(&param_key(name, w, workers))
                .map(|v| v.to_vec())
                .ok_or_else(|| BackendError::from(TensorError::NotFed(name.to_string())).into()),
        }
    }

    /// Every parameter and its value, in graph order.
    pub fn params(&self) -> Result<Vec<(String, Vec<f32>)>, LowerError> {
        self.params
            .iter()
            .map(|(name, _)| Ok((name.clone(), self.param(name)?)))
            .collect()
    }

    fn home_of(&self, name: &str) -> Result<ParamHome, LowerError> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, home)| *home)
            .ok_or_else(|| BackendError::from(TensorError::UnknownName(name.to_string())).into())
    }

    /// The feed of one step: `inputs` (with several data-parallel
    /// replicas, each split into their shares, in row order) and the
    /// travelling parameters.
    pub fn feed(&self, inputs: &[(&str, &[f32])]) -> Result<StepFeed, LowerError> {
        let mut feed: HashMap<String, Arc<[f32]>> = self.travelling.clone();
        let replicas = self.data;
        for &(name, data) in inputs {
            if !self.inputs.iter().any(|i| i == name) {
                return Err(BackendError::from(TensorError::UnknownName(name.to_string())).into());
            }
            if data.len() % replicas != 0 {
                return Err(LowerError::Uneven {
                    name: name.to_string(),
                    elements: data.len(),
                    replicas,
                });
            }
            let share = data.len() / replicas;
            for r in 0..replicas {
                let part: Arc<[f32]> = data[r * share..(r + 1) * share].into();
                feed.insert(share_key(name, r, replicas), part);
            }
        }
        Ok(StepFeed(feed))
    }

    /// Takes a step's results: keeps the travelling parameters' new values
    /// and returns the graph's outputs.
    pub fn finish(&mut self, mut results: Tensors) -> Vec<Vec<f32>> {
        let updated = results.0.split_off(self.outputs);
        for (name, value) in self.updated.iter().zip(updated) {
            self.travelling.insert(name.clone(), value);
        }
        results.0.iter().map(|v| v.to_vec()).collect()
    }

    /// One step on `rt`'s workers (work stealing): returns the graph's
    /// outputs.
    pub fn run(
        &mut self,
        rt: &Runtime,
        inputs: &[(&str, &[f32])],
    ) -> Result<Vec<Vec<f32>>, LowerError> {
        let results = rt.run(&self.dag, (self.feed(inputs)?,))?;
        Ok(self.finish(results))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_grids_and_all_reduces_of_leaves_are_refused_naming_them() {
        let mut g = TensorGraph::new();
        let x = g.param("x", [2]);
        let r = g
            .apply(
                crate::TensorOp::AllReduce {
                    bucket: 0,
                    group: crate::ParallelGroup::Tensor,
                },
                &[x],
                None,
            )
            .unwrap();
        let y = g.scale(r, 2.0).unwrap();
        g.set_outputs(vec![y]).unwrap();
        let none = LowerOptions {
            tensor: 0,
            ..LowerOptions::default()
        };
        let err = lower_step(&g, &StepPlacement::OneDevice, none)
            .err()
            .unwrap();
        assert!(err.to_string().contains("1 replicas x 0 shards"), "{err}");
        let two_shards = LowerOptions {
            tensor: 2,
            ..LowerOptions::default()
        };
        let err = lower_step(&g, &StepPlacement::OneDevice, two_shards)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("%0 is an input or parameter"), "{err}");
        // A step too big for the cache streams at the copies' rate.
        let step = |cache_bytes: usize| {
            let mut g = TensorGraph::new();
            let x = g.input("x", [64, 64]);
            let y = g.relu(x).unwrap();
            g.set_outputs(vec![y]).unwrap();
            let options = LowerOptions {
                stream_bytes_per_second: 1e12,
                copy_bytes_per_second: 1e9,
                task_seconds: 0.0,
                cache_bytes,
                ..LowerOptions::default()
            };
            lower_step(&g, &StepPlacement::OneDevice, options)
                .unwrap()
                .segments()[0]
                .clone()
        };
        let (cached, from_memory) = (step(usize::MAX), step(1));
        let bytes = from_memory.streamed_bytes + from_memory.copied_bytes;
        // A cache of 1 byte: all but a trifle from memory.
        let all_from_memory = bytes as f64 / 1e9;
        assert!((from_memory.seconds / all_from_memory - 1.0).abs() < 1e-3);
        assert!(cached.seconds < from_memory.seconds);
        // Half of it in the cache: half the streams at each rate.
        let half = step(cached.planned_bytes / 2);
        let streams = half.streamed_bytes as f64 * (0.5 / 1e12 + 0.5 / 1e9);
        let expected = streams + half.copied_bytes as f64 / 1e9;
        assert!(
            (half.seconds / expected - 1.0).abs() < 1e-3,
            "{} vs {expected}",
            half.seconds
        );
        // On one shard the sum is the identity: nothing to refuse.
        assert!(lower_step(&g, &StepPlacement::OneDevice, LowerOptions::default()).is_ok());
    }
}
