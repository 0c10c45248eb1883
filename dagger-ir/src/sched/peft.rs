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

use super::problem::Problem;
use super::schedule::{best_placement, list_schedule, Schedule};
use super::Scheduler;

/// The PEFT list scheduler.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeftScheduler;

/// The optimistic cost table, `oct[t][p]`.
pub fn optimistic_cost_table(problem: &Problem) -> Vec<Vec<f64>> {
    let order = problem.topo_order().expect("problems are acyclic");
    let procs = problem.processors;
    let mut oct = vec![vec![0.0; procs]; problem.len()];
    for &t in order.iter().rev() {
        for p in 0..procs {
            oct[t][p] = problem.succ[t]
                .iter()
                .map(|&(s, comm)| {
                    (0..procs)
                        .map(|q| oct[s][q] + problem.cost[s][q] + if q == p { 0.0 } else { comm })
                        .fold(f64::INFINITY, f64::min)
                })
                .fold(0.0, f64::max);
        }
    }
    oct
}

impl Scheduler for PeftScheduler {
    fn name(&self) -> &'static str {
        "peft"
    }

    fn schedule(&self, problem: &Problem) -> Schedule {
        let oct = optimistic_cost_table(problem);
        let rank: Vec<f64> = oct
            .iter()
            .map(|row| crate::sched::problem::finite_mean(row))
            .collect();
        list_schedule(problem, &rank, |timelines, placement, t| {
            best_placement(problem, timelines, placement, t, |(p, _, finish)| {
                finish + oct[t][p]
            })
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
