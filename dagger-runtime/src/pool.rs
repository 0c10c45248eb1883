//! The CPU processor pool: one worker thread per core, work-stealing deques.
//!
//! Each worker owns a LIFO deque (`crossbeam-deque`): jobs a worker makes
//! ready go to its own deque and run next, hot in its cache; idle workers
//! steal the oldest jobs of busy ones, and jobs submitted from outside the
//! pool go through a shared injector queue. Jobs a policy placed on one
//! worker wait in that worker's own [pinned queue](crate::pinned), which
//! nobody else takes from and which serves them in the policy's order. A
//! worker that finds nothing spins briefly, then yields its core for a
//! while (about 500 rounds: a fraction of a millisecond), then sleeps on a
//! condition variable until the next submission. The yielding rounds keep
//! it ready for the next half of a `join` across the short gaps between a
//! task's products: woken from sleep (on a virtual machine, tens of
//! microseconds or more), it would come after the caller had done both
//! halves.
//!
//! Accelerators join as workers of their own (see [`crate::device`]): after
//! the CPU workers come one worker per device, which runs only what a
//! placement pins to it (its pinned queue, and what it makes ready itself),
//! never takes from the injector or steals, and sleeps until its own queue
//! has work.
//!
//! Threads that must wait for a result (a task calling `Handle::wait`, or a
//! graph run from inside a task) do not block a worker: [`Pool::wait_until`]
//! keeps running other jobs until the condition holds, as rayon's `join` does.
//!
//! A thread goes to sleep only after checking, under the sleep lock, that
//! what it waits for is still missing; whoever provides it wakes sleepers
//! after publishing it, so no wake-up is lost (see `Sleep`).

use crate::device::Accelerator;
use crate::pinned::PinnedQueue;
use crate::recorder::Recorder;
use crate::trace::{TaskName, TraceEvent, TraceRecorder};
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use dagger_ir::model::ProcKind;
use std::cell::Cell;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Rounds an idle worker spins before it yields.
const SPIN_ROUNDS: u32 = 64;

/// Rounds an idle worker then yields its core before it sleeps.
const YIELD_ROUNDS: u32 = 512;

/// Something a worker can run; `index` says which part (e.g. a node of a graph run).
pub(crate) trait Execute: Send + Sync {
    fn execute(self: Arc<Self>, index: u32, worker: &WorkerCtx);
}

/// A unit of work in a deque.
pub(crate) enum Job {
    /// Part `index` of a shared target (a node of a graph run, a spawned task).
    Shared(Arc<dyn Execute>, u32),
    /// A job on the stack of a thread that waits in `join` until it has run.
    Stack(StackRef),
}

/// A type-erased pointer to a job on some thread's stack, and how to run it.
pub(crate) struct StackRef {
    pub(crate) data: *const (),
    pub(crate) run: unsafe fn(*const (), &WorkerCtx),
}

// SAFETY: the job it points to is `Send` (see `join`), and the thread that
// owns it waits until it has run before its stack frame goes away.
unsafe impl Send for StackRef {}

/// Sleep and wake-up of threads that have nothing to do.
///
/// A thread goes to sleep only under `lock`, after announcing itself in
/// `sleepers` and checking once more that what it waits for (work, a result)
/// is not there. Whoever makes it available publishes it first, then looks
/// at `sleepers`: if someone sleeps (or is about to), it takes the lock to
/// wake them. The fences order the two sides (Dekker-style), so either the
/// sleeper sees the change or the notifier sees the sleeper.
#[derive(Default)]
struct Sleep {
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Sleep {
    /// Something was published: wake one sleeper (or all), if any.
    fn notify(&self, all: bool) {
        fence(Ordering::SeqCst);
        self.wake_after_fence(all);
    }

    /// [`notify`](Self::notify) for a caller that has just issued the fence.
    fn wake_after_fence(&self, all: bool) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            if all {
                self.cv.notify_all();
            } else {
                self.cv.notify_one();
            }
        }
    }

    /// Sleeps unless `ready()`; wakes at the latest after `timeout`.
    fn sleep(&self, ready: impl Fn() -> bool, timeout: Duration) {
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !ready() {
            let _ = self.cv.wait_timeout(guard, timeout);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The shared state of a pool.
pub(crate) struct Pool {
    injector: Injector<Job>,
    /// Jobs placed on one worker by a policy: only that worker takes them.
    pinned: Vec<PinnedQueue<Job>>,
    stealers: Vec<Stealer<Job>>,
    /// Where idle workers sleep.
    idle: Sleep,
    /// Where threads outside the pool wait for results.
    blocked: Sleep,
    shutdown: AtomicBool,
    pub(crate) tracing: AtomicBool,
    pub(crate) trace: TraceRecorder,
    pub(crate) recorder: Recorder,
    /// Number of CPU workers: workers `0..cpu_workers`.
    cpu_workers: usize,
    /// The accelerators: worker `cpu_workers + i` drives `devices[i]`.
    pub(crate) devices: Vec<Arc<dyn Accelerator>>,
}

/// A worker's view of its pool, reachable from the thread it runs on.
pub(crate) struct WorkerCtx {
    pub(crate) pool: Arc<Pool>,
    pub(crate) index: usize,
    local: Worker<Job>,
}

thread_local! {
    static CURRENT: Cell<*const WorkerCtx> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with the current thread's worker context, if it is a pool worker.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&WorkerCtx>) -> R) -> R {
    let ptr = CURRENT.with(|c| c.get());
    // SAFETY: the pointer is set by `worker_main` to a context that lives on
    // that thread's stack for as long as the thread runs jobs, and cleared
    // before it is dropped; it is only read from that same thread.
    f(unsafe { ptr.as_ref() })
}

impl Pool {
    /// Starts `threads` workers with stacks of `stack_size` bytes. Returns
    /// the pool and the join handles.
    pub(crate) fn start(
        threads: usize,
        devices: Vec<Arc<dyn Accelerator>>,
        name: &str,
        stack_size: usize,
    ) -> (Arc<Pool>, Vec<JoinHandle<()>>) {
        let cpu_workers = threads.max(1);
        let threads = cpu_workers + devices.len();
        let locals: Vec<Worker<Job>> = (0..threads).map(|_| Worker::new_lifo()).collect();
        let pool = Arc::new(Pool {
            injector: Injector::new(),
            pinned: (0..threads).map(|_| PinnedQueue::default()).collect(),
            stealers: locals.iter().map(Worker::stealer).collect(),
            idle: Sleep::default(),
            blocked: Sleep::default(),
            shutdown: AtomicBool::new(false),
            tracing: AtomicBool::new(false),
            trace: TraceRecorder::new(
                (0..cpu_workers)
                    .map(|_| ProcKind::Cpu)
                    .chain(devices.iter().map(|d| d.processor().kind))
                    .collect(),
            ),
            recorder: Recorder::default(),
            cpu_workers,
            devices,
        });
        let handles = locals
            .into_iter()
            .enumerate()
            .map(|(index, local)| {
                let pool = pool.clone();
                let thread_name = match index.checked_sub(cpu_workers) {
                    Some(d) => format!("{name}-device{d}"),
                    None => format!("{name}-{index}"),
                };
                std::thread::Builder::new()
                    .name(thread_name)
                    .stack_size(stack_size)
                    .spawn(move || worker_main(WorkerCtx { pool, index, local }))
                    .expect("failed to start a worker thread")
            })
            .collect();
        (pool, handles)
    }

    /// Number of workers.
    pub(crate) fn workers(&self) -> usize {
        self.stealers.len()
    }

    /// Number of CPU workers (the first workers; devices' come after).
    pub(crate) fn cpu_workers(&self) -> usize {
        self.cpu_workers
    }

    /// Queues a job from any thread: on the current worker's own deque when
    /// called from a worker of this pool, else on the injector.
    pub(crate) fn submit(self: &Arc<Self>, job: Job) {
        with_current(|w| match w {
            Some(w) if Arc::ptr_eq(&w.pool, self) => w.push(job),
            _ => self.inject(job),
        })
    }

    /// Queues a job on the shared queue, whichever thread calls.
    pub(crate) fn inject(&self, job: Job) {
        self.injector.push(job);
        self.idle.notify(false);
    }

    /// Queues a job that only worker `worker` may run, before its queued
    /// jobs of higher `priority` keys.
    pub(crate) fn submit_to(&self, worker: usize, job: Job, priority: u64) {
        self.pinned[worker % self.pinned.len()].push(job, priority);
        // Wake everyone: a single wake-up might reach another worker.
        self.idle.notify(true);
    }

    /// Wakes every sleeping thread: something they may wait for has happened.
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        self.idle.wake_after_fence(true);
        self.blocked.wake_after_fence(true);
    }

    /// Whether any queue of the pool holds a job.
    fn has_work(&self) -> bool {
        !self.injector.is_empty()
            || self.stealers.iter().any(|s| !s.is_empty())
            || self.pinned.iter().any(|q| !q.is_empty())
    }

    /// Asks the workers to stop once the queues are empty.
    pub(crate) fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.idle.notify(true);
    }

    /// Blocks until `done()` holds. On a worker of this pool, runs other jobs meanwhile.
    pub(crate) fn wait_until(self: &Arc<Self>, done: impl Fn() -> bool) {
        with_current(|w| match w {
            Some(w) if Arc::ptr_eq(&w.pool, self) => w.run_until(&done),
            _ => {
                while !done() {
                    self.blocked.sleep(&done, Duration::from_millis(20));
                }
            }
        })
    }
}

impl WorkerCtx {
    /// Pushes a job on this worker's deque and lets a sleeper know there is work.
    pub(crate) fn push(&self, job: Job) {
        self.local.push(job);
        self.pool.idle.notify(false);
    }

    /// Runs a job.
    pub(crate) fn run(&self, job: Job) {
        match job {
            Job::Shared(target, index) => target.execute(index, self),
            // SAFETY: `StackRef`s are made by `join`, whose job outlives this call.
            Job::Stack(r) => unsafe { (r.run)(r.data, self) },
        }
    }

    /// Takes the most recently pushed job of this worker's own deque.
    pub(crate) fn pop_local(&self) -> Option<Job> {
        self.local.pop()
    }

    /// Whether task executions are being recorded.
    pub(crate) fn tracing(&self) -> bool {
        self.pool.tracing.load(Ordering::Relaxed)
    }

    /// Runs `body`, recording its span as task `name` with `bytes` of
    /// input and `output_bytes(&result)` of output when tracing is on
    /// (neither the name nor the output size is computed otherwise).
    pub(crate) fn traced<R>(
        &self,
        name: impl FnOnce() -> TaskName,
        bytes: u64,
        body: impl FnOnce() -> R,
        output_bytes: impl FnOnce(&R) -> u64,
    ) -> R {
        if !self.tracing() {
            return body();
        }
        let start_ns = self.pool.trace.now_ns();
        let r = body();
        let end_ns = self.pool.trace.now_ns();
        self.pool.trace.record(TraceEvent {
            name: name(),
            worker: self.index,
            start_ns,
            end_ns,
            bytes,
            output_bytes: output_bytes(&r),
        });
        r
    }

    /// The accelerator this worker drives, if it is a device worker.
    pub(crate) fn device(&self) -> Option<&dyn Accelerator> {
        let d = self.index.checked_sub(self.pool.cpu_workers)?;
        Some(&*self.pool.devices[d])
    }

    /// Whether there is work this worker may take: its own queues, and for
    /// a CPU worker the injector and the other CPU workers' deques.
    fn has_work_for_me(&self) -> bool {
        let pool = &self.pool;
        if !self.local.is_empty() || !pool.pinned[self.index].is_empty() {
            return true;
        }
        self.device().is_none()
            && (!pool.injector.is_empty() || pool.stealers.iter().any(|s| !s.is_empty()))
    }

    fn find_work(&self) -> Option<Job> {
        if let Some(job) = self.local.pop() {
            return Some(job);
        }
        if let Some(job) = self.pool.pinned[self.index].pop() {
            return Some(job);
        }
        if self.device().is_some() {
            return None;
        }
        loop {
            match self.pool.injector.steal_batch_and_pop(&self.local) {
                Steal::Success(job) => return Some(job),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        let n = self.pool.stealers.len();
        let mut retry = true;
        while retry {
            retry = false;
            for k in 1..n {
                match self.pool.stealers[(self.index + k) % n].steal() {
                    Steal::Success(job) => return Some(job),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
        }
        None
    }

    /// Runs jobs until `done()` holds; spins, yields, then sleeps when
    /// there are none (see the [module docs](self)).
    fn run_until(&self, done: &dyn Fn() -> bool) {
        let mut idle_rounds = 0u32;
        while !done() {
            if let Some(job) = self.find_work() {
                self.run(job);
                idle_rounds = 0;
                continue;
            }
            idle_rounds += 1;
            if idle_rounds < SPIN_ROUNDS {
                std::hint::spin_loop();
                continue;
            }
            if idle_rounds < SPIN_ROUNDS + YIELD_ROUNDS {
                std::thread::yield_now();
                continue;
            }
            self.pool.idle.sleep(
                || done() || self.has_work_for_me(),
                Duration::from_millis(20),
            );
        }
    }
}

fn worker_main(ctx: WorkerCtx) {
    // Register with the deques' memory reclamation now: a thread's first
    // steal allocates its epoch record, which would otherwise happen in
    // the middle of some run (and break "a step allocates nothing").
    drop(crossbeam_epoch::pin());
    if let Some(device) = ctx.device() {
        device.bind_thread();
    }
    CURRENT.with(|c| c.set(&ctx as *const WorkerCtx));
    let pool = ctx.pool.clone();
    // Queued work is finished before the worker stops, so that no handle
    // of a dropped runtime waits forever.
    ctx.run_until(&|| pool.shutdown.load(Ordering::SeqCst) && !pool.has_work());
    CURRENT.with(|c| c.set(std::ptr::null()));
}
