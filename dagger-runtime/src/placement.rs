//! Where the tasks of a graph run: the executor's placement policies.
//!
//! By default ready tasks go to the deque of the worker that made them ready
//! and idle workers steal. A static schedule fixes a worker per task (see
//! [`Runtime::run_scheduled`](crate::Runtime::run_scheduled)). The dynamic
//! policies decide when a task becomes ready ([`ExecPolicy`], see
//! [`Runtime::run_with_policy`](crate::Runtime::run_with_policy)): one shared
//! queue (eager), workers in turn, a random worker, or StarPU's dmda (the
//! worker whose queued work, by the performance model, ends first).
//! The same policies run in the discrete-event simulator of `dagger_ir::sched`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A dynamic placement policy of the executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecPolicy {
    /// One shared FIFO queue; any idle worker takes its head.
    Eager,
    /// Workers in turn.
    RoundRobin,
    /// A random worker (seeded).
    Random,
    /// The worker whose queued work (estimated) finishes first.
    Dmda,
    /// Dmda, each worker running its ready tasks highest upward rank first.
    Dmdas,
}

impl ExecPolicy {
    /// Every dynamic policy of the executor.
    pub const ALL: [ExecPolicy; 5] = [
        ExecPolicy::Eager,
        ExecPolicy::RoundRobin,
        ExecPolicy::Random,
        ExecPolicy::Dmda,
        ExecPolicy::Dmdas,
    ];

    /// The policy's name, as the simulator spells it.
    pub fn name(self) -> &'static str {
        match self {
            ExecPolicy::Eager => "eager",
            ExecPolicy::RoundRobin => "round-robin",
            ExecPolicy::Random => "random",
            ExecPolicy::Dmda => "dmda",
            ExecPolicy::Dmdas => "dmdas",
        }
    }
}

/// Where a ready task goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The deque of the worker that made it ready (stealable).
    Local,
    /// The shared queue.
    Shared,
    /// Only this worker, before its ready tasks of higher `priority` keys.
    Worker {
        /// The worker.
        worker: usize,
        /// Lower runs first.
        priority: u64,
    },
}

/// How one run places its tasks.
pub(crate) enum Placement {
    /// Work stealing.
    Stealing,
    /// A worker and a priority key per plan node.
    Static {
        /// Worker of each plan node.
        worker: Vec<u32>,
        /// Priority key of each plan node (its scheduled start).
        priority: Vec<u64>,
    },
    /// Decided as tasks become ready.
    Dynamic {
        policy: ExecPolicy,
        /// Estimated nanoseconds per plan node.
        cost_ns: Vec<u64>,
        /// Priority key per plan node (dmdas; zero otherwise: arrival order).
        priority: Vec<u64>,
        /// Estimated nanoseconds queued on each worker.
        queued_ns: Vec<AtomicU64>,
        turn: AtomicUsize,
        rng: AtomicU64,
    },
}

impl Placement {
    /// A dynamic placement over `workers` workers with per-node cost
    /// estimates and priority keys (lower runs first; used by dmdas).
    pub(crate) fn dynamic(
        policy: ExecPolicy,
        workers: usize,
        cost_ns: Vec<u64>,
        priority: Vec<u64>,
    ) -> Self {
        let priority = if policy == ExecPolicy::Dmdas {
            priority
        } else {
            vec![0; cost_ns.len()]
        };
        Placement::Dynamic {
            policy,
            cost_ns,
            priority,
            queued_ns: (0..workers.max(1)).map(|_| AtomicU64::new(0)).collect(),
            turn: AtomicUsize::new(0),
            rng: AtomicU64::new(0x2545f4914f6cdd1d),
        }
    }

    /// Chooses where ready node `i` goes.
    pub(crate) fn target(&self, i: usize) -> Target {
        match self {
            Placement::Stealing => Target::Local,
            Placement::Static { worker, priority } => Target::Worker {
                worker: worker[i] as usize,
                priority: priority[i],
            },
            Placement::Dynamic {
                policy,
                cost_ns,
                priority,
                queued_ns,
                turn,
                rng,
            } => {
                let workers = queued_ns.len();
                let worker = match policy {
                    ExecPolicy::Eager => return Target::Shared,
                    ExecPolicy::RoundRobin => turn.fetch_add(1, Ordering::Relaxed) % workers,
                    ExecPolicy::Random => {
                        let mut x = rng.load(Ordering::Relaxed);
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        rng.store(x, Ordering::Relaxed);
                        (x % workers as u64) as usize
                    }
                    ExecPolicy::Dmda | ExecPolicy::Dmdas => {
                        let w = (0..workers)
                            .min_by_key(|&w| (queued_ns[w].load(Ordering::Relaxed), w))
                            .unwrap_or(0);
                        queued_ns[w].fetch_add(cost_ns[i], Ordering::Relaxed);
                        w
                    }
                };
                Target::Worker {
                    worker,
                    priority: priority[i],
                }
            }
        }
    }

    /// Node `i` finished on `worker`: its estimated work leaves that queue.
    pub(crate) fn finished(&self, i: usize, worker: usize) {
        if let Placement::Dynamic {
            policy: ExecPolicy::Dmda | ExecPolicy::Dmdas,
            cost_ns,
            queued_ns,
            ..
        } = self
        {
            let _ = queued_ns[worker].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(cost_ns[i]))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmda_sends_work_to_the_least_loaded_worker() {
        let w = |worker| Target::Worker {
            worker,
            priority: 0,
        };
        let p = Placement::dynamic(ExecPolicy::Dmda, 2, vec![100, 10, 10, 10], vec![9; 4]);
        assert_eq!(p.target(0), w(0));
        assert_eq!(p.target(1), w(1));
        assert_eq!(p.target(2), w(1));
        p.finished(0, 0);
        assert_eq!(p.target(3), w(0));
        let rr = Placement::dynamic(ExecPolicy::RoundRobin, 3, vec![0; 4], vec![0; 4]);
        let got: Vec<Target> = (0..4).map(|i| rr.target(i)).collect();
        assert_eq!(got, vec![w(0), w(1), w(2), w(0)]);
        let fixed = Placement::Static {
            worker: vec![2, 1],
            priority: vec![5, 7],
        };
        assert_eq!(
            fixed.target(1),
            Target::Worker {
                worker: 1,
                priority: 7
            }
        );
        assert_eq!(Placement::Stealing.target(0), Target::Local);
    }

    #[test]
    fn dmdas_places_like_dmda_and_keeps_the_rank_priority() {
        let p = Placement::dynamic(ExecPolicy::Dmdas, 2, vec![100, 10, 10], vec![3, 1, 2]);
        assert_eq!(
            p.target(0),
            Target::Worker {
                worker: 0,
                priority: 3
            }
        );
        assert_eq!(
            p.target(2),
            Target::Worker {
                worker: 1,
                priority: 2
            }
        );
    }
}
