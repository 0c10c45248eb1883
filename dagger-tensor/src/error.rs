//! Errors of tensor graphs: each names the op and the shapes at fault.

use super::shape::Shape;

/// What is wrong with a tensor graph or a call building one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    /// Operand shapes that the op cannot combine.
    #[error("{op}: {detail}")]
    Shape {
        /// The op being built (with the node's label when it has one).
        op: String,
        /// What is wrong, naming the shapes.
        detail: String,
    },
    /// A tensor from another graph, or past the end of this one.
    #[error("tensor %{0} is not in this graph")]
    UnknownTensor(u32),
    /// An operand that must be a parameter is not one.
    #[error("%{0} is not a parameter; only parameters can be updated")]
    NotAParam(u32),
    /// The loss given to autodiff is not a scalar.
    #[error("grad: the loss %{value} must be a scalar, but its shape is {shape}")]
    LossNotScalar {
        /// The loss value.
        value: u32,
        /// Its shape.
        shape: Shape,
    },
    /// Data fed for an input or parameter has the wrong number of elements,
    /// or no data was fed.
    #[error("`{name}` needs {expected} elements (shape {shape}), got {found}")]
    WrongData {
        /// The input or parameter.
        name: String,
        /// Its shape.
        shape: Shape,
        /// Elements it needs.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// An input that was never fed before a run.
    #[error("input `{0}` was not fed before the run")]
    NotFed(String),
    /// A collective (all-reduce, broadcast) of a data-parallel run failed.
    #[error("{0}")]
    Collective(String),
    /// A custom op's task is missing, failed, or returned the wrong thing.
    #[error("custom op `{task}`: {message}")]
    Task {
        /// The task's registered name.
        task: String,
        /// What went wrong.
        message: String,
    },
    /// A name fed or asked for that the graph does not have.
    #[error("the graph has no input or parameter named `{0}`")]
    UnknownName(String),
}

/// Result of tensor-graph operations.
pub type TensorResult<T> = std::result::Result<T, TensorError>;

/// Shorthand for a [`TensorError::Shape`].
pub(crate) fn shape_error(op: &str, detail: impl Into<String>) -> TensorError {
    TensorError::Shape {
        op: op.to_string(),
        detail: detail.into(),
    }
}
