//! Data-parallel training: one replica of the training step per worker,
//! each batch split between them, gradients averaged by ring all-reduce.
//!
//! As in PyTorch's DistributedDataParallel: rank 0's initial parameters are
//! broadcast to every replica; each worker runs forward and backward on its
//! share of the batch; gradients are averaged in buckets (see
//! [`insert_all_reduce`](dagger_tensor::insert_all_reduce)), each sent as
//! soon as backward has computed it, on a thread that overlaps the rest of
//! backward; then every replica applies the same optimizer step, so the
//! replicas stay equal. With the same global batch and seed, training
//! matches one worker up to floating-point summation order.
//!
//! Workers are threads of this process ([`Workers::Threads`]), the GPUs of
//! this machine (`Workers::Gpus`, with the `cuda` feature: one thread and
//! one `GpuProgram` per GPU, gradients averaged GPU to GPU by NCCL on a
//! stream of their own, overlapping backward), or the ranks of a cluster
//! started by `dagger run -n N` (`Workers::Cluster`, with the `cluster`
//! feature: each process is one worker and calls [`DataParallel::step`]
//! with the same global batch; with `Workers::ClusterGpus`, and both
//! features, each trains on a GPU of its machine).
//!
//! A worker whose step fails once its run started stops, and no other
//! worker waits for it: rings report it gone, and GPU workers of an NCCL
//! group give up on a raised alarm and abort their communicators. The step
//! then fails with the error of the worker that caused it
//! ([`Error::PeerFailed`] marks those that gave up), and every
//! later call says the trainer stopped ([`Error::Stopped`]).

use super::error::{Error, Result};
use super::io::NamedParams;
use super::net::Net;
use super::optim::Optimizer;
#[cfg(feature = "cuda")]
use super::replica::NcclGate;
use super::replica::{Link, Place, Replica, Start, WorkerPlan};
use super::replies::first_cause;
#[cfg(feature = "cluster")]
use dagger_cluster::cluster::Cluster;
#[cfg(feature = "cluster")]
use dagger_cluster::ClusterRing;
#[cfg(feature = "cuda")]
use dagger_cuda::nccl::new_nccl_id;
use dagger_tensor::{thread_ring, ParallelGroup, Tensor};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Who trains.
#[derive(Clone)]
pub enum Workers {
    /// This many threads of this process.
    Threads(usize),
    /// The first this many GPUs of this machine, reduced with NCCL.
    #[cfg(feature = "cuda")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cuda")))]
    Gpus(usize),
    /// The ranks of a cluster; this process is its rank's worker.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    Cluster(Arc<Cluster>),
    /// The ranks of a cluster, each training on a GPU of its machine (GPU
    /// `rank % GPUs`), gradients reduced over the cluster's ring through
    /// host memory.
    #[cfg(all(feature = "cluster", feature = "cuda"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "cluster", feature = "cuda"))))]
    ClusterGpus(Arc<Cluster>),
}

impl Workers {
    /// How many workers.
    pub fn count(&self) -> usize {
        match self {
            Workers::Threads(n) => *n,
            #[cfg(feature = "cuda")]
            Workers::Gpus(n) => *n,
            #[cfg(feature = "cluster")]
            Workers::Cluster(c) => c.size() as usize,
            #[cfg(all(feature = "cluster", feature = "cuda"))]
            Workers::ClusterGpus(c) => c.size() as usize,
        }
    }
}

/// Settings of a data-parallel run.
#[derive(Clone, Copy, Debug)]
pub struct DataParallelOptions {
    /// Samples per step over all workers (split evenly between them).
    pub global_batch: usize,
    /// Gradient bytes per all-reduce bucket (PyTorch's default is 25 MiB).
    pub bucket_bytes: usize,
    /// Seed of the initial parameters (drawn on worker 0, then broadcast).
    pub seed: u64,
}

/// One global batch: named inputs, each `global_batch` rows.
type Batch = Arc<Vec<(String, Vec<f32>)>>;

enum Command {
    Step(Batch),
    Params,
}

enum Reply {
    Loss(f32),
    Params(NamedParams),
}

struct WorkerThread {
    commands: Sender<Command>,
    replies: Receiver<Result<Reply>>,
    thread: Option<JoinHandle<()>>,
}

enum Engine {
    Threads(Vec<WorkerThread>),
    /// This process's worker, a rank of a cluster.
    #[cfg(feature = "cluster")]
    Local(Box<Replica>),
}

/// A data-parallel trainer (see the [module docs](self)).
pub struct DataParallel {
    options: DataParallelOptions,
    workers: usize,
    engine: Engine,
}

impl DataParallel {
    /// Replicates the step that `build(local_batch)` describes (a net and
    /// its scalar loss, the mean over the batch) over `workers`, with
    /// `optimizer`.
    pub fn new(
        workers: Workers,
        options: DataParallelOptions,
        optimizer: &dyn Optimizer,
        build: impl Fn(usize) -> Result<(Net, Tensor)>,
    ) -> Result<DataParallel> {
        let n = workers.count();
        if n == 0 || !options.global_batch.is_multiple_of(n) {
            return Err(Error::Batch(format!(
                "a global batch of {} does not split evenly over {n} workers",
                options.global_batch
            )));
        }
        let (net, loss) = build(options.global_batch / n)?;
        let step = net.data_parallel_step(loss, optimizer, options.bucket_bytes)?;
        let seed = options.seed;
        Self::with_workers(
            workers,
            ParallelGroup::Data,
            |_| Ok((step.clone(), Start::Broadcast(seed))),
            true,
            options,
        )
    }

    /// `workers` in one ring of `group`, each running the step and start
    /// `step_for(rank)` gives, on its share of every batch (`split`) or on
    /// all of it.
    pub(crate) fn with_workers(
        workers: Workers,
        group: ParallelGroup,
        step_for: impl Fn(usize) -> Result<(Net, Start)>,
        split: bool,
        options: DataParallelOptions,
    ) -> Result<DataParallel> {
        let plan = |r: usize, n: usize, link: Link, place: Place| {
            let (step, start) = step_for(r)?;
            Ok::<_, Error>(WorkerPlan {
                step,
                start,
                rings: vec![(group, link)],
                share: split.then_some((r, n)),
                place,
            })
        };
        // This process as rank `r` of a cluster, working at `place`.
        #[cfg(feature = "cluster")]
        let on_rank = |cluster: Arc<Cluster>, place: Place| {
            let (r, n) = (cluster.rank() as usize, cluster.size() as usize);
            let link = Link::Ring(Box::new(ClusterRing::new(cluster)));
            let replica = Replica::new(plan(r, n, link, place)?, r)?;
            Ok(DataParallel {
                options,
                workers: n,
                engine: Engine::Local(Box::new(replica)),
            })
        };
        match workers {
            #[cfg(feature = "cluster")]
            Workers::Cluster(cluster) => on_rank(cluster, Place::Cores),
            #[cfg(all(feature = "cluster", feature = "cuda"))]
            Workers::ClusterGpus(cluster) => {
                let r = cluster.rank() as usize;
                let found = dagger_cuda::gpus()?;
                if found.is_empty() {
                    return Err(Error::Gpus(format!(
                        "rank {r} was to train on a GPU, but its machine has none"
                    )));
                }
                on_rank(cluster, Place::Gpu(r % found.len()))
            }
            Workers::Threads(n) => {
                let plans = thread_ring(n)
                    .into_iter()
                    .enumerate()
                    .map(|(r, link)| plan(r, n, Link::Ring(Box::new(link)), Place::Cores))
                    .collect::<Result<Vec<_>>>()?;
                Self::on_threads(plans, options)
            }
            #[cfg(feature = "cuda")]
            Workers::Gpus(n) => {
                let found = dagger_cuda::gpus()?;
                if found.len() < n {
                    return Err(Error::Gpus(format!(
                        "{n} GPU workers asked for, but this machine has {} GPU(s)",
                        found.len()
                    )));
                }
                let id = new_nccl_id()?;
                let gate = NcclGate::new(n);
                let plans = (0..n)
                    .map(|r| {
                        let link = Link::Nccl {
                            id,
                            rank: r,
                            size: n,
                            gate: gate.clone(),
                        };
                        plan(r, n, link, Place::Gpu(r))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Self::on_threads(plans, options)
            }
        }
    }

    /// One thread per plan; the plans' rings must connect them.
    pub(crate) fn on_threads(
        plans: Vec<WorkerPlan>,
        options: DataParallelOptions,
    ) -> Result<DataParallel> {
        let n = plans.len();
        let threads = plans
            .into_iter()
            .enumerate()
            .map(|(r, plan)| spawn_worker(r, plan))
            .collect::<Result<Vec<_>>>()?;
        Ok(DataParallel {
            options,
            workers: n,
            engine: Engine::Threads(threads),
        })
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// One training step on a global batch: each named input holds
    /// `global_batch` rows; worker `r` trains on the `r`-th share. Returns
    /// the loss averaged over the workers.
    pub fn step(&mut self, batch: &[(&str, &[f32])]) -> Result<f32> {
        for (name, data) in batch {
            if !data.len().is_multiple_of(self.options.global_batch) {
                return Err(Error::Batch(format!(
                    "input `{name}` has {} values, not a whole number of rows for a batch of {}",
                    data.len(),
                    self.options.global_batch
                )));
            }
        }
        match &mut self.engine {
            #[cfg(feature = "cluster")]
            Engine::Local(replica) => {
                let owned: Vec<(String, Vec<f32>)> = batch
                    .iter()
                    .map(|(n, d)| (n.to_string(), d.to_vec()))
                    .collect();
                replica.step(&owned)
            }
            Engine::Threads(threads) => {
                let shared: Batch = Arc::new(
                    batch
                        .iter()
                        .map(|(n, d)| (n.to_string(), d.to_vec()))
                        .collect(),
                );
                for (r, w) in threads.iter().enumerate() {
                    w.commands
                        .send(Command::Step(shared.clone()))
                        .map_err(|_| Error::WorkerLost(r, "its thread ended".into()))?;
                }
                // Every worker answers (none waits for a failed peer: see
                // `replica`), so the replies of a step never outlive it.
                let replies = threads
                    .iter()
                    .enumerate()
                    .map(|(r, w)| match w.replies.recv() {
                        Ok(Ok(Reply::Loss(l))) => Ok(l),
                        Ok(Ok(Reply::Params(_))) => unreachable!("a step replies with its loss"),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(Error::WorkerLost(r, "its thread ended".into())),
                    });
                let losses = first_cause(replies.collect(), |e| matches!(e, Error::PeerFailed(_)))?;
                Ok(losses[0])
            }
        }
    }

    /// The parameters (worker 0's; every replica holds the same).
    pub fn params(&self) -> Result<NamedParams> {
        self.worker_params(0)
    }

    /// Whether this process is one worker of a cluster (not all of them).
    pub(crate) fn is_local(&self) -> bool {
        match self.engine {
            Engine::Threads(_) => false,
            #[cfg(feature = "cluster")]
            Engine::Local(_) => true,
        }
    }

    /// Worker `r`'s parameters (this process's, for a cluster).
    pub(crate) fn worker_params(&self, r: usize) -> Result<NamedParams> {
        match &self.engine {
            #[cfg(feature = "cluster")]
            Engine::Local(replica) => replica.params(),
            Engine::Threads(threads) => {
                let lost = |why: &str| Error::WorkerLost(r, why.into());
                let w = threads
                    .get(r)
                    .ok_or_else(|| lost("there is no such worker"))?;
                w.commands
                    .send(Command::Params)
                    .map_err(|_| lost("its thread ended"))?;
                match w.replies.recv() {
                    Ok(Ok(Reply::Params(p))) => Ok(p),
                    Ok(Err(e)) => Err(e),
                    _ => Err(lost("no parameters came back")),
                }
            }
        }
    }
}

/// Starts worker `rank`'s thread, which builds its replica (all workers
/// together: the parameter broadcast needs every one) and then serves
/// commands; a failure to build comes back as the first reply.
fn spawn_worker(rank: usize, plan: WorkerPlan) -> Result<WorkerThread> {
    let (commands, inbox) = channel::<Command>();
    let (outbox, replies) = channel::<Result<Reply>>();
    let thread = std::thread::Builder::new()
        .name(format!("dagger-dp-worker-{rank}"))
        .spawn(move || {
            let mut replica = match Replica::new(plan, rank) {
                Ok(r) => r,
                Err(e) => {
                    let _ = outbox.send(Err(e));
                    return;
                }
            };
            for command in inbox {
                let reply = match command {
                    Command::Step(batch) => replica.step(&batch).map(Reply::Loss),
                    Command::Params => replica.params().map(Reply::Params),
                };
                if outbox.send(reply).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| Error::WorkerLost(rank, e.to_string()))?;
    Ok(WorkerThread {
        commands,
        replies,
        thread: Some(thread),
    })
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        // Closing the command channel ends the thread's loop.
        let (closed, _) = channel();
        self.commands = closed;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
