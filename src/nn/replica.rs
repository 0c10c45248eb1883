//! One worker of a parallel trainer: its training step compiled for the
//! cores ([`Program`]) or for a GPU ([`GpuProgram`]), its rings, and its
//! share of each batch.
//!
//! A GPU worker's rings are NCCL groups: joining one blocks until every
//! rank has joined, so a worker that failed to build would leave the others
//! waiting forever. Every rank of an NCCL group therefore first reports
//! whether it built its program at a [`BuildGate`], and only joins when all
//! of them did.

use super::data_parallel::{DataParallelError, NamedParams};
use super::net::Net;
use dagger_cuda::nccl::{NcclId, NcclRank};
use dagger_cuda::program::{GpuProgram, GpuProgramError};
use dagger_cuda::GpuDevice;
use dagger_ir::tensor::{FuseOptions, ParallelGroup};
use dagger_runtime::tensor::{CompileOptions, Program, RingLink};
use std::sync::{Arc, Condvar, Mutex};

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
    Nccl {
        id: NcclId,
        rank: usize,
        size: usize,
        gate: Arc<BuildGate>,
    },
}

/// Where a worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// The cores of this process.
    Cores,
    /// The GPU of this ordinal.
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

/// Where the workers of an NCCL group say whether they built their
/// programs; each waits until all have (see the [module docs](self)).
pub(crate) struct BuildGate {
    workers: usize,
    /// How many arrived, and whether one failed.
    state: Mutex<(usize, bool)>,
    all_arrived: Condvar,
}

impl BuildGate {
    /// A gate for `workers` workers.
    pub(crate) fn new(workers: usize) -> Arc<BuildGate> {
        Arc::new(BuildGate {
            workers,
            state: Mutex::new((0, false)),
            all_arrived: Condvar::new(),
        })
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

/// The step compiled for where it runs.
enum Compiled {
    Cores(Box<Program>),
    Gpu(Box<GpuProgram>),
}

impl Compiled {
    fn new(step: &Net, place: Place) -> Result<Compiled, DataParallelError> {
        Ok(match place {
            Place::Cores => {
                Compiled::Cores(Box::new(Program::compile(step, CompileOptions::default())?))
            }
            Place::Gpu(ordinal) => {
                // Streams: compute, host copies, collectives.
                let gpu = GpuDevice::open(ordinal, 3).map_err(GpuProgramError::from)?;
                Compiled::Gpu(Box::new(GpuProgram::compile(
                    step,
                    &gpu,
                    FuseOptions::default(),
                )?))
            }
        })
    }

    fn set(&mut self, name: &str, data: &[f32]) -> Result<(), DataParallelError> {
        match self {
            Compiled::Cores(p) => p.set(name, data)?,
            Compiled::Gpu(p) => p.set(name, data)?,
        }
        Ok(())
    }

    fn connect(&mut self, group: ParallelGroup, link: Link) -> Result<(), DataParallelError> {
        match (self, link) {
            (Compiled::Cores(p), Link::Ring(ring)) => p.set_ring(group, ring),
            (Compiled::Gpu(p), Link::Ring(ring)) => p.set_ring(group, ring),
            (Compiled::Gpu(p), Link::Nccl { id, rank, size, .. }) => {
                let gpu = p.device().clone();
                let nccl = NcclRank::join(&gpu, rank, size, id).map_err(GpuProgramError::from)?;
                p.set_nccl(group, nccl);
            }
            (Compiled::Cores(_), Link::Nccl { .. }) => {
                unreachable!("NCCL groups are made for GPU workers only")
            }
        }
        Ok(())
    }

    fn broadcast_params(&mut self) -> Result<(), DataParallelError> {
        match self {
            Compiled::Cores(p) => p.broadcast_params()?,
            Compiled::Gpu(p) => p.broadcast_params()?,
        }
        Ok(())
    }
}

/// A worker's compiled step and its share of each batch.
pub(crate) struct Replica {
    compiled: Compiled,
    share: Option<(usize, usize)>,
}

impl Replica {
    /// Compiles the plan's step where it runs, sets its parameters and
    /// joins its rings.
    pub(crate) fn new(plan: WorkerPlan) -> Result<Replica, DataParallelError> {
        let WorkerPlan {
            step,
            start,
            rings,
            share,
            place,
        } = plan;
        let built = Compiled::new(&step, place).and_then(|mut compiled| {
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
        for (_, link) in &rings {
            if let Link::Nccl { gate, rank, .. } = link {
                if !gate.arrive(built.is_ok()) && built.is_ok() {
                    return Err(DataParallelError::WorkerLost(
                        *rank,
                        "another GPU worker of its NCCL group failed to build".into(),
                    ));
                }
            }
        }
        let mut compiled = built?;
        for (group, link) in rings {
            compiled.connect(group, link)?;
        }
        if let Start::Broadcast(_) = start {
            compiled.broadcast_params()?;
        }
        Ok(Replica { compiled, share })
    }

    /// One step on this worker's share of `batch`; returns its loss.
    pub(crate) fn step(&mut self, batch: &[(String, Vec<f32>)]) -> Result<f32, DataParallelError> {
        for (name, data) in batch {
            let mine = match self.share {
                Some((index, parts)) => {
                    let len = data.len() / parts;
                    &data[index * len..(index + 1) * len]
                }
                None => &data[..],
            };
            self.compiled.set(name, mine)?;
        }
        match &mut self.compiled {
            Compiled::Cores(p) => {
                p.run()?;
                Ok(p.output(0)[0])
            }
            Compiled::Gpu(p) => {
                p.run()?;
                Ok(p.output(0)?[0])
            }
        }
    }

    /// The parameters by name, in graph order.
    pub(crate) fn params(&self) -> Result<NamedParams, DataParallelError> {
        match &self.compiled {
            Compiled::Cores(p) => Ok(p
                .params()
                .into_iter()
                .map(|(n, _, d)| (n.to_string(), d.to_vec()))
                .collect()),
            Compiled::Gpu(p) => Ok(p.params()?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrive_all(built: [bool; 3]) -> Vec<bool> {
        let gate = BuildGate::new(3);
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
    fn the_gate_opens_when_every_worker_built_and_tells_all_when_one_did_not() {
        assert_eq!(arrive_all([true; 3]), [true; 3]);
        assert_eq!(arrive_all([true, false, true]), [false; 3]);
    }
}
