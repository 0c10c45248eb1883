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
use super::schedule::{best_placement, list_schedule, Schedule};
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
        list_schedule(problem, &rank, |timelines, placement, t| {
            let mut children: Vec<usize> = problem.succ[t].iter().map(|&(s, _)| s).collect();
            children.sort_by(|&a, &b| by_priority(&rank, a, b));
            children.dedup();
            best_placement(problem, timelines, placement, t, |here| {
                if children.is_empty() {
                    return here.2;
                }
                // Place the children as HEFT would, after `t` goes `here`.
                let (mut lines, mut places) = (timelines.clone(), placement.to_vec());
                lines.occupy(here.0, here.1, here.2);
                places[t] = Some(here);
                let mut latest: f64 = 0.0;
                for &c in &children {
                    let choice =
                        best_placement(problem, &lines, &places, c, |(_, _, finish)| finish);
                    lines.occupy(choice.0, choice.1, choice.2);
                    places[c] = Some(choice);
                    latest = latest.max(choice.2);
                }
                latest
            })
        })
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
