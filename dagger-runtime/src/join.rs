//! Fork-join on the runtime's workers: [`join`] runs two closures, perhaps
//! in parallel, and returns both results.
//!
//! `join` is for fine-grained recursion *inside* a task (or any code), where
//! a spawned task per call would cost more than the work: it allocates
//! nothing and moves no value through the task graph. The second closure is
//! pushed, as a job living on the caller's stack, onto the calling worker's
//! deque; the caller runs the first closure itself, then takes the second
//! back and runs it too unless an idle worker stole it meanwhile, in which
//! case the caller runs other work until it has finished. This is the
//! work-first scheme of Cilk and rayon's `join`, on the same workers as the
//! graph runs. A panic in either closure is resumed in the caller once both
//! have finished.

use crate::pool::{with_current, Job, StackRef, WorkerCtx};
use crate::Runtime;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

/// A closure and its result slot, on the stack of the thread that waits for it.
struct StackJob<F, R> {
    func: UnsafeCell<Option<F>>,
    result: UnsafeCell<Option<std::thread::Result<R>>>,
    done: AtomicBool,
}

impl<F: FnOnce() -> R + Send, R: Send> StackJob<F, R> {
    fn new(func: F) -> Self {
        StackJob {
            func: UnsafeCell::new(Some(func)),
            result: UnsafeCell::new(None),
            done: AtomicBool::new(false),
        }
    }

    fn as_job(&self) -> Job {
        Job::Stack(StackRef {
            data: self as *const Self as *const (),
            run: Self::run_stolen,
        })
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Runs the closure on the thread that owns the job.
    fn run_here(&self) {
        // SAFETY: the job was popped back by its owner: no one else can run it.
        unsafe { self.execute() };
    }

    /// Runs the closure (once) and stores its result.
    ///
    /// SAFETY: only one thread may call this, once.
    unsafe fn execute(&self) {
        let func = unsafe { (*self.func.get()).take() }.expect("a join job runs once");
        let result = catch_unwind(AssertUnwindSafe(func));
        unsafe { *self.result.get() = Some(result) };
        self.done.store(true, Ordering::Release);
    }

    /// Entry point for a worker that took the job from a deque.
    ///
    /// SAFETY: `data` points to a live `StackJob<F, R>` whose owner waits for `done`.
    unsafe fn run_stolen(data: *const (), worker: &WorkerCtx) {
        let job = unsafe { &*(data as *const Self) };
        let pool = worker.pool.clone();
        // SAFETY: a job reaches a deque once, so one thread runs it.
        unsafe { job.execute() };
        // The owner may return as soon as `done` is set: `job` is not used any more.
        pool.notify_all();
    }

    /// The closure's value, or its panic. Call once `is_done`.
    fn into_result(self) -> std::thread::Result<R> {
        self.result.into_inner().expect("the job has run")
    }
}

/// Runs `a` and `b`, potentially in parallel, and returns both results.
/// See the [module docs](self).
///
/// ```
/// fn fib(n: u64) -> u64 {
///     if n < 2 {
///         return n;
///     }
///     let (a, b) = dagger_runtime::join(|| fib(n - 1), || fib(n - 2));
///     a + b
/// }
/// assert_eq!(fib(20), 6765);
/// ```
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let on_worker = with_current(|w| w.is_some());
    if on_worker {
        with_current(|w| join_on_worker(w.expect("checked"), a, b))
    } else {
        // Not a worker: hand the whole join to the global runtime and wait.
        let job = StackJob::new(move || join(a, b));
        let pool = Runtime::global().pool();
        pool.submit(job.as_job());
        pool.wait_until(|| job.is_done());
        job.into_result()
            .unwrap_or_else(|panic| resume_unwind(panic))
    }
}

fn join_on_worker<A, B, RA, RB>(worker: &WorkerCtx, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let job_b = StackJob::new(b);
    worker.push(job_b.as_job());
    let result_a = catch_unwind(AssertUnwindSafe(a));
    let mine = &job_b as *const StackJob<B, RB> as *const ();
    while !job_b.is_done() {
        match worker.pop_local() {
            Some(Job::Stack(r)) if std::ptr::eq(r.data, mine) => {
                job_b.run_here();
            }
            Some(other) => worker.run(other),
            None => {
                // Stolen: run other work until the thief has finished it.
                let pool = worker.pool.clone();
                pool.wait_until(|| job_b.is_done());
            }
        }
    }
    match (result_a, job_b.into_result()) {
        (Ok(ra), Ok(rb)) => (ra, rb),
        (Err(panic), _) | (_, Err(panic)) => resume_unwind(panic),
    }
}
