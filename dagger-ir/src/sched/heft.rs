//! HEFT, Heterogeneous Earliest Finish Time (Topcuoglu, Hariri and Wu,
//! IEEE TPDS 13(3), 2002), with the insertion policy.
//!
//! Tasks are taken in decreasing upward rank (among tasks whose
//! predecessors are placed, which is the same order whenever ranks strictly
//! decrease along edges; ties go to the lower task index), and each is
//! placed on the processor where it would finish earliest, in the first
//! idle gap it fits (ties go to the lower processor index).
//!
//! Time: `O((tasks + edges) x processors)`, up to the log factors of the
//! ready heap and the slot search (see the list machinery's notes in the
//! [module](super) docs).

use super::list::{best_placement, list_schedule};
use super::problem::Problem;
use super::progress::Progress;
use super::rank::upward_rank;
use super::schedule::Schedule;
use super::Scheduler;

/// The HEFT list scheduler.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeftScheduler;

impl Scheduler for HeftScheduler {
    fn name(&self) -> &'static str {
        "heft"
    }

    fn schedule(&self, problem: &Problem) -> Schedule {
        self.schedule_with_progress(problem, &Progress::silent())
    }

    fn schedule_with_progress(&self, problem: &Problem, progress: &Progress) -> Schedule {
        let rank = upward_rank(problem);
        list_schedule(problem, &rank, progress, |partial, t| {
            best_placement(problem, partial, t, |(_, _, finish)| finish)
        })
    }
}
