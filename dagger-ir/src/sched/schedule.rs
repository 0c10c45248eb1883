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

/// Processor timelines for insertion-based list scheduling.
#[derive(Clone)]
pub(crate) struct Timelines {
    busy: Vec<Vec<(f64, f64)>>,
}

impl Timelines {
    pub(crate) fn new(processors: usize) -> Self {
        Timelines {
            busy: vec![Vec::new(); processors],
        }
    }

    /// Earliest start at or after `ready` of a run of `duration` on `proc`,
    /// in the first idle gap it fits (the insertion policy of HEFT).
    pub(crate) fn earliest_start(&self, proc: usize, ready: f64, duration: f64) -> f64 {
        let mut candidate = ready;
        for &(start, finish) in &self.busy[proc] {
            if candidate + duration <= start {
                return candidate;
            }
            candidate = candidate.max(finish);
        }
        candidate
    }

    pub(crate) fn occupy(&mut self, proc: usize, start: f64, finish: f64) {
        let slots = &mut self.busy[proc];
        let at = slots.partition_point(|s| s.0 < start);
        slots.insert(at, (start, finish));
    }
}

/// When task `t` could start on `proc` given its placed predecessors: each
/// one's finish, plus the edge's comm if it ran elsewhere. (List schedulers
/// place all predecessors first; lookahead also asks about children whose
/// other predecessors are not placed yet, which then do not count.)
pub(crate) fn data_ready(
    problem: &Problem,
    placement: &[Option<(usize, f64, f64)>],
    t: usize,
    proc: usize,
) -> f64 {
    problem.pred[t]
        .iter()
        .filter_map(|&(p, comm)| {
            let (pp, _, finish) = placement[p]?;
            Some(finish + if pp == proc { 0.0 } else { comm })
        })
        .fold(0.0, f64::max)
}

/// `(proc, start, finish)` of `t` on `proc` at its earliest (insertion policy).
pub(crate) fn earliest_finish(
    problem: &Problem,
    timelines: &Timelines,
    placement: &[Option<(usize, f64, f64)>],
    t: usize,
    proc: usize,
) -> (usize, f64, f64) {
    let duration = problem.cost[t][proc];
    let start = timelines.earliest_start(proc, data_ready(problem, placement, t, proc), duration);
    (proc, start, start + duration)
}

/// A task's placement: processor, start, finish.
pub(crate) type Placed = (usize, f64, f64);

/// List scheduling: repeatedly takes the ready task of highest `priority`
/// (ties: lower index) and places it where `choose(timelines, placement, t)`
/// says, inserting it into that processor's timeline.
pub(crate) fn list_schedule(
    problem: &Problem,
    priority: &[f64],
    mut choose: impl FnMut(&Timelines, &[Option<Placed>], usize) -> Placed,
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
            .min_by(|a, b| super::rank::by_priority(priority, *a.1, *b.1))
            .expect("non-empty");
        ready.swap_remove(pos);
        let chosen = choose(&timelines, &placement, t);
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

/// The earliest placement of `t` on each processor, and the one of lowest
/// `score` (ties: lower processor index).
pub(crate) fn best_placement(
    problem: &Problem,
    timelines: &Timelines,
    placement: &[Option<Placed>],
    t: usize,
    mut score: impl FnMut(Placed) -> f64,
) -> Placed {
    let mut best: Option<(f64, Placed)> = None;
    for p in 0..problem.processors {
        let here = earliest_finish(problem, timelines, placement, t, p);
        let s = score(here);
        if best.is_none_or(|b| s < b.0 - 1e-9) {
            best = Some((s, here));
        }
    }
    best.expect("at least one processor").1
}
