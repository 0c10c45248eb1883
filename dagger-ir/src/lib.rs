//! The typed task-graph IR of Dagger for Rust.
//!
//! Both front ends, the `dag!{}` macro and dynamic `spawn`, produce a
//! [`Graph`]. Everything after them works on it: the [verifier](verify),
//! the [passes](passes) run by a [`PassManager`], the [text form](text), the
//! [Graphviz export](dot) and the [JSON file format](json).
pub mod graph;
pub mod types;

pub use graph::{ConstValue, Cost, Device, Graph, Node, NodeId, Op, Port, TaskRef, TaskSig};
pub use types::{short_type_name, type_name};
