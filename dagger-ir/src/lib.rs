//! The typed task-graph IR of Dagger for Rust.
//!
//! Both front ends, the `dag!{}` macro and dynamic `spawn`, produce a
//! [`Graph`]. Everything after them works on it: the [verifier](verify()),
//! the [passes] run by a [`PassManager`], the [text form](text), the
//! [Graphviz export](dot) and the [JSON file format](json).
//!
//! ```
//! use dagger_ir::{Graph, TaskSig, PassManager, PassCtx};
//!
//! let mut g = Graph::new();
//! let inc = g.intern_task(TaskSig { pure: true, ..TaskSig::new("demo::inc", &["u64"], "u64") });
//! let x = g.add_input("u64", Some("x"));
//! let y = g.add_call(inc, &[x], Some("y"));
//! g.set_outputs(vec![y]);
//! PassManager::standard().run(&mut g, &PassCtx::default()).unwrap();
//! assert!(g.to_string().contains("%1 = call @demo::inc(%0) : u64  // y"));
//! ```

#![warn(missing_docs)]
mod cycle;
pub mod dot;
pub mod error;
pub mod graph;
pub mod json;
pub mod model;
pub mod pass;
pub mod passes;
pub mod sched;
pub mod text;
pub mod types;
pub mod verify;

pub use dot::to_dot;
pub use error::{IrError, Result};
pub use graph::{ConstValue, Cost, Device, Graph, Node, NodeId, Op, Port, TaskRef, TaskSig};
pub use json::{from_json, to_json};
pub use pass::{DumpSpec, PassCtx, PassFn, PassManager, Report};
pub use text::to_text;
pub use types::{short_type_name, type_name};
pub use verify::{topo_order, verify};
