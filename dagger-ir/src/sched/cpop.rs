//! CPOP, Critical Path On a Processor (Topcuoglu, Hariri and Wu, 2002).
//!
//! A task's priority is `rank_u + rank_d`; the tasks whose priority equals
//! the entry task's form the critical path (followed from the entry through
//! the first successor, by index, of equal priority). The processor that
//! runs the whole critical path fastest takes every critical task; the other
//! tasks go wherever they finish earliest (insertion policy). Tasks are taken
//! in decreasing priority among ready ones; ties go to the lower index.

use super::list::{best_placement, earliest_finish, list_schedule};
use super::problem::Problem;
use super::progress::Progress;
use super::rank::{downward_rank, same, upward_rank};
use super::schedule::Schedule;
use super::Scheduler;

/// The CPOP list scheduler.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpopScheduler;

impl Scheduler for CpopScheduler {
    fn name(&self) -> &'static str {
        "cpop"
    }

    fn schedule(&self, problem: &Problem) -> Schedule {
        self.schedule_with_progress(problem, &Progress::silent())
    }

    fn schedule_with_progress(&self, problem: &Problem, progress: &Progress) -> Schedule {
        let (up, down) = (upward_rank(problem), downward_rank(problem));
        let priority: Vec<f64> = up.iter().zip(&down).map(|(u, d)| u + d).collect();
        let critical = critical_path(problem, &priority);
        let cp_proc = (0..problem.processors)
            .map(|p| (p, critical.iter().map(|&t| problem.cost[t][p]).sum::<f64>()))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .map_or(0, |(p, _)| p);
        let mut on_path = vec![false; problem.len()];
        for &t in &critical {
            on_path[t] = true;
        }
        list_schedule(problem, &priority, progress, |partial, t| {
            if on_path[t] {
                earliest_finish(problem, partial, t, cp_proc)
            } else {
                best_placement(problem, partial, t, |(_, _, finish)| finish)
            }
        })
    }
}

/// The critical path's tasks, from the entry task of highest priority.
fn critical_path(problem: &Problem, priority: &[f64]) -> Vec<usize> {
    let Some(entry) = (0..problem.len())
        .filter(|&t| problem.pred[t].is_empty())
        .min_by(|&a, &b| priority[b].total_cmp(&priority[a]).then(a.cmp(&b)))
    else {
        return Vec::new();
    };
    let length = priority[entry];
    let mut path = vec![entry];
    let mut at = entry;
    while let Some(next) = problem.succ[at]
        .iter()
        .map(|&(s, _)| s)
        .filter(|&s| same(priority[s], length))
        .min()
    {
        path.push(next);
        at = next;
    }
    path
}
