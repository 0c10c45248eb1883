//! The [`Runtime`]: a pool of workers, and the entry points that run graphs on it.

use crate::dag::{Dag, Inputs};
use crate::device::Accelerator;
use crate::error::RunError;
use crate::placement::{Placement, TaskCosts};
use crate::pool::{with_current, Pool};
use crate::run::PlanRun;
use crate::spawn::{launch, Handle, SpawnFn, TrySpawnFn};
use crate::trace::Trace;
use dagger_ir::sched::DynamicPolicy;
use dagger_ir::Graph;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

/// Runs graphs on a pool of worker threads (one per core by default).
///
/// Cloning a `Runtime` gives another handle to the same pool; the workers
/// stop when the last handle is dropped.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Arc<Pool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Where to write the trace when dropped (`DAGGER_TRACE`).
    trace_file: Option<std::path::PathBuf>,
    /// Where to add the measured task times when dropped (`DAGGER_CALIBRATE`).
    perfmodel_dir: Option<std::path::PathBuf>,
    /// The probed platform, measured on first use.
    platform: OnceLock<dagger_ir::model::Platform>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.pool.shut_down();
        let me = std::thread::current().id();
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            // A runtime dropped by one of its own tasks cannot join that worker.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        if self.trace_file.is_none() && self.perfmodel_dir.is_none() {
            return;
        }
        let trace = self.pool.trace.take();
        if let Some(path) = &self.trace_file {
            match trace.write(path) {
                Ok(()) => tracing::info!(
                    "dagger: wrote a trace of {} tasks to {}",
                    trace.events.len(),
                    path.display()
                ),
                Err(e) => eprintln!("dagger: cannot write the trace to {}: {e}", path.display()),
            }
        }
        if let Some(dir) = &self.perfmodel_dir {
            if let Err(e) = calibrate(dir, &trace) {
                eprintln!(
                    "dagger: cannot update the performance model in {}: {e}",
                    dir.display()
                );
            }
        }
    }
}

/// Adds the task times of `trace` to the history model kept in `dir`.
fn calibrate(dir: &std::path::Path, trace: &Trace) -> Result<(), String> {
    use dagger_ir::model::HistoryModel;
    let mut model = HistoryModel::load(dir).map_err(|e| e.to_string())?;
    for m in trace.measurements() {
        model.record(&m);
    }
    model.save(dir).map_err(|e| e.to_string())?;
    tracing::info!(
        "dagger: added {} task times to {}",
        trace.events.len(),
        dir.display()
    );
    Ok(())
}

/// Configures a [`Runtime`].
#[derive(Clone, Default)]
pub struct RuntimeBuilder {
    threads: Option<usize>,
    name: Option<String>,
    stack_size: Option<usize>,
    devices: Vec<Arc<dyn Accelerator>>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let devices: Vec<String> = self.devices.iter().map(|d| d.describe()).collect();
        f.debug_struct("RuntimeBuilder")
            .field("threads", &self.threads)
            .field("name", &self.name)
            .field("stack_size", &self.stack_size)
            .field("devices", &devices)
            .finish()
    }
}

/// Default stack of a worker: waiting tasks run other tasks on top of their
/// own frames, so deep dynamic graphs nest deeply (memory is committed only
/// as it is used).
const DEFAULT_STACK_SIZE: usize = 16 << 20;

impl RuntimeBuilder {
    /// Number of worker threads (default: every core, or `DAGGER_THREADS`).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Stack size of each worker thread in bytes (default 16 MiB).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Adds an accelerator with a worker of its own (see [`crate::device`]):
    /// tasks with a device body may then be placed on it.
    pub fn accelerator(mut self, device: Arc<dyn Accelerator>) -> Self {
        self.devices.push(device);
        self
    }

    /// Prefix of the worker threads' names (default `dagger`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Starts the workers.
    pub fn build(self) -> Runtime {
        let threads = self.threads.unwrap_or_else(default_threads);
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::info!(
                "dagger: running on {threads} local worker threads (GPUs: dagger::cuda; other processes: dagger run)"
            )
        });
        for d in &self.devices {
            tracing::info!("dagger: accelerator worker for {}", d.describe());
        }
        let (pool, handles) = Pool::start(
            threads,
            self.devices,
            self.name.as_deref().unwrap_or("dagger"),
            self.stack_size.unwrap_or(DEFAULT_STACK_SIZE),
        );
        let trace_file = std::env::var_os("DAGGER_TRACE").map(std::path::PathBuf::from);
        let perfmodel_dir = std::env::var_os("DAGGER_CALIBRATE")
            .filter(|v| !v.is_empty() && v != "0")
            .map(|_| dagger_ir::model::HistoryModel::default_dir());
        if trace_file.is_some() || perfmodel_dir.is_some() {
            pool.tracing
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Runtime {
            inner: Arc::new(Inner {
                pool,
                threads: Mutex::new(handles),
                trace_file,
                perfmodel_dir,
                platform: OnceLock::new(),
            }),
        }
    }
}

fn default_threads() -> usize {
    std::env::var("DAGGER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    /// A runtime with one worker per core.
    pub fn new() -> Self {
        RuntimeBuilder::default().build()
    }

    /// Configures a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The process-wide runtime that [`spawn`](crate::spawn()) uses outside any worker.
    pub fn global() -> &'static Runtime {
        static GLOBAL: OnceLock<Runtime> = OnceLock::new();
        GLOBAL.get_or_init(Runtime::new)
    }

    /// The pool of workers.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.inner.pool
    }

    /// Number of CPU worker threads (accelerators' workers not counted).
    pub fn threads(&self) -> usize {
        self.inner.pool.cpu_workers()
    }

    /// The accelerators, in the order of their workers (after the CPU ones).
    pub fn devices(&self) -> &[Arc<dyn Accelerator>] {
        &self.inner.pool.devices
    }

    /// The probed platform, measured on the first call.
    pub(crate) fn probed_platform(&self) -> &dagger_ir::model::Platform {
        self.inner.platform.get_or_init(|| self.probe_platform())
    }

    /// Runs `dag` on `inputs` and returns its outputs. The dag is compiled
    /// (verified, optimised, resolved) on its first run. Called from inside a
    /// task, the calling worker keeps running other work while it waits.
    pub fn run<I: Inputs, O>(&self, dag: &Dag<I, O>, inputs: I) -> Result<O, RunError> {
        let plan = dag.plan()?;
        let run = PlanRun::start(
            plan,
            self.inner.pool.clone(),
            inputs.into_data(),
            Placement::Stealing,
        )?;
        self.inner.pool.wait_until(|| run.is_done());
        dag.unbox(run.finish()?)
    }

    /// Runs `dag` with every task placed ahead of time by a scheduler (HEFT,
    /// PEFT, ...): the plan becomes a scheduling problem on this runtime's
    /// workers (task costs from `model`, else the tasks' cost hints, see
    /// [`Plan::problem`](crate::Plan::problem)), the scheduler places each
    /// task on a worker, and each task runs on that worker only, once its
    /// inputs are ready; a worker with several ready tasks runs them in
    /// the order of their scheduled starts. Returns the outputs and the schedule the
    /// scheduler predicted, to compare with a [trace](Self::start_trace).
    pub fn run_scheduled<I: Inputs, O>(
        &self,
        dag: &Dag<I, O>,
        inputs: I,
        scheduler: &dyn dagger_ir::sched::Scheduler,
        model: &dagger_ir::model::HistoryModel,
    ) -> Result<(O, dagger_ir::sched::Schedule), RunError> {
        let plan = dag.plan()?;
        let (problem, nodes) = plan.problem(&self.platform()?, model);
        let schedule = scheduler.schedule(&problem);
        let mut worker = vec![0u32; plan.kernels.len()];
        let mut priority = vec![0u64; plan.kernels.len()];
        for (k, &i) in nodes.iter().enumerate() {
            let (proc, start, _) = schedule.placement[k];
            worker[i] = proc as u32;
            priority[i] = (start * 1e9) as u64;
        }
        let run = PlanRun::start(
            plan,
            self.inner.pool.clone(),
            inputs.into_data(),
            Placement::Static { worker, priority },
        )?;
        self.inner.pool.wait_until(|| run.is_done());
        Ok((dag.unbox(run.finish()?)?, schedule))
    }

    /// Runs `dag` placing each task, when it becomes ready, by a dynamic
    /// policy ([`DynamicPolicy`]: eager, round-robin, random, dmda, dmdas;
    /// work stealing is [`run`](Self::run)), the same policies `dagger
    /// sched` simulates, deciding alike; dmda and dmdas estimate task times
    /// (and dmdas upward ranks) from `model` like
    /// [`run_scheduled`](Self::run_scheduled).
    pub fn run_with_policy<I: Inputs, O>(
        &self,
        dag: &Dag<I, O>,
        inputs: I,
        policy: DynamicPolicy,
        model: &dagger_ir::model::HistoryModel,
    ) -> Result<O, RunError> {
        if policy == DynamicPolicy::WorkStealing {
            return self.run(dag, inputs);
        }
        let plan = dag.plan()?;
        let (problem, nodes) = plan.problem(&self.platform()?, model);
        let rank = dagger_ir::sched::rank::upward_rank(&problem);
        let top = rank.iter().copied().fold(0.0, f64::max);
        let (cpu, devices) = (self.threads(), self.devices().len());
        let n = plan.kernels.len();
        let mut costs = TaskCosts {
            cpu_ns: vec![0; n],
            device_ns: vec![None; n * devices],
            cpu_workers: cpu,
            devices,
        };
        let mut priority = vec![0u64; n];
        let ns = |seconds: f64| seconds.is_finite().then_some((seconds * 1e9) as u64);
        for (k, &i) in nodes.iter().enumerate() {
            costs.cpu_ns[i] = ns(problem.cost[k][0]).unwrap_or(u64::MAX);
            for d in 0..devices {
                costs.device_ns[i * devices + d] = ns(problem.cost[k][cpu + d]);
            }
            priority[i] = ((top - rank[k]) * 1e9) as u64;
        }
        let placement = Placement::dynamic(policy, costs, priority);
        let run = PlanRun::start(plan, self.inner.pool.clone(), inputs.into_data(), placement)?;
        self.inner.pool.wait_until(|| run.is_done());
        dag.unbox(run.finish()?)
    }

    /// Spawns `f(args)` and returns a handle to its result. `args` is a tuple
    /// whose elements are values or [`Handle`]s of earlier spawns. A handle
    /// of a task returning `Result<T, E>` feeds parameters of type `T`; an
    /// `Err` fails them with [`RunError::TaskFailed`] (see the
    /// [`spawn`](mod@crate::spawn) module docs).
    pub fn spawn<F: SpawnFn<P, A>, P, A>(&self, f: F, args: A) -> Handle<F::Output> {
        launch::<F, _>(&self.inner.pool, f.prepare(args))
    }

    /// Like [`spawn`](Self::spawn) for a function returning `Result<T, E>`:
    /// an `Err` fails the task with [`RunError::TaskFailed`].
    pub fn try_spawn<F: TrySpawnFn<P, A>, P, A>(&self, f: F, args: A) -> Handle<F::Output> {
        launch::<F, _>(&self.inner.pool, f.prepare(args))
    }

    /// Starts recording every task execution (see [`Trace`]).
    pub fn start_trace(&self) {
        self.inner.pool.trace.take();
        self.inner
            .pool
            .tracing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops recording and returns what was recorded.
    pub fn stop_trace(&self) -> Trace {
        self.inner
            .pool
            .tracing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.inner.pool.trace.take()
    }

    /// Starts recording spawns as an IR graph (see [`stop_recording`](Self::stop_recording)).
    pub fn start_recording(&self) {
        self.inner.pool.recorder.start();
    }

    /// Stops recording spawns and returns their graph, with the tasks behind
    /// `outputs` as its outputs.
    pub fn stop_recording<T>(&self, outputs: &[&Handle<T>]) -> Graph {
        let ids = outputs.iter().filter_map(|h| h.ir_node()).collect();
        self.inner.pool.recorder.stop(ids)
    }
}

/// Spawns `f(args)` on the runtime of the calling task, or on
/// [`Runtime::global`] when called outside any task (fallible tasks as
/// [`Runtime::spawn`] says).
pub fn spawn<F: SpawnFn<P, A>, P, A>(f: F, args: A) -> Handle<F::Output> {
    let prepared = f.prepare(args);
    on_current_pool(|pool| launch::<F, _>(pool, prepared))
}

/// [`spawn`] for a function returning `Result<T, E>`: an `Err` fails the task.
pub fn try_spawn<F: TrySpawnFn<P, A>, P, A>(f: F, args: A) -> Handle<F::Output> {
    let prepared = f.prepare(args);
    on_current_pool(|pool| launch::<F, _>(pool, prepared))
}

/// Calls `f` with the pool of the calling worker, or the global runtime's.
fn on_current_pool<R>(f: impl FnOnce(&Arc<Pool>) -> R) -> R {
    with_current(|w| match w {
        Some(w) => f(&w.pool),
        None => f(&Runtime::global().inner.pool),
    })
}
