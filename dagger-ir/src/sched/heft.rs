//! HEFT, Heterogeneous Earliest Finish Time (Topcuoglu, Hariri and Wu,
//! IEEE TPDS 13(3), 2002), with the insertion policy.
//!
//! Tasks are taken in decreasing upward rank (among tasks whose
//! predecessors are placed, which is the same order whenever ranks strictly
//! decrease along edges; ties go to the lower task index), and each is
//! placed on the processor where it would finish earliest, in the first
//! idle gap it fits (ties go to the lower processor index).

use super::problem::Problem;
use super::rank::{by_priority, upward_rank};
use super::schedule::{place_earliest_finish, Schedule, Timelines};
use super::Scheduler;

/// The HEFT list scheduler.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeftScheduler;

impl Scheduler for HeftScheduler {
    fn name(&self) -> &'static str {
        "heft"
    }

    fn schedule(&self, problem: &Problem) -> Schedule {
        let rank = upward_rank(problem);
        list_schedule(problem, &rank, |_| None)
    }
}

/// List scheduling by `priority` (highest ready task first); `pin(t)` may
/// force a task onto one processor.
pub(crate) fn list_schedule(
    problem: &Problem,
    priority: &[f64],
    pin: impl Fn(usize) -> Option<usize>,
) -> Schedule {
    let n = problem.len();
    let mut unplaced_preds: Vec<usize> = problem.pred.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..n).filter(|&t| unplaced_preds[t] == 0).collect();
    let mut placement = vec![None; n];
    let mut timelines = Timelines::new(problem.processors);
    while !ready.is_empty() {
        let (pos, &t) = ready
            .iter()
            .enumerate()
            .min_by(|a, b| by_priority(priority, *a.1, *b.1))
            .expect("non-empty");
        ready.swap_remove(pos);
        place_earliest_finish(problem, &mut timelines, &mut placement, t, pin(t));
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
