//! The machinery of list scheduling shared by HEFT, CPOP, PEFT, lookahead
//! and the tensor partitioner (`dagger_tensor::partition`, hence public):
//! processor timelines with the insertion policy, the partial schedule a
//! placement decision sees, and the list-scheduling loop.
//!
//! Costs, for `n` tasks, `e` edges and `p` processors:
//! - the ready list is a binary heap: `O(log n)` a task;
//! - the earliest start on a processor is `O(log n)` up to a constant (see
//!   the `timeline` module);
//! - data-ready times walk a task's predecessors on each processor:
//!   `O(e * p)` over a run.

use super::problem::Problem;
use super::progress::Progress;
use super::rank::same;
use super::schedule::Schedule;
use super::timeline::Timelines;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A task's placement: processor, start, finish.
pub type Placed = (usize, f64, f64);

/// What a placement decision sees of the schedule being built.
pub trait View {
    /// Where task `t` is placed, if it is.
    fn placed(&self, t: usize) -> Option<Placed>;
    /// Earliest start at or after `ready` of a run of `duration` on `proc`.
    fn earliest_start(&self, proc: usize, ready: f64, duration: f64) -> f64;
}

/// The schedule so far: the placed tasks and the processors' timelines.
pub struct Partial {
    pub(crate) timelines: Timelines,
    pub(crate) placement: Vec<Option<Placed>>,
}

impl View for Partial {
    fn placed(&self, t: usize) -> Option<Placed> {
        self.placement[t]
    }

    fn earliest_start(&self, proc: usize, ready: f64, duration: f64) -> f64 {
        self.timelines.earliest_start(proc, ready, duration)
    }
}

/// A [`Partial`] schedule with a few more tasks placed tentatively (what
/// lookahead tries), without copying it.
pub(crate) struct Tentative<'a> {
    base: &'a Partial,
    extra: Vec<(usize, Placed)>,
}

impl<'a> Tentative<'a> {
    pub(crate) fn new(base: &'a Partial) -> Self {
        Tentative {
            base,
            extra: Vec::new(),
        }
    }

    /// Places `t` tentatively.
    pub(crate) fn place(&mut self, t: usize, placed: Placed) {
        self.extra.push((t, placed));
    }
}

impl View for Tentative<'_> {
    fn placed(&self, t: usize) -> Option<Placed> {
        self.extra
            .iter()
            .find(|e| e.0 == t)
            .map(|e| e.1)
            .or_else(|| self.base.placed(t))
    }

    fn earliest_start(&self, proc: usize, ready: f64, duration: f64) -> f64 {
        // The earliest fit among the base's slots; if a tentative slot is in
        // the way, nothing before that slot's end fits either: go on from there.
        let mut ready = ready;
        loop {
            let start = self.base.earliest_start(proc, ready, duration);
            let blocking = self
                .extra
                .iter()
                .find(|&&(_, (p, s, f))| p == proc && s < start + duration && f > start);
            match blocking {
                Some(&(_, (_, _, finish))) => ready = finish,
                None => return start,
            }
        }
    }
}

/// When task `t` could start on `proc` given its placed predecessors: each
/// one's finish, plus the edge's comm if it ran elsewhere. (List schedulers
/// place all predecessors first; lookahead also asks about children whose
/// other predecessors are not placed yet, which then do not count.)
pub(crate) fn data_ready(problem: &Problem, view: &impl View, t: usize, proc: usize) -> f64 {
    problem.pred[t]
        .iter()
        .filter_map(|&(p, comm)| {
            let (pp, _, finish) = view.placed(p)?;
            Some(finish + if pp == proc { 0.0 } else { comm })
        })
        .fold(0.0, f64::max)
}

/// `(proc, start, finish)` of `t` on `proc` at its earliest (insertion policy).
pub fn earliest_finish(problem: &Problem, view: &impl View, t: usize, proc: usize) -> Placed {
    let duration = problem.cost[t][proc];
    let start = view.earliest_start(proc, data_ready(problem, view, t, proc), duration);
    (proc, start, start + duration)
}

/// The earliest placement of `t` on each processor, and the one of lowest
/// `score` (ties: lower processor index).
pub(crate) fn best_placement(
    problem: &Problem,
    view: &impl View,
    t: usize,
    mut score: impl FnMut(Placed) -> f64,
) -> Placed {
    lowest_score(
        (0..problem.processors).map(|p| earliest_finish(problem, view, t, p)),
        &mut score,
    )
}

/// The placement of lowest `score` (ties, within 1e-9: the first).
pub fn lowest_score(
    placements: impl IntoIterator<Item = Placed>,
    mut score: impl FnMut(Placed) -> f64,
) -> Placed {
    let mut best: Option<(f64, Placed)> = None;
    for here in placements {
        let s = score(here);
        if best.is_none_or(|b| s < b.0 - 1e-9) {
            best = Some((s, here));
        }
    }
    best.expect("at least one processor").1
}

/// Each task's place in the order of decreasing `priority`, priorities equal
/// up to rounding ([`same`] as the group's highest) taken as equal, ties to
/// the lower index: a key the ready heap can order by.
fn priority_keys(priority: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..priority.len()).collect();
    order.sort_by(|&a, &b| priority[b].total_cmp(&priority[a]).then(a.cmp(&b)));
    let mut keys = vec![0; priority.len()];
    let (mut group, mut head) = (0, None);
    for &t in &order {
        if head.is_none_or(|h: usize| !same(priority[h], priority[t])) {
            group += 1;
            head = Some(t);
        }
        keys[t] = group;
    }
    keys
}

/// List scheduling: repeatedly takes the ready task of highest `priority`
/// (priorities equal up to rounding tie; ties: lower index) and places it
/// where `choose(partial, t)` says, inserting it into that processor's
/// timeline; reports each placement to `progress`.
pub fn list_schedule(
    problem: &Problem,
    priority: &[f64],
    progress: &Progress,
    mut choose: impl FnMut(&Partial, usize) -> Placed,
) -> Schedule {
    let n = problem.len();
    let keys = priority_keys(priority);
    let mut unplaced_preds: Vec<usize> = problem.pred.iter().map(Vec::len).collect();
    let mut ready: BinaryHeap<Reverse<(usize, usize)>> = (0..n)
        .filter(|&t| unplaced_preds[t] == 0)
        .map(|t| Reverse((keys[t], t)))
        .collect();
    let mut partial = Partial {
        timelines: Timelines::new(problem.processors),
        placement: vec![None; n],
    };
    let mut done = 0;
    while let Some(Reverse((_, t))) = ready.pop() {
        let chosen = choose(&partial, t);
        partial.timelines.occupy(chosen.0, chosen.1, chosen.2);
        partial.placement[t] = Some(chosen);
        for &(s, _) in &problem.succ[t] {
            unplaced_preds[s] -= 1;
            if unplaced_preds[s] == 0 {
                ready.push(Reverse((keys[s], s)));
            }
        }
        done += 1;
        progress.tick(done, n);
    }
    Schedule {
        placement: partial
            .placement
            .into_iter()
            .map(|p| p.expect("every task is placed"))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tentative_slots_push_a_run_past_them() {
        let mut lines = Timelines::new(1);
        for (s, f) in [(10.0, 12.0), (0.0, 2.0), (5.0, 7.0), (7.0, 7.0)] {
            lines.occupy(0, s, f);
        }
        let partial = Partial {
            timelines: lines,
            placement: vec![None; 2],
        };
        let mut tentative = Tentative::new(&partial);
        assert_eq!(tentative.earliest_start(0, 0.0, 1.0), 2.0);
        tentative.place(1, (0, 2.0, 4.0));
        assert_eq!(tentative.earliest_start(0, 0.0, 1.0), 4.0);
        assert_eq!(tentative.earliest_start(0, 0.0, 2.0), 7.0);
        assert_eq!(tentative.placed(1), Some((0, 2.0, 4.0)));
        assert_eq!(tentative.placed(0), None);
    }

    #[test]
    fn near_equal_priorities_tie_and_go_to_the_lower_index() {
        let keys = priority_keys(&[1.0, 3.0, 3.0 + 1e-12, 2.0]);
        assert_eq!(keys[1], keys[2]);
        assert!(keys[1] < keys[3] && keys[3] < keys[0]);
    }
}
