//! PEFT, Predict Earliest Finish Time (Arabnejad and Barbosa, IEEE TPDS
//! 25(3), 2014).
//!
//! The optimistic cost table `OCT(t, p)` is the longest way, from `t` placed
//! on `p` to an exit task, when every later task is placed on its best
//! processor and communication is paid only between different processors:
//! `OCT(t, p) = max over successors s of min over q of (OCT(s, q) +
//! cost(s, q) + comm(t, s) if q != p)`, zero for exit tasks. Tasks are taken in
//! decreasing `rank_oct` (the mean of their OCT row) among ready ones, and
//! each goes to the processor minimising `EFT + OCT` (the *optimistic* EFT),
//! with the insertion policy; ties go to the lower index.

use super::list::{best_placement, list_schedule};
use super::problem::{finite_mean, Problem};
use super::progress::Progress;
use super::schedule::Schedule;
use super::Scheduler;

/// The PEFT list scheduler.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeftScheduler;

/// The optimistic cost table, `oct[t][p]`, in `O(tasks x processors +
/// edges x processors)`: for a successor `s`, the minimum over `q` of
/// `OCT(s, q) + cost(s, q)` plus the edge's comm when `q != p` is the
/// smaller of `OCT(s, p) + cost(s, p)` and the row's minimum plus comm
/// (when the row's minimum is at `p` itself, that is `OCT(s, p) + cost(s, p)`
/// anyway), so each edge costs one pass over the processors, not two nested.
pub fn optimistic_cost_table(problem: &Problem) -> Vec<Vec<f64>> {
    let order = problem.topo_order().expect("problems are acyclic");
    let procs = problem.processors;
    let mut oct = vec![vec![0.0; procs]; problem.len()];
    // `through[s][q] = OCT(s, q) + cost(s, q)` and its minimum over `q`,
    // known once `s` is done (successors come first in reverse order).
    let mut through: Vec<Vec<f64>> = vec![Vec::new(); problem.len()];
    let mut best = vec![0.0; problem.len()];
    for &t in order.iter().rev() {
        let mut row = vec![0.0f64; procs];
        for &(s, comm) in &problem.succ[t] {
            let elsewhere = best[s] + comm;
            for (p, cell) in row.iter_mut().enumerate() {
                *cell = cell.max(through[s][p].min(elsewhere));
            }
        }
        through[t] = row
            .iter()
            .zip(&problem.cost[t])
            .map(|(o, c)| o + c)
            .collect();
        best[t] = through[t].iter().copied().fold(f64::INFINITY, f64::min);
        oct[t] = row;
    }
    oct
}

impl Scheduler for PeftScheduler {
    fn name(&self) -> &'static str {
        "peft"
    }

    fn schedule(&self, problem: &Problem) -> Schedule {
        self.schedule_with_progress(problem, &Progress::silent())
    }

    fn schedule_with_progress(&self, problem: &Problem, progress: &Progress) -> Schedule {
        let oct = optimistic_cost_table(problem);
        let rank: Vec<f64> = oct.iter().map(|row| finite_mean(row)).collect();
        list_schedule(problem, &rank, progress, |partial, t| {
            best_placement(problem, partial, t, |(p, _, finish)| finish + oct[t][p])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oct_by_hand_on_a_fork() {
        // a -> b (comm 10), a -> c (comm 1); two processors.
        let p = Problem::from_json(
            r#"{"processors": 2,
                "tasks": [{"id": "a", "cost": [1, 1]}, {"id": "b", "cost": [2, 8]}, {"id": "c", "cost": [5, 3]}],
                "edges": [{"from": "a", "to": "b", "comm": 10}, {"from": "a", "to": "c", "comm": 1}]}"#,
        )
        .unwrap();
        let oct = optimistic_cost_table(&p);
        // From a on P0: b best on P0 (2), c min(5, 3 + 1) = 4 -> 4.
        // From a on P1: b min(2 + 10, 8) = 8, c min(5 + 1, 3) = 3 -> 8.
        assert_eq!(oct[0], vec![4.0, 8.0]);
        assert_eq!(oct[1], vec![0.0, 0.0]);
        let s = PeftScheduler.schedule(&p);
        // a goes to P0 (1 + 4 < 1 + 8); then b (rank 0, index 1) on P0, c on P1 after comm.
        assert_eq!(s.placement[0].0, 0);
        assert_eq!(s.placement[1], (0, 1.0, 3.0));
        assert_eq!(s.placement[2], (1, 2.0, 5.0));
        assert_eq!(s.makespan(), 5.0);
    }
}
