//! A discrete-event simulator of dynamic scheduling policies.
//!
//! Nothing runs: time advances from one task completion to the next. When a
//! task's last predecessor finishes it becomes *ready* and the policy
//! places it in a queue; a processor with nothing to do takes the next task
//! of its queue (or, for the eager policy, of the one shared queue; for
//! work stealing, of the fullest other queue when its own is empty) and
//! runs it as soon as its inputs have arrived: a predecessor's output
//! arrives at its finish time, plus the edge's communication cost when it
//! ran on another processor. Idle processors are served in index order, so
//! every run is deterministic (the random policy is seeded).
//!
//! Policies:
//! - `eager`: one shared FIFO queue; any idle processor takes its head.
//! - `random`, `round-robin`: a processor queue chosen at random or in turn.
//! - `work-stealing`: a ready task goes to the processor that ran its
//!   last-finishing predecessor (locality); idle processors steal the oldest
//!   task of the fullest queue.
//! - `dmda` (StarPU's *deque model data aware*): the queue where the task
//!   is expected to complete first, counting the work already queued there
//!   and the transfers of its inputs.
//! - `dmdas`: dmda whose queues run the task of highest upward rank first.
//!
//! Cost: `O(log)` bookkeeping a task for the queues, the idle processors
//! and the fullest queue (work stealing), plus a pass over the processors
//! for each task that dmda, dmdas or random places (and the inputs'
//! transfers for dmda): `O((tasks + edges) x processors)` at most, never
//! quadratic in the processors.

use super::policy::{dmda_choice, in_turn, random_able, xorshift64, DmdaEstimate, DynamicPolicy};
use super::problem::Problem;
use super::progress::Progress;
use super::rank::upward_rank;
use super::schedule::Schedule;
use super::Scheduler;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};

impl Scheduler for DynamicPolicy {
    fn name(&self) -> &'static str {
        DynamicPolicy::name(*self)
    }

    fn schedule(&self, problem: &Problem) -> Schedule {
        self.schedule_with_progress(problem, &Progress::silent())
    }

    fn schedule_with_progress(&self, problem: &Problem, progress: &Progress) -> Schedule {
        Simulation::new(problem, *self).run(progress)
    }
}

struct Simulation<'a> {
    problem: &'a Problem,
    policy: DynamicPolicy,
    rank: Vec<f64>,
    /// One queue per processor, or one shared queue (eager); dmdas keeps
    /// each sorted, highest upward rank first.
    queues: Vec<VecDeque<usize>>,
    /// Tasks in all the queues.
    queued: usize,
    /// The non-empty queues, fullest first (ties: lower index).
    by_length: BTreeSet<(Reverse<usize>, usize)>,
    /// Work queued on each processor (dmda, dmdas).
    queued_work: Vec<f64>,
    /// Time each processor is busy until.
    free_at: Vec<f64>,
    /// Processors with nothing to run (free at or before the current time).
    idle: BTreeSet<usize>,
    /// The other processors, by the time they are free.
    busy: BinaryHeap<Reverse<(u64, usize)>>,
    placement: Vec<Option<(usize, f64, f64)>>,
    missing_preds: Vec<usize>,
    events: BinaryHeap<Reverse<(u64, usize)>>,
    turn: usize,
    rng: u64,
}

impl<'a> Simulation<'a> {
    fn new(problem: &'a Problem, policy: DynamicPolicy) -> Self {
        let queues = if policy == DynamicPolicy::Eager {
            1
        } else {
            problem.processors
        };
        Simulation {
            problem,
            policy,
            rank: upward_rank(problem),
            queues: vec![VecDeque::new(); queues],
            queued: 0,
            by_length: BTreeSet::new(),
            queued_work: vec![0.0; queues],
            free_at: vec![0.0; problem.processors],
            idle: (0..problem.processors).collect(),
            busy: BinaryHeap::new(),
            placement: vec![None; problem.len()],
            missing_preds: problem.pred.iter().map(Vec::len).collect(),
            events: BinaryHeap::new(),
            turn: 0,
            rng: 0x2545f4914f6cdd1d,
        }
    }

    /// When `t`'s inputs are all on `proc`.
    fn inputs_at(&self, t: usize, proc: usize) -> f64 {
        self.problem.pred[t]
            .iter()
            .map(|&(p, comm)| {
                let (pp, _, finish) =
                    self.placement[p].expect("ready tasks have finished predecessors");
                finish + if pp == proc { 0.0 } else { comm }
            })
            .fold(0.0, f64::max)
    }

    /// Whether processor `p` can run task `t` (an infinite cost says not).
    fn can_run(&self, t: usize, p: usize) -> bool {
        self.problem.cost[t][p].is_finite()
    }

    /// The next processor in turn that can run `t`.
    fn next_in_turn(&mut self, t: usize) -> usize {
        let mut turn = self.turn;
        let p = in_turn(
            || {
                turn += 1;
                turn - 1
            },
            self.problem.processors,
            |p| self.can_run(t, p),
        );
        self.turn = turn;
        p
    }

    /// Puts `t` in `queue`: at the back, or in rank order for dmdas.
    fn enqueue(&mut self, queue: usize, t: usize) {
        let before = self.queues[queue].len();
        let q = &mut self.queues[queue];
        if self.policy == DynamicPolicy::Dmdas {
            let rank = &self.rank;
            let at = q.partition_point(|&u| rank[t].total_cmp(&rank[u]).then(u.cmp(&t)).is_lt());
            q.insert(at, t);
        } else {
            q.push_back(t);
        }
        if self.policy.uses_costs() {
            self.queued_work[queue] += self.problem.cost[t][queue];
        }
        self.resized(queue, before);
    }

    /// Takes the task at `at` out of `queue`.
    fn dequeue(&mut self, queue: usize, at: usize) -> Option<usize> {
        let before = self.queues[queue].len();
        let t = self.queues[queue].remove(at)?;
        if self.policy.uses_costs() {
            // An empty queue holds no work: no rounding left over.
            self.queued_work[queue] = if before == 1 {
                0.0
            } else {
                self.queued_work[queue] - self.problem.cost[t][queue]
            };
        }
        self.resized(queue, before);
        Some(t)
    }

    fn resized(&mut self, queue: usize, before: usize) {
        let after = self.queues[queue].len();
        self.queued = self.queued + after - before;
        if before > 0 {
            self.by_length.remove(&(Reverse(before), queue));
        }
        if after > 0 {
            self.by_length.insert((Reverse(after), queue));
        }
    }

    /// The first task of `queue` that `proc` can run, taken out of it.
    fn take_runnable(&mut self, queue: usize, proc: usize) -> Option<usize> {
        let at = self.queues[queue]
            .iter()
            .position(|&t| self.problem.cost[t][proc].is_finite())?;
        self.dequeue(queue, at)
    }

    /// The queue a newly ready task joins.
    fn choose_queue(&mut self, t: usize, now: f64) -> usize {
        let procs = self.problem.processors;
        match self.policy {
            DynamicPolicy::Eager => 0,
            DynamicPolicy::RoundRobin => self.next_in_turn(t),
            DynamicPolicy::Random => {
                self.rng = xorshift64(self.rng);
                random_able(self.rng, procs, |p| self.can_run(t, p))
            }
            DynamicPolicy::WorkStealing => {
                let last = self.problem.pred[t]
                    .iter()
                    .filter_map(|&(p, _)| self.placement[p])
                    .max_by(|a, b| a.2.total_cmp(&b.2).then(b.0.cmp(&a.0)));
                match last {
                    Some((proc, _, _)) if self.can_run(t, proc) => proc,
                    _ => self.next_in_turn(t),
                }
            }
            DynamicPolicy::Dmda | DynamicPolicy::Dmdas => {
                let estimates = (0..procs)
                    .filter(|&p| self.can_run(t, p))
                    .map(|p| DmdaEstimate {
                        worker: p,
                        available: self.free_at[p].max(now) + self.queued_work[p],
                        inputs_ready: self.inputs_at(t, p),
                        cost: self.problem.cost[t][p],
                    });
                dmda_choice(estimates).map_or(0, |e| e.worker)
            }
        }
    }

    /// The next task idle processor `proc` runs, if any.
    fn take(&mut self, proc: usize) -> Option<usize> {
        match self.policy {
            DynamicPolicy::Eager => self.take_runnable(0, proc),
            DynamicPolicy::WorkStealing => self.dequeue(proc, 0).or_else(|| {
                // The fullest other queue holding a task `proc` can run.
                let victim = self
                    .by_length
                    .iter()
                    .map(|&(_, v)| v)
                    .filter(|&v| v != proc)
                    .find(|&v| self.queues[v].iter().any(|&t| self.can_run(t, proc)))?;
                self.take_runnable(victim, proc)
            }),
            _ => self.dequeue(proc, 0),
        }
    }

    /// Starts a task on each idle processor that has one to run, in
    /// processor order.
    fn start_idle(&mut self, now: f64) {
        while let Some(&Reverse((bits, proc))) = self.busy.peek() {
            if f64::from_bits(bits) > now {
                break;
            }
            self.busy.pop();
            self.idle.insert(proc);
        }
        // With one queue per processor and no stealing, only the idle ones
        // with a non-empty queue can start, and they do not compete.
        let own_queue_only = !matches!(
            self.policy,
            DynamicPolicy::Eager | DynamicPolicy::WorkStealing
        );
        let candidates: Vec<usize> = if own_queue_only && self.by_length.len() < self.idle.len() {
            let mut c: Vec<usize> = self
                .by_length
                .iter()
                .map(|&(_, q)| q)
                .filter(|q| self.idle.contains(q))
                .collect();
            c.sort_unstable();
            c
        } else {
            self.idle.iter().copied().collect()
        };
        for proc in candidates {
            if self.queued == 0 {
                break;
            }
            let Some(t) = self.take(proc) else { continue };
            let start = now.max(self.inputs_at(t, proc));
            let finish = start + self.problem.cost[t][proc];
            self.placement[t] = Some((proc, start, finish));
            self.free_at[proc] = finish;
            self.idle.remove(&proc);
            self.busy.push(Reverse((finish.to_bits(), proc)));
            self.events.push(Reverse((finish.to_bits(), t)));
        }
    }

    fn run(mut self, progress: &Progress) -> Schedule {
        for t in 0..self.problem.len() {
            if self.missing_preds[t] == 0 {
                let q = self.choose_queue(t, 0.0);
                self.enqueue(q, t);
            }
        }
        self.start_idle(0.0);
        let mut done = 0;
        // Finish times are non-negative, so their bit patterns order like the numbers.
        while let Some(Reverse((bits, t))) = self.events.pop() {
            let now = f64::from_bits(bits);
            for &(s, _) in &self.problem.succ[t] {
                self.missing_preds[s] -= 1;
                if self.missing_preds[s] == 0 {
                    let q = self.choose_queue(s, now);
                    self.enqueue(q, s);
                }
            }
            self.start_idle(now);
            done += 1;
            progress.tick(done, self.problem.len());
        }
        Schedule {
            placement: self
                .placement
                .into_iter()
                .map(|p| p.expect("every task runs"))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(json: &str) -> Problem {
        Problem::from_json(json).unwrap()
    }

    #[test]
    fn one_processor_runs_everything_back_to_back() {
        let p = problem(
            r#"{"processors": 1, "tasks": [{"id": "a", "cost": [2]}, {"id": "b", "cost": [3]}, {"id": "c", "cost": [4]}],
                "edges": [{"from": "a", "to": "c", "comm": 100}, {"from": "b", "to": "c", "comm": 100}]}"#,
        );
        for policy in DynamicPolicy::ALL {
            assert_eq!(policy.schedule(&p).makespan(), 9.0, "{}", policy.name());
        }
    }

    #[test]
    fn dmda_uses_the_fast_processor_and_counts_transfers() {
        // Two independent tasks, P1 four times faster: dmda queues both on P1
        // (4 + 4 = 8 beats 16 on P0); round robin puts one on each (16).
        let p = problem(
            r#"{"processors": 2, "tasks": [{"id": "a", "cost": [16, 4]}, {"id": "b", "cost": [16, 4]}]}"#,
        );
        assert_eq!(DynamicPolicy::Dmda.schedule(&p).makespan(), 8.0);
        assert_eq!(DynamicPolicy::RoundRobin.schedule(&p).makespan(), 16.0);
        // A child with an expensive edge stays with its parent under dmda.
        let q = problem(
            r#"{"processors": 2, "tasks": [{"id": "a", "cost": [1, 1]}, {"id": "b", "cost": [2, 1]}],
                "edges": [{"from": "a", "to": "b", "comm": 50}]}"#,
        );
        let s = DynamicPolicy::Dmda.schedule(&q);
        assert_eq!(s.placement[1].0, s.placement[0].0);
    }

    #[test]
    fn dynamic_schedules_are_valid_on_the_papers_example() {
        let p = problem(crate::sched::tests::PAPER);
        for policy in DynamicPolicy::ALL {
            let s = policy.schedule(&p);
            for t in 0..p.len() {
                let (proc, start, finish) = s.placement[t];
                assert_eq!(finish - start, p.cost[t][proc]);
                for &(pred, comm) in &p.pred[t] {
                    let (pp, _, pf) = s.placement[pred];
                    assert!(
                        start >= pf + if pp == proc { 0.0 } else { comm } - 1e-9,
                        "{}",
                        policy.name()
                    );
                }
            }
            assert!(
                s.makespan() >= 80.0 * 0.5,
                "{}: {}",
                policy.name(),
                s.makespan()
            );
        }
    }
}
