//! The executor of Dagger for Rust.
//!
//! A [`Runtime`] owns a pool of worker threads, one per core, that steal work
//! from each other (the `pool` module). It runs graphs given either way:
//!
//! - **Static graphs**: a [`Dag`] built by `dag!{}` or a [`GraphBuilder`] is
//!   compiled once into a [`Plan`] (IR passes, tasks resolved by name) and
//!   each [`Runtime::run`] executes the plan with dependency counters (the `run` module).
//! - **Dynamic graphs**: [`spawn()`] schedules a task at once and returns a
//!   [`Handle`]; handles passed to later spawns become edges ([`spawn`](mod@spawn)).
//!
//! For fine-grained recursion inside a task, [`join()`] forks two closures
//! on the same workers without allocating (rayon's scheme).
//!
//! Values travel between tasks as [`Datum`]s, moved to a single consumer and
//! shared otherwise. A task that panics or returns `Err` ends its run with
//! [`RunError::TaskFailed`]; the runtime stays usable. Any run can be traced
//! ([`Trace`], Chrome trace JSON).
//!
//! Several processes joined into a cluster (UCX transport, bootstrap,
//! remote tasks, runs across ranks) are the `dagger-cluster` crate's, built
//! on this one.

#![warn(missing_docs)]

pub mod builder;
pub mod dag;
pub mod datum;
pub mod device;
pub mod error;
pub mod join;
mod pinned;
pub mod placement;
pub mod plan;
pub mod policy_run;
mod pool;
pub mod probe;
pub mod probe_type;
mod recorder;
mod run;
pub mod runtime;
pub mod size;
pub mod spawn;
pub mod task;
pub mod trace;
mod value;
pub mod wire;

#[doc(hidden)]
pub mod __private {
    //! Items generated code refers to (`<crate>::__private::...`, re-exported
    //! by the `dagger` facade); not a public API.
    pub use crate::device::device_of;
    pub use crate::probe_type::Probe;
    pub use crate::size::{HasSize, NoSize};
    pub use crate::task::{take_arg, CostHint, Invoke, TaskRegistration};
    pub use crate::wire::{HasCodec, HasRawCodec, NoCodec, TaskWire};
    pub use crate::{Datum, GraphBuilder, Task, TaskDef, Value};
    pub use dagger_ir::{type_name, Device};
    pub use inventory;
}

pub use builder::{GraphBuilder, Value};
pub use dag::{Dag, Inputs, Outputs};
pub use dagger_ir::sched::DynamicPolicy;
pub use datum::{Data, Datum};
pub use error::RunError;
pub use join::join;
pub use plan::{Kernel, Plan};
pub use policy_run::PolicyRun;
pub use run::call as call_task;
pub use run::call_body as call_task_body;
pub use run::panic_message;
pub use runtime::{spawn, try_spawn, Runtime, RuntimeBuilder};
pub use spawn::{Handle, SpawnArg, SpawnFn, TrySpawnFn};
pub use task::{Bodies, Body, Task, TaskBody, TaskDef};
pub use trace::{Trace, TraceEvent};
