//! The operations a tensor graph knows.
//!
//! Every op has a fixed arity, a shape rule (in [`graph`](super::graph)),
//! a vector-Jacobian product (in [`autodiff`](super::autodiff)) and a CPU
//! kernel in the runtime. Elementwise ops ([`Unary`], [`Binary`]) are the
//! ones the [fusion pass](mod@super::fuse) merges into one [`Kernel`].

use super::elementwise::{Binary, Unary};
use super::kernel::Kernel;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a tensor node computes. Its operands are the node's `inputs`, its
/// result has the node's `shape`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorOp {
    /// Data fed anew at every run (a batch of samples, labels).
    Input {
        /// The name the caller feeds it by.
        name: String,
    },
    /// State kept between runs (weights, optimizer moments).
    Param {
        /// The name it is stored, saved and loaded by.
        name: String,
    },
    /// Every element equal to `value`.
    Const {
        /// The value.
        value: f32,
    },
    /// An elementwise function of one operand.
    Unary(Unary),
    /// An elementwise function of two operands, broadcast.
    Binary(Binary),
    /// Matrix product of two 2-D operands, either possibly transposed.
    MatMul {
        /// Use the transpose of the first operand.
        trans_a: bool,
        /// Use the transpose of the second operand.
        trans_b: bool,
    },
    /// Sum over `axes`.
    Sum {
        /// The axes summed over, ascending.
        axes: Vec<usize>,
        /// Keep the summed axes with extent 1.
        keep_dims: bool,
    },
    /// Softmax along `axis`.
    Softmax {
        /// The axis normalized over.
        axis: usize,
    },
    /// Logarithm of the softmax along `axis`, computed stably.
    LogSoftmax {
        /// The axis normalized over.
        axis: usize,
    },
    /// Mean over rows of `-sum(target * log_softmax(logits))` along the last
    /// axis: operands are logits and target probabilities (e.g. one-hot).
    CrossEntropy,
    /// Mean of the squared difference of two same-shaped operands.
    Mse,
    /// Same elements, the node's shape.
    Reshape,
    /// Axes permuted: result axis `i` is operand axis `perm[i]`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Elements `start..end` along `axis`.
    Slice {
        /// The axis cut.
        axis: usize,
        /// First index kept.
        start: usize,
        /// One past the last index kept.
        end: usize,
    },
    /// Zeros added before and after along `axis` (the gradient of a slice).
    Pad {
        /// The axis grown.
        axis: usize,
        /// Zeros before.
        before: usize,
        /// Zeros after.
        after: usize,
    },
    /// The operands joined along `axis`.
    Concat {
        /// The axis joined along.
        axis: usize,
    },
    /// The operand repeated along broadcast axes to the node's shape.
    BroadcastTo,
    /// The operand summed down to the node's shape (the reverse of broadcasting).
    SumTo,
    /// A chain or tree of elementwise ops made one kernel by the fusion pass.
    Fused(Kernel),
    /// The operand reduced over one group of workers (the operand itself
    /// with one worker): see [`ParallelGroup`]. Nodes with one `bucket` are
    /// reduced together, as one message, as soon as all their operands
    /// exist.
    AllReduce {
        /// The bucket the node's operand travels in.
        bucket: u32,
        /// The workers reduced over, and how.
        group: ParallelGroup,
    },
    /// The operand, unchanged, entering a tensor-parallel region: its
    /// gradient is summed over the workers (Megatron-LM's `f`; the sum
    /// all-reduce is its `g`).
    EnterParallel,
    /// A user's `#[task]` of arrays, called by its registered name on the
    /// operands (see [`CustomOp`]). Its result has the node's shape.
    Custom(CustomOp),
}

/// A task the graph calls by name: the runtime runs it on the operands as
/// host arrays, and autodiff differentiates it with the gradient task it
/// declared (`#[task(grad = ...)]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CustomOp {
    /// The task's registered name.
    pub task: String,
    /// The registered name of its gradient task: given the task's operands
    /// and the gradient of its result, the gradient of each operand.
    pub grad: Option<String>,
    /// Which element of the task's result this node is, for a task that
    /// returns a tuple (the gradient task of a task of several operands
    /// returns one gradient per operand); `None` for a single result.
    pub output: Option<usize>,
}

/// The workers an [`AllReduce`](TensorOp::AllReduce) spans. A worker may
/// belong to one group of each kind (data x tensor parallelism).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParallelGroup {
    /// The replicas of data parallelism: the mean (of gradients, of the loss).
    Data,
    /// The shards of a tensor-parallel layer: the sum of partial results
    /// (its gradient passes through unchanged: Megatron-LM's `g`).
    Tensor,
}

impl ParallelGroup {
    /// Every group, indexed by [`index`](Self::index).
    pub const ALL: [ParallelGroup; 2] = [ParallelGroup::Data, ParallelGroup::Tensor];

    /// A small index (0, 1) for tables of per-group state.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl TensorOp {
    /// True for ops computed one element at a time from the same element
    /// of each operand (fusable, and safe to run in place).
    pub fn is_elementwise(&self) -> bool {
        match self {
            TensorOp::Unary(_) | TensorOp::Binary(_) => true,
            TensorOp::Fused(k) => k.reduce.is_none(),
            _ => false,
        }
    }
}

impl fmt::Display for TensorOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorOp::Input { name } => write!(f, "input \"{name}\""),
            TensorOp::Param { name } => write!(f, "param \"{name}\""),
            TensorOp::Const { value } => write!(f, "const {value}"),
            TensorOp::Unary(u) => f.write_str(u.name()),
            TensorOp::Binary(b) => f.write_str(b.name()),
            TensorOp::MatMul { trans_a, trans_b } => {
                f.write_str("matmul")?;
                match (trans_a, trans_b) {
                    (false, false) => Ok(()),
                    (true, false) => f.write_str("_tn"),
                    (false, true) => f.write_str("_nt"),
                    (true, true) => f.write_str("_tt"),
                }
            }
            TensorOp::Sum { axes, keep_dims } => {
                write!(f, "sum{axes:?}{}", if *keep_dims { " keep" } else { "" })
            }
            TensorOp::Softmax { axis } => write!(f, "softmax[{axis}]"),
            TensorOp::LogSoftmax { axis } => write!(f, "log_softmax[{axis}]"),
            TensorOp::CrossEntropy => f.write_str("cross_entropy"),
            TensorOp::Mse => f.write_str("mse"),
            TensorOp::Reshape => f.write_str("reshape"),
            TensorOp::Transpose { perm } => write!(f, "transpose{perm:?}"),
            TensorOp::Slice { axis, start, end } => write!(f, "slice[{axis}: {start}..{end}]"),
            TensorOp::Pad {
                axis,
                before,
                after,
            } => write!(f, "pad[{axis}: {before}, {after}]"),
            TensorOp::Concat { axis } => write!(f, "concat[{axis}]"),
            TensorOp::BroadcastTo => f.write_str("broadcast_to"),
            TensorOp::SumTo => f.write_str("sum_to"),
            TensorOp::Fused(k) => write!(f, "fused {{ {k} }}"),
            TensorOp::AllReduce { bucket, group } => {
                let how = match group {
                    ParallelGroup::Data => "mean over data replicas",
                    ParallelGroup::Tensor => "sum over tensor shards",
                };
                write!(f, "all_reduce[{how}, bucket {bucket}]")
            }
            TensorOp::EnterParallel => f.write_str("enter_parallel"),
            TensorOp::Custom(c) => {
                write!(f, "custom \"{}\"", c.task)?;
                match c.output {
                    Some(k) => write!(f, ".{k}"),
                    None => Ok(()),
                }
            }
        }
    }
}
