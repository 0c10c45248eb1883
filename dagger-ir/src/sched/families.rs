//! Structured task graphs of real algorithms, as scheduling problems:
//! tiled Cholesky, Gaussian elimination, FFT, MapReduce and merge sort.
//!
//! Each family is built by a [`FamilyBuilder`]: tasks get a base cost by
//! kind (relative flop counts), scaled on each processor by a factor uniform
//! in `[1 - beta / 2, 1 + beta / 2]`; every edge carries `ccr` times the mean
//! task cost. All of it is seeded and deterministic.

use super::problem::Problem;

/// Builds one structured problem: tasks with base costs, and edges.
pub struct FamilyBuilder {
    processors: usize,
    beta: f64,
    ccr: f64,
    state: u64,
    ids: Vec<String>,
    base: Vec<f64>,
    edges: Vec<(usize, usize)>,
}

impl FamilyBuilder {
    /// A builder for `processors` processors, heterogeneity `beta`,
    /// communication to computation ratio `ccr`, seeded with `seed`.
    pub fn new(processors: usize, beta: f64, ccr: f64, seed: u64) -> Self {
        FamilyBuilder {
            processors: processors.max(1),
            beta,
            ccr,
            state: seed,
            ids: Vec::new(),
            base: Vec::new(),
            edges: Vec::new(),
        }
    }

    /// Adds a task of base cost `cost` after `deps`; returns its index.
    pub fn task(&mut self, id: String, cost: f64, deps: &[usize]) -> usize {
        let t = self.ids.len();
        self.ids.push(id);
        self.base.push(cost);
        for &d in deps {
            if !self.edges.contains(&(d, t)) {
                self.edges.push((d, t));
            }
        }
        t
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        // SplitMix64.
        self.state = self.state.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        lo + (hi - lo) * (((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// The finished problem.
    pub fn finish(mut self) -> Problem {
        let n = self.ids.len();
        let half = self.beta / 2.0;
        let cost: Vec<Vec<f64>> = (0..n)
            .map(|t| {
                let base = self.base[t];
                (0..self.processors)
                    .map(|_| base * self.uniform((1.0 - half).max(0.0), 1.0 + half))
                    .collect()
            })
            .collect();
        let mean = self.base.iter().sum::<f64>() / n.max(1) as f64;
        let comm = self.ccr * mean;
        let mut succ = vec![Vec::new(); n];
        let mut pred = vec![Vec::new(); n];
        for &(a, b) in &self.edges {
            succ[a].push((b, comm));
            pred[b].push((a, comm));
        }
        Problem {
            processors: self.processors,
            ids: self.ids,
            cost,
            succ,
            pred,
        }
    }
}

/// Right-looking tiled Cholesky of `tiles` x `tiles` tiles: POTRF, TRSM,
/// SYRK and GEMM tasks, each after the last writer of every tile it touches.
/// Base costs in units of a tile GEMM's flops: POTRF 1/6, TRSM 1/2, SYRK 1/2, GEMM 1.
pub fn cholesky(b: &mut FamilyBuilder, tiles: usize) {
    let mut writer: Vec<Vec<Option<usize>>> = vec![vec![None; tiles]; tiles];
    let deps = |w: &[Option<usize>]| w.iter().flatten().copied().collect::<Vec<_>>();
    for k in 0..tiles {
        let potrf = b.task(format!("potrf({k})"), 1.0 / 6.0, &deps(&[writer[k][k]]));
        writer[k][k] = Some(potrf);
        for (i, row) in writer.iter_mut().enumerate().skip(k + 1) {
            let trsm = b.task(format!("trsm({i},{k})"), 0.5, &deps(&[Some(potrf), row[k]]));
            row[k] = Some(trsm);
        }
        for i in k + 1..tiles {
            let syrk = b.task(
                format!("syrk({i},{k})"),
                0.5,
                &deps(&[writer[i][k], writer[i][i]]),
            );
            writer[i][i] = Some(syrk);
            for j in k + 1..i {
                let gemm = b.task(
                    format!("gemm({i},{j},{k})"),
                    1.0,
                    &deps(&[writer[i][k], writer[j][k], writer[i][j]]),
                );
                writer[i][j] = Some(gemm);
            }
        }
    }
}

/// Gaussian elimination of an `m` x `m` matrix, as in Topcuoglu et al.:
/// at step `k` a pivot task, then one update per remaining column.
pub fn gaussian_elimination(b: &mut FamilyBuilder, m: usize) {
    let mut column: Vec<Option<usize>> = vec![None; m];
    for k in 0..m.saturating_sub(1) {
        let pivot = b.task(
            format!("pivot({k})"),
            1.0,
            &column[k].into_iter().collect::<Vec<_>>(),
        );
        for (j, last) in column.iter_mut().enumerate().skip(k + 1) {
            let mut deps = vec![pivot];
            deps.extend(*last);
            *last = Some(b.task(format!("update({k},{j})"), (m - k) as f64 / m as f64, &deps));
        }
    }
}

/// FFT of `points` (a power of two) points: a binary tree of recursive
/// calls, then log2(points) levels of butterflies.
pub fn fft(b: &mut FamilyBuilder, points: usize) {
    let points = points.next_power_of_two().max(2);
    // Recursive calls: a complete binary tree whose leaves are the points.
    let mut level = vec![b.task("call(0)".into(), 0.5, &[])];
    let mut id = 1;
    while level.len() < points {
        level = level
            .iter()
            .flat_map(|&parent| [parent, parent])
            .map(|parent| {
                id += 1;
                b.task(format!("call({id})"), 0.5, &[parent])
            })
            .collect();
    }
    let mut stage = 1;
    while stage < points {
        level = (0..points)
            .map(|i| {
                b.task(
                    format!("butterfly({stage},{i})"),
                    1.0,
                    &[level[i], level[i ^ stage]],
                )
            })
            .collect();
        stage *= 2;
    }
}

/// MapReduce: `maps` map tasks, `reduces` reduce tasks each reading every
/// map's output, and a final collect.
pub fn map_reduce(b: &mut FamilyBuilder, maps: usize, reduces: usize) {
    let m: Vec<usize> = (0..maps)
        .map(|i| b.task(format!("map({i})"), 1.0, &[]))
        .collect();
    let r: Vec<usize> = (0..reduces)
        .map(|i| {
            b.task(
                format!("reduce({i})"),
                2.0 * maps as f64 / reduces.max(1) as f64 / 4.0,
                &m,
            )
        })
        .collect();
    b.task("collect".into(), 0.5, &r);
}

/// Merge sort of `leaves` runs: a binary tree of splits down to the leaf
/// sorts, then a binary tree of merges back up.
pub fn merge_sort(b: &mut FamilyBuilder, leaves: usize) {
    let leaves = leaves.next_power_of_two().max(2);
    let depth = leaves.trailing_zeros() as usize;
    let mut level = vec![b.task("split(0)".into(), 0.1, &[])];
    for d in 1..depth {
        level = level
            .iter()
            .enumerate()
            .flat_map(|(i, &p)| [(2 * i, p), (2 * i + 1, p)])
            .map(|(i, p)| b.task(format!("split({d},{i})"), 0.1, &[p]))
            .collect();
    }
    let mut runs: Vec<usize> = level
        .iter()
        .flat_map(|&p| [p, p])
        .enumerate()
        .map(|(i, p)| b.task(format!("sort({i})"), 1.0 + depth as f64 / 4.0, &[p]))
        .collect();
    let mut size = 1.0;
    while runs.len() > 1 {
        size *= 2.0;
        runs = runs
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| {
                b.task(
                    format!("merge({size},{i})"),
                    size / leaves as f64 * 4.0,
                    pair,
                )
            })
            .collect();
    }
}

/// The structured suite: each family at a few sizes, CCRs and processor counts.
pub fn structured_suite() -> Vec<(String, Problem)> {
    let mut out = Vec::new();
    let mut seed = 1;
    for (procs, ccr) in [(4, 0.1), (4, 1.0), (8, 1.0), (8, 5.0)] {
        let mut add = |name: String, build: &dyn Fn(&mut FamilyBuilder)| {
            seed += 1;
            let mut b = FamilyBuilder::new(procs, 0.5, ccr, seed);
            build(&mut b);
            out.push((format!("{name} p={procs} ccr={ccr}"), b.finish()));
        };
        add("cholesky T=6".into(), &|b| cholesky(b, 6));
        add("gauss m=10".into(), &|b| gaussian_elimination(b, 10));
        add("fft 16".into(), &|b| fft(b, 16));
        add("mapreduce 16x4".into(), &|b| map_reduce(b, 16, 4));
        add("mergesort 16".into(), &|b| merge_sort(b, 16));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(f: impl Fn(&mut FamilyBuilder)) -> Problem {
        let mut b = FamilyBuilder::new(2, 0.0, 1.0, 1);
        f(&mut b);
        b.finish()
    }

    #[test]
    fn families_have_their_textbook_task_counts_and_are_acyclic() {
        // Cholesky T tiles: T potrf, T(T-1)/2 trsm and syrk, T(T-1)(T-2)/6 gemm.
        let c = build(|b| cholesky(b, 4));
        assert_eq!(c.len(), 4 + 6 + 6 + 4);
        assert_eq!(
            c.pred.iter().filter(|p| p.is_empty()).count(),
            1,
            "potrf(0) is the only entry"
        );
        // Gaussian elimination: (m^2 + m - 2) / 2 tasks.
        assert_eq!(
            build(|b| gaussian_elimination(b, 5)).len(),
            (25 + 5 - 2) / 2
        );
        // FFT of n points: 2n - 1 calls and n log2 n butterflies.
        assert_eq!(build(|b| fft(b, 8)).len(), 15 + 24);
        assert_eq!(build(|b| map_reduce(b, 5, 2)).len(), 8);
        // Merge sort of 8 leaves: 7 splits... 1 + 2 + 4 split tasks, 8 sorts, 7 merges.
        assert_eq!(build(|b| merge_sort(b, 8)).len(), 7 + 8 + 7);
        for (name, p) in structured_suite() {
            assert!(p.topo_order().is_ok(), "{name}");
        }
    }

    #[test]
    fn cholesky_orders_the_updates_of_each_tile() {
        let c = build(|b| cholesky(b, 3));
        let idx = |id: &str| c.ids.iter().position(|i| i == id).unwrap();
        let preds = |id: &str| -> Vec<&str> {
            c.pred[idx(id)]
                .iter()
                .map(|&(p, _)| c.ids[p].as_str())
                .collect()
        };
        assert_eq!(preds("trsm(2,1)"), vec!["potrf(1)", "gemm(2,1,0)"]);
        assert_eq!(preds("potrf(2)"), vec!["syrk(2,1)"]);
        assert_eq!(preds("syrk(2,1)"), vec!["trsm(2,1)", "syrk(2,0)"]);
    }
}
