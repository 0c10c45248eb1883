//! Lookahead HEFT (Bittencourt, Sakellariou and Madeira, PDP 2010).
//!
//! Tasks are taken in HEFT's order (decreasing upward rank among ready
//! tasks). For each candidate processor the task is placed there
//! tentatively, then each of its children is placed as HEFT would (in
//! upward-rank order, each on its earliest-finish processor, seeing only
//! the predecessors already placed); the task goes to the processor that
//! minimises the latest of those children's finish times. A task without
//! children falls back to its own earliest finish. Ties go to the lower
//! processor index.

use super::problem::Problem;
use super::rank::{by_priority, upward_rank};
use super::schedule::{earliest_finish, Schedule, Timelines};
use super::Scheduler;

/// The lookahead variant of HEFT (one level of children).
#[derive(Clone, Copy, Debug, Default)]
pub struct LookaheadScheduler;

impl Scheduler for LookaheadScheduler {
    fn name(&self) -> &'static str {
        "lookahead"
    }

    fn schedule(&self, problem: &Problem) -> Schedule {
        let rank = upward_rank(problem);
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
            let mut children: Vec<usize> = problem.succ[t].iter().map(|&(s, _)| s).collect();
            children.sort_by(|&a, &b| by_priority(&rank, a, b));
            children.dedup();
            let mut best: Option<(f64, (usize, f64, f64))> = None;
            for p in 0..problem.processors {
                let here = earliest_finish(problem, &timelines, &placement, t, p);
                let score = if children.is_empty() {
                    here.2
                } else {
                    let (mut lines, mut places) = (timelines.clone(), placement.clone());
                    lines.occupy(p, here.1, here.2);
                    places[t] = Some(here);
                    let mut latest: f64 = 0.0;
                    for &c in &children {
                        let choice = (0..problem.processors)
                            .map(|q| earliest_finish(problem, &lines, &places, c, q))
                            .min_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)))
                            .expect("at least one processor");
                        lines.occupy(choice.0, choice.1, choice.2);
                        places[c] = Some(choice);
                        latest = latest.max(choice.2);
                    }
                    latest
                };
                if best.is_none_or(|b| score < b.0 - 1e-9) {
                    best = Some((score, here));
                }
            }
            let (_, chosen) = best.expect("at least one processor");
            timelines.occupy(chosen.0, chosen.1, chosen.2);
            placement[t] = Some(chosen);
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
    use crate::sched::HeftScheduler;

    #[test]
    fn looking_at_the_children_avoids_a_costly_transfer() {
        // a is a bit faster on P0, but its child b is far faster on P1 and
        // the edge is expensive: HEFT puts a on P0 (makespan 11), lookahead on P1 (3).
        let p = Problem::from_json(
            r#"{"processors": 2,
                "tasks": [{"id": "a", "cost": [1, 2]}, {"id": "b", "cost": [10, 1]}],
                "edges": [{"from": "a", "to": "b", "comm": 20}]}"#,
        )
        .unwrap();
        assert_eq!(HeftScheduler.schedule(&p).makespan(), 11.0);
        let s = LookaheadScheduler.schedule(&p);
        assert_eq!(s.placement, vec![(1, 0.0, 2.0), (1, 2.0, 3.0)]);
    }
}
