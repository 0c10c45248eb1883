//! Models of the machine and of the work, which schedulers plan with.
//!
//! - [`Platform`]: the processors (CPU cores, GPUs, cores of remote nodes)
//!   with relative speeds, and the links between them;
//! - [`HistoryModel`]: measured task times per (task, processor kind, input
//!   size bucket), as StarPU's history-based performance models keep them,
//!   persisted between runs in a directory.

pub mod history;
pub mod platform;

pub use history::{HistoryModel, Measurement, TaskStats};
pub use platform::{Link, Platform, ProcKind, Processor};
