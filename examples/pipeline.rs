//! Model parallelism, simulated: a deep MLP cut into pipeline stages and
//! placed by the partitioning pass, with GPipe and 1F1B schedules.
//!
//! ```sh
//! cargo run --release --example pipeline -- [--svg target/pipeline.svg]
//! ```
//!
//! Prints (1) the partitioning pass (HEFT with memory limits) against the
//! naive equal-layers split on the forward graph, (2) balanced stages of the
//! layer costs, (3) the bubble of GPipe and 1F1B for several stage and
//! micro-batch counts against `(K-1)/(M+K-1)` and their peak activations,
//! and writes a Gantt chart of both schedules.

use clap::Parser;
use dagger::ir::model::{Link, Platform};
use dagger::ir::sched::gantt;
use dagger::ir::sched::pipeline::{
    balanced_stages, bubble_formula, simulate, PipelineKind, PipelineSchedule,
};
use std::path::PathBuf;

/// The example's options.
#[derive(Parser, Debug)]
#[command(
    about = "Model parallelism, simulated: the partitioning pass, balanced stages, GPipe and 1F1B"
)]
pub struct Options {
    /// Write the Gantt chart of both schedules here.
    #[arg(long, default_value = "target/pipeline.svg")]
    pub svg: PathBuf,
}

/// One SVG document with both schedules (named) on one time scale, in
/// seconds; each labels its passes in its own order.
pub fn gantt_chart(stages: usize, schedules: &[(&str, &PipelineSchedule)]) -> String {
    let charts: Vec<gantt::Chart> = schedules
        .iter()
        .map(|(name, s)| {
            let (schedule, labels) = s.to_schedule();
            gantt::Chart {
                title: name.to_string(),
                processors: stages,
                labels,
                schedule,
            }
        })
        .collect();
    gantt::draw(&charts, gantt::TimeUnit::Seconds)
}
use dagger::tensor::{equal_layers, evaluate, node_flops, partition, Device, TensorGraph};

/// A deep MLP's forward pass with layers of uneven widths.
pub fn deep_mlp(batch: usize, widths: &[usize]) -> TensorGraph {
    let mut g = TensorGraph::new();
    let mut h = g.input("x", [batch, widths[0]]);
    for (l, pair) in widths.windows(2).enumerate() {
        let w = g.param(&format!("fc{l}.weight"), [pair[0], pair[1]]);
        h = g.matmul(h, w).expect("widths chain");
        h = g.relu(h).expect("elementwise");
    }
    g.set_outputs(vec![h]).expect("in graph");
    g
}

/// The SGD training step of a forward graph: softmax cross-entropy
/// against one-hot targets, every gradient, and the updates.
pub fn training_step(forward: &TensorGraph) -> TensorGraph {
    let mut g = forward.clone();
    let out = g.outputs()[0];
    let y = g.input("y", g.shape(out).clone());
    let loss = g.cross_entropy(out, y).expect("shapes");
    let params = g.params();
    let (mut step, grads) = g.grad(loss, &params).expect("autodiff");
    for (p, gr) in params.into_iter().zip(grads) {
        let d = step.scale(gr, 0.01).expect("shapes");
        let new = step.sub(p, d).expect("shapes");
        step.add_update(p, new).expect("a parameter");
    }
    step
}

/// Per-layer forward cost in flops (a layer: one product and its relu).
pub fn layer_flops(g: &TensorGraph) -> Vec<f64> {
    let mut costs = Vec::new();
    for (i, node) in g.nodes().iter().enumerate() {
        let v = dagger::tensor::Tensor(i as u32);
        match node.op {
            dagger::tensor::TensorOp::MatMul { .. } => costs.push(node_flops(g, v)),
            _ => {
                if let Some(last) = costs.last_mut() {
                    *last += node_flops(g, v);
                }
            }
        }
    }
    costs
}

fn main() {
    dagger::pipe::end_quietly_on_closed_pipe();
    let svg = Options::parse().svg;
    let widths = [1024, 4096, 4096, 1024, 1024, 1024, 1024, 1024, 1024];
    let g = deep_mlp(256, &widths);
    let link = Link {
        latency: 5e-6,
        bandwidth: 10e9,
    };
    println!("deep MLP {widths:?}, batch 256; devices at 1 TFLOP/s, link 10 GB/s, 5 us\n");
    println!("| graph | devices | memory each | split | cut MB | predicted ms | memory per device MB | fits |");
    println!("|---|---|---|---|---|---|---|---|");
    // n processors of the scheduling model's platform, at 1 TFLOP/s each.
    let one = |n: usize, memory: u64| -> Vec<Device> {
        Device::from_platform(&Platform::local(n), 1e12, memory)
    };
    for (name, graph) in [("forward", g.clone()), ("training step", training_step(&g))] {
        // Memory limits relative to what the whole graph needs on one device.
        let total = evaluate(
            &graph,
            &vec![0; graph.nodes().len()],
            &one(1, u64::MAX / 4),
            link,
        )
        .memory[0];
        for (n, share) in [(2usize, 1.0), (2, 0.6), (4, 0.3)] {
            let memory = (total as f64 * share) as u64;
            let devices = one(n, memory);
            let mb = |b: u64| b as f64 / 1e6;
            let row = |split: &str, p: &dagger::tensor::Partition| {
                let mem: Vec<String> = p.memory.iter().map(|&m| format!("{:.0}", mb(m))).collect();
                let fits = if p.memory.iter().all(|&m| m <= memory) {
                    "yes"
                } else {
                    "no"
                };
                println!(
                    "| {name} | {n} | {:.0} MB | {split} | {:.1} | {:.3} | {} | {fits} |",
                    mb(memory),
                    mb(p.cut_bytes),
                    p.predicted_seconds * 1e3,
                    mem.join(" / ")
                );
            };
            row(
                "equal layers",
                &evaluate(&graph, &equal_layers(&graph, n), &devices, link),
            );
            match partition(&graph, &devices, link) {
                Ok(p) => row("partitioning pass", &p),
                Err(e) => println!(
                    "| {name} | {n} | {:.0} MB | partitioning pass | {e} | | | no |",
                    mb(memory)
                ),
            }
        }
    }

    let costs = layer_flops(&g);
    println!(
        "\nlayer costs (GFLOP): {:?}",
        costs
            .iter()
            .map(|c| (c / 1e9 * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    for k in [2, 4] {
        let stages = balanced_stages(&costs, k);
        let stage_cost: Vec<f64> = stages
            .iter()
            .map(|r| costs[r.clone()].iter().sum::<f64>() / 1e9)
            .collect();
        println!("{k} balanced stages: layers {stages:?}, GFLOP per stage {stage_cost:.2?}");
    }

    println!("\n| stages K | micro-batches M | schedule | bubble | (K-1)/(M+K-1) | peak activations per stage |");
    println!("|---|---|---|---|---|---|");
    for k in [2, 4] {
        for m in [4, 8, 16] {
            for kind in [PipelineKind::GPipe, PipelineKind::OneFOneB] {
                let s = simulate(kind, &vec![1.0; k], &vec![2.0; k], m, 0.0);
                let peaks: Vec<usize> = (0..k).map(|st| s.peak_activations(st)).collect();
                println!(
                    "| {k} | {m} | {kind:?} | {:.3} | {:.3} | {peaks:?} |",
                    s.bubble_fraction(),
                    bubble_formula(k, m)
                );
            }
        }
    }
    // The balanced 4-stage cut, timed at 1 TFLOP/s, backward twice forward.
    let stages = balanced_stages(&costs, 4);
    let forward: Vec<f64> = stages
        .iter()
        .map(|r| costs[r.clone()].iter().sum::<f64>() / 1e12 / 8.0)
        .collect();
    let backward: Vec<f64> = forward.iter().map(|f| 2.0 * f).collect();
    let transfer = 5e-6 + (256 / 8 * 1024 * 4) as f64 / 10e9;
    let gpipe = simulate(PipelineKind::GPipe, &forward, &backward, 8, transfer);
    let ofob = simulate(PipelineKind::OneFOneB, &forward, &backward, 8, transfer);
    println!(
        "\nbalanced 4 stages, 8 micro-batches: GPipe {:.3} ms (bubble {:.3}), 1F1B {:.3} ms (bubble {:.3}); formula {:.3}",
        gpipe.makespan() * 1e3,
        gpipe.bubble_fraction(),
        ofob.makespan() * 1e3,
        ofob.bubble_fraction(),
        bubble_formula(4, 8)
    );
    let chart = gantt_chart(4, &[("GPipe", &gpipe), ("1F1B", &ofob)]);
    if let Some(parent) = svg.parent() {
        std::fs::create_dir_all(parent).expect("output folder");
    }
    std::fs::write(&svg, chart).expect("write the chart");
    println!("Gantt chart of both schedules: {}", svg.display());
}
