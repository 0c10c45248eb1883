//! Where the tasks of a graph run: the executor's placement policies.
//!
//! By default ready tasks go to the deque of the worker that made them ready
//! and idle workers steal. A static schedule fixes a worker per task (see
//! [`Runtime::run_scheduled`](crate::Runtime::run_scheduled)). The dynamic
//! policies decide when a task becomes ready ([`DynamicPolicy`], see
//! [`Runtime::run_with_policy`](crate::Runtime::run_with_policy)): one shared
//! queue (eager), workers in turn, a random worker, or StarPU's dmda (the
//! worker where, by the performance model, the task is expected to finish
//! first: once its queued work and the copies of the task's inputs are
//! done, whichever ends later). The policies are [`DynamicPolicy`]'s, and their decisions the same
//! functions the discrete-event simulator of `dagger_ir::sched` calls
//! ([`dagger_ir::sched::policy`]): what the two see differs (here queued
//! work is the performance model's estimate, in nanoseconds from now), how
//! they decide does not.

use dagger_ir::sched::policy::{
    dmda_choice, in_turn, random_able, xorshift64, DmdaEstimate, DynamicPolicy,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
        policy: DynamicPolicy,
        /// Estimated nanoseconds of each plan node on each worker.
        costs: TaskCosts,
        /// Priority key per plan node (dmdas; zero otherwise: arrival order).
        priority: Vec<u64>,
        /// Estimated nanoseconds queued on each worker.
        queued_ns: Vec<AtomicU64>,
        turn: AtomicUsize,
        rng: AtomicU64,
    },
}

/// Estimated time of each plan node on each worker: one figure for every
/// CPU worker, and one per accelerator for the nodes that have a device
/// body (the others cannot run there).
pub(crate) struct TaskCosts {
    /// Nanoseconds of node `i` on a CPU worker.
    pub(crate) cpu_ns: Vec<u64>,
    /// Nanoseconds of node `i` on accelerator `d`: `device_ns[i * devices + d]`,
    /// `None` when it has no device body.
    pub(crate) device_ns: Vec<Option<u64>>,
    /// Number of CPU workers (accelerators' workers come after them).
    pub(crate) cpu_workers: usize,
    /// Number of accelerators.
    pub(crate) devices: usize,
}

impl TaskCosts {
    /// Number of workers.
    fn workers(&self) -> usize {
        self.cpu_workers + self.devices
    }

    /// Estimated nanoseconds of node `i` on `worker`, or `None` if it cannot run there.
    fn on(&self, i: usize, worker: usize) -> Option<u64> {
        match worker.checked_sub(self.cpu_workers) {
            None => Some(self.cpu_ns[i]),
            Some(d) => self.device_ns[i * self.devices + d],
        }
    }
}

impl Placement {
    /// A dynamic placement with per-node, per-worker cost estimates and
    /// priority keys (lower runs first; used by dmdas).
    pub(crate) fn dynamic(policy: DynamicPolicy, costs: TaskCosts, priority: Vec<u64>) -> Self {
        let priority = if policy == DynamicPolicy::Dmdas {
            priority
        } else {
            vec![0; costs.cpu_ns.len()]
        };
        Placement::Dynamic {
            policy,
            queued_ns: (0..costs.workers()).map(|_| AtomicU64::new(0)).collect(),
            costs,
            priority,
            turn: AtomicUsize::new(0),
            rng: AtomicU64::new(0x2545f4914f6cdd1d),
        }
    }

    /// Chooses where ready node `i` goes; dmda adds `copies_ns(worker)`,
    /// the time to bring the node's inputs into that worker's memory, to
    /// each worker's estimated finish.
    pub(crate) fn target(&self, i: usize, copies_ns: impl Fn(usize) -> u64) -> Target {
        match self {
            Placement::Stealing => Target::Local,
            Placement::Static { worker, priority } => Target::Worker {
                worker: worker[i] as usize,
                priority: priority[i],
            },
            Placement::Dynamic {
                policy,
                costs,
                priority,
                queued_ns,
                turn,
                rng,
            } => {
                let workers = costs.workers();
                let able = |w: usize| costs.on(i, w).is_some();
                let worker = match policy {
                    DynamicPolicy::Eager => return Target::Shared,
                    DynamicPolicy::WorkStealing => return Target::Local,
                    DynamicPolicy::RoundRobin => {
                        in_turn(|| turn.fetch_add(1, Ordering::Relaxed), workers, able)
                    }
                    DynamicPolicy::Random => {
                        let x = xorshift64(rng.load(Ordering::Relaxed));
                        rng.store(x, Ordering::Relaxed);
                        random_able(x, workers, able)
                    }
                    DynamicPolicy::Dmda | DynamicPolicy::Dmdas => {
                        let estimates = (0..workers).filter_map(|w| {
                            Some(DmdaEstimate {
                                worker: w,
                                available: queued_ns[w].load(Ordering::Relaxed) as f64,
                                inputs_ready: copies_ns(w) as f64,
                                cost: costs.on(i, w)? as f64,
                            })
                        });
                        let w = dmda_choice(estimates).map_or(0, |e| e.worker);
                        let cost = costs.on(i, w).unwrap_or(costs.cpu_ns[i]);
                        queued_ns[w].fetch_add(cost, Ordering::Relaxed);
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
            policy: DynamicPolicy::Dmda | DynamicPolicy::Dmdas,
            costs,
            queued_ns,
            ..
        } = self
        {
            let cost = costs.on(i, worker).unwrap_or(0);
            let _ = queued_ns[worker].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(cost))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No copies to make anywhere.
    fn none(_worker: usize) -> u64 {
        0
    }

    fn cpu(cpu_ns: Vec<u64>, workers: usize) -> TaskCosts {
        TaskCosts {
            cpu_ns,
            device_ns: Vec::new(),
            cpu_workers: workers,
            devices: 0,
        }
    }

    #[test]
    fn policies_put_tasks_on_a_device_only_when_they_have_a_device_body() {
        let w = |worker| Target::Worker {
            worker,
            priority: 0,
        };
        // Two CPU workers and one device; node 1 has no device body.
        let costs = || TaskCosts {
            cpu_ns: vec![100, 100, 100],
            device_ns: vec![Some(10), None, Some(10)],
            cpu_workers: 2,
            devices: 1,
        };
        let dmda = Placement::dynamic(DynamicPolicy::Dmda, costs(), vec![0; 3]);
        assert_eq!(dmda.target(0, none), w(2));
        assert_eq!(dmda.target(1, none), w(0));
        assert_eq!(
            dmda.target(2, none),
            w(2),
            "queued 10 + 10 on the device beats 100 on worker 1"
        );
        dmda.finished(0, 2);
        let rr = Placement::dynamic(DynamicPolicy::RoundRobin, costs(), vec![0; 3]);
        let got: Vec<Target> = [0, 1, 1, 2].iter().map(|&i| rr.target(i, none)).collect();
        assert_eq!(got, vec![w(0), w(1), w(0), w(1)], "node 1 skips the device");
        let random = Placement::dynamic(DynamicPolicy::Random, costs(), vec![0; 3]);
        for _ in 0..50 {
            assert_ne!(random.target(1, none), w(2));
        }
    }

    #[test]
    fn dmda_sends_work_to_the_least_loaded_worker() {
        let w = |worker| Target::Worker {
            worker,
            priority: 0,
        };
        let p = Placement::dynamic(
            DynamicPolicy::Dmda,
            cpu(vec![100, 10, 10, 10], 2),
            vec![9; 4],
        );
        assert_eq!(p.target(0, none), w(0));
        assert_eq!(p.target(1, none), w(1));
        assert_eq!(p.target(2, none), w(1));
        p.finished(0, 0);
        assert_eq!(p.target(3, none), w(0));
        let rr = Placement::dynamic(DynamicPolicy::RoundRobin, cpu(vec![0; 4], 3), vec![0; 4]);
        let got: Vec<Target> = (0..4).map(|i| rr.target(i, none)).collect();
        assert_eq!(got, vec![w(0), w(1), w(2), w(0)]);
        let fixed = Placement::Static {
            worker: vec![2, 1],
            priority: vec![5, 7],
        };
        assert_eq!(
            fixed.target(1, none),
            Target::Worker {
                worker: 1,
                priority: 7
            }
        );
        assert_eq!(Placement::Stealing.target(0, none), Target::Local);
    }

    #[test]
    fn dmda_weighs_the_copies_each_worker_would_need() {
        let w = |worker| Target::Worker {
            worker,
            priority: 0,
        };
        // The device is 10x faster, but its inputs are in host memory and
        // copying them takes longer than the CPU's work: dmda stays on the
        // CPU; with the inputs already on the device it goes there.
        let costs = || TaskCosts {
            cpu_ns: vec![100],
            device_ns: vec![Some(10)],
            cpu_workers: 1,
            devices: 1,
        };
        let far = Placement::dynamic(DynamicPolicy::Dmda, costs(), vec![0]);
        assert_eq!(
            far.target(0, |worker| if worker == 1 { 500 } else { 0 }),
            w(0)
        );
        let near = Placement::dynamic(DynamicPolicy::Dmda, costs(), vec![0]);
        assert_eq!(
            near.target(0, |worker| if worker == 0 { 500 } else { 0 }),
            w(1)
        );
    }

    #[test]
    fn dmdas_places_like_dmda_and_keeps_the_rank_priority() {
        let p = Placement::dynamic(
            DynamicPolicy::Dmdas,
            cpu(vec![100, 10, 10], 2),
            vec![3, 1, 2],
        );
        assert_eq!(
            p.target(0, none),
            Target::Worker {
                worker: 0,
                priority: 3
            }
        );
        assert_eq!(
            p.target(2, none),
            Target::Worker {
                worker: 1,
                priority: 2
            }
        );
    }
}
