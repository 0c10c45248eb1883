//! Why a call of this crate failed: one [`Error`] for building nets,
//! lowering task graphs, saving and loading parameters, and every training
//! front end (data, pipeline and tensor parallelism).

#[cfg(feature = "cuda")]
use dagger_cuda::CudaError;
use dagger_tensor::{BackendError, ProgramError, TensorError};

/// A result of this crate: [`Error`] on failure.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a call of this crate failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor graph is wrong or was fed wrong data (an op's shapes, an
    /// unknown name, a wrong element count), or building or running its
    /// program failed, on whichever backend.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Finding GPUs or joining an NCCL group failed.
    #[cfg(feature = "cuda")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cuda")))]
    #[error(transparent)]
    Cuda(#[from] CudaError),
    /// Fewer GPUs than workers asked for.
    #[cfg(feature = "cuda")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cuda")))]
    #[error("{0}")]
    Gpus(String),
    /// The batch or the model does not split over a data- or
    /// tensor-parallel trainer's workers.
    #[error("{0}")]
    Batch(String),
    /// A data- or tensor-parallel worker's thread stopped.
    #[error("worker {0} stopped: {1}")]
    WorkerLost(usize, String),
    /// A worker gave up because another worker of its NCCL group failed
    /// (that worker's error says why).
    #[error("worker {0} stopped: another GPU worker of its NCCL group failed")]
    PeerFailed(usize),
    /// A worker was called after a step of it failed in the middle of its
    /// run (its rings are out of step, so it trains no more).
    #[error("worker {0} stopped at an earlier step: {1}")]
    Stopped(usize, String),
    /// A pipeline's (or a strategy's) settings do not fit the model or
    /// the batch.
    #[error("{0}")]
    Settings(String),
    /// Planning a GPT's split: no split fits the memory of the platform's
    /// GPUs.
    #[error(
        "no split of the model fits a {device} of {available} bytes: the least hungry, \
         {split}, needs {needed} bytes a GPU"
    )]
    NoSplitFits {
        /// The GPU.
        device: String,
        /// Bytes each GPU has.
        available: u64,
        /// The split that needs the least memory.
        split: String,
        /// Bytes it needs a GPU.
        needed: u64,
    },
    /// A pipeline stage's thread stopped, or its links or ring failed.
    #[error("stage {0} stopped: {1}")]
    StageLost(usize, String),
    /// Lowering: a dag input without a shape, or not an `Array`.
    #[error("dag input `{name}`: {detail}")]
    Input {
        /// The input.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// Lowering: a node that is not a tensor op task.
    #[error("node {node}: {detail}")]
    NotAnOp {
        /// The node.
        node: String,
        /// What it is instead.
        detail: String,
    },
    /// Lowering: the task graph itself is malformed (a cycle).
    #[error(transparent)]
    Graph(#[from] Box<dagger_ir::IrError>),
    /// Saving or loading parameters: reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// Saving or loading parameters: the file is not valid safetensors.
    #[error("{path}: not a safetensors file: {detail}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// Loading parameters: a tensor of the file does not fit the program's
    /// parameter of that name.
    #[error("{path}: tensor `{name}` {detail}")]
    Mismatch {
        /// The file.
        path: String,
        /// The tensor.
        name: String,
        /// What does not fit.
        detail: String,
    },
}

impl From<TensorError> for Error {
    fn from(e: TensorError) -> Self {
        Error::Backend(e.into())
    }
}

impl From<ProgramError> for Error {
    fn from(e: ProgramError) -> Self {
        Error::Backend(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_and_program_errors_are_one_variant_with_their_own_message() {
        let fed = || TensorError::NotFed("x".into());
        let shown = fed().to_string();
        for e in [Error::from(fed()), Error::from(ProgramError::from(fed()))] {
            assert!(
                matches!(
                    e,
                    Error::Backend(BackendError::Tensor(TensorError::NotFed(_)))
                ),
                "{e:?}"
            );
            assert_eq!(e.to_string(), shown);
        }
    }
}
