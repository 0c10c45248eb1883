//! The CPU backend: running tensor graphs on the CPU.
//!
//! [`Program::compile`] takes a [`TensorGraph`](crate::TensorGraph),
//! runs the IR passes on it, JIT-compiles its fused elementwise kernels with
//! Cranelift ([`jit`]) and plans its memory; [`Program::run`] executes it
//! with the [`kernels`] (faer for matrix products, split between the
//! runtime's workers by its allocation-free `join`).
//!
//! ```
//! use dagger_tensor::{CompileOptions, Program, TensorGraph};
//!
//! let mut g = TensorGraph::new();
//! let x = g.input("x", [2, 2]);
//! let w = g.param("w", [2, 2]);
//! let y = g.matmul(x, w).unwrap();
//! let y = g.relu(y).unwrap();
//! g.set_outputs(vec![y]).unwrap();
//! let mut p = Program::compile(&g, CompileOptions::default()).unwrap();
//! p.set("x", &[1.0, 2.0, 3.0, 4.0]).unwrap();
//! p.set("w", &[1.0, -1.0, 0.0, 1.0]).unwrap();
//! p.run().unwrap();
//! assert_eq!(p.output(0), &[1.0, 1.0, 3.0, 1.0]);
//! ```

pub mod array;
pub mod collective;
pub mod custom;
pub mod jit;
pub mod kernels;
pub mod program;
pub(crate) mod reducer;

pub use array::Array;
pub use collective::{
    ring_all_reduce_mean, ring_all_reduce_sum, ring_broadcast, thread_ring, CollectiveError,
    RingLink, ThreadLink,
};
pub use custom::call_custom;
pub use program::{CompileOptions, Program, ProgramError, ProgramStats};
pub use reducer::Reducer;
