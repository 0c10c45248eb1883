//! HEFT, Heterogeneous Earliest Finish Time (Topcuoglu, Hariri and Wu,
//! IEEE TPDS 13(3), 2002), with the insertion policy.
//!
//! Tasks are taken in decreasing upward rank (among tasks whose
//! predecessors are placed, which is the same order whenever ranks strictly
//! decrease along edges; ties go to the lower task index), and each is
//! placed on the processor where it would finish earliest, in the first
//! idle gap it fits (ties go to the lower processor index).

use super::problem::Problem;
use super::rank::upward_rank;
use super::schedule::{best_placement, list_schedule, Schedule};
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
        list_schedule(problem, &rank, |timelines, placement, t| {
            best_placement(problem, timelines, placement, t, |(_, _, finish)| finish)
        })
    }
}
