//! Errors of building and running graphs.

use dagger_ir::IrError;

/// Why a run did not produce its result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// A task panicked or returned `Err`; the tasks depending on it were cancelled.
    #[error("task `{task}` failed: {message}")]
    TaskFailed {
        /// Registered name of the task.
        task: String,
        /// The panic message or the error's `Display`.
        message: String,
    },
    /// The graph did not pass the verifier or a pass failed.
    #[error("invalid graph: {0}")]
    Invalid(Box<IrError>),
    /// The graph calls a task that no `#[task]` in this binary registered.
    #[error("unknown task `{name}`: no #[task] of that name is registered in this binary")]
    UnknownTask {
        /// The name looked up.
        name: String,
    },
    /// A graph's signature for a task disagrees with the registered one.
    #[error("task `{name}` is registered as {registered} but the graph calls it as {in_graph}")]
    SignatureMismatch {
        /// The task.
        name: String,
        /// Registered signature.
        registered: String,
        /// Signature the graph uses.
        in_graph: String,
    },
    /// A value of the wrong type reached a task or an output.
    #[error("`{context}` expected a value of type {expected}, got {found}")]
    WrongType {
        /// Task (and argument) or output that received it.
        context: String,
        /// The type it needed.
        expected: String,
        /// The type it got.
        found: String,
    },
    /// The platform file named by `DAGGER_PLATFORM` cannot be used.
    #[error("platform file {path}: {message}")]
    Platform {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The graph cannot be run as it is (e.g. a constant only a file describes).
    #[error("cannot run graph: {0}")]
    Unsupported(String),
}

impl From<IrError> for RunError {
    fn from(e: IrError) -> Self {
        RunError::Invalid(Box::new(e))
    }
}
