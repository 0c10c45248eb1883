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
//! `dagger_macros` (`#[task]`, `dag!`), `dagger_cli` (the `dagger` tool,
//! [`pipe`], [`platform`]), and, behind features,
//! `dagger_cuda`, `dagger_cluster` and `dagger_nn` (`nn`). Several processes
//! form a cluster with
//! `launcher` (`dagger run -n N`) and `cluster::Cluster`.
//!
//! # Feature flags
//!
//! As tokio does, the facade puts its heavy parts behind cargo features, so
//! that a program links what it uses. All are on by default; the task-graph
//! core (`#[task]`, `dag!`, [`Runtime`], [`ir`], [`tensor`], [`platform`] on
//! the CPU workers) builds with `default-features = false`.
//!
//! - `cuda`: CUDA GPUs (`dagger-cuda`): the `cuda` module, GPU workers
//!   (`platform::gpu_workers`, GPUs in [`platform::local_platform`]) and, with
//!   `nn`, training on GPUs (`nn::Workers::Gpus`). Without it a program runs
//!   on its CPU workers and says it was built without `cuda` where it would
//!   list GPUs.
//! - `cluster`: several processes as one machine (`dagger-cluster`): the
//!   `cluster`, `distributed`, `net` and `ring` modules, `Session`,
//!   `launcher` and the `dagger` command-line tool; with `nn`, training
//!   across ranks (`nn::Workers::Cluster`, `Pipeline::on_cluster`).
//! - `nn`: neural networks on tensor graphs (the `nn` module: layers,
//!   optimizers, safetensors, data/pipeline/tensor-parallel training on
//!   threads, and on GPUs and ranks with `cuda` and `cluster`).
//!
//! ```toml
//! # The runtime and the networks on CPU threads, without CUDA or a cluster:
//! dagger = { version = "0.1", default-features = false, features = ["nn"] }
//! ```

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use dagger_cluster::distributed::{ClusterReport, ClusterSpan, SpanKind};
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use dagger_cluster::{cluster, distributed, net, ring};
#[cfg(feature = "cuda")]
#[cfg_attr(docsrs, doc(cfg(feature = "cuda")))]
pub use dagger_cuda as cuda;
pub use dagger_ir as ir;
pub use dagger_macros::{dag, task};
#[cfg(feature = "nn")]
#[cfg_attr(docsrs, doc(cfg(feature = "nn")))]
pub use dagger_nn as nn;
pub use dagger_runtime::task::registered as task_registry;
pub use dagger_runtime::{device, size};
pub use dagger_runtime::{
    join, spawn, try_spawn, Dag, Data, Datum, DynamicPolicy, GraphBuilder, Handle, Inputs, Outputs,
    PolicyRun, RunError, Runtime, RuntimeBuilder, Task, TaskDef, Trace, Value,
};
pub use dagger_tensor as tensor;

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use dagger_cli::launcher;
pub use dagger_cli::{pipe, platform};
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod session;

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use session::Session;

/// The names most programs need: `use dagger::prelude::*;`.
pub mod prelude {
    pub use crate::{dag, task, Dag, Handle, RunError, Runtime, Value};
}

#[doc(hidden)]
pub use dagger_runtime::__private;

/// The README's code, compiled and run as a doctest (it uses `nn`).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "nn"))]
pub struct ReadmeDoctests;
