//! Errors of the IR: each names the node, task or file position at fault.

/// What is wrong with a graph or a graph file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IrError {
    /// The graph has a cycle; `path` lists its nodes, first repeated at the
    /// end. The message names the cycle's length and at most its first
    /// [`CYCLE_NODES_SHOWN`] nodes, so a cycle through a million nodes still
    /// reads as one line.
    #[error("graph has a cycle: {}", cycle_message(path))]
    Cycle {
        /// The nodes around the cycle.
        path: Vec<String>,
    },
    /// A call has the wrong number of arguments.
    #[error("node {node} calls `{task}` with {found} arguments, but it takes {expected}")]
    Arity {
        /// The calling node.
        node: String,
        /// The task.
        task: String,
        /// Parameters of the task.
        expected: usize,
        /// Arguments given.
        found: usize,
    },
    /// An argument position is fed twice, or not at all.
    #[error("node {node} calling `{task}`: argument {port} is {problem}")]
    BadArgument {
        /// The calling node.
        node: String,
        /// The task.
        task: String,
        /// The argument position.
        port: u32,
        /// "missing" or "given twice".
        problem: &'static str,
    },
    /// An argument's type is not the parameter's.
    #[error("node {node}: argument {port} of `{task}` must be {expected}, but {producer} produces {found}")]
    TypeMismatch {
        /// The calling node.
        node: String,
        /// The task.
        task: String,
        /// The argument position.
        port: u32,
        /// The parameter type.
        expected: String,
        /// The argument's type.
        found: String,
        /// The node producing the argument.
        producer: String,
    },
    /// A graph file names a node that it does not define.
    #[error("{context} refers to unknown node `{name}`")]
    UnknownNode {
        /// The unknown id.
        name: String,
        /// Where it was used.
        context: String,
    },
    /// A graph file calls a task missing from its task table.
    #[error("node `{node}` calls unknown task `{task}` (not in the file's \"tasks\")")]
    UnknownTask {
        /// The calling node.
        node: String,
        /// The task name.
        task: String,
    },
    /// Two nodes or tasks of a graph file have the same name.
    #[error("duplicate {what} `{name}`")]
    Duplicate {
        /// "node id" or "task".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A task of the table that no node calls has a bad signature or cost
    /// (one that a node calls is reported as that node's error).
    #[error("task `{task}`: its {message}")]
    BadTask {
        /// The task's name.
        task: String,
        /// What is wrong.
        message: String,
    },
    /// A node that cannot have arguments has some, or an output is not a node.
    #[error("node {node}: {message}")]
    Malformed {
        /// The node.
        node: String,
        /// What is wrong.
        message: String,
    },
    /// A graph file is not valid JSON or not of the expected shape.
    #[error("malformed graph file: {0}")]
    Json(String),
    /// A pass failed.
    #[error("pass `{pass}` failed: {message}")]
    Pass {
        /// The pass.
        pass: &'static str,
        /// Why.
        message: String,
    },
}

/// How many of a cycle's nodes [`IrError::Cycle`]'s message names.
pub const CYCLE_NODES_SHOWN: usize = 8;

/// `a -> b -> c -> a (3 nodes)`, or the first [`CYCLE_NODES_SHOWN`] nodes and
/// the length when the cycle is longer.
fn cycle_message(path: &[String]) -> String {
    let len = path.len().saturating_sub(1).max(1);
    let plural = if len == 1 { "node" } else { "nodes" };
    if len <= CYCLE_NODES_SHOWN {
        format!("{} ({len} {plural})", path.join(" -> "))
    } else {
        format!(
            "{} -> ... ({len} nodes, the first {CYCLE_NODES_SHOWN} shown)",
            path[..CYCLE_NODES_SHOWN].join(" -> ")
        )
    }
}

/// Result of IR operations.
pub type Result<T> = std::result::Result<T, IrError>;
