//! A GPU as a tensor backend: [`CudaBackend`] compiles tensor graphs into
//! [`GpuProgram`]s, which implement the runtime's
//! [`Executable`], so code written
//! against the [`Backend`] seam runs a graph on the cores or on a GPU alike.
//!
//! # Examples
//!
//! ```
//! use dagger_cuda::backend::CudaBackend;
//! use dagger_tensor::{Backend, CpuBackend, Executable, TensorGraph};
//!
//! let mut g = TensorGraph::new();
//! let x = g.input("x", [4]);
//! let y = g.mul(x, x).unwrap();
//! g.set_outputs(vec![y]).unwrap();
//! // A GPU where there is one, else the cores.
//! let mut exe: Box<dyn Executable> = match CudaBackend::open(0) {
//!     Ok(gpu) => Box::new(gpu.compile(&g).unwrap()),
//!     Err(_) => Box::new(CpuBackend::default().compile(&g).unwrap()),
//! };
//! exe.set("x", &[1.0, 2.0, 3.0, 4.0]).unwrap();
//! exe.run().unwrap();
//! assert_eq!(exe.read_output(0).unwrap(), [1.0, 4.0, 9.0, 16.0]);
//! ```

use crate::program::{GpuProgram, GpuProgramError};
use crate::{CudaError, GpuDevice};
use dagger_tensor::{
    Backend, BackendError, Executable, FuseOptions, ParallelGroup, ProgramStats, RingLink,
    TensorGraph,
};
use std::any::Any;

/// One GPU: tensor graphs compiled to cuBLAS calls and NVRTC kernels.
#[derive(Clone)]
pub struct CudaBackend {
    /// The GPU (three streams: compute, host copies, collectives).
    pub gpu: GpuDevice,
    /// Options of the fusion pass.
    pub fuse: FuseOptions,
}

impl CudaBackend {
    /// GPU `ordinal` with its three streams, default fusion.
    pub fn open(ordinal: usize) -> Result<CudaBackend, CudaError> {
        Ok(CudaBackend {
            gpu: GpuDevice::open(ordinal, 3)?,
            fuse: FuseOptions::default(),
        })
    }
}

impl Backend for CudaBackend {
    type Executable = GpuProgram;

    fn name(&self) -> String {
        format!("cuda:{}", self.gpu.ordinal())
    }

    fn compile(&self, graph: &TensorGraph) -> Result<GpuProgram, BackendError> {
        GpuProgram::compile(graph, &self.gpu, self.fuse)
            .map_err(|e| device_error(self.gpu.ordinal(), e))
    }
}

/// `e` as a backend error: a graph or feeding error as such, the rest
/// naming GPU `ordinal`.
fn device_error(ordinal: usize, e: GpuProgramError) -> BackendError {
    match e {
        GpuProgramError::Tensor(e) => BackendError::Tensor(e),
        other => BackendError::Device {
            backend: format!("cuda:{ordinal}"),
            source: Box::new(other),
        },
    }
}

impl Executable for GpuProgram {
    fn graph(&self) -> &TensorGraph {
        GpuProgram::graph(self)
    }

    fn stats(&self) -> &ProgramStats {
        GpuProgram::stats(self)
    }

    fn set(&mut self, name: &str, data: &[f32]) -> Result<(), BackendError> {
        GpuProgram::set(self, name, data).map_err(|e| device_error(self.device().ordinal(), e))
    }

    fn run(&mut self) -> Result<(), BackendError> {
        GpuProgram::run(self).map_err(|e| device_error(self.device().ordinal(), e))
    }

    fn finish_or(&self, give_up: &dyn Fn() -> bool) -> Result<bool, BackendError> {
        self.wait_or(give_up)
            .map_err(|e| device_error(self.device().ordinal(), e))
    }

    fn read(&self, name: &str) -> Result<Vec<f32>, BackendError> {
        self.get(name)
            .map_err(|e| device_error(self.device().ordinal(), e))
    }

    fn read_output(&self, k: usize) -> Result<Vec<f32>, BackendError> {
        self.output(k)
            .map_err(|e| device_error(self.device().ordinal(), e))
    }

    fn params(&self) -> Result<Vec<(String, Vec<f32>)>, BackendError> {
        GpuProgram::params(self).map_err(|e| device_error(self.device().ordinal(), e))
    }

    fn set_ring(&mut self, group: ParallelGroup, link: Box<dyn RingLink>) {
        GpuProgram::set_ring(self, group, link)
    }

    fn broadcast_params(&mut self) -> Result<(), BackendError> {
        GpuProgram::broadcast_params(self).map_err(|e| device_error(self.device().ordinal(), e))
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagger_tensor::TensorError;

    #[test]
    fn device_failures_name_the_gpu_and_graph_errors_stay_tensor_errors() {
        let no_kernel = GpuProgramError::NoGpuKernel {
            op: "custom(f)".into(),
        };
        assert_eq!(
            device_error(1, no_kernel).to_string(),
            "cuda:1: `custom(f)` has no GPU kernel; run this graph with the CPU's Program"
        );
        let fed = device_error(0, TensorError::NotFed("x".into()).into());
        assert!(matches!(fed, BackendError::Tensor(TensorError::NotFed(_))));
        let absent = CudaBackend::open(0).err().map(|e| e.to_string());
        if let Some(why) = absent {
            println!("no GPU here: {why}");
        }
    }
}
