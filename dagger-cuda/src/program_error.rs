//! [`GpuProgramError`]: why a tensor graph could not be compiled or run on
//! a GPU. Its own module, so that the program ([`crate::program`]) and its
//! gradient buckets ([`crate::buckets`]) can both return it without
//! importing each other.

use crate::CudaError;
use dagger_tensor::TensorError;

/// Why a graph could not be compiled or run on the GPU.
#[derive(Debug, thiserror::Error)]
pub enum GpuProgramError {
    /// The graph is wrong, or was fed wrong data.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A CUDA call failed.
    #[error(transparent)]
    Cuda(#[from] CudaError),
    /// An op with no GPU kernel (a custom op runs a CPU function).
    #[error("`{op}` has no GPU kernel; run this graph with the CPU's Program")]
    NoGpuKernel {
        /// The op.
        op: String,
    },
}
