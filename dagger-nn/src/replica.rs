//! One worker of a parallel trainer: its training step compiled by a
//! [`Backend`] (the cores' [`CpuBackend`] or, with the `cuda` feature, a
//! GPU's `CudaBackend`) into an [`Executable`], its rings, and its share of
//! each batch.
//!
//! A GPU worker's rings are NCCL groups, and an NCCL collective waits for
//! every rank without a time limit: a rank that fails leaves the others
//! waiting forever. The workers of a group therefore share an [`NcclGate`]:
//! - joining a group blocks until every rank has joined, so every rank
//!   first reports whether it built its program at the gate, and only joins
//!   when all of them did;
//! - a worker whose step fails once its collectives may be queued (or whose
//!   replica is dropped, a panic included) raises the gate's alarm, drops
//!   its program, which aborts its communicators (`ncclCommAbort`), and
//!   answers every later call with why it stopped. The others wait for
//!   their steps polling the alarm
//!   ([`Executable::finish_or`]), give up when it is raised and stop the
//!   same way, which aborts their stuck collectives: the run ends with the
//!   first worker's error, and nobody hangs.

use super::error::{Error, Result};
use super::io::NamedParams;
use super::net::Net;
#[cfg(feature = "cuda")]
use dagger_cuda::{
    backend::CudaBackend,
    nccl::{NcclId, NcclRank},
    program::GpuProgram,
};
use dagger_tensor::{Backend, CpuBackend, Executable, ParallelGroup, RingLink};
#[cfg(feature = "cuda")]
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Condvar, Mutex,
};

/// How a replica's parameters start.
#[derive(Clone)]
pub(crate) enum Start {
    /// Drawn from this seed on worker 0 and broadcast (data parallel).
    Broadcast(u64),
    /// These values, the worker's own (a tensor-parallel shard).
    Values(NamedParams),
}

/// How a worker reaches the others of one group.
pub(crate) enum Link {
    /// A ring of host workers (threads, cluster ranks).
    Ring(Box<dyn RingLink>),
    /// Rank `rank` of an NCCL group of `size` GPUs named `id`.
    #[cfg(feature = "cuda")]
    Nccl {
        id: NcclId,
        rank: usize,
        size: usize,
        gate: Arc<NcclGate>,
    },
}

/// Where a worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// The cores of this process.
    Cores,
    /// The GPU of this ordinal.
    #[cfg(feature = "cuda")]
    Gpu(usize),
}

/// What one worker runs: its step, how its parameters start, the rings
/// it is in, and its share of each batch.
pub(crate) struct WorkerPlan {
    /// The training step.
    pub step: Net,
    /// How its parameters start.
    pub start: Start,
    /// Its link in each group it belongs to.
    pub rings: Vec<(ParallelGroup, Link)>,
    /// `(index, parts)`: it trains on rows part `index` of `parts` of each
    /// batch; `None`: on all of it.
    pub share: Option<(usize, usize)>,
    /// Where it runs.
    pub place: Place,
}

/// What the workers of one NCCL group share: where they say whether they
/// built their programs, and the alarm one raises when it stops (see the
/// [module docs](self)).
#[cfg(feature = "cuda")]
pub(crate) struct NcclGate {
    workers: usize,
    /// How many arrived, and whether one failed to build.
    state: Mutex<(usize, bool)>,
    all_arrived: Condvar,
    /// A worker of the group stopped: the others' collectives cannot end.
    alarm: AtomicBool,
}

#[cfg(feature = "cuda")]
impl NcclGate {
    /// A gate for `workers` workers.
    pub(crate) fn new(workers: usize) -> Arc<NcclGate> {
        Arc::new(NcclGate {
            workers,
            state: Mutex::new((0, false)),
            all_arrived: Condvar::new(),
            alarm: AtomicBool::new(false),
        })
    }

    /// Tells the other workers that this one stopped.
    fn raise_alarm(&self) {
        self.alarm.store(true, Ordering::SeqCst);
    }

    /// Whether a worker of the group stopped.
    fn alarmed(&self) -> bool {
        self.alarm.load(Ordering::SeqCst)
    }

    /// Reports whether this worker `built`; returns whether every worker did.
    fn arrive(&self, built: bool) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 += 1;
        state.1 |= !built;
        self.all_arrived.notify_all();
        while state.0 < self.workers {
            state = self
                .all_arrived
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        !state.1
    }
}

/// The gates of the NCCL groups a worker is in (none without the `cuda`
/// feature, where there are no NCCL groups).
struct Gates(#[cfg(feature = "cuda")] Vec<Arc<NcclGate>>);

impl Gates {
    /// Reports at the gate of each NCCL group in `rings` whether this
    /// worker `built`; fails when it built but another worker did not.
    fn arrive(rings: &[(ParallelGroup, Link)], built: bool, worker: usize) -> Result<Gates> {
        #[cfg(feature = "cuda")]
        {
            let mut gates = Vec::new();
            for (_, link) in rings {
                if let Link::Nccl { gate, .. } = link {
                    if !gate.arrive(built) && built {
                        return Err(Error::PeerFailed(worker));
                    }
                    gates.push(gate.clone());
                }
            }
            Ok(Gates(gates))
        }
        #[cfg(not(feature = "cuda"))]
        {
            // Every link is a host ring: nobody to wait for.
            let _ = (rings, built, worker);
            Ok(Gates())
        }
    }

    /// Whether a worker of one of the groups stopped.
    fn alarmed(&self) -> bool {
        #[cfg(feature = "cuda")]
        {
            self.0.iter().any(|g| g.alarmed())
        }
        #[cfg(not(feature = "cuda"))]
        {
            false
        }
    }

    /// Tells the other workers of every group that this one stopped.
    fn raise_alarms(&self) {
        #[cfg(feature = "cuda")]
        for gate in &self.0 {
            gate.raise_alarm();
        }
    }
}

/// Compiles `step` for `place`, behind the backend seam.
fn compile(step: &Net, place: Place) -> Result<Box<dyn Executable>> {
    Ok(match place {
        Place::Cores => Box::new(CpuBackend::default().compile(step)?),
        #[cfg(feature = "cuda")]
        Place::Gpu(ordinal) => Box::new(CudaBackend::open(ordinal)?.compile(step)?),
    })
}

/// Joins `compiled` to its group by `link`.
fn connect(compiled: &mut dyn Executable, group: ParallelGroup, link: Link) -> Result<()> {
    match link {
        Link::Ring(ring) => compiled.set_ring(group, ring),
        #[cfg(feature = "cuda")]
        Link::Nccl { id, rank, size, .. } => {
            let gpu = compiled
                .as_any_mut()
                .downcast_mut::<GpuProgram>()
                .expect("NCCL groups are made for GPU workers only");
            let nccl = NcclRank::join(&gpu.device().clone(), rank, size, id)?;
            gpu.set_nccl(group, nccl);
        }
    }
    Ok(())
}

/// A worker's compiled step and its share of each batch.
pub(crate) struct Replica {
    /// The step; once a step failed in the middle of its run, why (the
    /// program is dropped then, which aborts its NCCL communicators).
    compiled: std::result::Result<Box<dyn Executable>, String>,
    share: Option<(usize, usize)>,
    /// The gates of the NCCL groups it is in.
    gates: Gates,
    /// Its index among the trainer's workers.
    worker: usize,
}

impl Replica {
    /// Compiles the plan's step where it runs, sets its parameters and
    /// joins its rings; `worker` is its index among the trainer's workers
    /// (what its errors name).
    pub(crate) fn new(plan: WorkerPlan, worker: usize) -> Result<Replica> {
        let WorkerPlan {
            step,
            start,
            rings,
            share,
            place,
        } = plan;
        let built = compile(&step, place).and_then(|mut compiled| {
            // A shard's own values replace those of the parameters it has.
            let (seed, own) = match &start {
                Start::Broadcast(seed) => (*seed, &[][..]),
                Start::Values(values) => (0, &values[..]),
            };
            for (name, v) in step.initial_params(seed).iter().chain(own) {
                compiled.set(name, v)?;
            }
            Ok(compiled)
        });
        let gates = Gates::arrive(&rings, built.is_ok(), worker)?;
        // From here on, dropping the replica raises its gates' alarms.
        let mut replica = Replica {
            compiled: Ok(built?),
            share,
            gates,
            worker,
        };
        let compiled = replica.compiled.as_mut().expect("just built");
        for (group, link) in rings {
            connect(compiled.as_mut(), group, link)?;
        }
        if let Start::Broadcast(_) = start {
            compiled.broadcast_params()?;
        }
        Ok(replica)
    }

    /// One step on this worker's share of `batch`; returns its loss. A step
    /// that fails once it ran stops the replica (see the
    /// [module docs](self)).
    pub(crate) fn step(&mut self, batch: &[(String, Vec<f32>)]) -> Result<f32> {
        let share = self.share;
        let compiled = self.compiled.as_mut().map_err(stopped(self.worker))?;
        for (name, data) in batch {
            let mine = match share {
                Some((index, parts)) => {
                    let len = data.len() / parts;
                    &data[index * len..(index + 1) * len]
                }
                None => &data[..],
            };
            compiled.set(name, mine)?;
        }
        let alarmed = || self.gates.alarmed();
        let ran = match compiled.run().and_then(|()| compiled.finish_or(&alarmed)) {
            Ok(true) => compiled
                .read_output(0)
                .map(|out| out[0])
                .map_err(Into::into),
            Ok(false) => Err(Error::PeerFailed(self.worker)),
            Err(e) => Err(e.into()),
        };
        ran.inspect_err(|e| self.stop(e.to_string()))
    }

    /// Stops the replica after a failed step: raises its gates' alarms and
    /// drops its program.
    fn stop(&mut self, why: String) {
        self.gates.raise_alarms();
        self.compiled = Err(why);
    }

    /// The parameters by name, in graph order.
    pub(crate) fn params(&self) -> Result<NamedParams> {
        let compiled = self.compiled.as_ref().map_err(stopped(self.worker))?;
        Ok(compiled.params()?)
    }
}

/// The error of a call to `worker` after it stopped, for `why`.
fn stopped<Why: std::ops::Deref<Target = String>>(worker: usize) -> impl Fn(Why) -> Error {
    move |why| Error::Stopped(worker, why.clone())
}

impl Drop for Replica {
    /// A replica dropped (at the end, or by a panic) no longer answers its
    /// group's collectives: its peers must not wait for it.
    fn drop(&mut self) {
        self.gates.raise_alarms();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "cuda")]
    fn arrive_all(built: [bool; 3]) -> Vec<bool> {
        let gate = NcclGate::new(3);
        let threads: Vec<_> = built
            .into_iter()
            .map(|b| {
                let gate = gate.clone();
                std::thread::spawn(move || gate.arrive(b))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    #[test]
    #[cfg(feature = "cuda")]
    fn the_gate_opens_when_every_worker_built_and_tells_all_when_one_did_not() {
        assert_eq!(arrive_all([true; 3]), [true; 3]);
        assert_eq!(arrive_all([true, false, true]), [false; 3]);
    }

    /// Worker `rank` of 2 on the cores, on `link`: a linear layer on 4
    /// inputs and its mean squared error.
    fn cpu_plan(rank: usize, link: Box<dyn RingLink>) -> WorkerPlan {
        let mut net = Net::new();
        let x = net.input("x", [2, 4]);
        let y = net.input("y", [2, 1]);
        let out = net.mlp(x, &[1], crate::Activation::Tanh).unwrap();
        let loss = net.mse(out, y).unwrap();
        let optimizer = crate::Sgd { lr: 0.1 };
        WorkerPlan {
            step: net.data_parallel_step(loss, &optimizer, 1 << 20).unwrap(),
            start: Start::Broadcast(3),
            rings: vec![(ParallelGroup::Data, Link::Ring(link))],
            share: Some((rank, 2)),
            place: Place::Cores,
        }
    }

    #[test]
    fn a_step_that_fails_in_its_run_stops_the_replica_and_later_calls_say_why() {
        let mut links = dagger_tensor::thread_ring(2);
        let mine = cpu_plan(1, Box::new(links.pop().unwrap()));
        let other = cpu_plan(0, Box::new(links.pop().unwrap()));
        // Worker 0 builds (the broadcast needs both) and is gone at once.
        let gone = std::thread::spawn(move || drop(Replica::new(other, 0).unwrap()));
        let mut replica = Replica::new(mine, 1).unwrap();
        gone.join().unwrap();
        let batch = vec![
            ("x".to_string(), vec![0.5; 16]),
            ("y".to_string(), vec![1.0; 4]),
        ];
        let first = replica.step(&batch).unwrap_err().to_string();
        let again = replica.step(&batch).unwrap_err().to_string();
        assert!(first.contains("worker is gone"), "{first}");
        assert_eq!(
            again,
            format!("worker 1 stopped at an earlier step: {first}")
        );
        let params = replica.params().unwrap_err().to_string();
        assert_eq!(params, again);
    }

    #[test]
    fn feeding_an_unknown_input_leaves_the_replica_running() {
        let link = dagger_tensor::thread_ring(1).pop().unwrap();
        let mut replica = Replica::new(cpu_plan(0, Box::new(link)), 0).unwrap();
        replica.share = None;
        let wrong = vec![("z".to_string(), vec![0.5; 8])];
        let err = replica.step(&wrong).unwrap_err().to_string();
        assert!(err.contains("`z`"), "{err}");
        let batch = vec![
            ("x".to_string(), vec![0.5; 8]),
            ("y".to_string(), vec![1.0; 2]),
        ];
        assert!(replica.step(&batch).unwrap().is_finite());
    }

    #[test]
    #[cfg(feature = "cuda")]
    fn a_dropped_replica_raises_its_nccl_groups_alarm() {
        let gate = NcclGate::new(2);
        let replica = Replica {
            compiled: Err("a CUDA fault".into()),
            share: None,
            gates: Gates(vec![gate.clone()]),
            worker: 1,
        };
        assert!(!gate.alarmed());
        drop(replica);
        assert!(gate.alarmed(), "its peers must stop waiting for it");
    }
}
