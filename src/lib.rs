//! # Dagger for Rust
//!
//! An embedded task-graph language, compiler and runtime. Annotate functions
//! with [`#[task]`](macro@task), wire them into graphs with [`dag!`], and run
//! the graphs on every local core:
//!
//! ```
//! use dagger::prelude::*;
//!
//! #[task(pure)]
//! fn tokenize(text: String) -> Vec<String> {
//!     text.split_whitespace().map(str::to_string).collect()
//! }
//!
//! #[task]
//! fn count(words: Vec<String>) -> usize {
//!     words.len()
//! }
//!
//! let doc = String::from("the quick brown fox");
//! let g = dag! { let w = tokenize(doc); let c = count(w); c };
//! let rt = Runtime::new();
//! assert_eq!(rt.run(&g, ()).unwrap(), 4);
//! ```
//!
//! Graphs found only at run time use the dynamic front end,
//! [`spawn`](Runtime::spawn), whose handles are passed to later spawns and
//! awaited with [`Handle::wait`]; [`join()`] forks fine-grained recursion on
//! the same workers. Both front ends produce the same IR,
//! [`ir::Graph`], which the passes in [`ir::passes`] optimise before the
//! executor runs it.
//!
//! The crates behind the facade: [`dagger_ir`] (IR, verifier, passes),
//! [`dagger_runtime`] (executor, CPU pool, traces, transports, cluster),
//! `dagger_macros` (`#[task]`, `dag!`). Several processes form a cluster with
//! [`launcher`] (`dagger run -n N`) and [`cluster::Cluster`].

#![warn(missing_docs)]

pub use dagger_cluster::distributed::{ClusterReport, ClusterSpan, SpanKind};
pub use dagger_cluster::{cluster, distributed, net, ring};
pub use dagger_cuda as cuda;
pub use dagger_ir as ir;
pub use dagger_macros::{dag, task};
pub use dagger_runtime::task::registered as task_registry;
pub use dagger_runtime::{device, size, tensor};
pub use dagger_runtime::{
    join, spawn, try_spawn, Dag, Data, Datum, DynamicPolicy, GraphBuilder, Handle, Inputs, Outputs,
    PolicyRun, RunError, Runtime, RuntimeBuilder, Task, TaskDef, Trace, Value,
};

pub mod launcher;
pub mod nn;
pub mod pipe;
pub mod platform;
pub mod session;

pub use session::Session;

/// The names most programs need: `use dagger::prelude::*;`.
pub mod prelude {
    pub use crate::{dag, task, Dag, Handle, RunError, Runtime, Value};
}

#[doc(hidden)]
pub mod __private {
    //! Items generated code refers to; not a public API.
    pub use dagger_ir::{type_name, Device};
    pub use dagger_runtime::device::device_of;
    pub use dagger_runtime::probe_type::Probe;
    pub use dagger_runtime::size::{HasSize, NoSize};
    pub use dagger_runtime::task::{take_arg, CostHint, Invoke, TaskRegistration};
    pub use dagger_runtime::wire::{HasCodec, HasRawCodec, NoCodec, TaskWire};
    pub use dagger_runtime::{Datum, GraphBuilder, Task, TaskDef, Value};
    pub use inventory;
}

/// The README's code, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
