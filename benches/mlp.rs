//! Training throughput of MLPs: samples per second of the whole step
//! (forward, backward, Adam) compiled by Dagger, on every core.
//!
//! ```text
//! cargo bench --bench mlp                # prints a table of our figures
//! python3 benches/mlp_vs_torch.py        # the same models in PyTorch, both, ratio
//! ```
//!
//! `--csv` prints `model,batch,threads,samples_per_s` lines for the script.

use dagger::nn::{Activation, Adam, CompileOptions, Net, Program, SeededRng};
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

fn samples_per_second(m: &Model) -> f64 {
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
    program.set("x", &xs).expect("x");
    program.set("y", &ys).expect("y");
    for _ in 0..m.steps / 10 + 2 {
        program.run().expect("runs");
    }
    let start = Instant::now();
    for _ in 0..m.steps {
        program.run().expect("runs");
    }
    (m.steps * m.batch) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let csv = std::env::args().any(|a| a == "--csv");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !csv {
        println!("| model | batch | threads | dagger samples/s |");
        println!("|---|---|---|---|");
    }
    for m in &MODELS {
        let rate = samples_per_second(m);
        if csv {
            println!("{},{},{threads},{rate:.1}", m.name, m.batch);
        } else {
            println!("| {} | {} | {threads} | {rate:.0} |", m.name, m.batch);
        }
    }
}
