//! What a pipeline cuts into stages: a model as a sequence of units
//! (an MLP's layers, a stack's Megatron blocks), each stage a range of
//! them, each unit possibly split over tensor-parallel shards.

use super::error::Result;
use super::net::{Activation, Net};
use super::tensor_parallel::BlockStack;
use dagger_tensor::Tensor;
use std::ops::Range;

/// An MLP trained with softmax cross-entropy, as [`Net::mlp`] builds it.
#[derive(Clone, Debug)]
pub struct MlpSpec {
    /// Input features.
    pub inputs: usize,
    /// Layer widths; the last is the number of classes.
    pub widths: Vec<usize>,
    /// Activation between layers.
    pub activation: Activation,
}

/// A model a [`Pipeline`](super::Pipeline) can cut into stages.
pub trait StageModel: Send + Sync {
    /// Input features.
    fn inputs(&self) -> usize;
    /// Number of units (layers or blocks).
    fn units(&self) -> usize;
    /// Width of unit `unit`'s output (the last unit's is the classes).
    fn width_out(&self, unit: usize) -> usize;
    /// Work of each unit (multiply-adds per sample), to balance stages.
    fn unit_costs(&self) -> Vec<f64>;
    /// Adds units `units` on `input` to `net`, as worker `shard`'s part of
    /// `shards` tensor-parallel workers (every worker's graph is the same;
    /// their parameter values differ). Returns the output of the last unit.
    fn add_units(
        &self,
        net: &mut Net,
        input: Tensor,
        units: Range<usize>,
        shards: usize,
    ) -> Result<Tensor>;
    /// The axis along which parameter `name` is split over tensor-parallel
    /// shards (`None`: every shard holds all of it).
    fn split_axis(&self, name: &str) -> Option<usize>;
    /// Width of the input to unit `unit`.
    fn width_in(&self, unit: usize) -> usize {
        match unit {
            0 => self.inputs(),
            u => self.width_out(u - 1),
        }
    }
}

impl StageModel for MlpSpec {
    fn inputs(&self) -> usize {
        self.inputs
    }

    fn units(&self) -> usize {
        self.widths.len()
    }

    fn width_out(&self, unit: usize) -> usize {
        self.widths[unit]
    }

    fn unit_costs(&self) -> Vec<f64> {
        (0..self.widths.len())
            .map(|u| (self.width_in(u) * self.widths[u]) as f64)
            .collect()
    }

    /// An MLP's layers do not split: `shards` must be 1.
    fn add_units(
        &self,
        net: &mut Net,
        input: Tensor,
        units: Range<usize>,
        shards: usize,
    ) -> Result<Tensor> {
        assert_eq!(shards, 1, "an MLP's layers are not tensor-parallel");
        net.mlp_layers(input, &self.widths, self.activation, units)
    }

    fn split_axis(&self, _name: &str) -> Option<usize> {
        None
    }
}

impl StageModel for BlockStack {
    fn inputs(&self) -> usize {
        self.inputs
    }

    fn units(&self) -> usize {
        self.blocks.len()
    }

    fn width_out(&self, unit: usize) -> usize {
        self.blocks[unit].1
    }

    fn unit_costs(&self) -> Vec<f64> {
        self.blocks
            .iter()
            .enumerate()
            .map(|(u, &(hidden, out))| (self.width_in(u) * hidden + hidden * out) as f64)
            .collect()
    }

    fn add_units(
        &self,
        net: &mut Net,
        input: Tensor,
        units: Range<usize>,
        shards: usize,
    ) -> Result<Tensor> {
        self.add_blocks(net, input, units, shards)
    }

    fn split_axis(&self, name: &str) -> Option<usize> {
        BlockStack::shard_axis(name)
    }
}
