//! Model parallelism, measured: step time and memory per device of one MLP
//! trained on one device, data-parallel, pipeline-parallel (GPipe, 1F1B)
//! and tensor-parallel, each on 2 workers (threads), and data x tensor on
//! 2 x 2, with the pipeline's bubble formula beside its measured time.
//!
//! ```text
//! cargo bench --bench model_parallel
//! ```
//!
//! The model, 256-1024-512-1024-10 with tanh, is the same in every mode
//! (a Megatron block stack of (1024, 512), (1024, 10) is that MLP); batch
//! 64, momentum SGD. Memory per device: bytes of its planned buffers
//! (parameters, optimizer state, activations).

use dagger::ir::sched::gantt;
use dagger::ir::sched::pipeline::{bubble_formula, PipelineKind};
use dagger::nn::{
    Activation, BlockStack, CompileOptions, DataParallel, DataParallelOptions, MlpSpec, Momentum,
    Net, Pipeline, PipelineOptions, Program, SeededRng, TensorParallel, Workers,
};
use std::time::Instant;

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

/// Milliseconds per step of `step` (after two warm-up steps).
fn time(mut step: impl FnMut()) -> f64 {
    step();
    step();
    let t = Instant::now();
    for _ in 0..STEPS {
        step();
    }
    t.elapsed().as_secs_f64() * 1e3 / STEPS as f64
}

fn row(mode: &str, ms: f64, memory: &[usize], note: &str) {
    let mb: Vec<String> = memory
        .iter()
        .map(|b| format!("{:.1}", *b as f64 / 1e6))
        .collect();
    println!("| {mode} | {ms:.2} | {} | {note} |", mb.join(" / "));
}

fn main() {
    let (x, y) = data();
    println!("MLP {INPUTS}-{WIDTHS:?} tanh, batch {BATCH}, momentum SGD, {STEPS} steps timed; 2 workers are threads\n");
    println!("| mode | ms per step | memory per device (MB) | notes |");
    println!("|---|---|---|---|");

    let step = mlp_step(BATCH);
    let mut one = Program::compile(&step, CompileOptions::default()).expect("compiles");
    step.init_params(&mut one, 1).expect("init");
    one.set("x", &x).expect("x");
    one.set("y", &y).expect("y");
    row(
        "one device",
        time(|| one.run().expect("runs")),
        &[planned(&step)],
        "",
    );

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
    row(
        "data parallel",
        ms,
        &[planned(&replica); 2],
        "each worker half the batch; gradients all-reduced",
    );

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
            gantt::draw(2, &labels, &[(&format!("{kind:?}, measured"), &schedule)]),
        )
        .expect("write the Gantt chart");
        row(&format!("pipeline {kind:?}"), ms, &p.memory, &note);
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
    let shard = planned(&net.train_step(loss, &[], &OPT).expect("autodiff"));
    row(
        "tensor parallel",
        ms,
        &[shard; 2],
        "Megatron: columns then rows; 2 all-reduces per block",
    );

    let mut mixed = TensorParallel::with_data_parallel(&blocks, (2, 2), BATCH, 1, &OPT, 1 << 20)
        .expect("shards");
    let ms = time(|| {
        mixed.step(&x, &y).expect("step");
    });
    let (net, loss) = blocks.net(BATCH / 2, 2).expect("shapes");
    let worker = planned(
        &net.data_parallel_step(loss, &OPT, 1 << 20)
            .expect("autodiff"),
    );
    row(
        "data x tensor (2 x 2)",
        ms,
        &[worker; 4],
        "4 threads on this run's cores",
    );
}
