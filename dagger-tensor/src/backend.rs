//! The backend seam: a [`Backend`] compiles a tensor graph into an
//! [`Executable`] for its device, and every executable is fed, run and read
//! the same way, whichever device holds its buffers.
//!
//! This is the split burn and luminal make: the tensor IR and its passes know
//! nothing of devices; a backend crate supplies the kernels. The CPU backend
//! ([`CpuBackend`], the Cranelift-JIT [`Program`]) lives here; the CUDA one
//! (`dagger_cuda::backend::CudaBackend`, its `GpuProgram`) implements the
//! same two traits. Code above them (the trainers, the tests that compare
//! devices) holds a `Box<dyn Executable>` and never matches on the device.
//!
//! What is device-specific stays on the concrete types: a CPU program lends
//! its buffers (`Program::get` returns a slice); a GPU program joins NCCL
//! groups (`GpuProgram::set_nccl`, reached through
//! [`Executable::as_any_mut`]).
//!
//! # Examples
//!
//! ```
//! use dagger_tensor::{Backend, CpuBackend, Executable, TensorGraph};
//!
//! let mut g = TensorGraph::new();
//! let x = g.input("x", [2, 2]);
//! let y = g.add(x, x).unwrap();
//! g.set_outputs(vec![y]).unwrap();
//! let mut exe: Box<dyn Executable> = Box::new(CpuBackend::default().compile(&g).unwrap());
//! exe.set("x", &[1.0, 2.0, 3.0, 4.0]).unwrap();
//! exe.run().unwrap();
//! assert_eq!(exe.read_output(0).unwrap(), [2.0, 4.0, 6.0, 8.0]);
//! ```

use crate::cpu::collective::RingLink;
use crate::cpu::program::{CompileOptions, Program, ProgramError, ProgramStats};
use crate::{ParallelGroup, TensorError, TensorGraph};
use std::any::Any;

/// Why a backend could not compile or run a graph.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The graph is wrong, or was fed wrong data (the same on every
    /// backend: an unknown name, a wrong element count, an input not fed).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The device failed, or has no kernel for the graph.
    #[error("{backend}: {source}")]
    Device {
        /// The backend, as [`Backend::name`] gives it.
        backend: String,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A device that runs tensor graphs: it compiles them into executables.
pub trait Backend {
    /// The compiled graph.
    type Executable: Executable + 'static;

    /// The backend's name in errors and reports (`cpu`, `cuda:0`).
    fn name(&self) -> String;

    /// Runs the tensor passes on `graph` and compiles the result for this
    /// backend's device.
    fn compile(&self, graph: &TensorGraph) -> Result<Self::Executable, BackendError>;
}

/// A tensor graph compiled for one device: fed by name, run, read back.
///
/// Reads copy to host memory (and so wait for the queued runs on devices
/// that queue them). Not `Send` as such, so that a backend may hold what
/// must stay on its thread; ask for `dyn Executable + Send` where one must
/// move (`Program` and `GpuProgram` both are, as a lowered step's segments
/// need: `task_step::SegmentBackend`).
pub trait Executable {
    /// The graph as compiled (after the passes).
    fn graph(&self) -> &TensorGraph;

    /// What compiling did.
    fn stats(&self) -> &ProgramStats;

    /// Feeds an input, or sets a parameter, by name.
    fn set(&mut self, name: &str, data: &[f32]) -> Result<(), BackendError>;

    /// Runs the graph once, then applies its parameter updates (devices
    /// that queue work may return before the run ends: see
    /// [`finish_or`](Executable::finish_or)).
    fn run(&mut self) -> Result<(), BackendError>;

    /// Waits until the queued runs are done, or until `give_up()` (asked
    /// while waiting) says to stop; returns whether they are done. Devices
    /// that run synchronously are always done.
    fn finish_or(&self, give_up: &dyn Fn() -> bool) -> Result<bool, BackendError> {
        let _ = give_up;
        Ok(true)
    }

    /// The current value of an input or parameter.
    fn read(&self, name: &str) -> Result<Vec<f32>, BackendError>;

    /// The `k`-th output of the last run.
    fn read_output(&self, k: usize) -> Result<Vec<f32>, BackendError>;

    /// The parameters by name, with their current values, in graph order.
    fn params(&self) -> Result<Vec<(String, Vec<f32>)>, BackendError>;

    /// Makes this executable one worker of the host ring `link` for
    /// `group`: its all-reduce nodes of that group reduce over the ring.
    fn set_ring(&mut self, group: ParallelGroup, link: Box<dyn RingLink>);

    /// Gives every worker of the data-parallel ring worker 0's parameters.
    fn broadcast_params(&mut self) -> Result<(), BackendError>;

    /// The concrete executable, for what only its device offers.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The cores of this process: tensor graphs JIT-compiled by Cranelift, the
/// products by faer ([`Program`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend {
    /// How the graph is compiled.
    pub options: CompileOptions,
}

impl Backend for CpuBackend {
    type Executable = Program;

    fn name(&self) -> String {
        "cpu".into()
    }

    fn compile(&self, graph: &TensorGraph) -> Result<Program, BackendError> {
        Program::compile(graph, self.options).map_err(BackendError::from)
    }
}

impl From<ProgramError> for BackendError {
    fn from(e: ProgramError) -> Self {
        match e {
            ProgramError::Tensor(e) => BackendError::Tensor(e),
            ProgramError::Jit(e) => BackendError::Device {
                backend: "cpu".into(),
                source: Box::new(e),
            },
        }
    }
}

impl Executable for Program {
    fn graph(&self) -> &TensorGraph {
        Program::graph(self)
    }

    fn stats(&self) -> &ProgramStats {
        Program::stats(self)
    }

    fn set(&mut self, name: &str, data: &[f32]) -> Result<(), BackendError> {
        Ok(Program::set(self, name, data)?)
    }

    fn run(&mut self) -> Result<(), BackendError> {
        Ok(Program::run(self)?)
    }

    fn read(&self, name: &str) -> Result<Vec<f32>, BackendError> {
        Ok(self.get(name)?.to_vec())
    }

    fn read_output(&self, k: usize) -> Result<Vec<f32>, BackendError> {
        Ok(self.output(k).to_vec())
    }

    fn params(&self) -> Result<Vec<(String, Vec<f32>)>, BackendError> {
        Ok(Program::params(self)
            .into_iter()
            .map(|(name, _, data)| (name.to_string(), data.to_vec()))
            .collect())
    }

    fn set_ring(&mut self, group: ParallelGroup, link: Box<dyn RingLink>) {
        Program::set_ring(self, group, link)
    }

    fn broadcast_params(&mut self) -> Result<(), BackendError> {
        Ok(Program::broadcast_params(self)?)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::jit::JitError;

    #[test]
    fn a_jit_failure_names_the_cpu_backend_and_a_bad_feed_stays_a_tensor_error() {
        let mut g = TensorGraph::new();
        let x = g.input("x", [3]);
        g.set_outputs(vec![x]).unwrap();
        let mut exe = CpuBackend::default().compile(&g).unwrap();
        let fed = Executable::set(&mut exe, "x", &[1.0]).unwrap_err();
        assert!(
            matches!(&fed, BackendError::Tensor(TensorError::WrongData { .. })),
            "{fed}"
        );
        let missing = Executable::read(&exe, "nope").unwrap_err().to_string();
        assert!(missing.contains("nope"), "{missing}");
        let jit = BackendError::from(ProgramError::Jit(JitError("no code".into())));
        assert_eq!(
            jit.to_string(),
            "cpu: Cranelift could not compile a fused kernel: no code"
        );
    }
}
