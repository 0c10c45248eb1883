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
//! [`partition`] is HEFT (Topcuoglu et al.) with a memory limit: nodes in
//! decreasing upward rank, each placed on the device where it finishes
//! first among those with room for its result. Two other placements are
//! tried beside it, and the fastest that fits wins: the same order with
//! the device with the most room first, and filling (nodes in graph
//! order on one device until it is full, then the next: a pipeline's cut,
//! which fits where spreading the work runs a device out of memory). [`equal_layers`] is the
//! naive split it is compared with: consecutive layers (by parameter order)
//! in equal numbers per device. [`evaluate`] gives any placement's cut,
//! predicted step time and memory by list-scheduling it.

use super::graph::{Tensor, TensorGraph};
use super::op::TensorOp;
use crate::model::{Link, Platform};
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
    /// once (a result lives until its last user is placed).
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

fn is_param(g: &TensorGraph, v: Tensor) -> bool {
    matches!(g.node(v).op, TensorOp::Param { .. })
}

/// The list schedule of a placement: nodes in index order (a topological
/// order), each starting when its device is free and its operands have
/// arrived. `choose(node, finish_on)` picks the device of each computed
/// node given its finish time on every device (`None`: no room).
fn schedule(
    g: &TensorGraph,
    devices: &[Device],
    link: Link,
    order: &[usize],
    mut choose: impl FnMut(usize, &[Option<f64>], &[u64]) -> Option<usize>,
) -> Result<Partition, OutOfMemory> {
    let n = g.nodes().len();
    let mut device_of = vec![0usize; n];
    let mut finish = vec![0.0f64; n];
    let mut free_at = vec![0.0f64; devices.len()];
    // Bytes held on each device now (a result is freed after its last
    // user is placed; parameters, outputs and updates stay) and at most.
    let mut memory = vec![0u64; devices.len()];
    let mut peak = vec![0u64; devices.len()];
    let mut remaining = vec![0usize; n];
    for node in g.nodes() {
        for a in &node.inputs {
            remaining[a.index()] += 1;
        }
    }
    let mut pinned = vec![false; n];
    for &v in g.outputs().iter().chain(g.updates().iter().map(|(_, v)| v)) {
        pinned[v.index()] = true;
    }
    // Which devices hold each parameter.
    let mut holders: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut cut_bytes = 0u64;
    for &i in order {
        let v = Tensor(i as u32);
        let node = g.node(v);
        if everywhere(g, v) || is_param(g, v) {
            continue;
        }
        // Bytes the node needs on each device: its result and the
        // parameters it uses that are not there yet.
        let need_on: Vec<u64> = (0..devices.len())
            .map(|d| {
                let params: u64 = node
                    .inputs
                    .iter()
                    .filter(|a| is_param(g, **a) && !holders[a.index()].contains(&d))
                    .map(|&a| bytes(g, a))
                    .sum();
                bytes(g, v) + params
            })
            .collect();
        let finish_on: Vec<Option<f64>> = (0..devices.len())
            .map(|d| {
                let mut ready = free_at[d];
                for &a in &node.inputs {
                    if !is_param(g, a) && !everywhere(g, a) {
                        let transfer = if device_of[a.index()] == d {
                            0.0
                        } else {
                            link.latency + bytes(g, a) as f64 / link.bandwidth
                        };
                        ready = ready.max(finish[a.index()] + transfer);
                    }
                }
                (memory[d] + need_on[d] <= devices[d].memory_bytes)
                    .then(|| ready + node_flops(g, v) / devices[d].flops_per_second)
            })
            .collect();
        let free: Vec<u64> = devices
            .iter()
            .zip(&memory)
            .map(|(dev, m)| dev.memory_bytes.saturating_sub(*m))
            .collect();
        let chosen = choose(i, &finish_on, &free).and_then(|d| finish_on[d].map(|end| (d, end)));
        let (d, end) = chosen.ok_or_else(|| OutOfMemory {
            node: format!("%{i} ({})", node.op),
            needed: need_on.iter().copied().min().unwrap_or(0),
            free: devices
                .iter()
                .zip(&memory)
                .map(|(dev, m)| dev.memory_bytes.saturating_sub(*m))
                .collect(),
        })?;
        for &a in &node.inputs {
            if is_param(g, a) {
                if !holders[a.index()].contains(&d) {
                    if !holders[a.index()].is_empty() {
                        cut_bytes += bytes(g, a);
                    }
                    holders[a.index()].push(d);
                    memory[d] += bytes(g, a);
                }
            } else if !everywhere(g, a) && device_of[a.index()] != d {
                cut_bytes += bytes(g, a);
            }
        }
        device_of[i] = d;
        finish[i] = end;
        free_at[d] = end;
        memory[d] += bytes(g, v);
        peak[d] = peak[d].max(memory[d]);
        for &a in &node.inputs {
            if !is_param(g, a) && !everywhere(g, a) {
                remaining[a.index()] -= 1;
                if remaining[a.index()] == 0 && !pinned[a.index()] {
                    memory[device_of[a.index()]] -= bytes(g, a);
                }
            }
        }
        if remaining[i] == 0 && !pinned[i] {
            memory[d] -= bytes(g, v);
        }
    }
    for (i, h) in holders.iter().enumerate() {
        if let Some(&d) = h.first() {
            device_of[i] = d;
        }
    }
    let predicted_seconds = finish.iter().copied().fold(0.0, f64::max);
    Ok(Partition {
        device_of,
        cut_bytes,
        predicted_seconds,
        memory: peak,
    })
}

/// The cut, predicted time and memory of a given placement (one device
/// index per node; leaves' entries are ignored). Memory limits are not
/// enforced here: compare [`Partition::memory`] with the devices'.
pub fn evaluate(g: &TensorGraph, device_of: &[usize], devices: &[Device], link: Link) -> Partition {
    let unlimited: Vec<Device> = devices
        .iter()
        .map(|d| Device {
            memory_bytes: u64::MAX / 4,
            ..d.clone()
        })
        .collect();
    let order: Vec<usize> = (0..g.nodes().len()).collect();
    schedule(g, &unlimited, link, &order, |i, _, _| Some(device_of[i])).expect("no limits")
}

/// HEFT with memory limits (see the [module docs](self)).
pub fn partition(
    g: &TensorGraph,
    devices: &[Device],
    link: Link,
) -> Result<Partition, OutOfMemory> {
    let n = g.nodes().len();
    let mean_speed =
        devices.iter().map(|d| d.flops_per_second).sum::<f64>() / devices.len().max(1) as f64;
    let comm = |v: Tensor| link.latency + bytes(g, v) as f64 / link.bandwidth;
    // Upward rank: the longest path to an exit, at mean speed.
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in g.nodes().iter().enumerate() {
        for a in &node.inputs {
            users[a.index()].push(i);
        }
    }
    let mut rank = vec![0.0f64; n];
    for i in (0..n).rev() {
        let v = Tensor(i as u32);
        let tail = users[i].iter().map(|&u| rank[u]).fold(0.0, f64::max);
        rank[i] =
            node_flops(g, v) / mean_speed + if users[i].is_empty() { 0.0 } else { comm(v) } + tail;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| rank[b].total_cmp(&rank[a]).then(a.cmp(&b)));
    // Earliest finish first (HEFT); when that runs out of memory, or as a
    // second opinion, the device with the most room first. The faster
    // placement that fits wins.
    let earliest = schedule(g, devices, link, &order, |_, finish_on, _| {
        finish_on
            .iter()
            .enumerate()
            .filter_map(|(d, f)| f.map(|f| (d, f)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(d, _)| d)
    });
    let roomiest = schedule(g, devices, link, &order, |_, finish_on, free| {
        finish_on
            .iter()
            .enumerate()
            .filter(|(_, f)| f.is_some())
            .max_by_key(|(d, _)| free[*d])
            .map(|(d, _)| d)
    });
    // Budgeted: earliest finish among the devices that have used at most
    // a share of their memory (any device with room when none has), for
    // shares from 95% down to 40%: keeping room on every device
    // leaves space for what comes later (a training step's backward pass
    // next to its forward activations).
    let budgeted: Vec<Result<Partition, OutOfMemory>> = (1..=12)
        .map(|k| 1.0 - 0.05 * k as f64)
        .map(|share| {
            schedule(g, devices, link, &order, |_, finish_on, free| {
                let under = |d: usize| {
                    let used = devices[d].memory_bytes - free[d];
                    used as f64 <= share * devices[d].memory_bytes as f64
                };
                let pick = |within: &dyn Fn(usize) -> bool| {
                    finish_on
                        .iter()
                        .enumerate()
                        .filter(|(d, f)| f.is_some() && within(*d))
                        .min_by(|a, b| a.1.unwrap().total_cmp(&b.1.unwrap()))
                        .map(|(d, _)| d)
                };
                pick(&under).or_else(|| pick(&|_| true))
            })
        })
        .collect();
    let mut best: Option<Partition> = None;
    let mut first_error = None;
    for candidate in [earliest, roomiest].into_iter().chain(budgeted) {
        match candidate {
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
