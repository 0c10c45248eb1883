//! Model partitioning: which device computes each node of a tensor graph.
//!
//! The cost model is analytic: a node costs its floating-point work
//! ([`node_flops`]: `2mnk` for a product, a few per element otherwise)
//! divided by the device's speed, and a value crossing devices costs the
//! link's latency plus its bytes over the link's bandwidth: the
//! scheduling cost model's [`Link`], with devices made from its
//! [`Platform`] by [`Device::from_platform`]. Data inputs and
//! constants are available everywhere; a parameter lives on every device
//! that uses it (its bytes count there, and towards the cut when it is
//! used on more than one).
//!
//! [`partition`] is the scheduling module's HEFT ([`HeftScheduler`]:
//! the graph as a [`Problem`], a task per node, nodes in decreasing
//! [`upward_rank`], each in the earliest idle gap it fits on its device)
//! with a memory limit: a node goes only where its result, and the
//! parameters it uses that are not there yet, fit beside what is live
//! (a result lives until its last user is placed; parameters, outputs
//! and updates stay). Among the devices with room, the one where it
//! finishes first; beside that placement, the same list schedule picking
//! the device with the most room, and earliest finish among the devices
//! under a share of their memory (95% down to 40%) are tried, each also
//! with the nodes taken in the graph's own order instead of by rank (a
//! training step's forward then backward, layer by layer, which frees
//! activations sooner), and the fastest that fits wins. [`equal_layers`] is the naive split it is
//! compared with: consecutive layers (by parameter order) in equal
//! numbers per device. [`evaluate`] gives any placement's cut, predicted
//! step time and memory by the same list schedule.
//!
//! [`HeftScheduler`]: dagger_ir::sched::HeftScheduler

mod accounts;

use super::graph::{Tensor, TensorGraph};
use super::op::TensorOp;
use accounts::Accounts;
use dagger_ir::model::{Link, Platform};
use dagger_ir::sched::list::{earliest_finish, list_schedule, lowest_score, Placed};
use dagger_ir::sched::rank::upward_rank;
use dagger_ir::sched::{Problem, Progress};
use std::fmt;

/// A device that can run part of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// Name shown in reports.
    pub name: String,
    /// Sustained speed in floating-point operations per second.
    pub flops_per_second: f64,
    /// Bytes of memory available for parameters and activations.
    pub memory_bytes: u64,
}

impl Device {
    /// The devices of a scheduling [`Platform`]: processor `i` becomes
    /// device `i`, as fast as `reference_flops` (the speed of a processor
    /// of relative speed 1.0) times its speed, with `memory_bytes` each.
    /// Use the platform's `network` as the link between them.
    pub fn from_platform(
        platform: &Platform,
        reference_flops: f64,
        memory_bytes: u64,
    ) -> Vec<Device> {
        platform
            .processors
            .iter()
            .enumerate()
            .map(|(i, p)| Device {
                name: format!("{}{i}", p.kind),
                flops_per_second: reference_flops * p.speed,
                memory_bytes,
            })
            .collect()
    }
}

/// A placement and what it costs.
#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    /// The device of each node, by node index (data inputs and constants:
    /// device 0, though they are available everywhere).
    pub device_of: Vec<usize>,
    /// Bytes crossing between devices in one run.
    pub cut_bytes: u64,
    /// Predicted time of one run (the list schedule's makespan).
    pub predicted_seconds: f64,
    /// Most bytes of parameters and live results held on each device at
    /// once (a result lives until its last user is placed, in the list
    /// schedule's order: decreasing upward rank).
    pub memory: Vec<u64>,
}

/// A placement that does not fit.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("partition: {node} needs {needed} bytes, but no device has room (free: {free:?})")]
pub struct OutOfMemory {
    /// The node that did not fit.
    pub node: String,
    /// Its bytes.
    pub needed: u64,
    /// Free bytes per device at that point.
    pub free: Vec<u64>,
}

/// Floating-point operations of node `v`.
pub fn node_flops(g: &TensorGraph, v: Tensor) -> f64 {
    let node = g.node(v);
    let out = node.shape.numel() as f64;
    let first_in = node
        .inputs
        .first()
        .map_or(0.0, |&a| g.shape(a).numel() as f64);
    match &node.op {
        TensorOp::Input { .. }
        | TensorOp::Param { .. }
        | TensorOp::Const { .. }
        | TensorOp::Reshape => 0.0,
        TensorOp::MatMul { trans_a, .. } => {
            let a = g.shape(node.inputs[0]).dims();
            let k = if *trans_a { a[0] } else { a[1] };
            2.0 * out * k as f64
        }
        TensorOp::Fused(k) => first_in.max(out) * k.op_count().max(1) as f64,
        TensorOp::Softmax { .. } | TensorOp::LogSoftmax { .. } | TensorOp::CrossEntropy => {
            5.0 * first_in
        }
        TensorOp::Sum { .. } | TensorOp::SumTo | TensorOp::Mse | TensorOp::AllReduce { .. } => {
            first_in.max(out)
        }
        _ => out,
    }
}

/// Bytes node `v` streams through memory: its operands read and its
/// result written (none for leaves and reshapes: nothing runs). A
/// product's time is its work ([`node_flops`]) plus these bytes (a
/// product of few rows reads a whole weight for little work); every other
/// node is bound by them.
pub fn streamed_bytes(g: &TensorGraph, v: Tensor) -> u64 {
    let node = g.node(v);
    match node.op {
        TensorOp::Input { .. }
        | TensorOp::Param { .. }
        | TensorOp::Const { .. }
        | TensorOp::Reshape => 0,
        _ => bytes(g, v) + node.inputs.iter().map(|&a| bytes(g, a)).sum::<u64>(),
    }
}

/// Bytes of value `v`.
fn bytes(g: &TensorGraph, v: Tensor) -> u64 {
    g.shape(v).numel() as u64 * 4
}

/// Whether a node is a leaf available on every device.
fn everywhere(g: &TensorGraph, v: Tensor) -> bool {
    matches!(
        g.node(v).op,
        TensorOp::Input { .. } | TensorOp::Const { .. }
    )
}

/// Whether a node is a leaf held by every device that uses it: a data
/// input or constant (available everywhere) or a parameter (replicated).
/// Its uses cost nothing to move.
fn resident(g: &TensorGraph, v: Tensor) -> bool {
    everywhere(g, v) || is_param(g, v)
}

fn is_param(g: &TensorGraph, v: Tensor) -> bool {
    matches!(g.node(v).op, TensorOp::Param { .. })
}

/// The scheduling problem of `g` on `devices`: a task per node, costing
/// its [`node_flops`] over each device's speed, and an edge per use of a
/// value, costing the link's latency plus its bytes over the bandwidth
/// (nothing out of a [`resident`] leaf).
fn problem(g: &TensorGraph, devices: &[Device], link: Link) -> Problem {
    let n = g.nodes().len();
    let (mut succ, mut pred) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    for (i, node) in g.nodes().iter().enumerate() {
        for &a in &node.inputs {
            let comm = if resident(g, a) {
                0.0
            } else {
                link.latency + bytes(g, a) as f64 / link.bandwidth
            };
            succ[a.index()].push((i, comm));
            pred[i].push((a.index(), comm));
        }
    }
    Problem {
        processors: devices.len(),
        ids: (g.nodes().iter().enumerate())
            .map(|(i, node)| format!("%{i} ({})", node.op))
            .collect(),
        cost: (0..n)
            .map(|i| {
                let flops = node_flops(g, Tensor(i as u32));
                devices.iter().map(|d| flops / d.flops_per_second).collect()
            })
            .collect(),
        succ,
        pred,
    }
}

/// The order the list scheduler takes ready nodes in.
#[derive(Clone, Copy)]
enum Order {
    /// HEFT's: decreasing upward rank.
    UpwardRank,
    /// The graph's own (node index).
    Graph,
}

/// How a computed node's device is picked among those with room for it.
#[derive(Clone, Copy)]
enum Strategy<'a> {
    /// The given device of each node, room or not ([`evaluate`]).
    Given(&'a [usize]),
    /// Earliest finish: HEFT.
    EarliestFinish,
    /// The most free memory.
    Roomiest,
    /// Earliest finish among the devices that have used at most this
    /// share of their memory (among all with room when none has).
    Budget(f64),
}

impl Strategy<'_> {
    /// The placement of node `t` among the devices in `fit` (index
    /// order), given each device's `free` bytes and `place(d)`, the
    /// earliest slot on `d`; `None` when nothing fits.
    fn pick(
        self,
        t: usize,
        fit: &[usize],
        free: &[u64],
        devices: &[Device],
        place: impl Fn(usize) -> Placed,
    ) -> Option<Placed> {
        let earliest = |among: &mut dyn Iterator<Item = usize>| {
            let placed: Vec<Placed> = among.map(&place).collect();
            (!placed.is_empty()).then(|| lowest_score(placed, |(_, _, finish)| finish))
        };
        match self {
            Strategy::Given(device_of) => Some(place(device_of[t])),
            Strategy::EarliestFinish => earliest(&mut fit.iter().copied()),
            Strategy::Roomiest => fit.iter().max_by_key(|&&d| free[d]).map(|&d| place(d)),
            Strategy::Budget(share) => earliest(&mut fit.iter().copied().filter(|&d| {
                let used = devices[d].memory_bytes - free[d];
                used as f64 <= share * devices[d].memory_bytes as f64
            }))
            .or_else(|| earliest(&mut fit.iter().copied())),
        }
    }
}

/// The list schedule of `g` by the scheduling module's HEFT machinery:
/// nodes in decreasing upward rank, each computed node placed (insertion
/// policy) on the device `strategy` picks among those with room for it,
/// the memory accounts kept as it goes.
fn place(
    g: &TensorGraph,
    devices: &[Device],
    link: Link,
    strategy: Strategy,
    order: Order,
) -> Result<Partition, OutOfMemory> {
    assert!(!devices.is_empty(), "partition: no devices");
    let problem = problem(g, devices, link);
    let rank = match order {
        Order::UpwardRank => upward_rank(&problem),
        // Higher first: the lower index, among the ready nodes.
        Order::Graph => (0..problem.len()).map(|t| -(t as f64)).collect(),
    };
    let mut accounts = Accounts::new(g, devices.len());
    // `choose` must place every task, and the list scheduler calls it once
    // per task in its final order, so it commits its accounts as it
    // returns. The first node that fits nowhere is recorded here and the
    // rest go to device 0 unaccounted; that schedule is then dropped and
    // the record returned.
    let mut failed: Option<OutOfMemory> = None;
    let schedule = list_schedule(&problem, &rank, &Progress::silent(), |partial, t| {
        let place = |d| earliest_finish(&problem, partial, t, d);
        let v = Tensor(t as u32);
        if failed.is_some() || resident(g, v) {
            return place(0);
        }
        let need: Vec<u64> = (0..devices.len()).map(|d| accounts.need(g, v, d)).collect();
        let free: Vec<u64> = (devices.iter().zip(&accounts.held))
            .map(|(dev, held)| dev.memory_bytes.saturating_sub(*held))
            .collect();
        let fit: Vec<usize> = (0..devices.len()).filter(|&d| need[d] <= free[d]).collect();
        match strategy.pick(t, &fit, &free, devices, place) {
            Some(placed) => {
                accounts.commit(g, v, placed.0);
                placed
            }
            None => {
                failed = Some(OutOfMemory {
                    node: problem.ids[t].clone(),
                    needed: need.iter().copied().min().unwrap_or(0),
                    free,
                });
                place(0)
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let mut device_of = accounts.device_of;
    for (i, h) in accounts.holders.iter().enumerate() {
        if let Some(&d) = h.first() {
            device_of[i] = d;
        }
    }
    Ok(Partition {
        device_of,
        cut_bytes: accounts.cut_bytes,
        predicted_seconds: schedule.makespan(),
        memory: accounts.peak,
    })
}

/// The cut, predicted time and memory of a given placement (one device
/// index per node; leaves' entries are ignored). Memory limits are not
/// enforced here: compare [`Partition::memory`] with the devices'.
pub fn evaluate(g: &TensorGraph, device_of: &[usize], devices: &[Device], link: Link) -> Partition {
    place(
        g,
        devices,
        link,
        Strategy::Given(device_of),
        Order::UpwardRank,
    )
    .expect("a given placement has no limits")
}

/// HEFT with memory limits (see the [module docs](self)).
pub fn partition(
    g: &TensorGraph,
    devices: &[Device],
    link: Link,
) -> Result<Partition, OutOfMemory> {
    // Earliest finish first (HEFT); beside it the device with the most
    // room, and earliest finish under a budget of 95% down to 40% of each
    // device's memory: keeping room on every device leaves space for what
    // comes later (a training step's backward pass next to its forward
    // activations). The fastest placement that fits wins.
    // Each in HEFT's order (decreasing upward rank) and in the graph's
    // own (a training step's: forward, then backward layer by layer, which
    // frees activations sooner).
    let budgets = (1..=12).map(|k| Strategy::Budget(1.0 - 0.05 * k as f64));
    let strategies: Vec<Strategy> = [Strategy::EarliestFinish, Strategy::Roomiest]
        .into_iter()
        .chain(budgets)
        .collect();
    let mut best: Option<Partition> = None;
    let mut first_error = None;
    for (strategy, order) in [Order::UpwardRank, Order::Graph]
        .into_iter()
        .flat_map(|o| strategies.iter().map(move |&s| (s, o)))
    {
        match place(g, devices, link, strategy, order) {
            Ok(p)
                if best
                    .as_ref()
                    .is_none_or(|b| p.predicted_seconds < b.predicted_seconds) =>
            {
                best = Some(p)
            }
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    best.ok_or_else(|| first_error.expect("a candidate failed"))
}

/// The naive split: parameters in graph order make the layers, consecutive
/// layers go to each device in equal numbers, and a node goes with the
/// latest layer among the parameters it depends on.
pub fn equal_layers(g: &TensorGraph, devices: usize) -> Vec<usize> {
    let params = g.params();
    let per_device = params.len().div_ceil(devices.max(1)).max(1);
    let mut device_of = vec![0usize; g.nodes().len()];
    for (i, node) in g.nodes().iter().enumerate() {
        device_of[i] = match params.iter().position(|p| p.index() == i) {
            Some(k) => (k / per_device).min(devices - 1),
            None => node
                .inputs
                .iter()
                .map(|a| device_of[a.index()])
                .max()
                .unwrap_or(0),
        };
    }
    device_of
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cut {} bytes, predicted {:.3} ms, memory per device {:?}",
            self.cut_bytes,
            self.predicted_seconds * 1e3,
            self.memory
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagger_ir::sched::{HeftScheduler, Scheduler};

    /// A 4-layer MLP forward pass, batch 64, width 512.
    fn mlp() -> TensorGraph {
        let mut g = TensorGraph::new();
        let mut h = g.input("x", [64, 512]);
        for l in 0..4 {
            let w = g.param(&format!("w{l}"), [512, 512]);
            h = g.matmul(h, w).unwrap();
            h = g.relu(h).unwrap();
        }
        g.set_outputs(vec![h]).unwrap();
        g
    }

    fn devices(n: usize, memory_bytes: u64) -> Vec<Device> {
        (0..n)
            .map(|i| Device {
                name: format!("cpu{i}"),
                flops_per_second: 1e11,
                memory_bytes,
            })
            .collect()
    }

    const LINK: Link = Link {
        latency: 1e-5,
        bandwidth: 1e9,
    };

    #[test]
    fn devices_come_from_the_scheduling_platform() {
        let mut platform = Platform::local(2);
        platform.processors[1].speed = 2.5;
        let d = Device::from_platform(&platform, 1e9, 1 << 20);
        let speeds: Vec<f64> = d.iter().map(|d| d.flops_per_second).collect();
        assert_eq!(speeds, [1e9, 2.5e9]);
        assert_eq!((d[1].name.as_str(), d[1].memory_bytes), ("cpu1", 1 << 20));
    }

    #[test]
    fn equal_layers_splits_by_parameters_and_costs_its_cut() {
        let g = mlp();
        let naive = equal_layers(&g, 2);
        let report = evaluate(&g, &naive, &devices(2, 1 << 30), LINK);
        // One activation of 64 x 512 floats crosses, once.
        assert_eq!(report.cut_bytes, 64 * 512 * 4);
        // Each device holds two 1 MiB weights and its activations.
        assert_eq!(report.memory[0], report.memory[1]);
        let serial = 4.0 * 2.0 * 64.0 * 512.0 * 512.0 / 1e11;
        assert!(
            report.predicted_seconds > serial,
            "a chain gains nothing from two devices"
        );
    }

    #[test]
    fn heft_keeps_a_chain_on_one_device_when_memory_allows() {
        let g = mlp();
        let p = partition(&g, &devices(2, 1 << 30), LINK).unwrap();
        assert_eq!(p.cut_bytes, 0, "{p}");
        let naive = evaluate(&g, &equal_layers(&g, 2), &devices(2, 1 << 30), LINK);
        assert!(p.predicted_seconds < naive.predicted_seconds);
    }

    #[test]
    fn without_memory_limits_the_earliest_finish_candidate_is_sched_heft() {
        // Three branches off one input, joined: on a fast and a slow
        // device, HEFT runs some branches on each.
        let mut g = TensorGraph::new();
        let x = g.input("x", [64, 512]);
        let branches: Vec<Tensor> = (0..3)
            .map(|b| {
                let w = g.param(&format!("w{b}"), [512, 512]);
                let h = g.matmul(x, w).unwrap();
                g.relu(h).unwrap()
            })
            .collect();
        let joined = g.add(branches[0], branches[1]).unwrap();
        let out = g.add(joined, branches[2]).unwrap();
        g.set_outputs(vec![out]).unwrap();
        let mut devs = devices(2, u64::MAX / 4);
        devs[1].flops_per_second = 2e11;
        // The earliest-finish candidate is sched's HEFT of the graph's
        // problem: same devices, same makespan.
        let p = place(&g, &devs, LINK, Strategy::EarliestFinish, Order::UpwardRank).unwrap();
        let heft = HeftScheduler.schedule(&problem(&g, &devs, LINK));
        assert_eq!(p.predicted_seconds, heft.makespan(), "{p}");
        for (i, &(proc, _, _)) in heft.placement.iter().enumerate() {
            if !resident(&g, Tensor(i as u32)) {
                assert_eq!(p.device_of[i], proc, "%{i}: {p}");
            }
        }
        assert!(p.device_of.contains(&0) && p.device_of.contains(&1), "{p}");
        assert!(p.cut_bytes > 0, "{p}");
        // The pass keeps the fastest candidate: never slower than HEFT.
        let best = partition(&g, &devs, LINK).unwrap();
        assert!(best.predicted_seconds <= heft.makespan(), "{best}");
    }

    #[test]
    fn a_training_step_fits_on_three_devices_down_to_near_its_share() {
        // A 6-layer MLP's forward and backward: forward activations live
        // until the backward pass uses them.
        let mut g = TensorGraph::new();
        let mut h = g.input("x", [64, 512]);
        let y = g.input("y", [64, 512]);
        let mut weights = Vec::new();
        for l in 0..6 {
            let w = g.param(&format!("w{l}"), [512, 512]);
            weights.push(w);
            h = g.matmul(h, w).unwrap();
            h = g.relu(h).unwrap();
        }
        let loss = g.mse(h, y).unwrap();
        let (mut step, grads) = g.grad(loss, &weights).unwrap();
        let mut outputs = vec![loss];
        outputs.extend(grads);
        step.set_outputs(outputs).unwrap();
        let alone = partition(&step, &devices(1, u64::MAX / 4), LINK).unwrap();
        // From 35% of one device's peak each (a third is the least that
        // could do) up: every limit is met (greedy placements alone fail
        // at 40%: they fill the first devices with the forward pass).
        for percent in 35..=60 {
            let limit = alone.memory[0] * percent / 100;
            let p = partition(&step, &devices(3, limit), LINK)
                .unwrap_or_else(|e| panic!("{percent}%: {e}"));
            assert!(p.memory.iter().all(|&m| m <= limit), "{percent}%: {p}");
        }
    }

    #[test]
    fn memory_limits_force_a_split_or_an_error() {
        let g = mlp();
        // Room for about half the model per device.
        let half = 2 * 512 * 512 * 4 + 6 * 64 * 512 * 4;
        let p = partition(&g, &devices(2, half), LINK).unwrap();
        assert!(p.cut_bytes > 0, "{p}");
        assert!(p.memory.iter().all(|&m| m <= half), "{p}");
        let err = partition(&g, &devices(2, 1 << 20), LINK).unwrap_err();
        assert!(err.to_string().starts_with("partition: %"), "{err}");
        assert_eq!(err.free.len(), 2, "{err}");
    }
}
