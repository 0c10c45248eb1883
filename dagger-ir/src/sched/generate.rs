//! Random task graphs with the DAGGEN parameters (Suter and Hunold's DAG
//! generator, as used across the scheduling literature), with costs drawn
//! as in Topcuoglu, Hariri and Wu (2002).
//!
//! - `n` tasks in levels; a level holds about `exp(fat * ln n)` tasks
//!   (`fat` near 0: a chain; near 1: one wide level), varied by
//!   `1 - regular` around that mean;
//! - each task of a level takes its parents from the `jump` levels above,
//!   each candidate with probability `density`, and always at least one
//!   from the level just above;
//! - a task's mean cost is uniform in `[1, 2 * mean_cost]`; on processor `p`
//!   it costs that times a factor uniform in `[1 - beta / 2, 1 + beta / 2]`
//!   (`beta`: processor heterogeneity);
//! - an edge's communication cost is uniform in `[0, 2 * ccr * mean_cost]`
//!   (`ccr`: communication to computation ratio).
//!
//! The generator is seeded and deterministic.

use super::problem::Problem;

/// Parameters of a random graph.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DaggenParams {
    /// Number of tasks.
    pub n: usize,
    /// Width: tasks per level are about `exp(fat * ln n)`.
    pub fat: f64,
    /// Probability of each candidate edge.
    pub density: f64,
    /// Regularity of the level widths, 0 to 1.
    pub regular: f64,
    /// How many levels up an edge may reach (at least 1).
    pub jump: usize,
    /// Communication to computation ratio.
    pub ccr: f64,
    /// Processor heterogeneity.
    pub beta: f64,
    /// Number of processors.
    pub processors: usize,
    /// Mean task cost.
    pub mean_cost: f64,
    /// Random seed.
    pub seed: u64,
}

impl Default for DaggenParams {
    fn default() -> Self {
        DaggenParams {
            n: 50,
            fat: 0.5,
            density: 0.5,
            regular: 0.9,
            jump: 1,
            ccr: 1.0,
            beta: 0.5,
            processors: 4,
            mean_cost: 10.0,
            seed: 1,
        }
    }
}

/// SplitMix64: small, fast, and good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// A random graph with these parameters.
pub fn random_dag(params: &DaggenParams) -> Problem {
    let mut rng = Rng(params.seed);
    let n = params.n.max(1);
    let mean_width = (params.fat * (n as f64).ln()).exp().max(1.0);
    let mut levels: Vec<Vec<usize>> = Vec::new();
    let mut made = 0;
    while made < n {
        let spread = 1.0 - params.regular.clamp(0.0, 1.0);
        let width = (mean_width * rng.uniform(1.0 - spread, 1.0 + spread))
            .round()
            .max(1.0) as usize;
        let width = width.min(n - made);
        levels.push((made..made + width).collect());
        made += width;
    }
    let mut succ = vec![Vec::new(); n];
    let mut pred = vec![Vec::new(); n];
    for l in 1..levels.len() {
        for &t in &levels[l] {
            let mut parents: Vec<usize> = Vec::new();
            for level in &levels[l.saturating_sub(params.jump.max(1))..l] {
                for &p in level {
                    if rng.uniform(0.0, 1.0) < params.density {
                        parents.push(p);
                    }
                }
            }
            if !parents.iter().any(|p| levels[l - 1].contains(p)) {
                let above = &levels[l - 1];
                parents.push(above[(rng.next() % above.len() as u64) as usize]);
            }
            for p in parents {
                let comm = rng.uniform(0.0, 2.0 * params.ccr * params.mean_cost);
                succ[p].push((t, comm));
                pred[t].push((p, comm));
            }
        }
    }
    let half = params.beta / 2.0;
    let cost = (0..n)
        .map(|_| {
            let mean = rng.uniform(1.0, 2.0 * params.mean_cost);
            (0..params.processors.max(1))
                .map(|_| mean * rng.uniform((1.0 - half).max(0.0), 1.0 + half))
                .collect()
        })
        .collect();
    Problem {
        processors: params.processors.max(1),
        ids: (0..n).map(|t| format!("t{t}")).collect(),
        cost,
        succ,
        pred,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphs_are_acyclic_deterministic_and_follow_the_parameters() {
        let params = DaggenParams {
            n: 200,
            processors: 3,
            seed: 7,
            ..DaggenParams::default()
        };
        let g = random_dag(&params);
        assert_eq!(g.len(), 200);
        assert!(g.topo_order().is_ok());
        assert_eq!(g, random_dag(&params), "same seed, same graph");
        assert!(g.cost.iter().all(|row| row.len() == 3));
        // Every task past the first level has a parent.
        let entries = (0..g.len()).filter(|&t| g.pred[t].is_empty()).count();
        assert!(entries < 200 / 4, "{entries} entry tasks");
        let chain = random_dag(&DaggenParams {
            n: 30,
            fat: 0.0,
            ..params
        });
        assert_eq!(
            (0..30).filter(|&t| chain.pred[t].is_empty()).count(),
            1,
            "fat 0 is a chain"
        );
        let no_comm = random_dag(&DaggenParams { ccr: 0.0, ..params });
        assert!(no_comm.succ.iter().flatten().all(|&(_, c)| c == 0.0));
    }
}
