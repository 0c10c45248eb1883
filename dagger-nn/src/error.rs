//! Why training failed: the errors of the training front ends that
//! replicate a step over workers (data parallelism; the pipeline's and
//! tensor parallelism's own errors wrap them).

#[cfg(feature = "cuda")]
use dagger_cuda::CudaError;
use dagger_tensor::{BackendError, ProgramError, TensorError};

/// Why a data-parallel run failed.
#[derive(Debug, thiserror::Error)]
pub enum DataParallelError {
    /// Building or running a replica failed, on whichever backend.
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
    /// The batch does not split over the workers.
    #[error("{0}")]
    Batch(String),
    /// A worker thread stopped.
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
}

impl From<TensorError> for DataParallelError {
    fn from(e: TensorError) -> Self {
        DataParallelError::Backend(e.into())
    }
}

impl From<ProgramError> for DataParallelError {
    fn from(e: ProgramError) -> Self {
        DataParallelError::Backend(e.into())
    }
}

/// Why a pipeline run failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Building or running a stage's program failed.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// The settings do not fit the model or the batch.
    #[error("{0}")]
    Settings(String),
    /// A stage's thread stopped.
    #[error("stage {0} stopped: {1}")]
    StageLost(usize, String),
}

impl From<TensorError> for PipelineError {
    fn from(e: TensorError) -> Self {
        PipelineError::Program(e.into())
    }
}
