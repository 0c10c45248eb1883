//! The dynamic front end: spawn tasks as the program discovers them.
//!
//! `spawn(f, (a, b))` schedules `f(a, b)` and returns a [`Handle`] at once.
//! An argument is either a value or the handle of an earlier spawn; the task
//! runs when every handle it was given has its value, as Dagger.jl's
//! `@spawn` does. A task may spawn tasks itself (a recursive merge sort
//! spawns its two halves) and wait for them: [`Handle::wait`] on a worker
//! keeps running other work meanwhile, so waiting never idles a core;
//! a handle is also a [`Future`] for async code.
//!
//! When the runtime is [recording](crate::Runtime::start_recording), every
//! spawn also adds its call to an IR graph, the same `Graph` that `dag!`
//! builds, with an edge for every handle argument.
//!
//! A spawned task that panics fails its handle with [`RunError::TaskFailed`];
//! tasks given that handle are cancelled with the same error.
//!
//! # Fallible tasks
//!
//! A task returning `Result<T, E>` (`E: Display`) is a task of output `T`
//! in both front ends. In a `dag!` its node is a `T`, and an `Err` fails the
//! run with [`RunError::TaskFailed`] `{ task, message }` (the error's
//! `Display`). Spawned, its handle feeds a later spawn whose parameter is
//! `T` with the `Ok` value, and an `Err` cancels that spawn and everything
//! after it with the same `TaskFailed`, naming the fallible task.
//! [`try_spawn`](crate::try_spawn) gives a `Handle<T>` whose `wait` fails
//! the same way. Only waiting on a plain `spawn`'s handle gives the
//! `Result` itself, for a caller who wants to handle the `Err` (stable Rust
//! cannot tell a `Result` apart from any other return type there).
//!
//! # Examples
//!
//! ```
//! use dagger_runtime::{RunError, Runtime};
//!
//! fn parse(s: String) -> Result<u64, std::num::ParseIntError> {
//!     s.trim().parse()
//! }
//! fn plus(a: u64, b: u64) -> u64 {
//!     a + b
//! }
//!
//! let rt = Runtime::new();
//! let (a, b) = (rt.spawn(parse, ("40".to_string(),)), rt.spawn(parse, ("2".to_string(),)));
//! assert_eq!(rt.spawn(plus, (a, b)).wait().unwrap(), 42);
//!
//! let bad = rt.spawn(parse, ("two".to_string(),));
//! match rt.spawn(plus, (bad, 1u64)).wait() {
//!     Err(RunError::TaskFailed { task, message }) => {
//!         assert!(task.ends_with("parse"));
//!         assert_eq!(message, "invalid digit found in string");
//!     }
//!     other => panic!("expected TaskFailed, got {other:?}"),
//! }
//! assert!(rt.try_spawn(parse, ("two".to_string(),)).wait().is_err());
//! assert!(rt.spawn(parse, ("two".to_string(),)).wait().unwrap().is_err());
//! ```

use crate::datum::{Data, Datum};
use crate::error::RunError;
use crate::pool::{with_current, Execute, Job, Pool, WorkerCtx};
use crate::recorder::Recorder;
use crate::trace::TaskName;
use std::cell::UnsafeCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

type Body = Box<dyn FnOnce(Vec<Option<Datum>>) -> Result<Datum, String> + Send>;

/// Turns a producer's result into the argument its dependent takes: the
/// `Ok` value of a fallible task's `Result`, or the `Err`'s message.
type Unwrap = fn(Datum) -> Result<Datum, String>;

/// A spawned task: its body, the arguments still to come, its result and
/// who is waiting for it.
#[doc(hidden)]
pub struct SpawnNode {
    name: &'static str,
    pending: AtomicU32,
    body: UnsafeCell<Option<Body>>,
    args: Box<[UnsafeCell<Option<Datum>>]>,
    cancelled: Mutex<Option<RunError>>,
    done: AtomicBool,
    /// Who waits in `Handle::wait` on a worker: 0 nobody, `k + 1` worker
    /// `k` only, `usize::MAX` several.
    watched: AtomicUsize,
    /// Live handles plus subscribed dependents not yet fed: the last one
    /// to read the result takes it without a copy.
    readers: AtomicU32,
    shared: Mutex<Shared>,
    /// IR node of this spawn, when recording.
    pub(crate) ir_node: Option<dagger_ir::NodeId>,
}

/// The result and who follows it, under one lock.
#[derive(Default)]
struct Shared {
    result: Option<Result<Datum, RunError>>,
    dependents: Vec<(Arc<SpawnNode>, u32, Option<Unwrap>)>,
    wakers: Vec<Waker>,
    threads: Vec<std::thread::Thread>,
}

// SAFETY: `body` and `args` are written only before the node becomes ready
// (each argument slot by exactly one producer, before its release-decrement
// of `pending`) and read only by the single job that runs the node after the
// acquire that saw `pending` reach zero.
unsafe impl Sync for SpawnNode {}
unsafe impl Send for SpawnNode {}

impl SpawnNode {
    /// Reads the result as one of its readers: the last reader takes it.
    fn read(&self) -> Result<Datum, RunError> {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let last = self.readers.fetch_sub(1, Ordering::AcqRel) == 1;
        let value = if last {
            shared.result.take()
        } else {
            shared.result.clone()
        };
        value.unwrap_or_else(|| {
            Err(RunError::Unsupported(format!(
                "the result of `{}` was already taken",
                self.name
            )))
        })
    }

    /// Reads the result as one of its readers, through `unwrap` when the
    /// reader takes the `Ok` value of a fallible task: an `Err` is this
    /// task's failure, [`RunError::TaskFailed`] naming it.
    fn read_for(&self, unwrap: Option<Unwrap>) -> Result<Datum, RunError> {
        let value = self.read()?;
        match unwrap {
            None => Ok(value),
            Some(unwrap) => unwrap(value).map_err(|message| RunError::TaskFailed {
                task: self.name.to_string(),
                message,
            }),
        }
    }

    /// A reader leaves without reading.
    fn forget_reader(&self) {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if self.readers.fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.result.take();
        }
    }

    /// Gives argument `port` of `node` its value (or cancels it), and
    /// schedules `node` if that was the last argument missing.
    fn deliver(node: Arc<SpawnNode>, port: u32, value: Result<Datum, RunError>, pool: &Arc<Pool>) {
        match value {
            // SAFETY: `port` is fed by this producer only, before the decrement below.
            Ok(d) => unsafe { *node.args[port as usize].get() = Some(d) },
            Err(e) => {
                let mut c = node.cancelled.lock().unwrap_or_else(|p| p.into_inner());
                c.get_or_insert(e);
            }
        }
        if node.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            pool.submit(Job::Shared(node, 0));
        }
    }

    /// Stores the result and feeds everyone who waits for it.
    fn complete(
        self: &Arc<Self>,
        result: Result<Datum, RunError>,
        pool: &Arc<Pool>,
        worker: usize,
    ) {
        let (dependents, wakers, threads) = {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            if self.readers.load(Ordering::Acquire) > 0 {
                shared.result = Some(result);
            }
            self.done.store(true, Ordering::Release);
            (
                std::mem::take(&mut shared.dependents),
                std::mem::take(&mut shared.wakers),
                std::mem::take(&mut shared.threads),
            )
        };
        for (node, port, unwrap) in dependents {
            SpawnNode::deliver(node, port, self.read_for(unwrap), pool);
        }
        for w in wakers {
            w.wake();
        }
        for t in threads {
            t.unpark();
        }
        // A waiter on this very worker is below us on the stack and sees
        // `done` when this job returns; others may be asleep.
        match self.watched.load(Ordering::SeqCst) {
            0 => {}
            w if w == worker + 1 => {}
            _ => pool.notify_all(),
        }
    }

    /// Makes `node`'s argument `port` come from this node's result (its
    /// `Ok` value through `unwrap`, for a fallible task's handle).
    fn subscribe(
        self: &Arc<Self>,
        node: &Arc<SpawnNode>,
        port: u32,
        unwrap: Option<Unwrap>,
        pool: &Arc<Pool>,
    ) {
        {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            if !self.done.load(Ordering::Acquire) {
                shared.dependents.push((node.clone(), port, unwrap));
                return;
            }
        }
        SpawnNode::deliver(node.clone(), port, self.read_for(unwrap), pool);
    }
}

impl Execute for SpawnNode {
    fn execute(self: Arc<Self>, _index: u32, worker: &WorkerCtx) {
        // SAFETY: this job is the only reader, after `pending` reached zero.
        let body = unsafe { (*self.body.get()).take() };
        let args = self
            .args
            .iter()
            .map(|a| unsafe { (*a.get()).take() })
            .collect();
        let cancelled = self
            .cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let result = match (cancelled, body) {
            (Some(e), _) => Err(e),
            (None, None) => Err(RunError::Unsupported(format!(
                "task `{}` ran twice",
                self.name
            ))),
            (None, Some(body)) => {
                let name = self.name;
                // A spawned task's types are erased: its sizes are unknown.
                worker.traced(
                    || TaskName::Static(name),
                    0,
                    || crate::run::guarded(name, || body(args)),
                    |_| 0,
                )
            }
        };
        self.complete(result, &worker.pool, worker.index);
    }
}

/// The future result of a spawned task. Pass it to later spawns, or
/// [`wait`](Self::wait) / `.await` it.
pub struct Handle<T> {
    node: Arc<SpawnNode>,
    /// Whether this handle's read of the result is spent (waited, awaited or passed on).
    spent: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T> Handle<T> {
    fn new(node: Arc<SpawnNode>) -> Self {
        Handle {
            node,
            spent: false,
            _type: PhantomData,
        }
    }
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        self.node.readers.fetch_add(1, Ordering::AcqRel);
        Handle::new(self.node.clone())
    }
}

impl<T> Drop for Handle<T> {
    fn drop(&mut self) {
        if !self.spent {
            self.node.forget_reader();
        }
    }
}

impl<T> Handle<T> {
    /// The IR node of this spawn, when it was made while recording.
    pub(crate) fn ir_node(&self) -> Option<dagger_ir::NodeId> {
        self.node.ir_node
    }
}

impl<T: Data> Handle<T> {
    /// Whether the task has finished (successfully or not).
    pub fn is_done(&self) -> bool {
        self.node.done.load(Ordering::Acquire)
    }

    /// Blocks until the task has finished and returns its value. On a worker
    /// thread it runs other tasks meanwhile instead of idling.
    pub fn wait(mut self) -> Result<T, RunError> {
        if !self.is_done() {
            let node = &self.node;
            let helped = with_current(|w| {
                w.map(|w| {
                    let me = w.index + 1;
                    let _ = node
                        .watched
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| match v {
                            0 => Some(me),
                            v if v == me => None,
                            _ => Some(usize::MAX),
                        });
                    w.pool.wait_until(|| node.done.load(Ordering::Acquire));
                })
            });
            if helped.is_none() {
                loop {
                    {
                        let mut shared = node.shared.lock().unwrap_or_else(|p| p.into_inner());
                        if node.done.load(Ordering::Acquire) {
                            break;
                        }
                        shared.threads.push(std::thread::current());
                    }
                    std::thread::park();
                }
            }
        }
        self.take()
    }

    /// Spends this handle's read of the finished result.
    fn take(&mut self) -> Result<T, RunError> {
        self.spent = true;
        self.node
            .read()?
            .take::<T>()
            .map_err(|d| RunError::WrongType {
                context: "Handle::wait".into(),
                expected: dagger_ir::type_name::<T>(),
                found: dagger_ir::short_type_name(d.type_name()),
            })
    }
}

impl<T: Data> Future for Handle<T> {
    type Output = Result<T, RunError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.spent {
            return Poll::Ready(Err(RunError::Unsupported(
                "handle polled after completion".into(),
            )));
        }
        if !self.is_done() {
            let mut shared = self.node.shared.lock().unwrap_or_else(|p| p.into_inner());
            if !self.node.done.load(Ordering::Acquire) {
                shared.wakers.push(cx.waker().clone());
                return Poll::Pending;
            }
        }
        Poll::Ready(self.take())
    }
}

impl<T> std::fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Handle<{}>({})",
            dagger_ir::type_name::<T>(),
            self.node.name
        )
    }
}

/// One argument of a spawn: a value, or the handle of a task that makes it.
pub trait SpawnArg<T> {
    #[doc(hidden)]
    fn into_source(self) -> ArgSource<T>;
}

#[doc(hidden)]
/// Where a spawn argument comes from.
pub enum ArgSource<T> {
    /// Given now.
    Ready(T),
    /// Made by this spawned task (its `Ok` value through the function, for
    /// a fallible task's handle).
    Pending(Arc<SpawnNode>, Option<Unwrap>),
}

impl<T> SpawnArg<T> for T {
    fn into_source(self) -> ArgSource<T> {
        ArgSource::Ready(self)
    }
}

impl<T: Data> SpawnArg<T> for Handle<T> {
    fn into_source(mut self) -> ArgSource<T> {
        // The subscription this becomes inherits the handle's read.
        self.spent = true;
        ArgSource::Pending(self.node.clone(), None)
    }
}

/// The handle of a fallible task (one returning `Result<T, E>`) feeds a
/// parameter of type `T`: the dependent gets the `Ok` value, and an `Err`
/// cancels it with [`RunError::TaskFailed`] naming the fallible task, as a
/// `dag!` run fails.
impl<T: Data, E: Data + std::fmt::Display> SpawnArg<T> for Handle<Result<T, E>> {
    fn into_source(mut self) -> ArgSource<T> {
        self.spent = true;
        ArgSource::Pending(self.node.clone(), Some(ok_value::<T, E>))
    }
}

/// The `Ok` value of a `Result<T, E>` datum, or the `Err`'s message.
fn ok_value<T: Data, E: Data + std::fmt::Display>(datum: Datum) -> Result<Datum, String> {
    match datum.take::<Result<T, E>>() {
        Ok(Ok(value)) => Ok(Datum::new(value)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(d) => Err(format!("unexpected result type {}", d.type_name())),
    }
}

impl<T: Data> ArgSource<T> {
    fn resolve(self, slot: Option<Datum>, task: &str, port: usize) -> Result<T, String> {
        match self {
            ArgSource::Ready(v) => Ok(v),
            ArgSource::Pending(..) => crate::task::take_arg(slot, task, port),
        }
    }

    fn producer(&self) -> Option<(Arc<SpawnNode>, Option<Unwrap>)> {
        match self {
            ArgSource::Ready(_) => None,
            ArgSource::Pending(n, unwrap) => Some((n.clone(), *unwrap)),
        }
    }
}

/// A function (or closure) of parameters `Params` (a tuple) that can be
/// spawned with arguments `Args` (a tuple of values and handles of those
/// types). Implemented for every `FnOnce` of up to 8 parameters.
pub trait SpawnFn<Params, Args>: Send + 'static {
    /// The function's result type.
    type Output: Data;
    #[doc(hidden)]
    fn prepare(self, args: Args) -> Prepared;
}

#[doc(hidden)]
/// A spawn ready to be wired: body, producers of its handle arguments, IR signature.
pub struct Prepared {
    body: Body,
    producers: Vec<(u32, Arc<SpawnNode>, Option<Unwrap>)>,
    arity: usize,
    params: fn() -> Vec<String>,
}

/// Spawns `f(args)` where `f` returns `Result<T, E>`: an `Err` fails the
/// task (and cancels its dependents) like a panic does, and the handle gives `T`.
pub trait TrySpawnFn<Params, Args>: Send + 'static {
    /// The `Ok` type.
    type Output: Data;
    #[doc(hidden)]
    fn prepare(self, args: Args) -> Prepared;
}

macro_rules! spawn_impls {
    ($($P:ident $A:ident $i:tt),*) => {
        impl<Func, R, $($P, $A),*> SpawnFn<($($P,)*), ($($A,)*)> for Func
        where
            Func: FnOnce($($P),*) -> R + Send + 'static,
            R: Data,
            $($P: Data, $A: SpawnArg<$P>,)*
        {
            type Output = R;
            #[allow(unused_variables, unused_mut, non_snake_case)]
            fn prepare(self, args: ($($A,)*)) -> Prepared {
                let ($($A,)*) = args;
                $(let $A = $A.into_source();)*
                let mut producers = Vec::new();
                $(if let Some((p, unwrap)) = $A.producer() { producers.push(($i, p, unwrap)); })*
                let name = std::any::type_name::<Func>();
                Prepared {
                    body: Box::new(move |slots: Vec<Option<Datum>>| {
                        let mut slots = slots.into_iter();
                        $(let $P = $A.resolve(slots.next().flatten(), name, $i)?;)*
                        Ok(Datum::new(self($($P),*)))
                    }),
                    producers,
                    arity: <[usize]>::len(&[$($i),*]),
                    params: || vec![$(dagger_ir::type_name::<$P>()),*],
                }
            }
        }

        impl<Func, T, E, $($P, $A),*> TrySpawnFn<($($P,)*), ($($A,)*)> for Func
        where
            Func: FnOnce($($P),*) -> Result<T, E> + Send + 'static,
            T: Data,
            E: std::fmt::Display,
            $($P: Data, $A: SpawnArg<$P>,)*
        {
            type Output = T;
            #[allow(unused_variables, unused_mut, non_snake_case)]
            fn prepare(self, args: ($($A,)*)) -> Prepared {
                let wrapped = move |$($P: $P),*| -> Result<T, String> { self($($P),*).map_err(|e| e.to_string()) };
                let Prepared { body, producers, arity, params } =
                    SpawnFn::<($($P,)*), ($($A,)*)>::prepare(wrapped, args);
                Prepared {
                    body: Box::new(move |slots| {
                        body(slots)?
                            .take::<Result<T, String>>()
                            .map_err(|d| format!("unexpected result type {}", d.type_name()))?
                            .map(Datum::new)
                    }),
                    producers,
                    arity,
                    params,
                }
            }
        }
    };
}

spawn_impls!();
spawn_impls!(P0 A0 0);
spawn_impls!(P0 A0 0, P1 A1 1);
spawn_impls!(P0 A0 0, P1 A1 1, P2 A2 2);
spawn_impls!(P0 A0 0, P1 A1 1, P2 A2 2, P3 A3 3);
spawn_impls!(P0 A0 0, P1 A1 1, P2 A2 2, P3 A3 3, P4 A4 4);
spawn_impls!(P0 A0 0, P1 A1 1, P2 A2 2, P3 A3 3, P4 A4 4, P5 A5 5);
spawn_impls!(P0 A0 0, P1 A1 1, P2 A2 2, P3 A3 3, P4 A4 4, P5 A5 5, P6 A6 6);
spawn_impls!(P0 A0 0, P1 A1 1, P2 A2 2, P3 A3 3, P4 A4 4, P5 A5 5, P6 A6 6, P7 A7 7);

/// Wires a prepared spawn of `F` into `pool` and returns its handle.
pub(crate) fn launch<F, T: Data>(pool: &Arc<Pool>, prepared: Prepared) -> Handle<T> {
    let name = std::any::type_name::<F>();
    let recorder: Option<&Recorder> = pool.recorder.is_active().then_some(&pool.recorder);
    let Prepared {
        body,
        producers,
        arity,
        params,
    } = prepared;
    let ir_node = recorder.map(|r| {
        let args: Vec<Option<dagger_ir::NodeId>> = (0..arity)
            .map(|i| {
                producers
                    .iter()
                    .find(|(port, ..)| *port as usize == i)
                    .and_then(|(_, p, _)| p.ir_node)
            })
            .collect();
        r.record_call(name, params(), dagger_ir::type_name::<T>(), &args)
    });
    let node = Arc::new(SpawnNode {
        name,
        pending: AtomicU32::new(producers.len() as u32 + 1),
        body: UnsafeCell::new(Some(body)),
        // Slots only for arguments that arrive later; values given now are in the body.
        args: if producers.is_empty() {
            Box::default()
        } else {
            (0..arity).map(|_| UnsafeCell::new(None)).collect()
        },
        cancelled: Mutex::new(None),
        done: AtomicBool::new(false),
        watched: AtomicUsize::new(0),
        readers: AtomicU32::new(1),
        shared: Mutex::new(Shared::default()),
        ir_node,
    });
    for (port, producer, unwrap) in producers {
        producer.subscribe(&node, port, unwrap, pool);
    }
    if node.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        pool.submit(Job::Shared(node.clone(), 0));
    }
    Handle::new(node)
}
