//! Trains an MLP on the UCI handwritten digits (8x8 images, 10 classes).
//!
//! The model and its training step are one tensor graph: `Net::mlp` builds
//! the forward pass, `train_step` adds the autodiff gradients and Adam's
//! updates, and the compiled `Program` runs it with fused Cranelift kernels
//! and `gemm` products. A seeded shuffle splits the 1797 samples 80/20.
//!
//! ```sh
//! cargo run --release --example train_digits -- [--epochs 40] [--seed 7] \
//!     [--svg target/train_digits.svg] [--save target/digits.safetensors] \
//!     [--workers 2] [--gpus 1] [--data data/digits.csv.gz]
//! cargo run --release --example train_digits -- --help
//! ```
//!
//! `--workers N` trains data-parallel on N threads: each takes its share of
//! every batch of 32 and gradients are averaged by ring all-reduce.
//! `--gpus N` trains on N GPUs instead (the step compiled for each GPU,
//! gradients averaged by NCCL). `--data` reads another CSV of the same
//! form (gzipped or plain); a line that is not 64 pixels 0..16 and a label
//! 0..9, or too few samples for one batch, is an error naming the file, the
//! line and the value.

use clap::builder::RangedU64ValueParser;
use dagger::nn::{
    self, Activation, Adam, CompileOptions, DataParallel, DataParallelOptions, NamedParams, Net,
    Program, SeededRng, Workers,
};
use dagger::tensor::Tensor;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "train_digits/digits.rs"]
mod digits;
pub use digits::{check_sizes, digits_path, load_digits, split, Samples, CLASSES, FEATURES};

/// Hyperparameters.
#[derive(Clone, Debug)]
pub struct Config {
    /// Passes over the training samples.
    pub epochs: usize,
    /// Samples per step.
    pub batch: usize,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Adam's learning rate.
    pub lr: f32,
    /// Seed of the split, the initial parameters and the shuffles.
    pub seed: u64,
    /// Data-parallel workers (threads); the batch is split between them.
    pub workers: usize,
    /// Data-parallel GPUs (0: train on the cores); overrides `workers`.
    pub gpus: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            epochs: 40,
            batch: 32,
            hidden: vec![128, 64],
            lr: 2e-3,
            seed: 7,
            workers: 1,
            gpus: 0,
        }
    }
}

/// The forward pass for `batch` samples: returns the net, its pixel and
/// target inputs and the logits.
pub fn model(config: &Config, batch: usize) -> (Net, Tensor, Tensor, Tensor) {
    let mut net = Net::new();
    let x = net.input("x", [batch, FEATURES]);
    let y = net.input("y", [batch, CLASSES]);
    let mut widths = config.hidden.clone();
    widths.push(CLASSES);
    let logits = net
        .mlp(x, &widths, Activation::Relu)
        .expect("shapes are consistent");
    (net, x, y, logits)
}

/// The training step: the model on a batch, cross-entropy, gradients and
/// Adam's updates in one graph.
pub fn train_step(config: &Config) -> dagger::nn::Result<Net> {
    let (mut net, _, y, logits) = model(config, config.batch);
    let loss = net.cross_entropy(logits, y)?;
    net.train_step(loss, &[], &Adam::new(config.lr))
}

/// One epoch's figures.
#[derive(Clone, Debug)]
pub struct Epoch {
    /// Mean training loss.
    pub loss: f32,
    /// Fraction of test samples classified right.
    pub test_accuracy: f32,
}

/// The index of the largest value in each row of `logits`.
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks_exact(classes)
        .map(|row| {
            (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0)
        })
        .collect()
}

/// What trains: one program, or data-parallel replicas on threads or GPUs.
pub enum Trainer {
    /// The step compiled once.
    Single(Box<Program>),
    /// `Config::workers` replicas (or `Config::gpus`), gradients averaged
    /// by all-reduce.
    Parallel(DataParallel),
}

impl Trainer {
    fn new(config: &Config) -> Result<Trainer, Box<dyn std::error::Error>> {
        if config.workers <= 1 && config.gpus == 0 {
            let step = train_step(config)?;
            let mut program = Program::compile(&step, CompileOptions::default())?;
            step.init_params(&mut program, config.seed)?;
            return Ok(Trainer::Single(Box::new(program)));
        }
        let options = DataParallelOptions {
            global_batch: config.batch,
            bucket_bytes: 16 << 10,
            seed: config.seed,
        };
        let build = |batch: usize| {
            let (mut net, _, y, logits) = model(config, batch);
            let loss = net.cross_entropy(logits, y)?;
            Ok((net, loss))
        };
        let workers = match config.gpus {
            0 => Workers::Threads(config.workers),
            n => Workers::Gpus(n),
        };
        let dp = DataParallel::new(workers, options, &Adam::new(config.lr), build)?;
        Ok(Trainer::Parallel(dp))
    }

    /// One step on `batch`; returns its loss.
    pub fn step(&mut self, batch: &Samples) -> Result<f32, Box<dyn std::error::Error>> {
        match self {
            Trainer::Single(p) => {
                p.set("x", &batch.x)?;
                p.set("y", &batch.y)?;
                p.run()?;
                Ok(p.output(0)[0])
            }
            Trainer::Parallel(dp) => Ok(dp.step(&[("x", &batch.x), ("y", &batch.y)])?),
        }
    }

    /// The parameters (and optimizer state) by name.
    pub fn params(&self) -> Result<NamedParams, Box<dyn std::error::Error>> {
        Ok(match self {
            Trainer::Single(p) => p
                .params()
                .into_iter()
                .map(|(n, _, d)| (n.to_string(), d.to_vec()))
                .collect(),
            Trainer::Parallel(dp) => dp.params()?,
        })
    }
}

/// Trains with `config`, calling `on_batch(epoch, batch, loss)` after each
/// step; returns the per-epoch figures and the trainer.
pub fn train(
    config: &Config,
    train_set: &Samples,
    test_set: &Samples,
    mut on_batch: impl FnMut(usize, usize, f32),
) -> Result<(Vec<Epoch>, Trainer), Box<dyn std::error::Error>> {
    check_sizes(train_set, test_set, config.batch)?;
    let mut trainer = Trainer::new(config)?;
    let (eval_net, _, _, eval_logits) = model(config, test_set.len());
    let mut eval_graph = eval_net.clone();
    eval_graph.set_outputs(vec![eval_logits])?;
    let mut evaluator = Program::compile(&eval_graph, CompileOptions::default())?;
    evaluator.set("x", &test_set.x)?;
    evaluator.set("y", &test_set.y)?;

    let mut rng = SeededRng::new(config.seed ^ 0x5eed);
    let mut order: Vec<usize> = (0..train_set.len()).collect();
    let batches = train_set.len() / config.batch;
    let mut epochs = Vec::with_capacity(config.epochs);
    for epoch in 0..config.epochs {
        rng.shuffle(&mut order);
        let mut total = 0.0;
        for b in 0..batches {
            let batch = train_set.select(&order[b * config.batch..(b + 1) * config.batch]);
            let l = trainer.step(&batch)?;
            total += l;
            on_batch(epoch, b, l);
        }
        for (name, values) in trainer.params()? {
            if eval_graph.by_name(&name).is_some() {
                evaluator.set(&name, &values)?;
            }
        }
        evaluator.run()?;
        let predicted = argmax_rows(evaluator.output(0), CLASSES);
        let right = predicted
            .iter()
            .zip(&test_set.labels)
            .filter(|(p, l)| p == l)
            .count();
        epochs.push(Epoch {
            loss: total / batches as f32,
            test_accuracy: right as f32 / test_set.len() as f32,
        });
    }
    Ok((epochs, trainer))
}

/// Draws the loss and accuracy curves into an SVG file: the loss from 0,
/// the accuracy in percent over the range its values span.
pub fn plot(epochs: &[Epoch], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    let n = epochs.len() as f32;
    let max_loss = epochs.iter().map(|e| e.loss).fold(0.0, f32::max) * 1.05;
    let mut chart = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(1f32..n.max(2.0), 0f32..max_loss.max(1e-3))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|e| format!("{e:.0}"))
        .y_desc("mean cross-entropy (nats)")
        .draw()?;
    chart.draw_series(LineSeries::new(
        epochs
            .iter()
            .enumerate()
            .map(|(i, e)| (i as f32 + 1.0, e.loss)),
        &RED,
    ))?;
    let percent: Vec<f32> = epochs.iter().map(|e| e.test_accuracy * 100.0).collect();
    let (low, high) = percent_axis(&percent);
    let mut chart = ChartBuilder::on(&right)
        .caption("test accuracy", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(1f32..n.max(2.0), low..high)?;
    let decimals = if high - low < 5.0 { 1 } else { 0 };
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|e| format!("{e:.0}"))
        .y_desc("test samples right (%)")
        .y_label_formatter(&|v| format!("{v:.decimals$}%"))
        .draw()?;
    chart.draw_series(LineSeries::new(
        percent
            .iter()
            .enumerate()
            .map(|(i, &p)| (i as f32 + 1.0, p)),
        &BLUE,
    ))?;
    root.present()?;
    Ok(())
}

/// The range of a percent axis for `values`: whole percents around the
/// values with a little room (at least 2 points wide), within 0..100.
pub fn percent_axis(values: &[f32]) -> (f32, f32) {
    let finite = || values.iter().copied().filter(|v| v.is_finite());
    let (Some(min), Some(max)) = (finite().reduce(f32::min), finite().reduce(f32::max)) else {
        return (0.0, 100.0);
    };
    let room = ((max - min) * 0.1).max(1.0);
    let mut low = (min - room).floor().max(0.0);
    let mut high = (max + room).ceil().min(100.0);
    if high - low < 2.0 {
        low = (high - 2.0).max(0.0);
        high = low + 2.0;
    }
    (low, high)
}

/// The command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "train_digits",
    about = "Trains an MLP on the UCI handwritten digits (80/20 split) and draws its loss and \
             accuracy curves"
)]
pub struct Cli {
    /// Passes over the training samples.
    #[arg(
        long,
        default_value_t = 40,
        value_parser = RangedU64ValueParser::<usize>::from(1..=100_000),
        allow_negative_numbers = true
    )]
    pub epochs: usize,
    /// Seed of the split, the initial parameters and the shuffles.
    #[arg(long, default_value_t = 7, allow_negative_numbers = true)]
    pub seed: u64,
    /// Trains data-parallel on N threads (1, 2, 4, 8, 16 or 32), each taking
    /// its share of every batch of 32 (gradients averaged by ring all-reduce).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = RangedU64ValueParser::<usize>::from(1..=32),
        allow_negative_numbers = true
    )]
    pub workers: usize,
    /// Trains on N GPUs instead (gradients averaged by NCCL); without a
    /// GPU, trains on the cores, saying so.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub gpus: usize,
    /// The digits: a CSV file, gzipped or plain, of 64 pixels 0..16 and a
    /// label 0..9 a line.
    #[arg(long, value_name = "FILE", default_value_os_t = digits_path())]
    pub data: PathBuf,
    /// Where the loss and accuracy curves go.
    #[arg(long, value_name = "FILE", default_value = "target/train_digits.svg")]
    pub svg: PathBuf,
    /// Also saves the trained parameters and Adam's state (safetensors).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
}

/// The configuration, trained on the cores when GPUs were asked for but
/// this machine has none (saying so once).
fn on_gpus_found(config: Config) -> Config {
    if config.gpus == 0 {
        return config;
    }
    let none = match dagger::cuda::gpus() {
        Ok(found) if found.is_empty() => "no GPU found".to_string(),
        Ok(_) => return config,
        Err(e) => e.to_string(),
    };
    println!(
        "{none}; training on the CPU (--gpus {} asked for)",
        config.gpus
    );
    Config { gpus: 0, ..config }
}

fn main() -> std::process::ExitCode {
    dagger::pipe::end_quietly_on_closed_pipe();
    std::process::ExitCode::from(run_cli(std::env::args_os()))
}

/// Parses the command line `args` (the program's name first) and trains;
/// returns the exit status: 0, or 1 after printing why training failed
/// (bad arguments exit with clap's status 2 and its message, `--help`
/// with 0).
pub fn run_cli(args: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
    use clap::Parser;
    match run(&Cli::parse_from(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("train_digits: {e}");
            1
        }
    }
}

/// Trains as the command line says and prints the figures.
fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = on_gpus_found(Config {
        epochs: cli.epochs,
        seed: cli.seed,
        workers: cli.workers,
        gpus: cli.gpus,
        ..Config::default()
    });
    let all = load_digits(&cli.data)?;
    let (train_set, test_set) = split(&all, config.seed);
    check_sizes(&train_set, &test_set, config.batch)
        .map_err(|e| format!("{}: {e}", cli.data.display()))?;
    println!(
        "digits: {} training and {} test samples; MLP 64-{}-10, Adam lr {}, batch {}, seed {}, {}",
        train_set.len(),
        test_set.len(),
        config
            .hidden
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join("-"),
        config.lr,
        config.batch,
        config.seed,
        match config.gpus {
            0 => format!("{} worker(s)", config.workers),
            n => format!("{n} GPU(s)"),
        }
    );
    let batches = (train_set.len() / config.batch) as u64;
    let style = indicatif::ProgressStyle::with_template(
        "epoch {prefix:>3} [{bar:30}] {pos}/{len} loss {msg}",
    )?
    .progress_chars("=> ");
    let mut bar: Option<indicatif::ProgressBar> = None;
    let start = Instant::now();
    let (epochs, trainer) = train(&config, &train_set, &test_set, |epoch, b, loss| {
        if b == 0 {
            if let Some(done) = bar.take() {
                done.finish();
            }
            let next = indicatif::ProgressBar::new(batches).with_style(style.clone());
            next.set_prefix((epoch + 1).to_string());
            bar = Some(next);
        }
        if let Some(bar) = &bar {
            bar.set_message(format!("{loss:.4}"));
            bar.inc(1);
        }
    })?;
    if let Some(done) = bar.take() {
        done.finish();
    }
    let seconds = start.elapsed().as_secs_f64();
    let samples = (batches as usize * config.batch * config.epochs) as f64;
    println!("| epoch | train loss | test accuracy |");
    println!("|---|---|---|");
    for (i, e) in epochs.iter().enumerate() {
        if i % 5 == 4 || i + 1 == epochs.len() {
            println!(
                "| {} | {:.4} | {:.2}% |",
                i + 1,
                e.loss,
                e.test_accuracy * 100.0
            );
        }
    }
    let last = epochs.last().ok_or("no epochs")?;
    println!(
        "test accuracy {:.2}% after {} epochs; {:.2} s, {:.0} samples/s",
        last.test_accuracy * 100.0,
        config.epochs,
        seconds,
        samples / seconds
    );
    if let Some(parent) = cli.svg.parent() {
        std::fs::create_dir_all(parent)?;
    }
    plot(&epochs, &cli.svg)?;
    println!("loss and accuracy curves: {}", cli.svg.display());
    if let Some(path) = &cli.save {
        let step = train_step(&config)?;
        let mut program = Program::compile(&step, CompileOptions::default())?;
        for (name, values) in trainer.params()? {
            program.set(&name, &values)?;
        }
        nn::save_params(&program, path)?;
        println!("parameters saved to {}", path.display());
    }
    Ok(())
}
