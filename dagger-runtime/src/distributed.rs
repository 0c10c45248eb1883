//! Running a graph across the ranks of a cluster, surviving the loss of ranks.
//!
//! [`Runtime::run_on_cluster`] (on rank 0, while the other ranks
//! [`serve`](crate::cluster::Cluster::serve)) compiles the graph, places its
//! tasks with a static scheduler on the processors of every rank (each rank
//! counts as many processors as rank 0 has workers), and runs each task where
//! it was placed: on rank 0 itself, or on another rank by a remote call. A
//! result stays on the rank that made it; a consumer on another rank fetches
//! it from there, and rank 0 fetches only what it consumes and the outputs.
//!
//! When a rank dies (its heartbeats stop), every task that was running on it
//! is placed again on a live rank, and every value that lived only there and
//! is still needed is recomputed from its lineage: its producing task runs
//! again, after its own lost inputs, recursively. The run then completes
//! with the right answer, and [`ClusterReport::redone`] says what was redone.

use crate::cluster::{Cluster, RemoteArg, RemoteError, RemoteValue};
use crate::dag::{Dag, Inputs};
use crate::datum::Datum;
use crate::error::RunError;
use crate::plan::{Kernel, Plan};
use crate::run::call;
use crate::runtime::Runtime;
use crate::task::lookup;
use dagger_ir::model::{HistoryModel, Platform, ProcKind};
use dagger_ir::sched::Scheduler;
use std::sync::mpsc::channel;

/// What a cluster run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterReport {
    /// Tasks run on each rank (a task run twice counts twice).
    pub tasks_per_rank: Vec<usize>,
    /// Tasks run again after a rank was lost, by name, in the order redone.
    pub redone: Vec<String>,
    /// The ranks lost during the run.
    pub lost: Vec<u32>,
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

/// The processors of a cluster: `workers` per rank, rank 0's local.
fn cluster_platform(ranks: u32, workers: usize) -> Platform {
    let mut platform = Platform::local(ranks as usize * workers);
    for (p, proc) in platform.processors.iter_mut().enumerate() {
        proc.node = p / workers;
        if proc.node != 0 {
            proc.kind = ProcKind::Remote;
        }
    }
    platform
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
}

impl Runtime {
    /// Runs `dag` across `cluster` (from rank 0), placing tasks with
    /// `scheduler`, and returns its outputs and what the run did. See the
    /// [module docs](crate::distributed).
    pub fn run_on_cluster<I: Inputs, O>(
        &self,
        dag: &Dag<I, O>,
        inputs: I,
        cluster: &Cluster,
        scheduler: &dyn Scheduler,
    ) -> Result<(O, ClusterReport), RunError> {
        let plan = dag.plan()?;
        let workers = self.threads();
        let platform = cluster_platform(cluster.size(), workers);
        let model = HistoryModel::load(&HistoryModel::default_dir()).unwrap_or_default();
        let (problem, nodes) = plan.problem(&platform, &model);
        let schedule = scheduler.schedule(&problem);
        let n = plan.kernels.len();
        let mut rank_of = vec![0u32; n];
        for (k, &i) in nodes.iter().enumerate() {
            if matches!(plan.kernels[i], Kernel::Call { .. }) {
                rank_of[i] = (schedule.placement[k].0 / workers) as u32;
            }
        }
        let mut exec = Execution {
            plan: &plan,
            cluster,
            slots: vec![None; n],
            state: vec![State::Waiting; n],
            rank_of,
            alive: vec![true; cluster.size() as usize],
            report: ClusterReport {
                tasks_per_rank: vec![0; cluster.size() as usize],
                ..Default::default()
            },
        };
        let inputs = inputs.into_data();
        for (i, k) in plan.kernels.iter().enumerate() {
            let value = match k {
                Kernel::Input(index) => inputs[*index].clone(),
                Kernel::Const(d) => d.clone(),
                Kernel::Call { .. } | Kernel::Fused { .. } => continue,
            };
            exec.slots[i] = Some(Slot::Here(value));
            exec.state[i] = State::Done;
        }
        loop {
            exec.run_tasks()?;
            match exec.fetch_outputs() {
                Ok(outputs) => return Ok((dag.unbox(outputs)?, exec.report)),
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
        let (plan, cluster) = (self.plan, self.cluster);
        std::thread::scope(|scope| {
            let (tx, rx) = channel();
            let mut running = 0usize;
            let mut failure = None;
            loop {
                if failure.is_none() {
                    for i in 0..plan.kernels.len() {
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
                            let _ = tx.send((i, run_task(cluster, &plan.kernels[i], rank, args)));
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
            .outputs
            .iter()
            .map(|&o| match self.slots[o as usize].clone() {
                Some(Slot::Here(d)) => Ok(d),
                Some(Slot::There(v)) => Ok(self.cluster.fetch(&v)?),
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
            for i in 0..self.plan.kernels.len() {
                let lost_value = matches!(&self.slots[i], Some(Slot::There(v)) if v.rank == rank);
                if lost_value && self.state[i] == State::Done && self.needed(i) {
                    self.slots[i] = None;
                    self.state[i] = State::Waiting;
                    self.report
                        .redone
                        .push(self.plan.kernels[i].trace_name().as_str().to_string());
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
        self.plan.outputs.contains(&(i as u32))
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
        return match cluster.call(rank, def, args) {
            Ok(v) => Ok(Slot::There(v)),
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
            Slot::There(v) => cluster.fetch(&v)?,
        }));
    }
    let value = match kernel {
        Kernel::Call { name, invoke } => call(name, *invoke, &mut values),
        Kernel::Fused { steps, .. } => steps[1..].iter().try_fold(
            call(steps[0].0, steps[0].1, &mut values).map_err(Failure::Failed)?,
            |value, &(name, invoke)| call(name, invoke, &mut [Some(value)]),
        ),
        Kernel::Input(_) | Kernel::Const(_) => unreachable!("inputs and constants are not tasks"),
    };
    value.map(Slot::Here).map_err(Failure::Failed)
}
