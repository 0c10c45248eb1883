//! Static scheduling: place a whole task graph on processors before running it.
//!
//! A [`Problem`] is a DAG whose tasks have a cost on each processor and
//! whose edges have a communication cost, paid only between different
//! processors. A [`Scheduler`] turns it into a [`Schedule`]; the static
//! published list schedulers here are [`HeftScheduler`] and
//! [`CpopScheduler`] (Topcuoglu, Hariri and Wu, 2002), [`PeftScheduler`]
//! (Arabnejad and Barbosa, 2014) and [`LookaheadScheduler`] (Bittencourt,
//! Sakellariou and Madeira, 2010); the dynamic policies ([`DynamicPolicy`]:
//! eager, random, round-robin, work stealing, StarPU's dmda and dmdas) run
//! in the discrete-event [simulator](simulate); [`SharedCores`] predicts
//! the CPU executor, whose running tasks share one machine's cores. All
//! are measured by makespan, [`slr`] and [`speedup`].
//!
//! The static schedulers take `O((tasks + edges) x processors)` time up to
//! a log factor (lookahead looks at a bounded number of children and
//! candidate processors, see [`lookahead`]), the simulator
//! `O((tasks + edges) x processors)` at most; long runs can report their
//! progress ([`Scheduler::schedule_with_progress`], [`progress`]).

pub mod chrome;
pub mod compare;
pub mod cpop;
pub mod families;
pub mod gantt;
pub mod generate;
pub mod heft;
pub mod interleaved;
pub mod list;
pub mod lookahead;
pub mod peft;
pub mod pipeline;
pub mod policy;
pub mod problem;
pub mod progress;
pub mod rank;
pub mod schedule;
pub mod shared;
pub mod simulate;
mod timeline;

pub use cpop::CpopScheduler;
pub use heft::HeftScheduler;
pub use interleaved::{interleaved_bubble_formula, simulate_interleaved, InterleavedSchedule};
pub use lookahead::LookaheadScheduler;
pub use peft::PeftScheduler;
pub use pipeline::{balanced_stages, bubble_formula, PipelineKind, PipelineSchedule};
pub use policy::DynamicPolicy;
pub use problem::Problem;
pub use progress::Progress;
pub use schedule::{critical_path_min, slr, speedup, Schedule, Slot};
pub use shared::SharedCores;

/// A scheduling algorithm: a static one plans the whole graph ahead of time;
/// a dynamic one ([`DynamicPolicy`]) decides as tasks become
/// ready, and its schedule here is what the discrete-event simulator makes.
pub trait Scheduler {
    /// Short name, as the `dagger sched --algo` option spells it.
    fn name(&self) -> &'static str;
    /// Places every task of `problem`.
    fn schedule(&self, problem: &Problem) -> Schedule;
    /// Places every task of `problem`, reporting `(done, total)` tasks to
    /// `progress` as it goes (see [`progress`]); a scheduler that does not
    /// report just schedules.
    fn schedule_with_progress(&self, problem: &Problem, progress: &Progress) -> Schedule {
        let _ = progress;
        self.schedule(problem)
    }
}

/// The static list schedulers: HEFT, CPOP, PEFT, lookahead HEFT.
pub fn static_schedulers() -> Vec<Box<dyn Scheduler>> {
    vec![
        Box::new(HeftScheduler),
        Box::new(CpopScheduler),
        Box::new(PeftScheduler),
        Box::new(LookaheadScheduler),
    ]
}

/// Every scheduler, static ones first, in the order `--algo all` runs them.
pub fn all() -> Vec<Box<dyn Scheduler>> {
    let mut all = static_schedulers();
    all.extend(DynamicPolicy::ALL.map(|d| Box::new(d) as Box<dyn Scheduler>));
    all
}

/// The scheduler of this name, if there is one.
pub fn by_name(name: &str) -> Option<Box<dyn Scheduler>> {
    all().into_iter().find(|s| s.name() == name)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The example of Topcuoglu, Hariri and Wu (2002), Fig. 2: 10 tasks, 3 processors.
    pub(crate) const PAPER: &str = r#"{"processors": 3,
        "tasks": [
            {"id": "n1", "cost": [14, 16, 9]}, {"id": "n2", "cost": [13, 19, 18]},
            {"id": "n3", "cost": [11, 13, 19]}, {"id": "n4", "cost": [13, 8, 17]},
            {"id": "n5", "cost": [12, 13, 10]}, {"id": "n6", "cost": [13, 16, 9]},
            {"id": "n7", "cost": [7, 15, 11]}, {"id": "n8", "cost": [5, 11, 14]},
            {"id": "n9", "cost": [18, 12, 20]}, {"id": "n10", "cost": [21, 7, 16]}],
        "edges": [
            {"from": "n1", "to": "n2", "comm": 18}, {"from": "n1", "to": "n3", "comm": 12},
            {"from": "n1", "to": "n4", "comm": 9}, {"from": "n1", "to": "n5", "comm": 11},
            {"from": "n1", "to": "n6", "comm": 14}, {"from": "n2", "to": "n8", "comm": 19},
            {"from": "n2", "to": "n9", "comm": 16}, {"from": "n3", "to": "n7", "comm": 23},
            {"from": "n4", "to": "n8", "comm": 27}, {"from": "n4", "to": "n9", "comm": 23},
            {"from": "n5", "to": "n9", "comm": 13}, {"from": "n6", "to": "n8", "comm": 15},
            {"from": "n7", "to": "n10", "comm": 17}, {"from": "n8", "to": "n10", "comm": 11},
            {"from": "n9", "to": "n10", "comm": 13}]}"#;

    #[test]
    fn ranks_match_the_paper() {
        let p = Problem::from_json(PAPER).unwrap();
        let up: Vec<f64> = rank::upward_rank(&p)
            .iter()
            .map(|r| (r * 10.0).round() / 10.0)
            .collect();
        assert_eq!(
            up,
            vec![108.0, 77.0, 80.0, 80.0, 69.0, 63.3, 42.7, 35.7, 44.3, 14.7]
        );
    }

    #[test]
    fn heft_and_cpop_give_the_papers_makespans() {
        let p = Problem::from_json(PAPER).unwrap();
        let heft = HeftScheduler.schedule(&p);
        assert_eq!(heft.makespan(), 80.0);
        let cpop = CpopScheduler.schedule(&p);
        assert_eq!(cpop.makespan(), 86.0);
        assert!(slr(&p, &heft) >= 1.0 && slr(&p, &heft) < slr(&p, &cpop));
    }

    #[test]
    fn no_scheduler_places_a_task_where_it_cannot_run() {
        let mut p = Problem::from_json(PAPER).unwrap();
        // Processor 2 (the paper's fastest for n1, n5, n6) can run only
        // n1, n6 and n10, as a GPU runs only tasks with a device body.
        for t in 0..p.len() {
            if !["n1", "n6", "n10"].contains(&p.ids[t].as_str()) {
                p.cost[t][2] = f64::INFINITY;
            }
        }
        assert!(p.mean_cost(1).is_finite());
        for s in all() {
            let sched = s.schedule(&p);
            assert!(sched.makespan().is_finite(), "{}", s.name());
            for t in 0..p.len() {
                let (proc, start, finish) = sched.placement[t];
                assert!(
                    p.cost[t][proc].is_finite(),
                    "{} put {} on {proc}",
                    s.name(),
                    p.ids[t]
                );
                assert!(start.is_finite() && finish >= start, "{}", s.name());
            }
            let on_two = (0..p.len()).filter(|&t| sched.placement[t].0 == 2).count();
            assert!(on_two <= 3, "{}", s.name());
        }
    }

    #[test]
    fn schedules_respect_precedence_and_never_overlap() {
        let p = Problem::from_json(PAPER).unwrap();
        for s in all() {
            let sched = s.schedule(&p);
            for t in 0..p.len() {
                let (proc, start, finish) = sched.placement[t];
                assert_eq!(
                    finish - start,
                    p.cost[t][proc],
                    "{}: {}",
                    s.name(),
                    p.ids[t]
                );
                for &(pred, comm) in &p.pred[t] {
                    let (pp, _, pf) = sched.placement[pred];
                    assert!(
                        start >= pf + if pp == proc { 0.0 } else { comm } - 1e-9,
                        "{}",
                        s.name()
                    );
                }
                for u in 0..p.len() {
                    let (q, s2, f2) = sched.placement[u];
                    assert!(
                        u == t || q != proc || f2 <= start + 1e-9 || s2 >= finish - 1e-9,
                        "{}",
                        s.name()
                    );
                }
            }
        }
    }

    #[test]
    fn bad_files_are_refused_naming_the_culprit() {
        let err = |s: &str| Problem::from_json(s).unwrap_err().to_string();
        assert_eq!(
            err(r#"{"processors": 2, "tasks": [{"id": "a", "cost": [1]}]}"#),
            "node `a`: has 1 costs but there are 2 processors"
        );
        assert_eq!(
            err(
                r#"{"processors": 1, "tasks": [{"id": "a", "cost": [1]}], "edges": [{"from": "a", "to": "b"}]}"#
            ),
            "edge a -> b refers to unknown node `b`"
        );
        let cycle = err(
            r#"{"processors": 1, "tasks": [{"id": "a", "cost": [1]}, {"id": "b", "cost": [1]}],
            "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}]}"#,
        );
        assert!(
            cycle.starts_with("graph has a cycle: ")
                && cycle.contains("`a`")
                && cycle.contains("`b`"),
            "{cycle}"
        );
        assert!(err("{\"processors\": 1, \"tasks\": [").starts_with("malformed graph file: "));
    }
}
