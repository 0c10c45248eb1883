//! [`Net`]: a tensor graph that remembers how to initialize its parameters,
//! with layer builders on top.

use super::error::Result;
use super::init::{Init, SeededRng};
use dagger_tensor::{Program, Shape, Tensor, TensorGraph, Unary};
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

/// An activation between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`
    Relu,
    /// GELU (tanh approximation).
    Gelu,
    /// `tanh(x)`
    Tanh,
    /// `1 / (1 + exp(-x))`
    Sigmoid,
}

impl Activation {
    pub(crate) fn op(self) -> Unary {
        match self {
            Activation::Relu => Unary::Relu,
            Activation::Gelu => Unary::Gelu,
            Activation::Tanh => Unary::Tanh,
            Activation::Sigmoid => Unary::Sigmoid,
        }
    }
}

/// A tensor graph plus each parameter's [`Init`]. Derefs to the
/// [`TensorGraph`], so every op builder is a method of the net.
#[derive(Clone, Debug, Default)]
pub struct Net {
    graph: TensorGraph,
    inits: BTreeMap<String, Init>,
}

impl Deref for Net {
    type Target = TensorGraph;
    fn deref(&self) -> &TensorGraph {
        &self.graph
    }
}

impl DerefMut for Net {
    fn deref_mut(&mut self) -> &mut TensorGraph {
        &mut self.graph
    }
}

impl Net {
    /// An empty net.
    pub fn new() -> Self {
        Self::default()
    }

    /// The graph.
    pub fn graph(&self) -> &TensorGraph {
        &self.graph
    }

    /// A parameter initialized by `init`.
    pub fn param_init(&mut self, name: &str, shape: impl Into<Shape>, init: Init) -> Tensor {
        self.inits.insert(name.to_string(), init);
        self.graph.param(name, shape)
    }

    /// A fully connected layer `x w + b` with `out` features, parameters
    /// `{name}.weight` (`[in, out]`) and `{name}.bias` (`[out]`), both
    /// uniform in `±1/sqrt(in)` as PyTorch initializes `Linear`.
    pub fn linear(&mut self, name: &str, x: Tensor, out: usize) -> Result<Tensor> {
        let fan_in = *self.shape(x).dims().last().unwrap_or(&1);
        let bound = 1.0 / (fan_in as f32).sqrt();
        let w = self.param_init(
            &format!("{name}.weight"),
            [fan_in, out],
            Init::Uniform(bound),
        );
        let b = self.param_init(&format!("{name}.bias"), [out], Init::Uniform(bound));
        let h = self.matmul(x, w)?;
        Ok(self.add(h, b)?)
    }

    /// A multilayer perceptron: linear layers `fc0, fc1, ...` to each of
    /// `widths`, with `activation` between them (not after the last).
    pub fn mlp(&mut self, x: Tensor, widths: &[usize], activation: Activation) -> Result<Tensor> {
        self.mlp_layers(x, widths, activation, 0..widths.len())
    }

    /// Layers `layers` of the MLP [`mlp`](Self::mlp) would build (same
    /// names, same activations), applied to `x`: one pipeline stage's part.
    pub fn mlp_layers(
        &mut self,
        x: Tensor,
        widths: &[usize],
        activation: Activation,
        layers: std::ops::Range<usize>,
    ) -> Result<Tensor> {
        let mut h = x;
        for i in layers {
            h = self.linear(&format!("fc{i}"), h, widths[i])?;
            if i + 1 < widths.len() {
                h = self.unary(activation.op(), h)?;
            }
        }
        Ok(h)
    }

    /// This net, built for one micro-batch with `loss` a mean over its rows,
    /// unrolled over `micro` micro-batches sharing its parameters (see
    /// [`micro_batches`](dagger_tensor::micro_batches)): the net of the
    /// whole batch and its loss, to build a training step on. Placed over
    /// devices and lowered to tasks, its stages pipeline.
    pub fn micro_batched(&self, loss: Tensor, micro: usize) -> Result<(Net, Tensor)> {
        let (graph, total) = dagger_tensor::micro_batches(&self.graph, loss, micro)?;
        let net = Net {
            graph,
            inits: self.inits.clone(),
        };
        Ok((net, total))
    }

    /// Sets every parameter of `program` that this net knows to its initial
    /// values, drawn in name order from a generator seeded with `seed`.
    pub fn init_params(&self, program: &mut Program, seed: u64) -> Result<()> {
        for (name, values) in self.initial_params(seed) {
            program.set(&name, &values)?;
        }
        Ok(())
    }

    /// The initial parameters [`Net::init_params`] sets, by name (for a
    /// program of another kind, such as a GPU's).
    pub fn initial_params(&self, seed: u64) -> Vec<(String, Vec<f32>)> {
        let mut rng = SeededRng::new(seed);
        self.inits
            .iter()
            .filter_map(|(name, init)| {
                let v = self.graph.by_name(name)?;
                Some((
                    name.clone(),
                    init.sample(self.graph.shape(v).numel(), &mut rng),
                ))
            })
            .collect()
    }
}
