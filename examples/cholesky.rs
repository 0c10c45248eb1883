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
//! ```text
//! cargo run --release --example cholesky -- [N] [TILE]      (default 4096 256)
//! ```

use dagger::ir::model::HistoryModel;
use dagger::prelude::*;
use dagger::size::ByteSize;
use dagger::GraphBuilder;
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Accum, Mat, Par, Side};
use std::time::Instant;

/// One tile: a faer matrix that tells its size (for the performance
/// model's size buckets and transfer costs) and crosses processes (as its
/// shape and column-major entries).
#[derive(Clone, Debug)]
pub struct Tile(pub Mat<f64>);

impl ByteSize for Tile {
    fn byte_size(&self) -> u64 {
        (self.0.nrows() * self.0.ncols() * std::mem::size_of::<f64>()) as u64
    }
}

impl serde::Serialize for Tile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = &self.0;
        let entries: Vec<f64> = (0..m.ncols())
            .flat_map(|j| (0..m.nrows()).map(move |i| m[(i, j)]))
            .collect();
        (m.nrows(), m.ncols(), entries).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Tile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (rows, cols, entries): (usize, usize, Vec<f64>) = serde::Deserialize::deserialize(d)?;
        if entries.len() != rows * cols {
            return Err(serde::de::Error::custom(format!(
                "a {rows}x{cols} tile needs {} entries, got {}",
                rows * cols,
                entries.len()
            )));
        }
        Ok(Tile(Mat::from_fn(rows, cols, |i, j| entries[j * rows + i])))
    }
}

/// Factors a diagonal tile: `A = L L^T`, returns `L` (lower triangular).
#[task]
pub fn potrf(a: Tile) -> Result<Tile, String> {
    let llt =
        a.0.llt(Side::Lower)
            .map_err(|e| format!("tile is not positive definite: {e:?}"))?;
    Ok(Tile(llt.L().to_owned()))
}

/// Solves `X L^T = A` for a tile below the diagonal: `X = A L^-T`.
#[task]
pub fn trsm(l: Tile, mut a: Tile) -> Tile {
    solve_lower_triangular_in_place(l.0.as_ref(), a.0.as_mut().transpose_mut(), Par::Seq);
    a
}

/// Updates a diagonal tile: `C - A A^T`.
#[task]
pub fn syrk(mut c: Tile, a: Tile) -> Tile {
    matmul(
        c.0.as_mut(),
        Accum::Add,
        a.0.as_ref(),
        a.0.as_ref().transpose(),
        -1.0,
        Par::Seq,
    );
    c
}

/// Updates an off-diagonal tile: `C - A B^T`.
#[task]
pub fn gemm(mut c: Tile, a: Tile, b: Tile) -> Tile {
    matmul(
        c.0.as_mut(),
        Accum::Add,
        a.0.as_ref(),
        b.0.as_ref().transpose(),
        -1.0,
        Par::Seq,
    );
    c
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
                    (j <= i).then(|| g.constant(Tile(a.submatrix(i * b, j * b, b, b).to_owned())))
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
/// [`cholesky_graph`] outputs them).
pub fn assemble(tiles: &[Tile], n: usize, b: usize) -> Mat<f64> {
    let mut l = Mat::<f64>::zeros(n, n);
    let mut it = tiles.iter();
    for i in 0..n / b {
        for j in 0..=i {
            let tile = it.next().expect("one tile per lower block");
            l.as_mut()
                .submatrix_mut(i * b, j * b, b, b)
                .copy_from(&tile.0);
        }
    }
    l
}

/// Largest entry of `L L^T - A`, relative to the largest entry of `A`.
pub fn residual(l: &Mat<f64>, a: &Mat<f64>) -> f64 {
    let mut r = a.clone();
    matmul(
        r.as_mut(),
        Accum::Add,
        l.as_ref(),
        l.as_ref().transpose(),
        -1.0,
        Par::rayon(0),
    );
    let n = a.nrows();
    let (mut worst, mut scale): (f64, f64) = (0.0, 0.0);
    for j in 0..n {
        for i in 0..n {
            worst = worst.max(r[(i, j)].abs());
            scale = scale.max(a[(i, j)].abs());
        }
    }
    worst / scale
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
    let err = residual(&assemble(&tiles, n, b), a);
    assert!(err < 1e-12 * n as f64, "residual {err}");
    println!(
        "{seconds:.3} s ({:.1} GFLOP/s), residual {err:.1e}; tasks per rank {:?}",
        (n as f64).powi(3) / 3.0 / seconds / 1e9,
        report.map(|r| r.tasks_per_rank).unwrap_or_default()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let session = dagger::Session::start()?;
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4096);
    let b: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    assert!(
        n.is_multiple_of(b),
        "the order {n} must be a multiple of the tile order {b}"
    );
    let rt = session.runtime();
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
    let report = |name: &str, seconds: f64, predicted: Option<f64>, tiles: &[Tile]| {
        let err = residual(&assemble(tiles, n, b), &a);
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
    Ok(())
}
