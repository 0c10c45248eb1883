//! Tensors in the IR: dense `f32` tensors with static shapes, the ops
//! neural networks are built from, and the passes over them.
//!
//! A [`TensorGraph`] is built with its builder methods, each checking shapes
//! as it goes:
//!
//! ```
//! use dagger_ir::tensor::TensorGraph;
//!
//! let mut g = TensorGraph::new();
//! let x = g.input("x", [32, 64]);
//! let t = g.input("labels", [32, 10]);
//! let w = g.param("w", [64, 10]);
//! let b = g.param("b", [10]);
//! let h = g.matmul(x, w).unwrap();
//! let z = g.add(h, b).unwrap();
//! let loss = g.cross_entropy(z, t).unwrap();
//! // The autodiff pass: a graph computing the loss and both gradients.
//! let (train, grads) = g.grad(loss, &[w, b]).unwrap();
//! assert_eq!(train.shape(grads[0]).dims(), &[64, 10]);
//! // Shape mistakes name the op and both shapes.
//! let err = g.matmul(w, x).unwrap_err();
//! assert_eq!(err.to_string(), "matmul: inner dimensions differ: [64, 10] x [32, 64] (10 vs 32)");
//! ```
//!
//! Passes: [`autodiff`] (reverse mode), [`fuse`](mod@fuse) (elementwise trees become
//! one [`Kernel`]), [`dce`](mod@dce) (drops what no output needs) and [`memory`]
//! (buffers reused by liveness), [`microbatch`] (a batch as micro-batches
//! sharing parameters: pipelining as a graph property). The runtime
//! compiles the result.

pub mod allreduce;
pub mod autodiff;
pub mod buckets;
pub mod dce;
pub mod elementwise;
pub mod error;
pub mod fuse;
pub mod graph;
pub mod infer;
pub mod kernel;
pub mod memory;
pub mod microbatch;
pub mod op;
pub mod partition;
pub mod shape;

pub use allreduce::{all_reduce_sum, insert_all_reduce, next_bucket};
pub use autodiff::grad;
pub use buckets::{plan_buckets, BucketMember, BucketPlan, BucketPlans};
pub use dce::dce;
pub use elementwise::{Binary, Unary};
pub use error::{TensorError, TensorResult};
pub use fuse::{fuse, optimize, FuseOptions, FuseReport};
pub use graph::{Tensor, TensorGraph, TensorNode};
pub use kernel::{matrix_view, Broadcast, FusedLayout, Kernel, KernelStep, Reduce, Reduction};
pub use memory::{plan_memory, unplanned_bytes, MemoryPlan};
pub use microbatch::micro_batches;
pub use op::{CustomOp, ParallelGroup, TensorOp};
pub use partition::{
    equal_layers, evaluate, node_flops, partition, Device, OutOfMemory, Partition,
};
pub use shape::{Shape, MAX_RANK};
