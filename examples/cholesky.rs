//! Tiled Cholesky factorization as a task graph, under every scheduling policy.
//!
//! A symmetric positive definite matrix of order `n` is cut into `t x t`
//! tiles of order `b`; the right-looking tiled algorithm is a DAG of POTRF
//! (factor a diagonal tile), TRSM (solve a tile below it), SYRK (update a
//! diagonal tile) and GEMM (update an off-diagonal tile) tasks, each on whole
//! tiles, with the tile kernels of `faer` running single-threaded inside the
//! tasks. The graph is built in a loop with `GraphBuilder`, run under work
//! stealing, each dynamic placement policy and each static scheduler, checked
//! against faer's own factorization, and compared in GFLOP/s with faer's
//! parallel Cholesky on the same number of threads.
//!
//! Every task also has a GPU body (`#[task(gpu = ...)]`: cuBLAS TRSM, SYRK
//! and GEMM, cuSOLVER POTRF), StarPU's classic demonstration: with a GPU,
//! the same graph then runs on the GPU alone and on the cores and the GPU
//! together under each policy, after a calibration run that measures every
//! task on both kinds of processor, and against cuSOLVER's factorization
//! of the whole matrix on the GPU. Without a GPU those rows are left out
//! with the reason.
//!
//! ```text
//! cargo run --release --example cholesky -- [N] [TILE]      (default 4096 256)
//! ```
//!
//! The table goes to stdout; stderr says which stage the run is at.

use clap::builder::RangedU64ValueParser;
use dagger::cuda::resident::{Resident, Transfer};
use dagger::cuda::tiles::DeviceTile;
use dagger::cuda::{CudaError, GpuDevice};
use dagger::ir::model::{HistoryModel, ProcKind};
use dagger::prelude::*;
use dagger::GraphBuilder;
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Accum, Mat, Par, Side};
use std::time::Instant;

/// One tile's entries: a faer matrix that tells its size (for the
/// performance model's size buckets and transfer costs), crosses processes
/// (as its shape and column-major entries) and GPUs (as a cuBLAS tile).
#[derive(Clone, Debug)]
pub struct Block(pub Mat<f64>);

/// A tile as the graph carries it: in host memory, on a GPU, or both. A
/// tile a GPU task makes stays on the GPU while GPU tasks use it, and is
/// copied to host memory only when a CPU task reads it.
pub type Tile = Resident<Block>;

impl serde::Serialize for Block {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = &self.0;
        let entries: Vec<f64> = (0..m.ncols())
            .flat_map(|j| (0..m.nrows()).map(move |i| m[(i, j)]))
            .collect();
        (m.nrows(), m.ncols(), entries).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Block {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (rows, cols, entries): (usize, usize, Vec<f64>) = serde::Deserialize::deserialize(d)?;
        if entries.len() != rows * cols {
            return Err(serde::de::Error::custom(format!(
                "a {rows}x{cols} tile needs {} entries, got {}",
                rows * cols,
                entries.len()
            )));
        }
        Ok(Block(Mat::from_fn(rows, cols, |i, j| {
            entries[j * rows + i]
        })))
    }
}

impl Transfer for Block {
    type Device = DeviceTile;

    fn bytes(&self) -> u64 {
        (self.0.nrows() * self.0.ncols() * std::mem::size_of::<f64>()) as u64
    }

    fn device_bytes(tile: &DeviceTile) -> u64 {
        (tile.n * tile.n * std::mem::size_of::<f64>()) as u64
    }

    fn upload(&self, gpu: &GpuDevice) -> Result<DeviceTile, CudaError> {
        gpu.upload_tile(self.0.nrows(), |j| self.0.col_as_slice(j))
    }

    fn download(gpu: &GpuDevice, tile: &DeviceTile) -> Result<Block, CudaError> {
        let mut m = Mat::zeros(tile.n, tile.n);
        gpu.download_tile(tile, |j, v| m.col_as_slice_mut(j).copy_from_slice(v))?;
        Ok(Block(m))
    }

    fn duplicate(gpu: &GpuDevice, tile: &DeviceTile) -> Result<DeviceTile, CudaError> {
        gpu.duplicate_tile(tile)
    }
}

/// Factors a diagonal tile: `A = L L^T`, returns `L` (lower triangular).
#[task(gpu = gpu::potrf)]
pub fn potrf(a: Tile) -> Result<Tile, String> {
    let a = &a.host().map_err(|e| e.to_string())?.0;
    let llt = a
        .llt(Side::Lower)
        .map_err(|e| format!("tile is not positive definite: {e:?}"))?;
    Ok(Tile::new(Block(llt.L().to_owned())))
}

/// Solves `X L^T = A` for a tile below the diagonal: `X = A L^-T`.
#[task(gpu = gpu::trsm)]
pub fn trsm(l: Tile, a: Tile) -> Result<Tile, CudaError> {
    let mut a = a.into_host()?;
    solve_lower_triangular_in_place(l.host()?.0.as_ref(), a.0.as_mut().transpose_mut(), Par::Seq);
    Ok(Tile::new(a))
}

/// Updates a diagonal tile: `C - A A^T`.
#[task(gpu = gpu::syrk)]
pub fn syrk(c: Tile, a: Tile) -> Result<Tile, CudaError> {
    let (mut c, a) = (c.into_host()?, &a.host()?.0);
    matmul(
        c.0.as_mut(),
        Accum::Add,
        a.as_ref(),
        a.as_ref().transpose(),
        -1.0,
        Par::Seq,
    );
    Ok(Tile::new(c))
}

/// Updates an off-diagonal tile: `C - A B^T`.
#[task(gpu = gpu::gemm)]
pub fn gemm(c: Tile, a: Tile, b: Tile) -> Result<Tile, CudaError> {
    let mut c = c.into_host()?;
    matmul(
        c.0.as_mut(),
        Accum::Add,
        a.host()?.0.as_ref(),
        b.host()?.0.as_ref().transpose(),
        -1.0,
        Par::Seq,
    );
    Ok(Tile::new(c))
}

/// The GPU bodies of the four tasks: each takes its tiles where they are
/// (on this GPU already, or uploaded now if the runtime's prefetch has not
/// brought them), runs the cuBLAS / cuSOLVER kernel and leaves its result
/// on the GPU, updating the tile in place when nothing else reads it.
mod gpu {
    use super::Tile;
    use dagger::cuda::{CudaError, GpuDevice};

    pub fn potrf(gpu: &GpuDevice, a: Tile) -> Result<Tile, String> {
        let mut d = a.into_device(gpu).map_err(|e| e.to_string())?;
        gpu.potrf_lower(&mut d)
            .map_err(|e| format!("tile is not positive definite: {e}"))?;
        Ok(Tile::on_gpu(gpu, d))
    }

    pub fn trsm(gpu: &GpuDevice, l: Tile, a: Tile) -> Result<Tile, CudaError> {
        let mut da = a.into_device(gpu)?;
        gpu.trsm_lower_transposed(&*l.on(gpu)?, &mut da)?;
        Ok(Tile::on_gpu(gpu, da))
    }

    pub fn syrk(gpu: &GpuDevice, c: Tile, a: Tile) -> Result<Tile, CudaError> {
        let mut dc = c.into_device(gpu)?;
        gpu.syrk_lower_sub(&mut dc, &*a.on(gpu)?)?;
        Ok(Tile::on_gpu(gpu, dc))
    }

    pub fn gemm(gpu: &GpuDevice, c: Tile, a: Tile, b: Tile) -> Result<Tile, CudaError> {
        let mut dc = c.into_device(gpu)?;
        gpu.gemm_nt_sub(&mut dc, &*a.on(gpu)?, &*b.on(gpu)?)?;
        Ok(Tile::on_gpu(gpu, dc))
    }
}

/// A well-conditioned symmetric positive definite matrix: `M M^T / n + n I`
/// for a seeded pseudo-random `M` (entries in [-1, 1)).
pub fn spd_matrix(n: usize, seed: u64) -> Mat<f64> {
    let mut s = seed | 1;
    let m = Mat::from_fn(n, n, |_, _| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    });
    let mut a = Mat::from_fn(n, n, |i, j| if i == j { n as f64 } else { 0.0 });
    matmul(
        a.as_mut(),
        Accum::Add,
        m.as_ref(),
        m.as_ref().transpose(),
        1.0 / n as f64,
        Par::rayon(0),
    );
    a
}

/// The tiled Cholesky graph of `a` (order `t * b`): its outputs are the tiles
/// of `L` on and below the diagonal, row by row.
pub fn cholesky_graph(a: &Mat<f64>, b: usize) -> Dag<(), Vec<Tile>> {
    let t = a.nrows() / b;
    let g = GraphBuilder::new();
    let mut tile: Vec<Vec<Option<Value<Tile>>>> = (0..t)
        .map(|i| {
            (0..t)
                .map(|j| {
                    (j <= i).then(|| {
                        g.constant(Tile::new(Block(a.submatrix(i * b, j * b, b, b).to_owned())))
                    })
                })
                .collect()
        })
        .collect();
    let at = |tile: &Vec<Vec<Option<Value<Tile>>>>, i: usize, j: usize| {
        tile[i][j].expect("lower tiles exist")
    };
    for k in 0..t {
        let l = potrf::on(&g).node(at(&tile, k, k));
        tile[k][k] = Some(l);
        for i in k + 1..t {
            let x = trsm::on(&g).node(l, at(&tile, i, k));
            tile[i][k] = Some(x);
        }
        for i in k + 1..t {
            let c = syrk::on(&g).node(at(&tile, i, i), at(&tile, i, k));
            tile[i][i] = Some(c);
            for j in k + 1..i {
                let c = gemm::on(&g).node(at(&tile, i, j), at(&tile, i, k), at(&tile, j, k));
                tile[i][j] = Some(c);
            }
        }
    }
    let outputs: Vec<Value<Tile>> = (0..t)
        .flat_map(|i| (0..=i).map(move |j| (i, j)))
        .map(|(i, j)| at(&tile, i, j))
        .collect();
    g.finish(outputs)
}

/// Assembles the lower-triangular factor from its tiles (row by row, as
/// [`cholesky_graph`] outputs them), downloading those left on a GPU. Only
/// the lower triangle of a diagonal tile is read (cuSOLVER leaves the
/// upper one as it found it).
pub fn assemble(tiles: &[Tile], n: usize, b: usize) -> Result<Mat<f64>, CudaError> {
    let mut l = Mat::<f64>::zeros(n, n);
    let mut it = tiles.iter();
    for i in 0..n / b {
        for j in 0..=i {
            let tile = &it.next().expect("one tile per lower block").host()?.0;
            for c in 0..b {
                let from = if i == j { c } else { 0 };
                l.col_as_slice_mut(j * b + c)[i * b + from..(i + 1) * b]
                    .copy_from_slice(&tile.col_as_slice(c)[from..]);
            }
        }
    }
    Ok(l)
}

/// How far `L L^T` is from `A`, checked on one vector as Freivalds does:
/// the largest entry of `A x - L (L^T x)` relative to the largest entry of
/// `|A| |x|`, for a fixed `x` with entries in `[-1, 1]`. Two matrix-vector
/// products, `O(n^2)`, where forming `L L^T` would cost twice the
/// factorization itself (minutes at `n = 16384`, for each row of the table).
pub fn residual(l: &Mat<f64>, a: &Mat<f64>) -> f64 {
    let n = a.nrows();
    let x = Mat::from_fn(n, 1, |i, _| (i * 7919 % 2003) as f64 / 1001.0 - 1.0);
    let mut r = a * &x;
    let lt_x = l.transpose() * &x;
    matmul(
        r.as_mut(),
        Accum::Add,
        l.as_ref(),
        lt_x.as_ref(),
        -1.0,
        Par::Seq,
    );
    let mut scale = vec![0.0f64; n];
    for j in 0..n {
        for (s, v) in scale.iter_mut().zip(a.col_as_slice(j)) {
            *s += v.abs() * x[(j, 0)].abs();
        }
    }
    let worst = (0..n).map(|i| r[(i, 0)].abs()).fold(0.0, f64::max);
    worst / scale.into_iter().fold(0.0, f64::max)
}

/// The factorization on every rank of a cluster (`dagger run -n N`),
/// checked by its residual like the local runs.
fn across_ranks(
    session: &dagger::Session,
    a: &Mat<f64>,
    b: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = a.nrows();
    println!(
        "tiled Cholesky, n = {n}, tiles of {b}, on {} ranks",
        session.ranks()
    );
    let t0 = Instant::now();
    let (tiles, report) = session.run(&cholesky_graph(a, b), ())?;
    let seconds = t0.elapsed().as_secs_f64();
    let err = residual(&assemble(&tiles, n, b)?, a);
    assert!(err < 1e-12 * n as f64, "residual {err}");
    println!(
        "{seconds:.3} s ({:.1} GFLOP/s), residual {err:.1e}; tasks per rank {:?}",
        (n as f64).powi(3) / 3.0 / seconds / 1e9,
        report.map(|r| r.tasks_per_rank).unwrap_or_default()
    );
    Ok(())
}

/// The command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "cholesky",
    about = "Tiled Cholesky factorization as a task graph under every scheduling policy, \
             against faer (and cuSOLVER with a GPU)"
)]
pub struct Cli {
    /// Order of the matrix (a multiple of TILE).
    #[arg(
        default_value_t = 4096,
        value_parser = RangedU64ValueParser::<usize>::from(1..=65_536),
        allow_negative_numbers = true
    )]
    pub n: usize,
    /// Order of the tiles.
    #[arg(
        default_value_t = 256,
        value_parser = RangedU64ValueParser::<usize>::from(1..=65_536),
        allow_negative_numbers = true
    )]
    pub tile: usize,
}

impl Cli {
    /// Parses the command line `args` (the program's name first) and checks
    /// that the tiles cover the matrix.
    pub fn parse_checked(
        args: impl IntoIterator<Item = std::ffi::OsString>,
    ) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory, Parser};
        let cli = Cli::try_parse_from(args)?;
        if !cli.n.is_multiple_of(cli.tile) {
            return Err(Cli::command().error(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "the order N = {} is not a multiple of the tile order TILE = {}",
                    cli.n, cli.tile
                ),
            ));
        }
        Ok(cli)
    }
}

/// Says on stderr what the program does next (the table goes to stdout).
fn stage(what: &str) {
    eprintln!("cholesky: {what} ...");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    dagger::pipe::end_quietly_on_closed_pipe();
    let cli = Cli::parse_checked(std::env::args_os()).unwrap_or_else(|e| e.exit());
    run(&cli)
}

/// Factors a matrix as the command line says and prints the table.
pub fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    let session = dagger::Session::start()?;
    let (n, b) = (cli.n, cli.tile);
    let rt = session.runtime();
    stage(&format!("building the {n} x {n} positive definite matrix"));
    let a = spd_matrix(n, 3);
    if session.ranks() > 1 {
        return across_ranks(&session, &a, b);
    }
    let flops = (n as f64).powi(3) / 3.0;
    println!(
        "tiled Cholesky, n = {n}, tiles of {b} ({} tasks), {} threads\n",
        (n / b) * (n / b + 1) * (n / b + 2) / 6,
        rt.threads()
    );

    faer::set_global_parallelism(Par::rayon(rt.threads()));
    stage("faer's factorization, best of 3");
    // Best of three, so that faer's thread pool start-up is not counted.
    let faer_time = (0..3)
        .map(|_| {
            let t0 = Instant::now();
            let reference = a.llt(Side::Lower).expect("positive definite");
            std::hint::black_box(&reference);
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);

    let dag = cholesky_graph(&a, b);
    dag.plan()?;
    let model = HistoryModel::load(&HistoryModel::default_dir()).unwrap_or_default();
    println!("| run | seconds | GFLOP/s | vs faer parallel | predicted s | residual |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| faer llt, {} threads | {faer_time:.3} | {:.1} | 1.00x | - | - |",
        rt.threads(),
        flops / faer_time / 1e9
    );
    stage("the graph under each of 10 policies, a row each");
    let report = |name: &str, seconds: f64, predicted: Option<f64>, tiles: &[Tile]| {
        let l = assemble(tiles, n, b).expect("the tiles can be read back");
        let err = residual(&l, &a);
        assert!(err < 1e-12 * n as f64, "{name}: residual {err}");
        println!(
            "| {name} | {seconds:.3} | {:.1} | {:.2}x | {} | {err:.1e} |",
            flops / seconds / 1e9,
            faer_time / seconds,
            predicted.map_or("-".to_string(), |p| format!("{p:.3}"))
        );
    };
    rt.run_under_every_policy(&dag, &(), &model, |run| {
        report(
            &format!("dagger, {}", run.policy),
            run.seconds,
            run.predicted,
            &run.output,
        );
        Ok(())
    })?;
    if model.is_empty() {
        println!("\n(no performance model yet: predictions use default task costs; run once with DAGGER_CALIBRATE=1)");
    }
    with_gpus(&a, b, &model, &report)
}

/// Prints one row of the table (name, seconds, predicted seconds, factor),
/// checking the factor's residual.
type Report<'a> = dyn Fn(&str, f64, Option<f64>, &[Tile]) + 'a;

/// The rows with GPUs: the graph on the GPU alone and on cores plus GPUs
/// under each policy (after calibrating every task on both kinds), and
/// cuSOLVER on the whole matrix. Says why when there is no GPU.
fn with_gpus(
    a: &Mat<f64>,
    b: usize,
    model: &HistoryModel,
    report: &Report<'_>,
) -> Result<(), Box<dyn std::error::Error>> {
    let gpus = dagger::platform::gpu_workers();
    if gpus.is_empty() {
        let why = dagger::cuda::gpus().map_or_else(|e| e.to_string(), |_| "none usable".into());
        println!("\nno GPU rows: {why}");
        return Ok(());
    }
    // As StarPU does, each GPU's driving thread takes one core's place.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = Runtime::builder().threads(cores.saturating_sub(gpus.len()).max(1));
    for gpu in &gpus {
        builder = builder.accelerator(gpu.clone());
    }
    let rt = builder.build();
    let dag = cholesky_graph(a, b);
    // Calibration: the cores' times from round-robin runs (which put tasks
    // on every worker in turn), the GPU's from runs on the GPU alone, where
    // a task finds its inputs in device memory as it does under a good
    // placement. (A GPU task of a round-robin run also times the copies of
    // its inputs from the cores, which the schedulers already count, from
    // the measured link, as transfers.)
    let gpu = rt.threads();
    let mut model = model.clone();
    stage("calibrating every task on the cores and on the GPU, 2 rounds");
    for _ in 0..2 {
        rt.start_trace();
        rt.run_with_policy(&dag, (), dagger::DynamicPolicy::RoundRobin, &model)?;
        let on_cores = rt.stop_trace();
        rt.start_trace();
        rt.run_scheduled(&dag, (), &OnProcessor(gpu), &model)?;
        let on_gpu = rt.stop_trace();
        let cores = on_cores.measurements().filter(|m| m.kind == ProcKind::Cpu);
        for m in cores.chain(on_gpu.measurements()) {
            model.record(&m);
        }
    }
    stage("the graph on the GPU alone, then on cores and GPU under each policy");
    let t0 = Instant::now();
    let (tiles, schedule) = rt.run_scheduled(&dag, (), &OnProcessor(gpu), &model)?;
    report(
        &format!("dagger, GPU {} only", gpus[0].device().ordinal()),
        t0.elapsed().as_secs_f64(),
        Some(schedule.makespan()),
        &tiles,
    );
    rt.run_under_every_policy(&dag, &(), &model, |run| {
        report(
            &format!(
                "dagger, {} cores + {} GPU, {}",
                rt.threads(),
                gpus.len(),
                run.policy
            ),
            run.seconds,
            run.predicted,
            &run.output,
        );
        Ok(())
    })?;
    stage("cuSOLVER on the whole matrix");
    let device = gpus[0].device();
    let mut whole = device.upload_tile(a.nrows(), |j| a.col_as_slice(j))?;
    device.synchronize()?;
    let t0 = Instant::now();
    device.potrf_lower(&mut whole)?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut l = Mat::zeros(a.nrows(), a.ncols());
    device.download_tile(&whole, |j, v| {
        l.col_as_slice_mut(j)[j..].copy_from_slice(&v[j..])
    })?;
    let n = a.nrows();
    let tiles: Vec<Tile> = (0..n / b)
        .flat_map(|i| (0..=i).map(move |j| (i, j)))
        .map(|(i, j)| Tile::new(Block(l.submatrix(i * b, j * b, b, b).to_owned())))
        .collect();
    report(
        "cuSOLVER Dpotrf, whole matrix on the GPU (copies not counted)",
        seconds,
        None,
        &tiles,
    );
    Ok(())
}

/// A "scheduler" that puts every task on one processor, in topological
/// order: the GPU-only run.
struct OnProcessor(usize);

impl dagger::ir::sched::Scheduler for OnProcessor {
    fn name(&self) -> &'static str {
        "one processor"
    }

    fn schedule(&self, problem: &dagger::ir::sched::Problem) -> dagger::ir::sched::Schedule {
        let mut placement = vec![(self.0, 0.0, 0.0); problem.len()];
        let mut now = 0.0;
        for t in problem.topo_order().expect("plans are acyclic") {
            let finish = now + problem.cost[t][self.0];
            placement[t] = (self.0, now, finish);
            now = finish;
        }
        dagger::ir::sched::Schedule { placement }
    }
}
