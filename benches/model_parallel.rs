//! Model parallelism, measured: step time and memory per device of one MLP
//! trained on one device, data-parallel, pipeline-parallel (GPipe, 1F1B)
//! and tensor-parallel, each on 2 workers (threads), data x tensor on
//! 2 x 2 and data x pipeline x tensor on 2 x 2 x 2, with the pipeline's
//! bubble formula beside its measured time; and the one-device step
//! lowered to a task graph (`dagger::tensor::task_step`), whole and a task
//! per op, against the `Program` path in the same run.
//!
//! ```text
//! cargo bench --bench model_parallel
//! ```
//!
//! The model, 256-1024-512-1024-10 with tanh, is the same in every mode
//! (a Megatron block stack of (1024, 512), (1024, 10) is that MLP); batch
//! 64, momentum SGD. Memory per device: bytes of its planned buffers
//! (parameters, optimizer state, activations).
//!
//! The simulated column is the analytic model of the partitioning pass and
//! the pipeline simulator: each worker an independent device as fast as
//! the measured one-device step (its flops over its time), all-reduces as
//! measured on a 2-thread ring in this run (latency + bytes / bandwidth),
//! no overlap. Measured and simulated differ most where workers here share
//! the same 2 cores.

use dagger::ir::model::HistoryModel;
use dagger::ir::sched::gantt;
use dagger::ir::sched::pipeline::{bubble_formula, simulate, PipelineKind};
use dagger::ir::sched::HeftScheduler;
use dagger::nn::{
    Activation, BlockStack, CompileOptions, DataParallel, DataParallelOptions, MlpSpec, Momentum,
    Net, Pipeline, PipelineOptions, Program, SeededRng, TensorParallel, Workers,
};
use dagger::tensor::task_step::{lower_step, LowerOptions, StepPlacement, TaskStep};
use dagger::tensor::{node_flops, ring_all_reduce_mean, thread_ring, Tensor, TensorOp};
use dagger::Runtime;
use std::time::Instant;

#[path = "model_parallel/strategies.rs"]
mod strategies;

const INPUTS: usize = 256;
const WIDTHS: [usize; 4] = [1024, 512, 1024, 10];
const BATCH: usize = 64;
const STEPS: usize = 20;
const OPT: Momentum = Momentum { lr: 0.01, mu: 0.9 };

fn data() -> (Vec<f32>, Vec<f32>) {
    let mut rng = SeededRng::new(4);
    let x: Vec<f32> = (0..BATCH * INPUTS).map(|_| rng.normal()).collect();
    let mut y = vec![0.0; BATCH * 10];
    for row in 0..BATCH {
        y[row * 10 + rng.below(10)] = 1.0;
    }
    (x, y)
}

fn mlp_step(batch: usize) -> Net {
    let mut net = Net::new();
    let x = net.input("x", [batch, INPUTS]);
    let y = net.input("y", [batch, 10]);
    let logits = net.mlp(x, &WIDTHS, Activation::Tanh).expect("shapes");
    let loss = net.cross_entropy(logits, y).expect("shapes");
    net.train_step(loss, &[], &OPT).expect("autodiff")
}

fn planned(step: &Net) -> usize {
    Program::compile(step, CompileOptions::default())
        .expect("compiles")
        .stats()
        .planned_bytes
}

/// Milliseconds per step of `step`: after five warm-up steps, three
/// rounds of `STEPS` steps, each round's median step, the least of the
/// rounds (as `calibrate::seconds_a_step` times the lowered steps).
fn time(mut step: impl FnMut()) -> f64 {
    for _ in 0..5 {
        step();
    }
    (0..3)
        .map(|_| {
            let mut times: Vec<f64> = (0..STEPS)
                .map(|_| {
                    let t = Instant::now();
                    step();
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            times[STEPS / 2]
        })
        .fold(f64::INFINITY, f64::min)
        * 1e3
}

fn row(mode: &str, ms: f64, simulated: f64, memory: &[usize], note: &str) {
    let mb: Vec<String> = memory
        .iter()
        .map(|b| format!("{:.1}", *b as f64 / 1e6))
        .collect();
    println!(
        "| {mode} | {ms:.2} | {:.2} | {} | {note} |",
        simulated * 1e3,
        mb.join(" / ")
    );
}

/// Floating-point work of a graph (the partitioning pass's cost model).
fn flops(g: &dagger::tensor::TensorGraph) -> f64 {
    (0..g.nodes().len())
        .map(|i| node_flops(g, Tensor(i as u32)))
        .sum()
}

/// Seconds of a 2-worker ring all-reduce of `bytes`, from this run's
/// measured latency and bandwidth.
struct AllReduceModel {
    latency: f64,
    seconds_per_byte: f64,
}

impl AllReduceModel {
    fn measure() -> AllReduceModel {
        let timed = |floats: usize| -> f64 {
            let handles: Vec<_> = thread_ring(2)
                .into_iter()
                .map(|mut link| {
                    std::thread::spawn(move || {
                        let mut data = vec![1.0f32; floats];
                        let mut scratch = Vec::new();
                        ring_all_reduce_mean(&mut link, &mut data, &mut scratch).expect("warm-up");
                        let t = Instant::now();
                        for _ in 0..20 {
                            ring_all_reduce_mean(&mut link, &mut data, &mut scratch)
                                .expect("all-reduce");
                        }
                        t.elapsed().as_secs_f64() / 20.0
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("worker"))
                .fold(0.0, f64::max)
        };
        let small = timed(1);
        let large = timed(1 << 20);
        AllReduceModel {
            latency: small,
            seconds_per_byte: (large - small).max(0.0) / (4 << 20) as f64,
        }
    }

    fn seconds(&self, bytes: usize) -> f64 {
        self.latency + bytes as f64 * self.seconds_per_byte
    }
}

/// What the simulated column holds for the lowered rows.
const PREDICTED: &str =
    "predicted: HEFT's makespan on the history model of 5 traced steps after 2 warm-up steps";

/// Milliseconds per step of `lowered` on the global runtime, each step
/// placed by HEFT on a cost model calibrated by 5 traced steps (after 2
/// warm-up steps), and the
/// makespan HEFT predicted, in seconds (the simulated column's unit).
fn time_lowered(lowered: &mut TaskStep, x: &[f32], y: &[f32]) -> (f64, f64) {
    let rt = Runtime::global();
    let batch = [("x", x), ("y", y)];
    let mut model = HistoryModel::new();
    for _ in 0..2 {
        lowered.run(rt, &batch).expect("warm-up step");
    }
    rt.start_trace();
    for _ in 0..5 {
        lowered.run(rt, &batch).expect("lowered step");
    }
    for m in rt.stop_trace().measurements() {
        model.record(&m);
    }
    let mut predicted = 0.0;
    let ms = time(|| {
        let feed = lowered.feed(&batch).expect("feed");
        let (results, schedule) = rt
            .run_scheduled(lowered.dag(), (feed,), &HeftScheduler, &model)
            .expect("lowered step");
        lowered.finish(results);
        predicted = schedule.makespan();
    });
    (ms, predicted)
}

/// The one-device step lowered to a task graph (one task; a task per
/// fused kernel or op), run by the runtime's executor, against the
/// `Program` path's `program_ms` of this run.
fn lowered_rows(step: &Net, program_ms: f64, x: &[f32], y: &[f32]) {
    for (max_nodes, what) in [(usize::MAX, "1 task"), (1, "a task per op")] {
        let options = LowerOptions {
            max_nodes,
            ..LowerOptions::default()
        };
        let mut lowered = lower_step(step, &StepPlacement::OneDevice, options).expect("lowers");
        for (name, values) in step.initial_params(1) {
            lowered.set_param(&name, &values).expect("parameter");
        }
        let (ms, predicted) = time_lowered(&mut lowered, x, y);
        let tasks = lowered.segments().len();
        row(
            &format!("one device, lowered to tasks ({what})"),
            ms,
            predicted,
            &[planned(step)],
            &format!(
                "{tasks} task(s), {} parameter(s) travelling; {:.2}x the Program path's speed (target >= 0.95 for 1 task); {PREDICTED}",
                lowered.travelling_params().len(),
                program_ms / ms
            ),
        );
    }
}

/// Data parallelism as a pass of the lowering: 2 replicas of the step's
/// tasks, each all-reduce a task, on the runtime's executor, against the
/// `DataParallel` trainer's `trainer_ms` of this run.
fn lowered_data_parallel_row(trainer_ms: f64, x: &[f32], y: &[f32]) {
    let mut net = Net::new();
    let xi = net.input("x", [BATCH / 2, INPUTS]);
    let yi = net.input("y", [BATCH / 2, 10]);
    let logits = net.mlp(xi, &WIDTHS, Activation::Tanh).expect("shapes");
    let loss = net.cross_entropy(logits, yi).expect("shapes");
    let replica = net
        .data_parallel_step(loss, &OPT, 1 << 20)
        .expect("autodiff");
    // The lowering cuts each gradient's all-reduce right after it: the
    // all-reduce tasks overlap the rest of backward.
    let options = LowerOptions {
        data: 2,
        ..LowerOptions::default()
    };
    let mut lowered = lower_step(&replica, &StepPlacement::OneDevice, options).expect("lowers");
    for (name, values) in replica.initial_params(1) {
        lowered.set_param(&name, &values).expect("parameter");
    }
    let (ms, predicted) = time_lowered(&mut lowered, x, y);
    row(
        "data parallel, lowered to tasks (2 replicas)",
        ms,
        predicted,
        &[planned(&replica); 2],
        &format!(
            "{} tasks a replica, an all-reduce task per gradient; {:.2}x the DataParallel trainer's speed; {PREDICTED}",
            lowered.segments().len(),
            trainer_ms / ms
        ),
    );
}

fn main() {
    let (x, y) = data();
    println!("MLP {INPUTS}-{WIDTHS:?} tanh, batch {BATCH}, momentum SGD; a step's time is the least of 3 rounds' median of {STEPS} steps (after 5 warm-up steps); 2 workers are threads\n");
    println!("| mode | ms per step | simulated ms | memory per device (MB) | notes |");
    println!("|---|---|---|---|---|");
    let ring = AllReduceModel::measure();

    let step = mlp_step(BATCH);
    let mut one = Program::compile(&step, CompileOptions::default()).expect("compiles");
    step.init_params(&mut one, 1).expect("init");
    one.set("x", &x).expect("x");
    one.set("y", &y).expect("y");
    let one_ms = time(|| one.run().expect("runs"));
    // The calibrated device: the one-device step's work over its time.
    let rate = flops(&step) / (one_ms / 1e3);
    // Gradient bytes: the model's parameters (not the momentum buffers).
    let param_bytes: usize = step
        .named()
        .filter(|(_, name, n)| {
            matches!(n.op, TensorOp::Param { .. }) && !name.starts_with("momentum.")
        })
        .map(|(_, _, n)| n.shape.numel() * 4)
        .sum();
    row(
        "one device",
        one_ms,
        flops(&step) / rate,
        &[planned(&step)],
        &format!("calibrates the model: {:.1} GFLOP/s", rate / 1e9),
    );
    lowered_rows(&step, one_ms, &x, &y);

    let build = |b: usize| {
        let mut net = Net::new();
        let xi = net.input("x", [b, INPUTS]);
        let yi = net.input("y", [b, 10]);
        let logits = net.mlp(xi, &WIDTHS, Activation::Tanh)?;
        let loss = net.cross_entropy(logits, yi)?;
        Ok((net, loss))
    };
    let options = DataParallelOptions {
        global_batch: BATCH,
        bucket_bytes: 1 << 20,
        seed: 1,
    };
    let mut dp = DataParallel::new(Workers::Threads(2), options, &OPT, build).expect("replicas");
    let replica = mlp_step(BATCH / 2);
    let ms = time(|| {
        dp.step(&[("x", &x), ("y", &y)]).expect("step");
    });
    let simulated = flops(&replica) / rate + ring.seconds(param_bytes);
    row(
        "data parallel",
        ms,
        simulated,
        &[planned(&replica); 2],
        "each worker half the batch; gradients all-reduced",
    );
    lowered_data_parallel_row(ms, &x, &y);

    let spec = MlpSpec {
        inputs: INPUTS,
        widths: WIDTHS.to_vec(),
        activation: Activation::Tanh,
    };
    for kind in [PipelineKind::GPipe, PipelineKind::OneFOneB] {
        let m = 4;
        let options = PipelineOptions {
            stages: 2,
            micro_batches: m,
            batch: BATCH,
            kind,
            seed: 1,
        };
        let mut p = Pipeline::new(spec.clone(), options, &OPT).expect("stages");
        let ms = time(|| {
            p.step(&x, &y).expect("step");
        });
        let measured = p.last_schedule().expect("a step ran");
        let note = format!(
            "stages {:?}, {m} micro-batches; measured bubble {:.2} (equal stages: {:.2})",
            p.layers,
            measured.bubble_fraction(),
            bubble_formula(2, m)
        );
        let (schedule, labels) = measured.to_schedule();
        let svg = format!("target/pipeline_{kind:?}_measured.svg");
        std::fs::write(
            &svg,
            gantt::draw(
                &[gantt::Chart {
                    title: format!("{kind:?}, measured"),
                    processors: 2,
                    labels,
                    schedule,
                }],
                gantt::TimeUnit::Seconds,
            ),
        )
        .expect("write the Gantt chart");
        // Stage times from their layers' products: forward 2 b k n per
        // micro-batch; backward recomputes it and takes twice more.
        let micro = (BATCH / m) as f64;
        let mut fan_in = INPUTS;
        let layer: Vec<f64> = WIDTHS
            .iter()
            .map(|&w| {
                let f = 2.0 * micro * (fan_in * w) as f64 / rate;
                fan_in = w;
                f
            })
            .collect();
        let forward: Vec<f64> = p
            .layers
            .iter()
            .map(|r| layer[r.clone()].iter().sum())
            .collect();
        let backward: Vec<f64> = forward.iter().map(|f| 3.0 * f).collect();
        let boundary = WIDTHS[p.layers[0].end - 1];
        let transfer = ring.seconds(BATCH / m * boundary * 4) / 2.0;
        let simulated = simulate(kind, &forward, &backward, m, transfer).makespan();
        row(
            &format!("pipeline {kind:?}"),
            ms,
            simulated,
            &p.memory,
            &note,
        );
    }

    let blocks = BlockStack {
        inputs: INPUTS,
        blocks: vec![(1024, 512), (1024, 10)],
        activation: Activation::Tanh,
    };
    let mut tp = TensorParallel::new(&blocks, Workers::Threads(2), BATCH, 1, &OPT).expect("shards");
    let ms = time(|| {
        tp.step(&x, &y).expect("step");
    });
    let (net, loss) = blocks.net(BATCH, 2).expect("shapes");
    let shard_step = net.train_step(loss, &[], &OPT).expect("autodiff");
    let shard = planned(&shard_step);
    // Two forward sums (of the blocks' outputs) and one backward.
    let sums = ring.seconds(BATCH * 512 * 4) * 2.0 + ring.seconds(BATCH * 10 * 4);
    let simulated = flops(&shard_step) / rate + sums;
    row(
        "tensor parallel",
        ms,
        simulated,
        &[shard; 2],
        "Megatron: columns then rows; 2 all-reduces per block; the trainer runs the step lowered to tasks",
    );

    let mut mixed = TensorParallel::with_data_parallel(&blocks, (2, 2), BATCH, 1, &OPT, 1 << 20)
        .expect("shards");
    let ms = time(|| {
        mixed.step(&x, &y).expect("step");
    });
    let (net, loss) = blocks.net(BATCH / 2, 2).expect("shapes");
    let worker_step = net
        .data_parallel_step(loss, &OPT, 1 << 20)
        .expect("autodiff");
    let worker = planned(&worker_step);
    let sums = ring.seconds(BATCH / 2 * 512 * 4) * 2.0 + ring.seconds(BATCH / 2 * 10 * 4);
    let simulated = flops(&worker_step) / rate + sums + ring.seconds(param_bytes / 2);
    row(
        "data x tensor (2 x 2)",
        ms,
        simulated,
        &[worker; 4],
        "a 2 x 2 grid of the lowered step's workers on this run's cores",
    );

    // All three: 2 copies of a 2-stage pipeline (a block per stage), each
    // stage split over 2 shards.
    let (dp, tp, m) = (2, 2, 4);
    let options = PipelineOptions {
        stages: 2,
        micro_batches: m,
        batch: BATCH,
        kind: PipelineKind::OneFOneB,
        seed: 1,
    };
    let mut all = Pipeline::megatron(blocks.clone(), options, &OPT, (dp, tp)).expect("stages");
    let ms = time(|| {
        all.step(&x, &y).expect("step");
    });
    // A stage is one block's shard: forward its two products and one sum
    // all-reduce of its output; backward recomputes it, takes twice the
    // products, and sums its input's gradient too.
    let micro = BATCH / dp / m;
    let mut width = INPUTS;
    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    for &(hidden, out) in &blocks.blocks {
        let products = 2.0 * (micro * (width * hidden + hidden * out) / tp) as f64 / rate;
        let sum_out = ring.seconds(micro * out * 4);
        forward.push(products + sum_out);
        backward.push(3.0 * products + sum_out + ring.seconds(micro * width * 4));
        width = out;
    }
    let transfer = ring.seconds(micro * blocks.blocks[0].1 * 4) / 2.0;
    let simulated = simulate(options.kind, &forward, &backward, m, transfer).makespan()
        + ring.seconds(param_bytes / (tp * 2));
    let memory: Vec<usize> = (0..dp * tp).flat_map(|_| all.memory.clone()).collect();
    row(
        "data x pipeline x tensor (2 x 2 x 2)",
        ms,
        simulated,
        &memory,
        "1F1B, 4 micro-batches; 8 threads on this run's cores",
    );
    strategies::table(&x, &y);
}
