//! [`TensorGraph`]: a graph of tensor ops in SSA form, and its builder API.
//!
//! Nodes are appended in order and refer only to earlier nodes, so the node
//! list is always a topological order (as in cranelift's data-flow graph).
//! Every builder method checks shapes ([`infer`]) and returns
//! the new [`Tensor`], or an error naming the op and the shapes.

use super::elementwise::{Binary, Unary};
use super::error::{TensorError, TensorResult};
use super::infer::infer;
use super::op::TensorOp;
use super::shape::Shape;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A tensor of a graph: a handle to the result of the node with this index
/// (symbolic: its data exists only in a compiled program's buffers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tensor(pub u32);

impl Tensor {
    /// Position of the producing node.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// A node: an op, its operands and the shape of its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorNode {
    /// What the node computes.
    pub op: TensorOp,
    /// Operands, all earlier nodes.
    pub inputs: Vec<Tensor>,
    /// Shape of the result.
    pub shape: Shape,
}

/// A graph of tensor ops (see the [module docs](self)).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TensorGraph {
    pub(crate) nodes: Vec<TensorNode>,
    pub(crate) outputs: Vec<Tensor>,
    pub(crate) updates: Vec<(Tensor, Tensor)>,
}

impl TensorGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// The nodes, in topological order.
    pub fn nodes(&self) -> &[TensorNode] {
        &self.nodes
    }

    /// The node producing `v`.
    pub fn node(&self, v: Tensor) -> &TensorNode {
        &self.nodes[v.index()]
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Tensor) -> &Shape {
        &self.nodes[v.index()].shape
    }

    /// The values the graph returns.
    pub fn outputs(&self) -> &[Tensor] {
        &self.outputs
    }

    /// Sets the values the graph returns.
    pub fn set_outputs(&mut self, outputs: Vec<Tensor>) -> TensorResult<()> {
        for &v in &outputs {
            self.check(v)?;
        }
        self.outputs = outputs;
        Ok(())
    }

    /// The parameter updates: after a run, each parameter takes its value.
    pub fn updates(&self) -> &[(Tensor, Tensor)] {
        &self.updates
    }

    /// After each run, `param` takes the value `new` (an optimizer step).
    pub fn add_update(&mut self, param: Tensor, new: Tensor) -> TensorResult<()> {
        self.check(param)?;
        self.check(new)?;
        if !matches!(self.node(param).op, TensorOp::Param { .. }) {
            return Err(TensorError::NotAParam(param.0));
        }
        if self.shape(param) != self.shape(new) {
            return Err(super::error::shape_error(
                "update",
                format!(
                    "parameter {param} is {} but its new value {new} is {}",
                    self.shape(param),
                    self.shape(new)
                ),
            ));
        }
        self.updates.push((param, new));
        Ok(())
    }

    /// The graph's inputs and parameters with their names, in node order.
    pub fn named(&self) -> impl Iterator<Item = (Tensor, &str, &TensorNode)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.op {
                TensorOp::Input { name } | TensorOp::Param { name } => {
                    Some((Tensor(i as u32), name.as_str(), n))
                }
                _ => None,
            })
    }

    /// The parameters, in node order.
    pub fn params(&self) -> Vec<Tensor> {
        self.named()
            .filter(|(_, _, n)| matches!(n.op, TensorOp::Param { .. }))
            .map(|(v, _, _)| v)
            .collect()
    }

    /// The value named `name` (an input or parameter).
    pub fn by_name(&self, name: &str) -> Option<Tensor> {
        self.named().find(|(_, n, _)| *n == name).map(|(v, _, _)| v)
    }

    /// The input or parameter called `name`, or an error naming it.
    pub fn lookup(&self, name: &str) -> Result<Tensor, TensorError> {
        self.by_name(name)
            .ok_or_else(|| TensorError::UnknownName(name.to_string()))
    }

    /// The input or parameter called `name`, checked to hold `len`
    /// elements (the data about to be fed to it), or an error naming both.
    pub fn lookup_for(&self, name: &str, len: usize) -> Result<Tensor, TensorError> {
        let v = self.lookup(name)?;
        let shape = self.shape(v);
        if len != shape.numel() {
            return Err(TensorError::WrongData {
                name: name.to_string(),
                shape: shape.clone(),
                expected: shape.numel(),
                found: len,
            });
        }
        Ok(v)
    }

    /// The first input `fed` (by value index) says was not fed, as a
    /// [`TensorError::NotFed`]; `Ok` when all were.
    pub fn check_fed(&self, fed: &[bool]) -> Result<(), TensorError> {
        match self
            .named()
            .find(|(v, _, n)| matches!(n.op, TensorOp::Input { .. }) && !fed[v.index()])
        {
            Some((_, name, _)) => Err(TensorError::NotFed(name.to_string())),
            None => Ok(()),
        }
    }

    /// Adds a node after checking its operands and shape; the general form
    /// behind every builder method.
    pub fn apply(
        &mut self,
        op: TensorOp,
        inputs: &[Tensor],
        requested: Option<&Shape>,
    ) -> TensorResult<Tensor> {
        for &v in inputs {
            self.check(v)?;
        }
        let shapes: Vec<&Shape> = inputs.iter().map(|&v| self.shape(v)).collect();
        let shape = infer(&op, &shapes, requested)?;
        self.nodes.push(TensorNode {
            op,
            inputs: inputs.to_vec(),
            shape,
        });
        Ok(Tensor((self.nodes.len() - 1) as u32))
    }

    fn check(&self, v: Tensor) -> TensorResult<()> {
        if v.index() < self.nodes.len() {
            Ok(())
        } else {
            Err(TensorError::UnknownTensor(v.0))
        }
    }

    fn leaf(&mut self, op: TensorOp, shape: impl Into<Shape>) -> Tensor {
        self.apply(op, &[], Some(&shape.into()))
            .expect("leaves always have a shape")
    }

    /// A graph input fed at every run.
    pub fn input(&mut self, name: &str, shape: impl Into<Shape>) -> Tensor {
        self.leaf(
            TensorOp::Input {
                name: name.to_string(),
            },
            shape,
        )
    }

    /// A parameter kept between runs.
    pub fn param(&mut self, name: &str, shape: impl Into<Shape>) -> Tensor {
        self.leaf(
            TensorOp::Param {
                name: name.to_string(),
            },
            shape,
        )
    }

    /// A scalar constant.
    pub fn scalar(&mut self, value: f32) -> Tensor {
        self.full(value, Shape::scalar())
    }

    /// A tensor of `shape` with every element `value`.
    pub fn full(&mut self, value: f32, shape: impl Into<Shape>) -> Tensor {
        self.leaf(TensorOp::Const { value }, shape)
    }

    /// An elementwise op of one operand.
    pub fn unary(&mut self, op: Unary, a: Tensor) -> TensorResult<Tensor> {
        self.apply(TensorOp::Unary(op), &[a], None)
    }

    /// An elementwise op of two operands, broadcast.
    pub fn binary(&mut self, op: Binary, a: Tensor, b: Tensor) -> TensorResult<Tensor> {
        self.apply(TensorOp::Binary(op), &[a, b], None)
    }

    /// `a + b`, broadcast.
    pub fn add(&mut self, a: Tensor, b: Tensor) -> TensorResult<Tensor> {
        self.binary(Binary::Add, a, b)
    }

    /// `a - b`, broadcast.
    pub fn sub(&mut self, a: Tensor, b: Tensor) -> TensorResult<Tensor> {
        self.binary(Binary::Sub, a, b)
    }

    /// `a * b`, broadcast.
    pub fn mul(&mut self, a: Tensor, b: Tensor) -> TensorResult<Tensor> {
        self.binary(Binary::Mul, a, b)
    }

    /// `a / b`, broadcast.
    pub fn div(&mut self, a: Tensor, b: Tensor) -> TensorResult<Tensor> {
        self.binary(Binary::Div, a, b)
    }

    /// `a * factor`.
    pub fn scale(&mut self, a: Tensor, factor: f32) -> TensorResult<Tensor> {
        let c = self.scalar(factor);
        self.mul(a, c)
    }

    /// `max(a, 0)`.
    pub fn relu(&mut self, a: Tensor) -> TensorResult<Tensor> {
        self.unary(Unary::Relu, a)
    }

    /// Matrix product `a b` of two matrices.
    pub fn matmul(&mut self, a: Tensor, b: Tensor) -> TensorResult<Tensor> {
        self.matmul_t(a, b, false, false)
    }

    /// Matrix product with either operand transposed.
    pub fn matmul_t(
        &mut self,
        a: Tensor,
        b: Tensor,
        trans_a: bool,
        trans_b: bool,
    ) -> TensorResult<Tensor> {
        self.apply(TensorOp::MatMul { trans_a, trans_b }, &[a, b], None)
    }

    /// Sum over `axes`.
    pub fn sum(&mut self, a: Tensor, axes: &[usize], keep_dims: bool) -> TensorResult<Tensor> {
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        self.apply(TensorOp::Sum { axes, keep_dims }, &[a], None)
    }

    /// Mean over `axes`.
    pub fn mean(&mut self, a: Tensor, axes: &[usize], keep_dims: bool) -> TensorResult<Tensor> {
        let count: usize = axes
            .iter()
            .filter_map(|&i| self.shape(a).0.get(i))
            .product();
        let s = self.sum(a, axes, keep_dims)?;
        self.scale(s, 1.0 / count.max(1) as f32)
    }

    /// Softmax along `axis`.
    pub fn softmax(&mut self, a: Tensor, axis: usize) -> TensorResult<Tensor> {
        self.apply(TensorOp::Softmax { axis }, &[a], None)
    }

    /// Log-softmax along `axis`.
    pub fn log_softmax(&mut self, a: Tensor, axis: usize) -> TensorResult<Tensor> {
        self.apply(TensorOp::LogSoftmax { axis }, &[a], None)
    }

    /// Mean cross-entropy of `logits` against target probabilities (e.g. one-hot).
    pub fn cross_entropy(&mut self, logits: Tensor, target: Tensor) -> TensorResult<Tensor> {
        self.apply(TensorOp::CrossEntropy, &[logits, target], None)
    }

    /// Mean squared error.
    pub fn mse(&mut self, prediction: Tensor, target: Tensor) -> TensorResult<Tensor> {
        self.apply(TensorOp::Mse, &[prediction, target], None)
    }

    /// The same elements in another shape.
    pub fn reshape(&mut self, a: Tensor, shape: impl Into<Shape>) -> TensorResult<Tensor> {
        self.apply(TensorOp::Reshape, &[a], Some(&shape.into()))
    }

    /// Axes permuted: result axis `i` is axis `perm[i]` of `a`.
    pub fn transpose(&mut self, a: Tensor, perm: &[usize]) -> TensorResult<Tensor> {
        self.apply(
            TensorOp::Transpose {
                perm: perm.to_vec(),
            },
            &[a],
            None,
        )
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(
        &mut self,
        a: Tensor,
        axis: usize,
        start: usize,
        end: usize,
    ) -> TensorResult<Tensor> {
        self.apply(TensorOp::Slice { axis, start, end }, &[a], None)
    }

    /// The operands joined along `axis`.
    pub fn concat(&mut self, parts: &[Tensor], axis: usize) -> TensorResult<Tensor> {
        self.apply(TensorOp::Concat { axis }, parts, None)
    }

    /// `a` repeated along broadcast axes to `shape`.
    pub fn broadcast_to(&mut self, a: Tensor, shape: impl Into<Shape>) -> TensorResult<Tensor> {
        let shape = shape.into();
        if *self.shape(a) == shape {
            return Ok(a);
        }
        self.apply(TensorOp::BroadcastTo, &[a], Some(&shape))
    }

    /// `a` summed down to `shape` (the reverse of broadcasting it there).
    pub fn sum_to(&mut self, a: Tensor, shape: impl Into<Shape>) -> TensorResult<Tensor> {
        let shape = shape.into();
        if *self.shape(a) == shape {
            return Ok(a);
        }
        self.apply(TensorOp::SumTo, &[a], Some(&shape))
    }
}

/// Builds a new graph from an old one node by node, remapping values: the
/// common frame of the passes that drop or replace nodes.
pub(crate) struct Rewrite<'a> {
    pub(crate) old: &'a TensorGraph,
    new: TensorGraph,
    map: Vec<Option<Tensor>>,
}

impl<'a> Rewrite<'a> {
    pub(crate) fn new(old: &'a TensorGraph) -> Self {
        Rewrite {
            old,
            new: TensorGraph::new(),
            map: vec![None; old.nodes.len()],
        }
    }

    /// The new value of old value `v`, which must have been emitted.
    pub(crate) fn mapped(&self, v: Tensor) -> Tensor {
        self.map[v.index()].expect("operands are emitted before their users")
    }

    /// Emits `node` (operands already new values) as the new `old_v`.
    pub(crate) fn emit(&mut self, old_v: Tensor, node: TensorNode) {
        self.new.nodes.push(node);
        self.map[old_v.index()] = Some(Tensor((self.new.nodes.len() - 1) as u32));
    }

    /// Makes old value `old_v` the new value `new_v` (emitting nothing: a
    /// node dropped for one of its operands).
    pub(crate) fn alias(&mut self, old_v: Tensor, new_v: Tensor) {
        self.map[old_v.index()] = Some(new_v);
    }

    /// Emits a copy of old node `old_v` with its operands remapped.
    pub(crate) fn copy(&mut self, old_v: Tensor) {
        let mut node = self.old.node(old_v).clone();
        node.inputs = node.inputs.iter().map(|&v| self.mapped(v)).collect();
        self.emit(old_v, node);
    }

    /// The new graph, with outputs and updates remapped.
    pub(crate) fn finish(mut self) -> TensorGraph {
        self.new.outputs = self.old.outputs.iter().map(|&v| self.mapped(v)).collect();
        self.new.updates = self
            .old
            .updates
            .iter()
            .map(|&(p, v)| (self.mapped(p), self.mapped(v)))
            .collect();
        self.new
    }
}

impl fmt::Display for TensorGraph {
    /// The text form: one line per node, `%3 = matmul(%1, %2) : [32, 10]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nodes.iter().enumerate() {
            write!(f, "%{i} = {}", n.op)?;
            if !n.inputs.is_empty() {
                let args: Vec<String> = n.inputs.iter().map(|v| v.to_string()).collect();
                write!(f, "({})", args.join(", "))?;
            }
            writeln!(f, " : {}", n.shape)?;
        }
        let outs: Vec<String> = self.outputs.iter().map(|v| v.to_string()).collect();
        writeln!(f, "return {}", outs.join(", "))?;
        for (p, v) in &self.updates {
            writeln!(f, "update {p} <- {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_layer_and_prints_it() {
        let mut g = TensorGraph::new();
        let x = g.input("x", [4, 3]);
        let w = g.param("w", [3, 2]);
        let b = g.param("b", [2]);
        let h = g.matmul(x, w).unwrap();
        let y = g.add(h, b).unwrap();
        let y = g.relu(y).unwrap();
        g.set_outputs(vec![y]).unwrap();
        assert_eq!(g.shape(y), &Shape::of(&[4, 2]));
        assert_eq!(g.params(), vec![w, b]);
        assert_eq!(g.by_name("x"), Some(x));
        let text = g.to_string();
        assert!(text.contains("%3 = matmul(%0, %1) : [4, 2]"), "{text}");
        assert!(text.ends_with("return %5\n"), "{text}");
    }

    #[test]
    fn rejects_foreign_values_and_bad_updates() {
        let mut g = TensorGraph::new();
        let x = g.input("x", [2]);
        assert_eq!(
            g.relu(Tensor(7)).unwrap_err(),
            TensorError::UnknownTensor(7)
        );
        let y = g.relu(x).unwrap();
        assert_eq!(g.add_update(x, y).unwrap_err(), TensorError::NotAParam(0));
        let p = g.param("p", [3]);
        let err = g.add_update(p, y).unwrap_err().to_string();
        assert_eq!(
            err,
            "update: parameter %2 is [3] but its new value %1 is [2]"
        );
    }
}
