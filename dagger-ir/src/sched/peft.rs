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
use super::rank::by_priority;
use super::schedule::{earliest_finish, Schedule, Timelines};
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
            .map(|row| row.iter().sum::<f64>() / row.len() as f64)
            .collect();
        let n = problem.len();
        let mut unplaced_preds: Vec<usize> = problem.pred.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..n).filter(|&t| unplaced_preds[t] == 0).collect();
        let mut placement = vec![None; n];
        let mut timelines = Timelines::new(problem.processors);
        while !ready.is_empty() {
            let (pos, &t) = ready
                .iter()
                .enumerate()
                .min_by(|a, b| by_priority(&rank, *a.1, *b.1))
                .expect("non-empty");
            ready.swap_remove(pos);
            let mut best: Option<(f64, usize, f64, f64)> = None;
            for (p, &ahead) in oct[t].iter().enumerate() {
                let (_, start, finish) = earliest_finish(problem, &timelines, &placement, t, p);
                let optimistic = finish + ahead;
                if best.is_none_or(|b| optimistic < b.0 - 1e-9) {
                    best = Some((optimistic, p, start, finish));
                }
            }
            let (_, p, start, finish) = best.expect("at least one processor");
            timelines.occupy(p, start, finish);
            placement[t] = Some((p, start, finish));
            for &(s, _) in &problem.succ[t] {
                unplaced_preds[s] -= 1;
                if unplaced_preds[s] == 0 {
                    ready.push(s);
                }
            }
        }
        Schedule {
            placement: placement
                .into_iter()
                .map(|p| p.expect("every task is placed"))
                .collect(),
        }
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
