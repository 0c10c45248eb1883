//! The one path's strategy table: every strategy of the Megatron stack
//! that equals the bench's MLP, lowered to tasks, predicted before it runs
//! (`parallelize`: HEFT on the tasks' floating-point work at the rate the
//! one-device step measured), then run and measured, the automatic choice
//! marked and set beside the best measured.

use super::{time_lowered, BATCH, INPUTS, OPT};
use dagger::ir::model::{HistoryModel, Link, Platform};
use dagger::ir::sched::HeftScheduler;
use dagger::nn::{Activation, BlockStack, Net};
use dagger::tensor::task_step::strategy::{parallelize, Strategy};
use dagger::tensor::task_step::{lower_step, LowerOptions, StepPlacement};
use dagger::tensor::TensorGraph;
use std::time::Instant;

/// The bench's MLP as Megatron blocks: (1024, 512) then (1024, 10).
fn model() -> BlockStack {
    BlockStack {
        inputs: INPUTS,
        blocks: vec![(1024, 512), (1024, 10)],
        activation: Activation::Tanh,
    }
}

/// The step of `s` and its placement (micro-batches pipelined over two
/// devices), or why the model does not split so.
fn build(s: Strategy) -> Result<(Net, StepPlacement), String> {
    let step = model()
        .strategy_step(s, BATCH, &OPT, 1 << 20)
        .map_err(|e| e.to_string())?;
    let placement = if s.micro > 1 {
        let link = Link {
            latency: 1e-6,
            bandwidth: 5e9,
        };
        StepPlacement::equal_devices(2, 1e9, 1 << 30, link)
    } else {
        StepPlacement::OneDevice
    };
    Ok((step, placement))
}

/// Bytes per second of copying 64 MiB of floats on this machine (the best
/// of 5).
fn copy_rate() -> f64 {
    let from = vec![1.0f32; 16 << 20];
    let mut to = vec![0.0f32; 16 << 20];
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            to.copy_from_slice(&from);
            std::hint::black_box(&to);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    (64 << 20) as f64 / best
}

/// Prints the table; `rate` is the one-device step's FLOP/s.
pub fn table(rate: f64, x: &[f32], y: &[f32]) {
    let mut strategies = Strategy::grid(2, &[1]);
    strategies.extend(
        [(1, 1, 2), (1, 1, 4), (2, 2, 1)].map(|(data, tensor, micro)| Strategy {
            data,
            tensor,
            micro,
        }),
    );
    let options = LowerOptions {
        flops_per_second: rate,
        copy_bytes_per_second: copy_rate(),
        ..LowerOptions::default()
    };
    // One processor at the rate the whole one-device step measured: a
    // task's products already use every core (join).
    let platform = Platform::local(1);
    let as_graph =
        |s: Strategy| build(s).map(|(net, placement)| (TensorGraph::clone(&net), placement));
    let (choice, _) =
        parallelize(&strategies, as_graph, &platform, 1 << 30, options).expect("a strategy fits");
    println!(
        "\nThe one path: the same model as Megatron blocks, every strategy lowered to tasks, predicted on the machine as one processor at {:.1} GFLOP/s, {:.1} GB/s copies, {:.0} us a task\n",
        rate / 1e9,
        options.copy_bytes_per_second / 1e9,
        options.task_seconds * 1e6
    );
    // The other model: each core a processor at its share of that rate.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut per_core = Platform::local(cores);
    for p in &mut per_core.processors {
        p.speed = 1.0 / cores as f64;
    }
    println!("| strategy (data x tensor x micro) | ms per step | predicted ms (1 processor) | error | predicted ms ({cores} cores as processors) | error | calibrated prediction ms | MB per worker | tasks | |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut second: Option<(f64, usize)> = None;
    let mut by_calibration: Option<(f64, usize)> = None;
    let mut measured = Vec::new();
    for (k, c) in choice.candidates.iter().enumerate() {
        let Some(predicted) = c.predicted_seconds else {
            println!(
                "| {} | — | — | — | — | — | — | — | — | {} |",
                c.strategy,
                c.refused.as_deref().unwrap_or("")
            );
            continue;
        };
        let (step, placement) = build(c.strategy).expect("built before");
        let options = LowerOptions {
            data: c.strategy.data,
            tensor: c.strategy.tensor,
            ..options
        };
        let mut lowered = lower_step(&step, &placement, options).expect("lowers");
        model()
            .init_lowered(&mut lowered, &step, c.strategy, BATCH, 1)
            .expect("parameters");
        let on_cores = lowered
            .predict(&per_core, &HistoryModel::new(), &HeftScheduler)
            .expect("predicts");
        if second.is_none_or(|b| on_cores < b.0) {
            second = Some((on_cores, k));
        }
        let (ms, calibrated) = time_lowered(&mut lowered, x, y);
        measured.push((ms, k));
        if by_calibration.is_none_or(|b| calibrated < b.0) {
            by_calibration = Some((calibrated, k));
        }
        let mark = if k == choice.chosen {
            "**automatic choice**"
        } else {
            ""
        };
        println!(
            "| {} | {ms:.2} | {:.2} | {:+.0}% | {:.2} | {:+.0}% | {:.2} | {:.1} | {} | {mark} |",
            c.strategy,
            predicted * 1e3,
            (predicted * 1e3 / ms - 1.0) * 100.0,
            on_cores * 1e3,
            (on_cores * 1e3 / ms - 1.0) * 100.0,
            calibrated * 1e3,
            c.bytes_per_worker as f64 / 1e6,
            c.tasks,
        );
    }
    let (best_ms, best) =
        measured
            .iter()
            .copied()
            .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a });
    let ms_of = |k: usize| {
        measured
            .iter()
            .find(|(_, j)| *j == k)
            .map_or(f64::NAN, |m| m.0)
    };
    let chosen_ms = ms_of(choice.chosen);
    println!(
        "\nautomatic choice (1 processor) {}: {chosen_ms:.2} ms, {:.2}x the best measured, {} at {best_ms:.2} ms",
        choice.best().strategy,
        chosen_ms / best_ms,
        choice.candidates[best].strategy,
    );
    if let Some((_, k)) = by_calibration {
        println!(
            "the choice of the calibrated predictions (5 traced steps of each strategy) {}: {:.2} ms, {:.2}x the best measured",
            choice.candidates[k].strategy,
            ms_of(k),
            ms_of(k) / best_ms
        );
    }
    if let Some((_, k)) = second {
        println!(
            "the choice of the per-core model {}: {:.2} ms, {:.2}x the best measured",
            choice.candidates[k].strategy,
            ms_of(k),
            ms_of(k) / best_ms
        );
    }
}
