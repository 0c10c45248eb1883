//! The graph itself: nodes, typed edges and the table of task signatures.
//!
//! A [`Graph`] is a directed acyclic graph of [`Node`]s kept in a petgraph
//! `StableGraph`, so node ids survive the removals that passes make. An edge
//! `a -> b` carries a [`Port`]: the argument position of `a`'s value in `b`'s
//! call. Task nodes do not repeat their signature: they point ([`TaskRef`])
//! into the graph's table of [`TaskSig`]s, so a graph of a million calls of one
//! task stores that task's name and types once.

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Identifier of a node; stable across passes that remove other nodes.
pub type NodeId = NodeIndex<u32>;

/// Argument position of a value in the consuming node's call (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Port(pub u32);

/// Index of a task signature in a graph's task table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskRef(pub u32);

/// Where a task may run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// Only on CPU cores.
    Cpu,
    /// Only on a GPU.
    Gpu,
    /// Wherever the scheduler likes (the default).
    #[default]
    Any,
}

/// What the graph knows in advance about how long a task takes. In a graph
/// file: `"unknown"`, `"dynamic"` or `{"seconds": S}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cost {
    /// No hint was given.
    #[default]
    Unknown,
    /// A fixed estimate in seconds.
    Seconds(f64),
    /// An expression of the inputs, known only once the inputs exist.
    Dynamic,
}

impl<'de> Deserialize<'de> for Cost {
    /// Reads the forms [`Cost`] writes; anything else is an error that lists them.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "lowercase", deny_unknown_fields)]
        enum Form {
            Unknown,
            Seconds(f64),
            Dynamic,
        }
        let value = serde_json::Value::deserialize(d)?;
        match Form::deserialize(&value) {
            Ok(Form::Unknown) => Ok(Cost::Unknown),
            Ok(Form::Seconds(s)) => Ok(Cost::Seconds(s)),
            Ok(Form::Dynamic) => Ok(Cost::Dynamic),
            Err(_) => Err(serde::de::Error::custom(format!(
                "a cost is \"unknown\", \"dynamic\" or {{\"seconds\": S}}, not {value}"
            ))),
        }
    }
}

impl Cost {
    /// The static estimate in seconds, if there is one.
    pub fn seconds(self) -> Option<f64> {
        match self {
            Cost::Seconds(s) => Some(s),
            Cost::Unknown | Cost::Dynamic => None,
        }
    }
}

/// The signature of a task: its registered name, typed parameters and result,
/// and the hints given in `#[task(...)]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSig {
    /// Registered name: module path and function name, e.g. `wordcount::count`.
    pub name: String,
    /// Parameter types, in order (as written by [`type_name`](crate::type_name)).
    pub params: Vec<String>,
    /// Result type.
    pub output: String,
    /// Cost hint.
    #[serde(default)]
    pub cost: Cost,
    /// Device hint.
    #[serde(default)]
    pub device: Device,
    /// A pure task has no side effects: equal inputs give equal outputs, so
    /// common-subexpression and dead-node elimination may merge or drop it.
    #[serde(default)]
    pub pure: bool,
}

impl TaskSig {
    /// A signature with default hints (unknown cost, any device, not pure).
    pub fn new(name: impl Into<String>, params: &[&str], output: impl Into<String>) -> Self {
        TaskSig {
            name: name.into(),
            params: params.iter().map(|p| p.to_string()).collect(),
            output: output.into(),
            cost: Cost::Unknown,
            device: Device::Any,
            pure: false,
        }
    }
}

/// A constant's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConstValue {
    /// A value written in a graph file.
    Json(serde_json::Value),
    /// A Rust value held by whoever built the graph (slot in its constant table).
    Host(u32),
}

/// What a node computes.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The `index`-th input of the graph.
    Input {
        /// Position among the graph's inputs.
        index: u32,
        /// Type of the input.
        ty: String,
    },
    /// A constant.
    Const {
        /// Type of the constant.
        ty: String,
        /// The value.
        value: ConstValue,
    },
    /// A call of one task; its arguments are the node's incoming edges.
    Call(TaskRef),
    /// A chain of calls fused into one node: the first takes the node's
    /// arguments, each later one takes its predecessor's result.
    Fused(Vec<TaskRef>),
}

/// A node of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What the node computes.
    pub op: Op,
    /// The name the user bound it to (`let w = ...` gives `w`), if any.
    pub label: Option<Box<str>>,
}

/// A typed task graph. See the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub(crate) g: StableDiGraph<Node, Port, u32>,
    pub(crate) tasks: Vec<TaskSig>,
    pub(crate) task_index: HashMap<String, TaskRef>,
    pub(crate) inputs: Vec<NodeId>,
    pub(crate) outputs: Vec<NodeId>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `sig` to the task table (or finds it there, by name) and returns its reference.
    pub fn intern_task(&mut self, sig: TaskSig) -> TaskRef {
        if let Some(&r) = self.task_index.get(&sig.name) {
            return r;
        }
        let r = TaskRef(self.tasks.len() as u32);
        self.task_index.insert(sig.name.clone(), r);
        self.tasks.push(sig);
        r
    }

    /// The signature behind a task reference.
    pub fn task(&self, r: TaskRef) -> &TaskSig {
        &self.tasks[r.0 as usize]
    }

    /// Finds a task of the table by registered name.
    pub fn task_by_name(&self, name: &str) -> Option<TaskRef> {
        self.task_index.get(name).copied()
    }

    /// The task table, indexed by [`TaskRef`].
    pub fn tasks(&self) -> &[TaskSig] {
        &self.tasks
    }

    /// Adds a graph input of type `ty`; inputs are numbered in the order added.
    pub fn add_input(&mut self, ty: impl Into<String>, label: Option<&str>) -> NodeId {
        let index = self.inputs.len() as u32;
        let id = self.add_node(Node {
            op: Op::Input {
                index,
                ty: ty.into(),
            },
            label: label.map(Into::into),
        });
        self.inputs.push(id);
        id
    }

    /// Adds a constant node.
    pub fn add_const(
        &mut self,
        ty: impl Into<String>,
        value: ConstValue,
        label: Option<&str>,
    ) -> NodeId {
        self.add_node(Node {
            op: Op::Const {
                ty: ty.into(),
                value,
            },
            label: label.map(Into::into),
        })
    }

    /// Adds a call of `task` whose `i`-th argument is `args[i]`.
    pub fn add_call(&mut self, task: TaskRef, args: &[NodeId], label: Option<&str>) -> NodeId {
        let id = self.add_node(Node {
            op: Op::Call(task),
            label: label.map(Into::into),
        });
        for (i, &a) in args.iter().enumerate() {
            self.add_edge(a, id, Port(i as u32));
        }
        id
    }

    /// Adds a bare node (its edges are added with [`add_edge`](Self::add_edge)).
    pub fn add_node(&mut self, node: Node) -> NodeId {
        self.g.add_node(node)
    }

    /// Adds the edge `from -> to` feeding argument `port` of `to`.
    pub fn add_edge(&mut self, from: NodeId, to: NodeId, port: Port) {
        self.g.add_edge(from, to, port);
    }

    /// Removes a node and its edges (also from the outputs and inputs lists).
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        self.outputs.retain(|&o| o != id);
        self.inputs.retain(|&i| i != id);
        self.g.remove_node(id)
    }

    /// Declares the graph's outputs, in order (a node may appear twice).
    pub fn set_outputs(&mut self, outputs: Vec<NodeId>) {
        self.outputs = outputs;
    }

    /// The graph's outputs, in order.
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// Replaces every occurrence of `old` in the outputs by `new`.
    pub fn replace_output(&mut self, old: NodeId, new: NodeId) {
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
    }

    /// The graph's input nodes, in input order.
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    /// The node with this id, if it exists.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.g.node_weight(id)
    }

    /// The node with this id, mutably.
    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.g.node_weight_mut(id)
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.g.edge_count()
    }

    /// Ids of all nodes, in increasing id order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    /// The arguments of `id`: `(port, producer)` pairs sorted by port.
    pub fn args(&self, id: NodeId) -> Vec<(Port, NodeId)> {
        let mut v: Vec<(Port, NodeId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        v.sort();
        v
    }

    /// The consumers of `id`: `(consumer, port)` pairs, in no particular order.
    pub fn users(&self, id: NodeId) -> Vec<(NodeId, Port)> {
        self.g
            .edges_directed(id, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight()))
            .collect()
    }

    /// Number of edges leaving `id`.
    pub fn user_count(&self, id: NodeId) -> usize {
        self.g.edges_directed(id, Direction::Outgoing).count()
    }

    /// Moves every edge leaving `old` so that it leaves `new` instead (same
    /// consumer and port), and renames `old` to `new` among the outputs.
    pub fn redirect_users(&mut self, old: NodeId, new: NodeId) {
        let moved: Vec<(NodeId, Port)> = self.users(old);
        let ids: Vec<_> = self
            .g
            .edges_directed(old, Direction::Outgoing)
            .map(|e| e.id())
            .collect();
        for e in ids {
            self.g.remove_edge(e);
        }
        for (to, port) in moved {
            self.g.add_edge(new, to, port);
        }
        self.replace_output(old, new);
    }

    /// The type of the value a node produces, or `None` for a dangling task reference.
    pub fn output_type(&self, id: NodeId) -> Option<&str> {
        let node = self.node(id)?;
        match &node.op {
            Op::Input { ty, .. } | Op::Const { ty, .. } => Some(ty),
            Op::Call(t) => self.tasks.get(t.0 as usize).map(|s| s.output.as_str()),
            Op::Fused(ts) => ts
                .last()
                .and_then(|t| self.tasks.get(t.0 as usize))
                .map(|s| s.output.as_str()),
        }
    }

    /// How messages name a node: its label in backquotes, else `%<id>`.
    pub fn display_name(&self, id: NodeId) -> String {
        match self.node(id).and_then(|n| n.label.as_deref()) {
            Some(l) => format!("`{l}`"),
            None => format!("%{}", id.index()),
        }
    }

    /// The underlying petgraph graph, for algorithms that want it directly.
    pub fn petgraph(&self) -> &StableDiGraph<Node, Port, u32> {
        &self.g
    }
}
