//! Tensors of Dagger for Rust: the tensor IR (dense `f32` tensors with static
//! shapes, the ops neural networks are built from, and the passes over them)
//! at the crate root, the [`Backend`] seam, the CPU backend ([`cpu`]:
//! Cranelift JIT + faer) and the lowering of a training step to runtime
//! tasks ([`task_step`]).
//!
//! A [`TensorGraph`] is built with its builder methods, each checking shapes
//! as it goes:
//!
//! ```
//! use dagger_tensor::TensorGraph;
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
//! sharing parameters: pipelining as a graph property). A [`Backend`]
//! compiles the result: [`CpuBackend`] (the [`Program`] of [`cpu`]) here,
//! `dagger_cuda`'s for GPUs.

#![warn(missing_docs)]

pub mod allreduce;
pub mod autodiff;
pub mod backend;
pub mod buckets;
pub mod cpu;
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
pub mod task_step;

pub use allreduce::{all_reduce_sum, drop_lone_all_reduces, insert_all_reduce, next_bucket};
pub use autodiff::grad;
pub use backend::{Backend, BackendError, CpuBackend, Executable};
pub use buckets::{plan_buckets, BucketMember, BucketPlan, BucketPlans};
pub use cpu::{
    call_custom, ring_all_reduce_mean, ring_all_reduce_sum, ring_broadcast, thread_ring, Array,
    CollectiveError, CompileOptions, Program, ProgramError, ProgramStats, Reducer, RingLink,
    ThreadLink,
};
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
    equal_layers, evaluate, node_flops, partition, streamed_bytes, Device, OutOfMemory, Partition,
};
pub use shape::{Shape, MAX_RANK};
