//! Schedules: which processor runs each task, from when to when; and the
//! measures of the literature (makespan, SLR, speedup, efficiency).

use super::problem::Problem;
use serde::Serialize;

/// One task's place in a schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Slot {
    /// Task id.
    pub task: String,
    /// Processor index.
    pub proc: usize,
    /// Start time.
    pub start: f64,
    /// Finish time.
    pub finish: f64,
}

/// A complete schedule of a [`Problem`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Schedule {
    /// `(processor, start, finish)` by task index.
    pub placement: Vec<(usize, f64, f64)>,
}

impl Schedule {
    /// Latest finish time.
    pub fn makespan(&self) -> f64 {
        self.placement.iter().map(|p| p.2).fold(0.0, f64::max)
    }

    /// The slots, sorted by start time then processor.
    pub fn slots(&self, problem: &Problem) -> Vec<Slot> {
        let mut slots: Vec<Slot> = self
            .placement
            .iter()
            .enumerate()
            .map(|(t, &(proc, start, finish))| Slot {
                task: problem.ids[t].clone(),
                proc,
                start,
                finish,
            })
            .collect();
        slots.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.proc.cmp(&b.proc)));
        slots
    }
}

/// Sum of the minimum costs along the path that maximises that sum (the
/// denominator of the schedule length ratio).
pub fn critical_path_min(problem: &Problem) -> f64 {
    let order = problem.topo_order().expect("problems are acyclic");
    let mut longest = vec![0.0f64; problem.len()];
    for &t in order.iter().rev() {
        let min = problem.cost[t]
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let tail = problem.succ[t]
            .iter()
            .map(|&(s, _)| longest[s])
            .fold(0.0, f64::max);
        longest[t] = min + tail;
    }
    longest.into_iter().fold(0.0, f64::max)
}

/// Schedule length ratio: makespan over [`critical_path_min`] (at least 1).
pub fn slr(problem: &Problem, schedule: &Schedule) -> f64 {
    schedule.makespan() / critical_path_min(problem)
}

/// Speedup: the best single-processor time over the makespan.
pub fn speedup(problem: &Problem, schedule: &Schedule) -> f64 {
    let sequential = (0..problem.processors)
        .map(|p| problem.cost.iter().map(|c| c[p]).sum::<f64>())
        .fold(f64::INFINITY, f64::min);
    sequential / schedule.makespan()
}
