//! Predicting a run on one machine whose tasks share its cores.
//!
//! The list schedulers give each task a processor of its own. The CPU
//! executor does not work so: it runs every ready task at once on its
//! work-stealing pool, and a task's products fork halves onto idle workers
//! (`join`), so a task alone on the machine runs on several cores and two
//! tasks side by side each get about one. [`SharedCores`] predicts that: a
//! fluid simulation in which the running tasks share the machine equally.
//! With `k` tasks running, each advances at
//!
//! ```text
//! rate(k) = min(alone, throughput / k)   one-core seconds of work per second
//! ```
//!
//! where `throughput` is what all the cores do together, in cores (the
//! number of cores where they are independent; less where they share a
//! physical core, caches or memory bandwidth), and `alone` is the speed-up
//! of a task alone on the machine over one core (at most `throughput`;
//! less where part of a task is serial: Amdahl). Calibrate both by timing
//! one step on one worker, on every worker, and one copy on each worker
//! at once (`dagger_tensor::task_step::calibrate::shared_cores`). Where
//! tasks differ in how much of them forks onto idle cores (products do,
//! elementwise kernels do not),
//! [`schedule_with_speedups`](SharedCores::schedule_with_speedups) takes a
//! speed-up alone for each.
//! Tasks start the moment their last predecessor finishes (the machine's
//! memory is shared: no transfer), a task's cost is its time on one core
//! (the cheapest of the problem's processors), and time advances from one
//! completion to the next.
//!
//! The schedule it returns puts each task in a *lane*: the lowest index
//! not taken by another task running at the same time (for the Gantt
//! writers; a lane is not a core).
//!
//! # Examples
//!
//! Two independent tasks of 1 s each on 2 cores, where a task alone runs
//! 1.5x as fast as on one core: side by side they take 1 s; one after the
//! other, 2/1.5 s.
//!
//! ```
//! use dagger_ir::sched::{Problem, Scheduler, SharedCores};
//!
//! let side_by_side = Problem::from_json(
//!     r#"{"processors": 1, "tasks": [{"id": "a", "cost": [1.0]}, {"id": "b", "cost": [1.0]}]}"#,
//! )
//! .unwrap();
//! let chain = Problem::from_json(
//!     r#"{"processors": 1, "tasks": [{"id": "a", "cost": [1.0]}, {"id": "b", "cost": [1.0]}],
//!         "edges": [{"from": "a", "to": "b"}]}"#,
//! )
//! .unwrap();
//! let machine = SharedCores::new(2.0, 1.5);
//! assert!((machine.schedule(&side_by_side).makespan() - 1.0).abs() < 1e-12);
//! assert!((machine.schedule(&chain).makespan() - 2.0 / 1.5).abs() < 1e-12);
//! ```

use super::problem::Problem;
use super::schedule::Schedule;
use super::Scheduler;

/// A machine whose running tasks share its cores (see the
/// [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedCores {
    throughput: f64,
    alone: f64,
}

impl SharedCores {
    /// Cores that do `throughput` cores' work together (at least 1); a
    /// task alone runs `alone` times as fast as on one core, clamped to
    /// `1..=throughput`. Values that are not finite count as 1.
    pub fn new(throughput: f64, alone: f64) -> Self {
        let finite = |v: f64| if v.is_finite() { v } else { 1.0 };
        let throughput = finite(throughput).max(1.0);
        SharedCores {
            throughput,
            alone: finite(alone).clamp(1.0, throughput),
        }
    }

    /// What all the cores do together, in cores.
    pub fn throughput(&self) -> f64 {
        self.throughput
    }

    /// The speed-up of a task alone over one core.
    pub fn alone(&self) -> f64 {
        self.alone
    }

    /// One-core seconds of work each of `running` tasks does per second.
    pub fn rate(&self, running: usize) -> f64 {
        self.alone.min(self.throughput / running.max(1) as f64)
    }
}

/// A task on the machine: its index, work left, start, lane, and the
/// speed-up it gets alone.
struct Running {
    task: usize,
    left: f64,
    start: f64,
    lane: usize,
    alone: f64,
}

impl SharedCores {
    /// [`schedule`](Scheduler::schedule) with a speed-up of its own for
    /// each task alone on the machine (`alone[t]`, clamped to
    /// `1..=throughput`; a task whose work is partly serial gains less
    /// than one made of products): with `k` tasks running, task `t`
    /// advances at `min(alone[t], throughput / k)`.
    pub fn schedule_with_speedups(&self, problem: &Problem, alone: &[f64]) -> Schedule {
        let n = problem.len();
        let work: Vec<f64> = (0..n)
            .map(|t| {
                let one_core = problem.cost[t]
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min);
                if one_core.is_finite() {
                    one_core
                } else {
                    0.0
                }
            })
            .collect();
        let speedup = |t: usize| {
            let a = alone.get(t).copied().unwrap_or(self.alone);
            if a.is_finite() {
                a.clamp(1.0, self.throughput)
            } else {
                1.0
            }
        };
        let mut missing: Vec<usize> = problem.pred.iter().map(Vec::len).collect();
        let mut placement = vec![(0, 0.0, 0.0); n];
        let mut running: Vec<Running> = Vec::new();
        let mut lanes: Vec<bool> = Vec::new();
        let mut now = 0.0f64;
        let start = |task: usize, now: f64, running: &mut Vec<Running>, lanes: &mut Vec<bool>| {
            let lane = lanes.iter().position(|taken| !taken).unwrap_or(lanes.len());
            if lane == lanes.len() {
                lanes.push(true);
            }
            lanes[lane] = true;
            running.push(Running {
                task,
                left: work[task],
                start: now,
                lane,
                alone: speedup(task),
            });
        };
        for t in (0..n).filter(|&t| missing[t] == 0) {
            start(t, now, &mut running, &mut lanes);
        }
        while !running.is_empty() {
            let share = self.throughput / running.len() as f64;
            let rate = |r: &Running| r.alone.min(share);
            // The next to finish, and how long until it does.
            let dt = running
                .iter()
                .map(|r| r.left / rate(r))
                .fold(f64::INFINITY, f64::min);
            now += dt;
            let mut finished = Vec::new();
            running.retain_mut(|r| {
                let done = rate(r) * dt;
                // Everything within rounding of finishing finishes now.
                if r.left - done <= r.left * 1e-12 {
                    finished.push((r.task, r.start, r.lane));
                    false
                } else {
                    r.left -= done;
                    true
                }
            });
            finished.sort_unstable_by_key(|f| f.0);
            for &(task, began, lane) in &finished {
                placement[task] = (lane, began, now);
                lanes[lane] = false;
            }
            for &(task, _, _) in &finished {
                for &(next, _) in &problem.succ[task] {
                    missing[next] -= 1;
                    if missing[next] == 0 {
                        start(next, now, &mut running, &mut lanes);
                    }
                }
            }
        }
        Schedule { placement }
    }
}

impl Scheduler for SharedCores {
    fn name(&self) -> &'static str {
        "shared-cores"
    }

    fn schedule(&self, problem: &Problem) -> Schedule {
        self.schedule_with_speedups(problem, &vec![self.alone; problem.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(costs: &[f64], edges: &[(usize, usize)]) -> Problem {
        let tasks: Vec<String> = costs
            .iter()
            .enumerate()
            .map(|(i, c)| format!(r#"{{"id": "t{i}", "cost": [{c}]}}"#))
            .collect();
        let edges: Vec<String> = edges
            .iter()
            .map(|(a, b)| format!(r#"{{"from": "t{a}", "to": "t{b}"}}"#))
            .collect();
        Problem::from_json(&format!(
            r#"{{"processors": 1, "tasks": [{}], "edges": [{}]}}"#,
            tasks.join(","),
            edges.join(",")
        ))
        .unwrap()
    }

    #[test]
    fn a_task_alone_runs_at_its_speed_up_and_crowds_share_the_cores() {
        let machine = SharedCores::new(2.0, 1.25);
        assert_eq!(machine.rate(1), 1.25);
        assert_eq!(machine.rate(2), 1.0);
        assert_eq!(machine.rate(4), 0.5);
        // Four independent 1 s tasks on 2 cores: 2 s, whatever `alone` is.
        let four = problem(&[1.0; 4], &[]);
        assert!((machine.schedule(&four).makespan() - 2.0).abs() < 1e-12);
        // Two cores that do 1.5 cores' work: 4/1.5 s.
        let smt = SharedCores::new(1.5, 1.1);
        assert!((smt.schedule(&four).makespan() - 4.0 / 1.5).abs() < 1e-12);
        // The speed-up is clamped to the throughput.
        assert_eq!(SharedCores::new(2.0, 7.0).alone(), 2.0);
        assert_eq!(SharedCores::new(0.0, 0.5).rate(1), 1.0);
        assert_eq!(SharedCores::new(f64::NAN, 1.5).throughput(), 1.0);
    }

    #[test]
    fn a_short_task_beside_a_long_one_leaves_it_the_machine() {
        // t0 (1 s) and t1 (3 s) start together on 2 cores, alone 1.5x:
        // both at 1 core/s until t0 ends at 1 s; t1 then has 2 s of work
        // left at 1.5/s: it ends at 1 + 2/1.5. t2 follows t0 and shares
        // the machine with t1 from 1 s.
        let machine = SharedCores::new(2.0, 1.5);
        let alone_after = machine.schedule(&problem(&[1.0, 3.0], &[]));
        assert!((alone_after.makespan() - (1.0 + 2.0 / 1.5)).abs() < 1e-12);
        let with_successor = machine.schedule(&problem(&[1.0, 3.0, 1.0], &[(0, 2)]));
        // t1 and t2 share from 1 s; t2 ends at 2 s; t1 then has 1 s left.
        assert!((with_successor.placement[2].2 - 2.0).abs() < 1e-12);
        assert!((with_successor.makespan() - (2.0 + 1.0 / 1.5)).abs() < 1e-12);
        // t2 took t0's lane when t0 finished.
        assert_eq!(with_successor.placement[0].0, with_successor.placement[2].0);
        assert_ne!(with_successor.placement[1].0, with_successor.placement[2].0);
    }

    #[test]
    fn a_serial_task_alone_gains_nothing_beside_one_of_products() {
        // Two 1 s tasks on 2 cores that do 2 cores' work: t0 is serial
        // (speed-up 1), t1 products (speed-up 2). Side by side both run at
        // 1; t0 ends at 1 s with t1 done too.
        let machine = SharedCores::new(2.0, 2.0);
        let both = machine.schedule_with_speedups(&problem(&[1.0, 1.0], &[]), &[1.0, 2.0]);
        assert!((both.makespan() - 1.0).abs() < 1e-12);
        // One after the other: t0 takes 1 s, t1 then 0.5 s.
        let chain = problem(&[1.0, 1.0], &[(0, 1)]);
        let s = machine.schedule_with_speedups(&chain, &[1.0, 2.0]);
        assert!((s.makespan() - 1.5).abs() < 1e-12);
        // A 3 s product beside a 1 s serial task: 1 s at 1 each, then the
        // product's 2 s left at 2.
        let s = machine.schedule_with_speedups(&problem(&[1.0, 3.0], &[]), &[1.0, 2.0]);
        assert!((s.makespan() - 2.0).abs() < 1e-12);
        // Speed-ups are clamped to the throughput; missing ones are `alone`.
        let s = machine.schedule_with_speedups(&chain, &[9.0]);
        assert!((s.makespan() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn tasks_wait_for_their_predecessors() {
        // A diamond: t0 then t1 || t2 then t3; 1 core of speed-up 1.
        let s = SharedCores::new(1.0, 1.0).schedule(&problem(
            &[1.0, 2.0, 2.0, 1.0],
            &[(0, 1), (0, 2), (1, 3), (2, 3)],
        ));
        assert_eq!(s.placement[1].1, 1.0);
        assert!((s.placement[3].1 - 5.0).abs() < 1e-12);
        assert!((s.makespan() - 6.0).abs() < 1e-12);
    }
}
