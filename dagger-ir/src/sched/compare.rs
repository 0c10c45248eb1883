//! Comparing schedulers on many graphs: mean SLR and speedup, and how often
//! each beats, ties or loses to HEFT, as the list-scheduling papers report.

use super::generate::{random_dag, DaggenParams};
use super::problem::Problem;
use super::{slr, speedup, Scheduler};

/// One scheduler's results over a suite.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The scheduler.
    pub algo: &'static str,
    /// Mean schedule length ratio.
    pub mean_slr: f64,
    /// Mean speedup.
    pub mean_speedup: f64,
    /// Percent of graphs with a shorter makespan than HEFT's.
    pub better: f64,
    /// Percent with the same makespan (within 1e-9 relative).
    pub equal: f64,
    /// Percent with a longer one.
    pub worse: f64,
}

/// The random suite: `count` graphs cycling through CCR 0.1 to 10, 2 to 16
/// processors, heterogeneity 0.1 to 2, 20 to 100 tasks and several shapes.
pub fn random_suite(count: usize) -> Vec<Problem> {
    const CCR: [f64; 5] = [0.1, 0.5, 1.0, 5.0, 10.0];
    const PROCS: [usize; 4] = [2, 4, 8, 16];
    const BETA: [f64; 4] = [0.1, 0.5, 1.0, 2.0];
    const FAT: [f64; 3] = [0.2, 0.5, 0.8];
    (0..count)
        .map(|i| {
            random_dag(&DaggenParams {
                n: 20 + (i * 37) % 81,
                fat: FAT[i % 3],
                density: [0.2, 0.5, 0.8][(i / 3) % 3],
                regular: 0.8,
                jump: 1 + (i / 9) % 3,
                ccr: CCR[i % 5],
                beta: BETA[(i / 5) % 4],
                processors: PROCS[(i / 20) % 4],
                mean_cost: 10.0,
                seed: i as u64 + 1,
            })
        })
        .collect()
}

/// Runs every scheduler on every problem; the first scheduler is the
/// reference the better/equal/worse columns compare with.
pub fn compare(problems: &[Problem], schedulers: &[Box<dyn Scheduler>]) -> Vec<Summary> {
    let makespans: Vec<Vec<(f64, f64, f64)>> = schedulers
        .iter()
        .map(|s| {
            problems
                .iter()
                .map(|p| {
                    let sched = s.schedule(p);
                    (sched.makespan(), slr(p, &sched), speedup(p, &sched))
                })
                .collect()
        })
        .collect();
    let count = problems.len().max(1) as f64;
    schedulers
        .iter()
        .zip(&makespans)
        .map(|(s, runs)| {
            let (mut better, mut equal, mut worse) = (0, 0, 0);
            for (i, r) in runs.iter().enumerate() {
                let reference = makespans[0][i].0;
                if (r.0 - reference).abs() <= 1e-9 * reference.max(1.0) {
                    equal += 1;
                } else if r.0 < reference {
                    better += 1;
                } else {
                    worse += 1;
                }
            }
            Summary {
                algo: s.name(),
                mean_slr: runs.iter().map(|r| r.1).sum::<f64>() / count,
                mean_speedup: runs.iter().map(|r| r.2).sum::<f64>() / count,
                better: 100.0 * better as f64 / count,
                equal: 100.0 * equal as f64 / count,
                worse: 100.0 * worse as f64 / count,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heft_ties_itself_and_every_algorithm_is_counted_once_per_graph() {
        let suite = random_suite(40);
        assert_eq!(suite.len(), 40);
        let rows = compare(&suite, &crate::sched::all());
        assert_eq!(rows[0].algo, "heft");
        assert_eq!(rows[0].equal, 100.0);
        for r in &rows {
            assert!((r.better + r.equal + r.worse - 100.0).abs() < 1e-9, "{r:?}");
            assert!(r.mean_slr >= 1.0, "{r:?}");
            assert!(r.mean_speedup > 0.0, "{r:?}");
        }
    }
}
