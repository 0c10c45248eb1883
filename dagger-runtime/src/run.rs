//! One execution of a [`Plan`]: dependency counters, value slots, failure.
//!
//! Every node has a counter of arguments still to come. A worker that
//! finishes a node stores its value, decrements each consumer's counter, runs
//! the first consumer that became ready itself (no queue round trip along a
//! chain) and queues the others on its own deque, where idle workers steal
//! them. Each value slot also counts its remaining readers: every reader
//! clones the reference, and the last one releases the slot's, so a value
//! with a single consumer reaches it without being copied.
//!
//! On a device worker a task runs its device body (a task placed there
//! without one runs its CPU body on the device's thread). A task queued on
//! a device first has the device prefetch its inputs
//! ([`Accelerator::prefetch`](crate::device::Accelerator::prefetch)), so
//! their copies overlap the work queued ahead of it; dmda weighs the copies
//! each worker would need (see [`crate::device`]).
//!
//! A task that panics or returns `Err` marks the run failed: nodes not yet
//! started are skipped (their counters still drain, so the run ends), and the
//! run reports the first failure as [`RunError::TaskFailed`].

use crate::datum::Datum;
use crate::device::missing_copies_ns;
use crate::error::RunError;
use crate::placement::{Placement, Target};
use crate::plan::{Kernel, Plan};
use crate::pool::{Execute, Job, Pool, WorkerCtx};
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Arguments a node can take without a heap allocation.
const INLINE_ARGS: usize = 8;

/// The state of one run of a plan.
pub(crate) struct PlanRun {
    plan: Arc<Plan>,
    pending: Vec<AtomicU32>,
    readers: Vec<AtomicU32>,
    slots: Vec<Slot>,
    /// Sinks (task nodes nothing reads) still to finish. A sink finishes
    /// after all its ancestors, so when every sink has, every node has; and
    /// counting sinks only keeps a contended counter off the path of the
    /// other tasks.
    remaining: AtomicUsize,
    failed: AtomicBool,
    error: Mutex<Option<RunError>>,
    pool: Arc<Pool>,
    /// Where ready nodes go.
    placement: Placement,
}

/// A value slot, written once by its producer before any reader can see it.
struct Slot(UnsafeCell<Option<Datum>>);

// SAFETY: a slot is written by its producer before the release-decrement of
// its consumers' counters, and read only by consumers whose counter reached
// zero (acquire), or by the last reader after every other reader has finished
// with it (the `readers` count); so no access races with a write.
unsafe impl Sync for Slot {}

impl PlanRun {
    /// Starts running `plan` on `pool` with `inputs`; returns the run to wait on.
    pub(crate) fn start(
        plan: Arc<Plan>,
        pool: Arc<Pool>,
        inputs: Vec<Datum>,
        placement: Placement,
    ) -> Result<Arc<PlanRun>, RunError> {
        if inputs.len() != plan.inputs {
            return Err(RunError::Unsupported(format!(
                "the graph takes {} inputs but {} were given",
                plan.inputs,
                inputs.len()
            )));
        }
        let n = plan.kernels.len();
        let mut readers: Vec<AtomicU32> = (0..n)
            .map(|i| AtomicU32::new(plan.users_of(i).len() as u32))
            .collect();
        for &o in &plan.outputs {
            *readers[o as usize].get_mut() += 1;
        }
        let mut inputs: Vec<Option<Datum>> = inputs.into_iter().map(Some).collect();
        let slots = plan
            .kernels
            .iter()
            .map(|k| {
                Slot(UnsafeCell::new(match k {
                    Kernel::Input(i) => inputs[*i].take(),
                    Kernel::Const(d) => Some(d.clone()),
                    Kernel::Call { .. } | Kernel::Fused { .. } | Kernel::Body { .. } => None,
                }))
            })
            .collect();
        let sinks = (0..n)
            .filter(|&i| plan.kernels[i].is_task() && plan.users_of(i).is_empty())
            .count();
        let run = Arc::new(PlanRun {
            pending: plan.task_args.iter().map(|&c| AtomicU32::new(c)).collect(),
            readers,
            slots,
            remaining: AtomicUsize::new(sinks),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            pool: pool.clone(),
            plan,
            placement,
        });
        if sinks == 0 {
            pool.notify_all();
        }
        for (i, k) in run.plan.kernels.iter().enumerate() {
            if k.is_task() && run.plan.task_args[i] == 0 {
                let target = run.place(i);
                run.queue(None, i as u32, target);
            }
        }
        Ok(run)
    }

    /// Where ready node `i` goes.
    fn place(&self, i: usize) -> Target {
        let devices = &self.pool.devices;
        if devices.is_empty() {
            return self.placement.target(i, |_| 0);
        }
        let cpu_workers = self.pool.cpu_workers();
        self.placement.target(i, |worker| {
            let inputs = self.plan.args_of(i).iter().filter_map(|&p| self.peek(p));
            missing_copies_ns(devices, worker.checked_sub(cpu_workers), inputs)
        })
    }

    /// Node `p`'s value, for a look before a ready consumer reads it.
    fn peek(&self, p: u32) -> Option<&Datum> {
        // SAFETY: the producer has finished (the consumer is ready), and the
        // slot is cleared only by its last reader, which the consumer that
        // calls this has not been yet; concurrent readers only clone it.
        unsafe { (*self.slots[p as usize].0.get()).as_ref() }
    }

    /// Queues ready node `i` where the placement says.
    fn queue(self: &Arc<Self>, worker: Option<&WorkerCtx>, i: u32, target: Target) {
        if let Target::Worker { worker: w, .. } = target {
            if let Some(d) = w.checked_sub(self.pool.cpu_workers()) {
                let device = &self.pool.devices[d];
                for &p in self.plan.args_of(i as usize) {
                    if let Some(value) = self.peek(p) {
                        device.prefetch(value);
                    }
                }
            }
        }
        let job = Job::Shared(self.clone(), i);
        match (target, worker) {
            (Target::Worker { worker, priority }, _) => self.pool.submit_to(worker, job, priority),
            (Target::Local, Some(w)) => w.push(job),
            (Target::Local, None) => self.pool.submit(job),
            (Target::Shared, _) => self.pool.inject(job),
        }
    }

    /// True once every task node has finished or been skipped.
    pub(crate) fn is_done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    /// The outputs, in order, or the first failure. Call once [`is_done`](Self::is_done).
    pub(crate) fn finish(&self) -> Result<Vec<Datum>, RunError> {
        if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        let outputs = self.plan.outputs.clone();
        outputs
            .iter()
            .map(|&o| {
                self.read(o as usize).ok_or_else(|| {
                    RunError::Unsupported(format!("output node {o} produced no value"))
                })
            })
            .collect()
    }

    /// Reads node `i`'s value as one of its readers.
    fn read(&self, i: usize) -> Option<Datum> {
        // SAFETY: see `Slot`: the producer has finished and this reader holds one read count.
        let value = unsafe { (*self.slots[i].0.get()).clone() };
        if self.readers[i].fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: every other reader is done with the slot.
            unsafe { *self.slots[i].0.get() = None };
        }
        value
    }

    fn fail(&self, error: RunError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(error);
        }
        self.failed.store(true, Ordering::Release);
    }

    /// Computes node `i`'s value, or records why it could not.
    fn compute(&self, i: usize, worker: &WorkerCtx) -> Option<Datum> {
        let kernel = &self.plan.kernels[i];
        let producers = self.plan.args_of(i);
        // Arguments live on the stack unless there are many.
        let mut inline: [Option<Datum>; INLINE_ARGS] = Default::default();
        let mut spilled: Vec<Option<Datum>> = Vec::new();
        let args: &mut [Option<Datum>] = if producers.len() <= INLINE_ARGS {
            &mut inline[..producers.len()]
        } else {
            spilled.resize(producers.len(), None);
            &mut spilled
        };
        for (slot, &p) in args.iter_mut().zip(producers) {
            *slot = Some(self.read(p as usize)?);
        }
        let bytes = if worker.tracing() {
            self.plan.input_bytes(i, args)
        } else {
            0
        };
        let result = worker.traced(
            || kernel.trace_name(),
            bytes,
            || match kernel {
                Kernel::Call {
                    name,
                    device: Some(body),
                    ..
                } if worker.device().is_some() => {
                    let device = worker.device().expect("checked");
                    guarded(name, || {
                        let value = body(device.as_any(), args)?;
                        device.finish()?;
                        Ok(value)
                    })
                }
                Kernel::Call { name, invoke, .. } => call(name, *invoke, args),
                Kernel::Body { name, body, .. } => call_body(name, body, args),
                Kernel::Fused { steps, .. } => {
                    let mut value = call(steps[0].0, steps[0].1, args)?;
                    for &(name, invoke) in &steps[1..] {
                        value = call(name, invoke, &mut [Some(value)])?;
                    }
                    Ok(value)
                }
                Kernel::Input(_) | Kernel::Const(_) => unreachable!("only task nodes are jobs"),
            },
            |result| {
                result
                    .as_ref()
                    .map_or(0, |value| self.plan.output_bytes(i, value))
            },
        );
        match result {
            Ok(d) => Some(d),
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }
}

/// Calls one task, turning a panic or an `Err` into [`RunError::TaskFailed`]
/// (`call_task` at the crate root, for executors outside this crate).
pub fn call(
    name: &str,
    invoke: crate::task::Invoke,
    args: &mut [Option<Datum>],
) -> Result<Datum, RunError> {
    guarded(name, || invoke(args))
}

/// Calls a task made at run time, as [`call`] does a registered one
/// (`call_task_body` at the crate root).
pub fn call_body(
    name: &str,
    body: &crate::task::Body,
    args: &mut [Option<Datum>],
) -> Result<Datum, RunError> {
    guarded(name, || body(args))
}

/// Runs the body of task `name`, turning a panic or an `Err` into [`RunError::TaskFailed`].
pub(crate) fn guarded(
    name: &str,
    body: impl FnOnce() -> Result<Datum, String>,
) -> Result<Datum, RunError> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(message)) => Err(RunError::TaskFailed {
            task: name.to_string(),
            message,
        }),
        Err(payload) => Err(RunError::TaskFailed {
            task: name.to_string(),
            message: panic_message(payload.as_ref()),
        }),
    }
}

/// The text of a panic payload (`panicked: <message>`), as task failures
/// report it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

impl Execute for PlanRun {
    fn execute(self: Arc<Self>, index: u32, worker: &WorkerCtx) {
        let mut next = Some(index as usize);
        while let Some(i) = next.take() {
            if !self.failed.load(Ordering::Acquire) {
                if let Some(value) = self.compute(i, worker) {
                    // SAFETY: only this node's job writes its slot, before releasing its users.
                    unsafe { *self.slots[i].0.get() = Some(value) };
                }
            }
            self.placement.finished(i, worker.index);
            for &u in self.plan.users_of(i) {
                if self.pending[u as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                    let target = self.place(u as usize);
                    // Tasks placed on a worker go through its pinned queue
                    // even when that is this worker, so that it runs its
                    // ready tasks in the policy's order.
                    let here = matches!(target, Target::Local | Target::Shared);
                    if next.is_none() && here {
                        next = Some(u as usize);
                    } else {
                        self.queue(Some(worker), u, target);
                    }
                }
            }
            if self.plan.users_of(i).is_empty()
                && self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            {
                self.pool.notify_all();
            }
        }
    }
}
