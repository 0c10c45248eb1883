//! Running a graph across the ranks of a cluster, surviving the loss of ranks.
//!
//! [`Cluster::run`] (on rank 0, while the other ranks
//! [`serve`](crate::cluster::Cluster::serve)) compiles the graph, places its
//! tasks with a static scheduler on the processors of every rank (as many
//! as the rank has workers, as it told at join time; each edge costs the
//! time of its value's predicted size on the [measured link](Cluster::link)),
//! and runs each task where
//! it was placed: on rank 0 itself, or on another rank by a remote call. A
//! result stays on the rank that made it; a consumer on another rank fetches
//! it from there, and rank 0 fetches only what it consumes and the outputs;
//! at the end of the run every rank forgets the values it kept for it.
//!
//! A run starts from the ranks alive at its start: a rank already known
//! dead (gone before the cluster formed, or since) gets no task.
//! When a rank dies (its heartbeats stop), every task that was running on it
//! is placed again on a live rank, and every value that lived only there and
//! is still needed is recomputed from its lineage: its producing task runs
//! again, after its own lost inputs, recursively. The run then completes
//! with the right answer, and [`ClusterReport::redone`] says what was redone.
//!
//! Every task and every transfer is a span of [`ClusterReport::spans`]:
//! rank 0 times its own tasks, remote calls and fetches, and a serving rank
//! reports with each call's reply the arguments it fetched from third ranks
//! (placed on rank 0's clock from the moment the call was made). Written as
//! Chrome trace JSON by [`ClusterReport::to_chrome_json`]: one row of tasks
//! per rank, then one row of transfers into each rank.

use crate::cluster::{Cluster, RemoteArg, RemoteError, RemoteFetch, RemoteValue};
use dagger_ir::model::{HistoryModel, Platform, ProcKind};
use dagger_ir::sched::{Problem, Scheduler};
use dagger_runtime::dag::{Dag, Inputs};
use dagger_runtime::datum::Datum;
use dagger_runtime::error::RunError;
use dagger_runtime::runtime::Runtime;
use dagger_runtime::task::lookup;
use dagger_runtime::{call_task as call, Kernel, Plan};
use std::sync::mpsc::channel;
use std::sync::Mutex;
use std::time::Instant;

/// What a cluster run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterReport {
    /// Tasks run on each rank (a task run twice counts twice).
    pub tasks_per_rank: Vec<usize>,
    /// Tasks run again after a rank was lost, by name, in the order redone.
    pub redone: Vec<String>,
    /// The ranks lost before (known dead at its start) or during the run.
    pub lost: Vec<u32>,
    /// Tasks and transfers as rank 0 saw them, in the order they ended.
    pub spans: Vec<ClusterSpan>,
}

/// A task or a transfer of a cluster run, timed on rank 0.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSpan {
    /// The task's name, or what moved where.
    pub label: String,
    /// What it was.
    pub kind: SpanKind,
    /// Seconds from the start of the run.
    pub start: f64,
    /// Seconds from the start of the run.
    pub end: f64,
}

/// What a [`ClusterSpan`] was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// A task run on `rank`.
    Task {
        /// The rank that ran it.
        rank: u32,
    },
    /// A value moved from rank `from` to rank `to`.
    Transfer {
        /// Where the value lived.
        from: u32,
        /// The rank that needed it.
        to: u32,
    },
}

impl ClusterReport {
    /// The spans as Chrome trace JSON (Perfetto): row `P<r>` holds rank
    /// `r`'s tasks and row `P<ranks + r>` the transfers into rank `r`.
    pub fn to_chrome_json(&self) -> String {
        let ranks = self.tasks_per_rank.len();
        let labels: Vec<String> = self.spans.iter().map(|s| s.label.clone()).collect();
        let schedule = dagger_ir::sched::Schedule {
            placement: self
                .spans
                .iter()
                .map(|s| {
                    let row = match s.kind {
                        SpanKind::Task { rank } => rank as usize,
                        SpanKind::Transfer { to, .. } => ranks + to as usize,
                    };
                    (row, s.start, s.end)
                })
                .collect(),
        };
        dagger_ir::sched::chrome::to_chrome_json(
            2 * ranks,
            &[("cluster run", &labels, &schedule)],
            1e6,
        )
    }
}

/// Collects spans from the threads of a run.
struct SpanLog {
    origin: Instant,
    spans: Mutex<Vec<ClusterSpan>>,
}

impl SpanLog {
    /// Seconds since the start of the run.
    fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    fn push(&self, label: String, kind: SpanKind, start: f64, end: f64) {
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ClusterSpan {
                label,
                kind,
                start,
                end,
            });
    }

    /// Runs `f`, recording it as a span.
    fn time<T>(&self, label: impl FnOnce() -> String, kind: SpanKind, f: impl FnOnce() -> T) -> T {
        let start = self.now();
        let out = f();
        self.push(label(), kind, start, self.now());
        out
    }

    /// Brings `v` to this rank, recorded as a transfer.
    fn fetch(&self, cluster: &Cluster, v: &RemoteValue) -> Result<Datum, RemoteError> {
        let kind = SpanKind::Transfer {
            from: v.rank,
            to: cluster.rank(),
        };
        self.time(
            || transfer_label(v.bytes, v.rank),
            kind,
            || cluster.fetch(v),
        )
    }

    /// Records the fetches rank `to` made for a call that rank 0 made at
    /// `called` (seconds since the start of the run).
    fn remote_fetches(&self, to: u32, called: f64, fetches: &[RemoteFetch]) {
        for f in fetches {
            let start = called + f.start.as_secs_f64();
            let end = start + f.took.as_secs_f64();
            let kind = SpanKind::Transfer { from: f.from, to };
            self.push(transfer_label(f.bytes, f.from), kind, start, end);
        }
    }
}

fn transfer_label(bytes: u64, from: u32) -> String {
    format!("fetch {bytes} B from rank {from}")
}

/// Where a node's value is.
#[derive(Clone)]
enum Slot {
    Here(Datum),
    There(RemoteValue),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done,
}

/// Why a task did not finish.
enum Failure {
    /// A rank it needed is gone: place it again.
    Lost(u32),
    /// The task itself failed: the run fails.
    Failed(RunError),
}

impl From<RemoteError> for Failure {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::RankLost { rank, .. } => Failure::Lost(rank),
            other => Failure::Failed(RunError::Unsupported(other.to_string())),
        }
    }
}

/// The processors of a cluster: `workers[r]` for rank `r` (its node; none
/// for a rank with 0, one that is gone), rank 0's local (at least one), the
/// others remote.
fn cluster_platform(workers: &[u32]) -> Platform {
    let count = |rank: usize, w: u32| if rank == 0 { w.max(1) } else { w } as usize;
    let total = workers.iter().enumerate().map(|(r, &w)| count(r, w)).sum();
    let mut platform = Platform::local(total);
    let nodes = workers
        .iter()
        .enumerate()
        .flat_map(|(rank, &w)| std::iter::repeat_n(rank, count(rank, w)));
    for (proc, node) in platform.processors.iter_mut().zip(nodes) {
        proc.node = node;
        if node != 0 {
            proc.kind = ProcKind::Remote;
        }
    }
    platform
}

/// Charges every edge of `problem` the network time of its value's
/// predicted bytes (the problem's processors do not say which share a
/// rank, so an edge between two workers of one rank is charged too).
fn charge_transfers(
    problem: &mut Problem,
    nodes: &[usize],
    out_bytes: &[u64],
    platform: &Platform,
) {
    let time = |k: usize| platform.network.transfer_time(out_bytes[nodes[k]]);
    for k in 0..problem.succ.len() {
        let comm = time(k);
        for edge in &mut problem.succ[k] {
            edge.1 = comm;
        }
    }
    for edges in &mut problem.pred {
        for edge in edges.iter_mut() {
            edge.1 = time(edge.0);
        }
    }
}

/// The state of one cluster run on rank 0.
struct Execution<'a> {
    plan: &'a Plan,
    cluster: &'a Cluster,
    slots: Vec<Option<Slot>>,
    state: Vec<State>,
    rank_of: Vec<u32>,
    alive: Vec<bool>,
    report: ClusterReport,
    log: &'a SpanLog,
    /// Most tasks in flight at once (each waits on its own thread).
    max_in_flight: usize,
}

impl Cluster {
    /// Runs `dag` across this cluster (from rank 0, with `runtime`'s
    /// workers as rank 0's), placing tasks with `scheduler`, and returns its
    /// outputs and what the run did. See the [module docs](crate::distributed).
    pub fn run<I: Inputs, O>(
        &self,
        runtime: &Runtime,
        dag: &Dag<I, O>,
        inputs: I,
        scheduler: &dyn Scheduler,
    ) -> Result<(O, ClusterReport), RunError> {
        let cluster = self;
        let plan = dag.plan()?;
        let dead: Vec<u32> = cluster.dead_ranks().into_iter().map(|(r, _)| r).collect();
        let mut workers = cluster.workers().to_vec();
        workers[0] = runtime.threads() as u32;
        for &r in &dead {
            workers[r as usize] = 0;
        }
        let mut platform = cluster_platform(&workers);
        platform.network = cluster.link();
        let model = HistoryModel::load(&HistoryModel::default_dir()).unwrap_or_default();
        let (mut problem, nodes) = plan.problem(&platform, &model);
        charge_transfers(
            &mut problem,
            &nodes,
            &plan.predicted_bytes(&model).1,
            &platform,
        );
        let schedule = scheduler.schedule(&problem);
        let n = plan.kernels().len();
        let mut rank_of = vec![0u32; n];
        for (k, &i) in nodes.iter().enumerate() {
            if matches!(plan.kernels()[i], Kernel::Call { .. }) {
                rank_of[i] = platform.processors[schedule.placement[k].0].node as u32;
            }
        }
        let log = SpanLog {
            origin: Instant::now(),
            spans: Mutex::new(Vec::new()),
        };
        let mut alive = vec![true; cluster.size() as usize];
        for &r in &dead {
            alive[r as usize] = false;
        }
        let mut exec = Execution {
            plan: &plan,
            cluster,
            slots: vec![None; n],
            state: vec![State::Waiting; n],
            rank_of,
            alive,
            report: ClusterReport {
                tasks_per_rank: vec![0; cluster.size() as usize],
                lost: dead,
                ..Default::default()
            },
            log: &log,
            max_in_flight: 2 * platform.processors.len().max(2),
        };
        let inputs = inputs.into_data();
        for (i, k) in plan.kernels().iter().enumerate() {
            let value = match k {
                Kernel::Input(index) => inputs[*index].clone(),
                Kernel::Const(d) => d.clone(),
                Kernel::Call { .. } | Kernel::Fused { .. } | Kernel::Body { .. } => continue,
            };
            exec.slots[i] = Some(Slot::Here(value));
            exec.state[i] = State::Done;
        }
        loop {
            exec.run_tasks()?;
            match exec.fetch_outputs() {
                Ok(outputs) => {
                    let remote: Vec<RemoteValue> = (exec.slots.iter().flatten())
                        .filter_map(|s| match s {
                            Slot::There(v) if exec.alive[v.rank as usize] => Some(*v),
                            _ => None,
                        })
                        .collect();
                    cluster.release(&remote);
                    let mut report = exec.report;
                    report.spans =
                        std::mem::take(&mut *log.spans.lock().unwrap_or_else(|p| p.into_inner()));
                    return Ok((dag.unbox(outputs)?, report));
                }
                Err(Failure::Lost(rank)) => exec.lose(rank),
                Err(Failure::Failed(e)) => return Err(e),
            }
        }
    }
}

impl Execution<'_> {
    /// Runs every task not done yet, each as soon as its inputs are, until
    /// all are done; rank losses on the way are repaired.
    fn run_tasks(&mut self) -> Result<(), RunError> {
        let (plan, cluster, log) = (self.plan, self.cluster, self.log);
        std::thread::scope(|scope| {
            let (tx, rx) = channel();
            let mut running = 0usize;
            let mut failure = None;
            loop {
                if failure.is_none() {
                    for i in 0..plan.kernels().len() {
                        if running >= self.max_in_flight {
                            break;
                        }
                        if self.state[i] != State::Waiting || !self.ready(i) {
                            continue;
                        }
                        self.state[i] = State::Running;
                        running += 1;
                        let rank = self.rank_of[i];
                        self.report.tasks_per_rank[rank as usize] += 1;
                        let args: Vec<Slot> = plan
                            .args_of(i)
                            .iter()
                            .map(|&p| self.slots[p as usize].clone().expect("inputs are done"))
                            .collect();
                        let tx = tx.clone();
                        scope.spawn(move || {
                            let kernel = &plan.kernels()[i];
                            let label = || kernel.trace_name().as_str().to_string();
                            let result = log.time(label, SpanKind::Task { rank }, || {
                                run_task(cluster, log, kernel, rank, args)
                            });
                            let _ = tx.send((i, result));
                        });
                    }
                }
                if running == 0 {
                    return failure.map_or(Ok(()), Err);
                }
                let (i, result) = rx.recv().expect("a running task reports");
                running -= 1;
                match result {
                    Ok(slot) => {
                        self.slots[i] = Some(slot);
                        self.state[i] = State::Done;
                    }
                    Err(Failure::Lost(rank)) => {
                        self.state[i] = State::Waiting;
                        self.lose(rank);
                    }
                    Err(Failure::Failed(e)) => {
                        // Let the running tasks finish, start no new ones.
                        self.state[i] = State::Waiting;
                        failure.get_or_insert(e);
                    }
                }
            }
        })
    }

    fn ready(&self, i: usize) -> bool {
        self.plan
            .args_of(i)
            .iter()
            .all(|&p| self.state[p as usize] == State::Done)
    }

    /// Brings the outputs to rank 0.
    fn fetch_outputs(&self) -> Result<Vec<Datum>, Failure> {
        self.plan
            .outputs()
            .iter()
            .map(|&o| match self.slots[o as usize].clone() {
                Some(Slot::Here(d)) => Ok(d),
                Some(Slot::There(v)) => Ok(self.log.fetch(self.cluster, &v)?),
                None => Err(Failure::Failed(RunError::Unsupported(format!(
                    "output node {o} produced no value"
                )))),
            })
            .collect()
    }

    /// Rank `rank` is gone: place its tasks elsewhere and mark the values
    /// that lived only there, and are still needed, to be made again.
    /// Idempotent: tasks that come back from a rank already known lost are
    /// placed again too.
    fn lose(&mut self, rank: u32) {
        if std::mem::replace(&mut self.alive[rank as usize], false) {
            self.report.lost.push(rank);
        }
        let live: Vec<u32> = (0..self.alive.len() as u32)
            .filter(|&r| self.alive[r as usize])
            .collect();
        let mut turn = 0;
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..self.plan.kernels().len() {
                let lost_value = matches!(&self.slots[i], Some(Slot::There(v)) if v.rank == rank);
                if lost_value && self.state[i] == State::Done && self.needed(i) {
                    self.slots[i] = None;
                    self.state[i] = State::Waiting;
                    self.report
                        .redone
                        .push(self.plan.kernels()[i].trace_name().as_str().to_string());
                    changed = true;
                }
                if self.state[i] == State::Waiting && self.rank_of[i] == rank {
                    self.rank_of[i] = live[turn % live.len()];
                    turn += 1;
                }
            }
        }
    }

    /// Whether node `i`'s value is still to be used: an output, or an
    /// input of a task not done.
    fn needed(&self, i: usize) -> bool {
        self.plan.outputs().contains(&(i as u32))
            || self
                .plan
                .users_of(i)
                .iter()
                .any(|&u| self.state[u as usize] != State::Done)
    }
}

/// Runs one task on `rank` with its arguments where they are.
fn run_task(
    cluster: &Cluster,
    log: &SpanLog,
    kernel: &Kernel,
    rank: u32,
    args: Vec<Slot>,
) -> Result<Slot, Failure> {
    if let (Kernel::Call { name, .. }, true) = (kernel, rank != cluster.rank()) {
        let def = lookup(name).expect("plans hold registered tasks");
        let args = args
            .into_iter()
            .map(|a| match a {
                Slot::Here(d) => RemoteArg::Local(d),
                Slot::There(v) => RemoteArg::Remote(v),
            })
            .collect();
        let called = log.now();
        return match cluster.call_traced(rank, def, args) {
            Ok((v, fetches)) => {
                log.remote_fetches(rank, called, &fetches);
                Ok(Slot::There(v))
            }
            Err(RemoteError::Failed { message, .. }) => {
                Err(Failure::Failed(RunError::TaskFailed {
                    task: name.to_string(),
                    message,
                }))
            }
            Err(e) => Err(e.into()),
        };
    }
    let mut values = Vec::with_capacity(args.len());
    for a in args {
        values.push(Some(match a {
            Slot::Here(d) => d,
            Slot::There(v) => log.fetch(cluster, &v)?,
        }));
    }
    let value = match kernel {
        Kernel::Call { name, invoke, .. } => call(name, *invoke, &mut values),
        // Made at run time in this process: it runs here, on rank 0.
        Kernel::Body { name, body, .. } => dagger_runtime::call_task_body(name, body, &mut values),
        Kernel::Fused { steps, .. } => steps[1..].iter().try_fold(
            call(steps[0].0, steps[0].1, &mut values).map_err(Failure::Failed)?,
            |value, &(name, invoke)| call(name, invoke, &mut [Some(value)]),
        ),
        Kernel::Input(_) | Kernel::Const(_) => unreachable!("inputs and constants are not tasks"),
    };
    value.map(Slot::Here).map_err(Failure::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rank_brings_as_many_processors_as_it_has_workers() {
        let p = cluster_platform(&[2, 1, 3]);
        let nodes: Vec<usize> = p.processors.iter().map(|q| q.node).collect();
        assert_eq!(nodes, [0, 0, 1, 2, 2, 2]);
        let without_rank_1 = cluster_platform(&[2, 0, 1]);
        let nodes: Vec<usize> = without_rank_1.processors.iter().map(|q| q.node).collect();
        assert_eq!(nodes, [0, 0, 2], "a gone rank brings no processor");
        assert_eq!(p.processors[1].kind, ProcKind::Cpu);
        assert_eq!(p.processors[2].kind, ProcKind::Remote);
    }
}
