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
//!
//! Bounded, so that it scales: the look ahead covers at most
//! [`LOOKAHEAD_CHILDREN`] children (those of highest upward rank, the first
//! HEFT would place) and at most [`LOOKAHEAD_PROCESSORS`] candidate
//! processors (those where the task itself finishes earliest). Below both
//! bounds (the paper's examples, and any graph with at most that many
//! processors and children a task) it is the algorithm as published. A task
//! costs `O(C x K x (processors x child in-degree + gaps))`, `C` and `K`
//! the two bounds, so a run is `O((tasks + edges) x processors)` up to
//! that constant and the log factors of the list machinery.

use super::list::{best_placement, earliest_finish, list_schedule, lowest_score, Tentative};
use super::problem::Problem;
use super::progress::Progress;
use super::rank::{by_priority, upward_rank};
use super::schedule::Schedule;
use super::Scheduler;

/// The most children a task's look ahead places.
pub const LOOKAHEAD_CHILDREN: usize = 8;

/// The most candidate processors a task's look ahead tries.
pub const LOOKAHEAD_PROCESSORS: usize = 8;

/// The lookahead variant of HEFT (one level of children).
#[derive(Clone, Copy, Debug, Default)]
pub struct LookaheadScheduler;

impl Scheduler for LookaheadScheduler {
    fn name(&self) -> &'static str {
        "lookahead"
    }

    fn schedule(&self, problem: &Problem) -> Schedule {
        self.schedule_with_progress(problem, &Progress::silent())
    }

    fn schedule_with_progress(&self, problem: &Problem, progress: &Progress) -> Schedule {
        let rank = upward_rank(problem);
        list_schedule(problem, &rank, progress, |partial, t| {
            let mut children: Vec<usize> = problem.succ[t].iter().map(|&(s, _)| s).collect();
            if children.is_empty() {
                return best_placement(problem, partial, t, |(_, _, finish)| finish);
            }
            children.sort_by(|&a, &b| by_priority(&rank, a, b));
            children.dedup();
            children.truncate(LOOKAHEAD_CHILDREN);
            // The candidates: where `t` finishes earliest, in processor order.
            let mut candidates: Vec<_> = (0..problem.processors)
                .map(|p| earliest_finish(problem, partial, t, p))
                .collect();
            if candidates.len() > LOOKAHEAD_PROCESSORS {
                candidates.select_nth_unstable_by(LOOKAHEAD_PROCESSORS - 1, |a, b| {
                    a.2.total_cmp(&b.2).then(a.0.cmp(&b.0))
                });
                candidates.truncate(LOOKAHEAD_PROCESSORS);
                candidates.sort_by_key(|c| c.0);
            }
            lowest_score(candidates, |here| {
                // Place the children as HEFT would, after `t` goes `here`.
                let mut tentative = Tentative::new(partial);
                tentative.place(t, here);
                let mut latest: f64 = 0.0;
                for &c in &children {
                    let choice = best_placement(problem, &tentative, c, |(_, _, finish)| finish);
                    tentative.place(c, choice);
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
