//! The dynamic placement policies: one type, and one copy of each decision,
//! for the discrete-event [simulator](super::simulate) and the runtime's
//! executor (`dagger_runtime::Runtime::run_with_policy`).
//!
//! A dynamic policy places a task when it becomes ready, not ahead of time.
//! The simulator calls the decisions below with simulated clocks; the
//! executor with its workers' queued work estimated by the performance
//! model. What the two see differs (the executor cannot know exactly when
//! a worker will be free), how they decide does not:
//!
//! - dmda ([`dmda_choice`], StarPU's *deque model data aware*): the worker
//!   on which the task is expected to finish first,
//!   `max(available, inputs ready) + cost`, as StarPU's `exp_end` is: the
//!   task can start once the worker's queue has drained and its inputs have
//!   been copied there, whichever comes last;
//! - round-robin ([`in_turn`]): workers in turn, skipping those that cannot
//!   run the task;
//! - random ([`random_able`], seeded [`xorshift64`]): a random worker, the
//!   next one in turn if that one cannot run it.
//!
//! # Examples
//!
//! ```
//! use dagger_ir::sched::policy::{dmda_choice, DmdaEstimate};
//!
//! // Worker 1 is twice as fast, but its queue holds 30 units of work, and
//! // the inputs reach worker 2 (a GPU) only at time 25.
//! let estimates = [
//!     DmdaEstimate { worker: 0, available: 0.0, inputs_ready: 0.0, cost: 20.0 },
//!     DmdaEstimate { worker: 1, available: 30.0, inputs_ready: 0.0, cost: 10.0 },
//!     DmdaEstimate { worker: 2, available: 0.0, inputs_ready: 25.0, cost: 2.0 },
//! ];
//! assert_eq!(dmda_choice(estimates).map(|e| e.worker), Some(0));
//! ```

/// A dynamic placement policy, run by the executor or simulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynamicPolicy {
    /// One shared FIFO queue; any idle worker takes its head.
    Eager,
    /// A random worker's queue (seeded).
    Random,
    /// Worker queues in turn.
    RoundRobin,
    /// A ready task goes where its last-finishing input was made; idle
    /// workers steal (the executor's default: `Runtime::run`).
    WorkStealing,
    /// Minimum expected completion time, queued work and transfers included
    /// ([`dmda_choice`]).
    Dmda,
    /// Dmda with each queue ordered by upward rank, highest first.
    Dmdas,
}

impl DynamicPolicy {
    /// Every dynamic policy.
    pub const ALL: [DynamicPolicy; 6] = [
        DynamicPolicy::Eager,
        DynamicPolicy::Random,
        DynamicPolicy::RoundRobin,
        DynamicPolicy::WorkStealing,
        DynamicPolicy::Dmda,
        DynamicPolicy::Dmdas,
    ];

    /// The policy's name, as `dagger sched --algo` spells it.
    pub fn name(self) -> &'static str {
        match self {
            DynamicPolicy::Eager => "eager",
            DynamicPolicy::Random => "random",
            DynamicPolicy::RoundRobin => "round-robin",
            DynamicPolicy::WorkStealing => "work-stealing",
            DynamicPolicy::Dmda => "dmda",
            DynamicPolicy::Dmdas => "dmdas",
        }
    }

    /// Whether the policy weighs the performance model's estimates (dmda,
    /// dmdas).
    pub fn uses_costs(self) -> bool {
        matches!(self, DynamicPolicy::Dmda | DynamicPolicy::Dmdas)
    }
}

/// What dmda weighs about one worker for one ready task, in one time unit
/// and from one origin (the simulator: simulated time; the executor:
/// nanoseconds from now).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DmdaEstimate {
    /// The worker.
    pub worker: usize,
    /// When the worker will have run what is queued on it.
    pub available: f64,
    /// When the task's inputs can all be there.
    pub inputs_ready: f64,
    /// The task's expected time on the worker.
    pub cost: f64,
}

impl DmdaEstimate {
    /// When the task would finish there: `max(available, inputs_ready) + cost`.
    pub fn expected_finish(&self) -> f64 {
        self.available.max(self.inputs_ready) + self.cost
    }
}

/// dmda's choice among `estimates` (one per worker able to run the task):
/// the earliest [expected finish](DmdaEstimate::expected_finish); ties go
/// to the first given. `None` when no worker can run the task.
pub fn dmda_choice(estimates: impl IntoIterator<Item = DmdaEstimate>) -> Option<DmdaEstimate> {
    let mut best: Option<(f64, DmdaEstimate)> = None;
    for e in estimates {
        let finish = e.expected_finish();
        if best.is_none_or(|(b, _)| finish < b) {
            best = Some((finish, e));
        }
    }
    best.map(|(_, e)| e)
}

/// Round-robin's choice: takes turns from `next_turn` (a counter that goes
/// up by one a call) until the worker whose turn it is (`turn % workers`)
/// is `able` to run the task. At least one worker must be able.
pub fn in_turn(
    mut next_turn: impl FnMut() -> usize,
    workers: usize,
    able: impl Fn(usize) -> bool,
) -> usize {
    assert!(
        (0..workers).any(&able),
        "in_turn: no worker can run the task"
    );
    loop {
        let w = next_turn() % workers;
        if able(w) {
            return w;
        }
    }
}

/// One step of the xorshift64 generator (Marsaglia, 2003): the random
/// policy's seeded source. `x` must not be zero.
pub fn xorshift64(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The random policy's choice for the draw `x`: worker `x % workers`, or
/// the next one after it that is `able` to run the task. At least one
/// worker must be able.
pub fn random_able(x: u64, workers: usize, able: impl Fn(usize) -> bool) -> usize {
    let first = (x % workers as u64) as usize;
    (0..workers)
        .map(|k| (first + k) % workers)
        .find(|&w| able(w))
        .expect("random_able: no worker can run the task")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(worker: usize, available: f64, inputs_ready: f64, cost: f64) -> DmdaEstimate {
        DmdaEstimate {
            worker,
            available,
            inputs_ready,
            cost,
        }
    }

    #[test]
    fn dmda_waits_for_the_later_of_the_queue_and_the_inputs() {
        // Queue drains at 5, inputs there at 8: starts at 8, ends at 11.
        assert_eq!(estimate(0, 5.0, 8.0, 3.0).expected_finish(), 11.0);
        assert_eq!(estimate(0, 9.0, 8.0, 3.0).expected_finish(), 12.0);
        let chosen = dmda_choice([
            estimate(0, 5.0, 8.0, 3.0),
            estimate(1, 0.0, 0.0, 11.0),
            estimate(2, 0.0, 0.0, 12.0),
        ]);
        assert_eq!(chosen.map(|e| e.worker), Some(0), "ties go to the first");
        assert_eq!(dmda_choice([]), None);
    }

    #[test]
    fn round_robin_and_random_skip_workers_that_cannot_run_the_task() {
        let mut turn = 0;
        let mut next = || {
            turn += 1;
            turn - 1
        };
        let not_one = |w: usize| w != 1;
        let got: Vec<usize> = (0..4).map(|_| in_turn(&mut next, 3, not_one)).collect();
        assert_eq!(got, vec![0, 2, 0, 2]);
        assert_eq!(random_able(4, 3, not_one), 2, "4 % 3 = 1 cannot: the next");
        assert_eq!(random_able(5, 3, not_one), 2);
        let mut x = 0x2545f4914f6cdd1d;
        let mut seen = [0; 3];
        for _ in 0..300 {
            x = xorshift64(x);
            seen[random_able(x, 3, |_| true)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
    }
}
