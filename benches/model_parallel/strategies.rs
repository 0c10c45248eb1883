//! The one path's strategy table: every strategy of the Megatron stack
//! that equals the bench's MLP, lowered to tasks, predicted before it runs
//! (`parallelize` with `SharedCores`: the tasks' floating-point work at
//! one core's rate, sharing the machine's cores, a task alone as much
//! faster as the one-device step measured on every core over one), then
//! run and measured, the automatic choice marked and set beside the best
//! measured.

use super::{time_lowered, BATCH, INPUTS, OPT, STEPS};
use dagger::ir::model::{HistoryModel, Link, Platform};
use dagger::ir::sched::{HeftScheduler, Scheduler, SharedCores};
use dagger::nn::{Activation, BlockStack, Net};
use dagger::tensor::task_step::calibrate::{
    copy_bytes_per_second, fit, fit_streams, last_level_cache_bytes, product_flops_per_second,
    products_alone, seconds_a_step, shared_cores, MachineTimes,
};
use dagger::tensor::task_step::strategy::{parallelize, Strategy};
use dagger::tensor::task_step::{lower_step, LowerOptions, StepPlacement, TaskStep};
use dagger::tensor::TensorGraph;
use dagger::Runtime;

/// The bench's MLP as Megatron blocks: (1024, 512) then (1024, 10).
fn model() -> BlockStack {
    BlockStack {
        inputs: INPUTS,
        blocks: vec![(1024, 512), (1024, 10)],
        activation: Activation::Tanh,
    }
}

/// The step of `s` for `batch` samples and its placement (micro-batches
/// pipelined over two devices), or why the model does not split so.
fn build_at(s: Strategy, batch: usize) -> Result<(Net, StepPlacement), String> {
    let step = model()
        .strategy_step(s, batch, &OPT, 1 << 20)
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

/// The step of `s` for the bench's batch and its placement.
fn build(s: Strategy) -> Result<(Net, StepPlacement), String> {
    build_at(s, BATCH)
}

/// The step of `s` for `batch` samples lowered with `options` and its
/// parameters set.
fn lowered_at(s: Strategy, batch: usize, options: LowerOptions) -> TaskStep {
    let (step, placement) = build_at(s, batch).expect("built before");
    let options = LowerOptions {
        data: s.data,
        tensor: s.tensor,
        ..options
    };
    let mut lowered = lower_step(&step, &placement, options).expect("lowers");
    model()
        .init_lowered(&mut lowered, &step, s, batch, 1)
        .expect("parameters");
    lowered
}

/// The step of `s` for the bench's batch, lowered with `options`.
fn lowered(s: Strategy, options: LowerOptions) -> TaskStep {
    lowered_at(s, BATCH, options)
}

/// The machine and the cost model, measured with the one-device step
/// lowered whole and a task per op, each timed on one worker, on every
/// worker, and a copy on each worker at once: the products' rate measured
/// on one core, the streams' and the cost a task fitted to the one-worker
/// times (copies at a `memcpy`'s rate), a task alone as much faster on
/// every worker as the whole step runs, the cores' work together the
/// least of the two steps'.
fn calibrate(
    options: LowerOptions,
    x: &[f32],
    y: &[f32],
) -> (LowerOptions, SharedCores, [MachineTimes; 2]) {
    let one = Strategy {
        data: 1,
        tensor: 1,
        micro: 1,
    };
    let batch = [("x", x), ("y", y)];
    let per_op = LowerOptions {
        max_nodes: 1,
        ..options
    };
    let mut measured = [options, per_op].map(|options| {
        let mut copies: Vec<TaskStep> = (0..Runtime::global().threads())
            .map(|_| lowered(one, options))
            .collect();
        let (machine, times) =
            shared_cores(Runtime::global(), &mut copies, &batch, 4 * STEPS).expect("the machine");
        (copies.swap_remove(0), machine, times)
    });
    let [(whole, on_whole, whole_times), (per_op, on_per_op, per_op_times)] = &mut measured;
    let timed = [
        (&*whole, whole_times.one_worker),
        (&*per_op, per_op_times.one_worker),
    ];
    // The products' rate measured on one core (a forward product of the
    // step's shape), the streams' and the cost a task fitted; where those
    // do not explain the step, all three fitted, on the step at half the
    // batch besides.
    let measured = LowerOptions {
        flops_per_second: product_flops_per_second(BATCH, 1024, 512),
        ..options
    };
    let fitted = fit_streams(&timed, measured).unwrap_or_else(|why| {
        let mut half = lowered_at(one, BATCH / 2, options);
        let inputs = [("x", &x[..x.len() / 2]), ("y", &y[..y.len() / 2])];
        let one = Runtime::builder().threads(1).build();
        let seconds = seconds_a_step(&mut half, &one, &inputs, 4 * STEPS).expect("half a batch");
        println!(
            "\n({why}: all three fitted, with the step at half the batch, {:.2} ms)",
            seconds * 1e3
        );
        let timed = [timed[0], timed[1], (&half, seconds)];
        fit(&timed, options).expect("the cost model fits")
    });
    let machine = SharedCores::new(
        on_whole.throughput().min(on_per_op.throughput()),
        on_whole.alone(),
    );
    (fitted, machine, [*whole_times, *per_op_times])
}

/// Prints the table.
pub fn table(x: &[f32], y: &[f32]) {
    let batch = [("x", x), ("y", y)];
    let mut strategies = Strategy::grid(2, &[1]);
    strategies.extend(
        [(1, 1, 2), (1, 1, 4), (2, 2, 1)].map(|(data, tensor, micro)| Strategy {
            data,
            tensor,
            micro,
        }),
    );
    let copies = copy_bytes_per_second();
    let options = LowerOptions {
        stream_bytes_per_second: copies,
        copy_bytes_per_second: copies,
        ..LowerOptions::default()
    };
    let cache_bytes = last_level_cache_bytes().unwrap_or(usize::MAX);
    // The executor's model: every ready task runs at once, sharing the
    // cores; a task alone runs `alone` times as fast as on one core.
    let cores = Runtime::global().threads();
    let (options, machine, [whole, per_op]) = calibrate(options, x, y);
    // Fitted on a step that fits in the cache; the splits whose workers
    // hold more stream from memory.
    let options = LowerOptions {
        cache_bytes,
        ..options
    };
    // The whole step's speed-up alone is its products' under Amdahl's law.
    let one = Strategy {
        data: 1,
        tensor: 1,
        micro: 1,
    };
    let share = lowered(one, options).product_share();
    let step_alone = machine.alone();
    let machine = SharedCores::new(
        machine.throughput(),
        products_alone(step_alone, share, machine.throughput()),
    );
    let as_graph =
        |s: Strategy| build(s).map(|(net, placement)| (TensorGraph::clone(&net), placement));
    let shared = |s: &TaskStep| s.predict_shared(&machine);
    let (choice, _) =
        parallelize(&strategies, as_graph, &shared, 1 << 30, options).expect("a strategy fits");
    println!(
        "\nThe one path: the same model as Megatron blocks, every strategy lowered to tasks, predicted on {cores} shared cores ({}) doing {:.2} cores' work together, the one-device step alone {step_alone:.2}x as fast as on one core ({:.0}% products: products alone {:.2}x), {:.1} GFLOP/s a core, {:.1} GB/s streams ({} MiB of cache), {:.1} GB/s copies, {:.0} us a task; fitted to the one-device step, whole and a task per op: on one worker {:.2} and {:.2} ms, on every worker {:.2} and {:.2} ms, a copy on each worker at once {:.2} and {:.2} ms\n",
        machine.name(),
        machine.throughput(),
        share * 100.0,
        machine.alone(),
        options.flops_per_second / 1e9,
        options.stream_bytes_per_second / 1e9,
        cache_bytes >> 20,
        options.copy_bytes_per_second / 1e9,
        options.task_seconds * 1e6,
        whole.one_worker * 1e3,
        per_op.one_worker * 1e3,
        whole.every_worker * 1e3,
        per_op.every_worker * 1e3,
        whole.side_by_side * 1e3,
        per_op.side_by_side * 1e3,
    );
    // The other model: the machine as one processor at a task alone's
    // speed, HEFT placing the tasks one after another.
    let mut as_one = Platform::local(1);
    as_one.processors[0].speed = machine.alone();
    println!("| strategy (data x tensor x micro) | ms per step (`TaskStep::run`) | predicted ms ({cores} shared cores) | error | predicted ms (1 processor) | error | ms per step, HEFT-placed on 5 traced steps | its calibrated prediction ms | MB per worker | tasks | |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut by_one_processor: Option<(f64, usize)> = None;
    let mut by_calibration: Option<(f64, usize)> = None;
    let mut measured = Vec::new();
    for (k, c) in choice.candidates.iter().enumerate() {
        let Some(predicted) = c.predicted_seconds else {
            println!(
                "| {} | — | — | — | — | — | — | — | — | — | {} |",
                c.strategy,
                c.refused.as_deref().unwrap_or("")
            );
            continue;
        };
        let mut lowered = lowered(c.strategy, options);
        let serial = lowered
            .predict(&as_one, &HistoryModel::new(), &HeftScheduler)
            .expect("predicts");
        if by_one_processor.is_none_or(|b| serial < b.0) {
            by_one_processor = Some((serial, k));
        }
        // The executor's own run (work stealing), as `SharedCores` models.
        let ms =
            1e3 * seconds_a_step(&mut lowered, Runtime::global(), &batch, 4 * STEPS).expect("step");
        let (placed_ms, calibrated) = time_lowered(&mut lowered, x, y);
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
            "| {} | {ms:.2} | {:.2} | {:+.0}% | {:.2} | {:+.0}% | {placed_ms:.2} | {:.2} | {:.1} | {} | {mark} |",
            c.strategy,
            predicted * 1e3,
            (predicted * 1e3 / ms - 1.0) * 100.0,
            serial * 1e3,
            (serial * 1e3 / ms - 1.0) * 100.0,
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
        "\nautomatic choice ({cores} shared cores) {}: {chosen_ms:.2} ms, {:.2}x the best measured, {} at {best_ms:.2} ms",
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
    if let Some((_, k)) = by_one_processor {
        println!(
            "the choice of the 1-processor model {}: {:.2} ms, {:.2}x the best measured",
            choice.candidates[k].strategy,
            ms_of(k),
            ms_of(k) / best_ms
        );
    }
}
