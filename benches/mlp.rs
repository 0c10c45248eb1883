//! Training throughput of MLPs: samples per second of the whole step
//! (forward, backward, Adam) compiled by Dagger, on every core.
//!
//! ```text
//! cargo bench --bench mlp                # prints a table of our figures
//! python3 benches/mlp_vs_torch.py        # the same models in PyTorch, both, ratio
//! cargo bench --bench mlp -- --gpu       # the same steps on GPU 0 (GpuProgram)
//! python3 benches/mlp_vs_torch.py --gpu  # ... against PyTorch on the same GPU
//! ```
//!
//! `--csv` prints `model,batch,threads,samples_per_s` lines for the script
//! (`threads` is `gpu` with `--gpu`).

use dagger::cuda::program::GpuProgram;
use dagger::cuda::GpuDevice;
use dagger::nn::{Activation, Adam, CompileOptions, Net, Program, SeededRng};
use dagger::tensor::{FuseOptions, TensorGraph};
use std::time::Instant;

/// A benchmarked model: name, input width, layer widths, batch, steps timed.
pub struct Model {
    name: &'static str,
    inputs: usize,
    widths: &'static [usize],
    batch: usize,
    steps: usize,
}

const MODELS: [Model; 2] = [
    Model {
        name: "digits 64-128-64-10",
        inputs: 64,
        widths: &[128, 64, 10],
        batch: 32,
        steps: 2000,
    },
    Model {
        name: "wide 784-1024-1024-10",
        inputs: 784,
        widths: &[1024, 1024, 10],
        batch: 128,
        steps: 40,
    },
];

/// The model's training step, its initialized parameters (on a CPU
/// program) and one batch of inputs and one-hot labels.
fn setup(m: &Model) -> (TensorGraph, Program, Vec<f32>, Vec<f32>) {
    let classes = *m.widths.last().expect("layers");
    let mut net = Net::new();
    let x = net.input("x", [m.batch, m.inputs]);
    let y = net.input("y", [m.batch, classes]);
    let logits = net.mlp(x, m.widths, Activation::Relu).expect("shapes");
    let loss = net.cross_entropy(logits, y).expect("shapes");
    let step = net
        .train_step(loss, &[], &Adam::new(1e-3))
        .expect("autodiff");
    let mut program = Program::compile(&step, CompileOptions::default()).expect("compiles");
    step.init_params(&mut program, 1).expect("init");
    let mut rng = SeededRng::new(2);
    let xs: Vec<f32> = (0..m.batch * m.inputs).map(|_| rng.unit()).collect();
    let mut ys = vec![0.0f32; m.batch * classes];
    for row in 0..m.batch {
        ys[row * classes + rng.below(classes)] = 1.0;
    }
    ((*step).clone(), program, xs, ys)
}

/// Samples per second of `steps` runs of `step` after a warm-up.
fn timed(m: &Model, steps: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..steps / 10 + 2 {
        step();
    }
    let start = Instant::now();
    for _ in 0..steps {
        step();
    }
    (steps * m.batch) as f64 / start.elapsed().as_secs_f64()
}

fn samples_per_second(m: &Model) -> f64 {
    let (_, mut program, xs, ys) = setup(m);
    program.set("x", &xs).expect("x");
    program.set("y", &ys).expect("y");
    timed(m, m.steps, || program.run().expect("runs"))
}

/// The same on `gpu`; each timed stretch ends when the GPU is done.
fn samples_per_second_on(gpu: &GpuDevice, m: &Model) -> f64 {
    let (step, cpu, xs, ys) = setup(m);
    let mut program =
        GpuProgram::compile(&step, gpu, FuseOptions::default()).expect("compiles for the GPU");
    for (name, _, data) in cpu.params() {
        program.set(name, data).expect("parameter");
    }
    program.set("x", &xs).expect("x");
    program.set("y", &ys).expect("y");
    let steps = m.steps.max(500);
    let warm_up = steps / 10 + 2;
    let mut runs = 0;
    timed(m, steps, || {
        program.run().expect("runs");
        runs += 1;
        // The clock starts after the warm-up's last run and stops after
        // the last timed one: wait for the GPU at both.
        if runs == warm_up || runs == warm_up + steps {
            program.synchronize().expect("GPU");
        }
    })
}

fn main() {
    let csv = std::env::args().any(|a| a == "--csv");
    let gpu = if std::env::args().any(|a| a == "--gpu") {
        match GpuDevice::open(0, 2) {
            Ok(gpu) => Some(gpu),
            Err(e) => {
                println!("no GPU figures: {e}");
                return;
            }
        }
    } else {
        None
    };
    let threads = match &gpu {
        Some(_) => "gpu".to_string(),
        None => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string(),
    };
    if !csv {
        println!("| model | batch | threads | dagger samples/s |");
        println!("|---|---|---|---|");
    }
    for m in &MODELS {
        let rate = match &gpu {
            Some(gpu) => samples_per_second_on(gpu, m),
            None => samples_per_second(m),
        };
        if csv {
            println!("{},{},{threads},{rate:.1}", m.name, m.batch);
        } else {
            println!("| {} | {} | {threads} | {rate:.0} |", m.name, m.batch);
        }
    }
}
