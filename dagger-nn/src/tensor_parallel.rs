//! Tensor parallelism, Megatron-LM style: every MLP block's first linear
//! layer split by columns and its second by rows over `n` workers.
//!
//! Worker `r` holds columns `r` of the first weight (and bias) and rows `r`
//! of the second, computes its slice of the hidden layer with no
//! communication, and its partial product of the output; one sum
//! all-reduce joins the partials (forward). Entering a block, the input
//! goes through Megatron's `f` ([`TensorOp::EnterParallel`]): the identity
//! forward, a sum all-reduce of its gradient backward. So a block costs one
//! all-reduce each way, of the block's output size. The output bias and
//! everything after the block are replicated: every worker computes them
//! alike. On threads the step is lowered to tasks
//! ([`BlockStack::strategy_step`], `dagger_tensor::task_step`) and run by
//! the runtime's executor, each all-reduce a task; on GPUs or a cluster's
//! ranks each worker is a replica (the same machinery as
//! [`DataParallel`]). Every worker trains on the whole batch, or its
//! replica's share of it.

use super::data_parallel::{DataParallel, DataParallelOptions, Workers};
use super::error::{Error, Result};
use super::init::Init;
use super::io::NamedParams;
use super::net::{Activation, Net};
use super::optim::Optimizer;
use super::replica::Start;
use dagger_runtime::Runtime;
use dagger_tensor::task_step::strategy::Strategy;
use dagger_tensor::task_step::{lower_step, LowerError, LowerOptions, StepPlacement, TaskStep};
use dagger_tensor::{
    all_reduce_sum, CompileOptions, ParallelGroup, Program, Shape, Tensor, TensorOp,
};

/// A stack of Megatron MLP blocks then softmax cross-entropy.
#[derive(Clone, Debug)]
pub struct BlockStack {
    /// Input features.
    pub inputs: usize,
    /// Each block's `(hidden, out)` widths; the last `out` is the classes.
    pub blocks: Vec<(usize, usize)>,
    /// Activation inside blocks and between them.
    pub activation: Activation,
}

impl BlockStack {
    /// The training net of one of `n` workers for `batch` samples (every
    /// worker's graph is the same; its parameter values differ): its
    /// shards of every block, and its scalar loss.
    pub fn net(&self, batch: usize, n: usize) -> Result<(Net, Tensor)> {
        let mut net = Net::new();
        let x = net.input("x", [batch, self.inputs]);
        let y = net.input("y", [batch, self.blocks.last().map_or(0, |b| b.1)]);
        let h = self.add_blocks(&mut net, x, 0..self.blocks.len(), n)?;
        let loss = net.cross_entropy(h, y)?;
        Ok((net, loss))
    }

    /// Adds blocks `blocks` on `input` to `net`, as one of `n` workers'
    /// shards; the activation follows every block but the stack's last.
    pub fn add_blocks(
        &self,
        net: &mut Net,
        input: Tensor,
        blocks: std::ops::Range<usize>,
        n: usize,
    ) -> Result<Tensor> {
        let mut h = input;
        let mut width = net.shape(input).dims()[1];
        for b in blocks {
            let (hidden, out) = self.blocks[b];
            let bound1 = 1.0 / (width as f32).sqrt();
            let bound2 = 1.0 / (hidden as f32).sqrt();
            let e = net.apply(TensorOp::EnterParallel, &[h], None)?;
            let w1 = net.param_init(
                &format!("block{b}.fc1.weight"),
                [width, hidden / n],
                Init::Uniform(bound1),
            );
            let b1 = net.param_init(
                &format!("block{b}.fc1.bias"),
                [hidden / n],
                Init::Uniform(bound1),
            );
            let w2 = net.param_init(
                &format!("block{b}.fc2.weight"),
                [hidden / n, out],
                Init::Uniform(bound2),
            );
            let b2 = net.param_init(&format!("block{b}.fc2.bias"), [out], Init::Uniform(bound2));
            let z = net.matmul(e, w1)?;
            let z = net.add(z, b1)?;
            let a = net.unary(self.activation.op(), z)?;
            let partial = net.matmul(a, w2)?;
            let joined = all_reduce_sum(net, partial)?;
            h = net.add(joined, b2)?;
            if b + 1 < self.blocks.len() {
                h = net.unary(self.activation.op(), h)?;
            }
            width = out;
        }
        Ok(h)
    }

    /// Each of `n` shards' values of the whole model's initial parameters
    /// from `seed` (shard `t`'s columns or rows, as its net
    /// [`net(batch, n)`](Self::net) holds them), and the whole parameters'
    /// names and shapes; checks that the hidden widths split `n` ways.
    pub fn initial_shards(
        &self,
        n: usize,
        batch: usize,
        seed: u64,
    ) -> Result<(Vec<NamedParams>, FullShapes)> {
        if let Some(&(hidden, _)) = self.blocks.iter().find(|(h, _)| n == 0 || h % n != 0) {
            return Err(Error::Batch(format!(
                "a hidden width of {hidden} does not split over {n} workers"
            )));
        }
        let (whole, _) = self.net(batch, 1)?;
        let mut init = Program::compile(&whole, CompileOptions::default())?;
        whole.init_params(&mut init, seed)?;
        let full: Vec<(String, Shape, Vec<f32>)> = init
            .params()
            .into_iter()
            .map(|(name, s, d)| (name.to_string(), s.clone(), d.to_vec()))
            .collect();
        let per_rank = (0..n)
            .map(|rank| {
                full.iter()
                    .map(|(name, shape, v)| {
                        let mine = match BlockStack::shard_axis(name) {
                            Some(axis) => shard(v, shape, axis, rank, n),
                            None => v.clone(),
                        };
                        (name.clone(), mine)
                    })
                    .collect()
            })
            .collect();
        Ok((per_rank, full.into_iter().map(|(n, s, _)| (n, s)).collect()))
    }

    /// The training step of one worker of `strategy` (see
    /// `dagger_tensor::task_step::strategy`) for a batch of `batch`: the
    /// stack split `strategy.tensor` ways on a replica's share of the batch,
    /// unrolled over `strategy.micro` micro-batches, with `optimizer`'s
    /// update and, with several replicas, data-parallel all-reduces (in
    /// buckets of about `bucket_bytes`). Errs with [`Error::Settings`],
    /// naming the block and the sizes, when a hidden width or the batch
    /// does not split so.
    pub fn strategy_step(
        &self,
        strategy: Strategy,
        batch: usize,
        optimizer: &dyn Optimizer,
        bucket_bytes: usize,
    ) -> Result<Net> {
        let s = strategy;
        if let Some((b, &(hidden, _))) = self
            .blocks
            .iter()
            .enumerate()
            .find(|(_, (hidden, _))| !hidden.is_multiple_of(s.tensor))
        {
            return Err(Error::Settings(format!(
                "{s}: block {b}'s hidden width {hidden} does not split {} ways",
                s.tensor
            )));
        }
        if !batch.is_multiple_of(s.data * s.micro) {
            return Err(Error::Settings(format!(
                "{s}: a batch of {batch} does not split into {} x {} parts",
                s.data, s.micro
            )));
        }
        let (net, loss) = self.net(batch / (s.data * s.micro), s.tensor)?;
        let (net, loss) = net.micro_batched(loss, s.micro)?;
        if s.data > 1 {
            net.data_parallel_step(loss, optimizer, bucket_bytes)
        } else {
            net.train_step(loss, &[], optimizer)
        }
    }

    /// Sets the initial parameters of `lowered`, the lowered
    /// [`strategy_step`](Self::strategy_step) `step` of `strategy`: the
    /// optimizer's state from `step`'s net (drawn from `seed`), and each
    /// worker of the grid its shard of the whole model's initial values
    /// (the same as one device's from `seed`). Returns the whole
    /// parameters' names and shapes, to join the shards back with
    /// [`whole_params`](Self::whole_params).
    pub fn init_lowered(
        &self,
        lowered: &mut TaskStep,
        step: &Net,
        strategy: Strategy,
        batch: usize,
        seed: u64,
    ) -> Result<FullShapes> {
        for (name, values) in step.initial_params(seed) {
            // The model's parameters are all `block...`; the rest is state.
            if !name.starts_with("block") {
                lowered
                    .set_param(&name, &values)
                    .map_err(|e| Error::Settings(e.to_string()))?;
            }
        }
        let (shards, full) = self.initial_shards(strategy.tensor, batch, seed)?;
        for w in 0..strategy.workers() {
            for (name, values) in &shards[w % strategy.tensor] {
                lowered
                    .set_worker_param(w, name, values)
                    .map_err(|e| Error::Settings(e.to_string()))?;
            }
        }
        Ok(full)
    }

    /// The whole parameters named in `full` (as [`initial_shards`](Self::initial_shards)
    /// returns them) joined from `shards`, shard `t`'s named values at `t`.
    pub fn whole_params(full: &FullShapes, shards: &[NamedParams]) -> NamedParams {
        join_shards(full, shards, BlockStack::shard_axis)
    }

    /// How a parameter is split: the axis its shards cut (`None`: replicated).
    pub(crate) fn shard_axis(name: &str) -> Option<usize> {
        if name.ends_with("fc1.weight") {
            Some(1)
        } else if name.ends_with("fc1.bias") || name.ends_with("fc2.weight") {
            Some(0)
        } else {
            None
        }
    }
}

/// Part `rank` of `n` of `values` (shape `shape`) along `axis`.
pub(crate) fn shard(values: &[f32], shape: &Shape, axis: usize, rank: usize, n: usize) -> Vec<f32> {
    let dims = shape.dims();
    let (outer, extent): (usize, usize) = (dims[..axis].iter().product(), dims[axis]);
    let inner: usize = dims[axis + 1..].iter().product();
    let part = extent / n;
    let mut out = Vec::with_capacity(values.len() / n);
    for o in 0..outer {
        let start = (o * extent + rank * part) * inner;
        out.extend_from_slice(&values[start..start + part * inner]);
    }
    out
}

/// The whole tensor from its `n` shards along `axis`.
fn unshard(shards: &[&[f32]], shape: &Shape, axis: usize) -> Vec<f32> {
    let dims = shape.dims();
    let outer: usize = dims[..axis].iter().product();
    let n = shards.len();
    let chunk = shards[0].len() / outer.max(1);
    let mut out = Vec::with_capacity(shards[0].len() * n);
    for o in 0..outer {
        for s in shards {
            out.extend_from_slice(&s[o * chunk..(o + 1) * chunk]);
        }
    }
    out
}

/// The whole model's parameter names and shapes.
pub type FullShapes = Vec<(String, Shape)>;

/// A tensor-parallel trainer (see the [module docs](self)).
pub struct TensorParallel {
    workers: usize,
    full_shapes: FullShapes,
    engine: Engine,
}

/// What runs the workers' steps.
enum Engine {
    /// Threads: the step lowered to tasks
    /// ([`task_step`](dagger_tensor::task_step)), its data x tensor grid
    /// of workers run by the runtime's executor.
    Lowered(Box<TaskStep>),
    /// GPUs or a cluster's ranks: a replica each.
    Replicas(DataParallel),
}

impl TensorParallel {
    /// Splits `model` over `workers` (threads, or the ranks of a cluster:
    /// this process then holds its rank's shards); the initial parameters
    /// are the whole model's from `seed` (as one device would draw them),
    /// cut into shards. Threads run the step lowered to tasks.
    pub fn new(
        model: &BlockStack,
        workers: Workers,
        batch: usize,
        seed: u64,
        optimizer: &dyn Optimizer,
    ) -> Result<TensorParallel> {
        let n = workers.count();
        if matches!(workers, Workers::Threads(_)) {
            let grid = Strategy {
                data: 1,
                tensor: n,
                micro: 1,
            };
            return Self::lowered(model, grid, batch, seed, optimizer, 0);
        }
        let (values, full_shapes) = model.initial_shards(n, batch, seed)?;
        let (net, loss) = model.net(batch, n)?;
        let step = net.train_step(loss, &[], optimizer)?;
        let shards = |rank: usize| Ok((step.clone(), Start::Values(values[rank].clone())));
        let options = DataParallelOptions {
            global_batch: batch,
            bucket_bytes: 0,
            seed,
        };
        let inner =
            DataParallel::with_workers(workers, ParallelGroup::Tensor, shards, false, options)?;
        Ok(TensorParallel {
            workers: n,
            full_shapes,
            engine: Engine::Replicas(inner),
        })
    }

    /// `dp` data-parallel replicas of `model` split `tp` ways, on a
    /// `dp x tp` grid of workers of the runtime: worker `(d, t)` holds
    /// shard `t`, trains on part `d` of every batch of `global_batch`, sums
    /// partial results with the other shards of replica `d`, and averages
    /// gradients (in buckets of about `bucket_bytes`) with the other
    /// replicas of shard `t`.
    pub fn with_data_parallel(
        model: &BlockStack,
        (dp, tp): (usize, usize),
        global_batch: usize,
        seed: u64,
        optimizer: &dyn Optimizer,
        bucket_bytes: usize,
    ) -> Result<TensorParallel> {
        if dp == 0 || !global_batch.is_multiple_of(dp) {
            return Err(Error::Batch(format!(
                "a global batch of {global_batch} does not split evenly over {dp} replicas"
            )));
        }
        let grid = Strategy {
            data: dp,
            tensor: tp,
            micro: 1,
        };
        Self::lowered(model, grid, global_batch, seed, optimizer, bucket_bytes)
    }

    /// `model`'s step for `grid` lowered to tasks, each worker holding its
    /// shard of the initial parameters from `seed`.
    fn lowered(
        model: &BlockStack,
        grid: Strategy,
        batch: usize,
        seed: u64,
        optimizer: &dyn Optimizer,
        bucket_bytes: usize,
    ) -> Result<TensorParallel> {
        let step = model.strategy_step(grid, batch, optimizer, bucket_bytes)?;
        let options = LowerOptions {
            data: grid.data,
            tensor: grid.tensor,
            ..LowerOptions::default()
        };
        let lowered = |e: LowerError| Error::Settings(format!("{grid}: {e}"));
        let mut lowered_step =
            lower_step(&step, &StepPlacement::OneDevice, options).map_err(lowered)?;
        let full_shapes = model.init_lowered(&mut lowered_step, &step, grid, batch, seed)?;
        Ok(TensorParallel {
            workers: grid.tensor,
            full_shapes,
            engine: Engine::Lowered(Box::new(lowered_step)),
        })
    }

    /// One training step on the whole batch (every worker sees all of it,
    /// or its replica's share).
    pub fn step(&mut self, x: &[f32], y: &[f32]) -> Result<f32> {
        let batch = [("x", x), ("y", y)];
        match &mut self.engine {
            Engine::Replicas(inner) => inner.step(&batch),
            Engine::Lowered(step) => {
                let outputs = step
                    .run(Runtime::global(), &batch)
                    .map_err(|e| Error::Batch(e.to_string()))?;
                Ok(outputs[0][0])
            }
        }
    }

    /// Worker `w`'s parameters, with the optimizer state.
    fn worker_params(&self, w: usize) -> Result<NamedParams> {
        match &self.engine {
            Engine::Replicas(inner) => inner.worker_params(w),
            Engine::Lowered(step) => {
                let names: Vec<String> = step
                    .params()
                    .map_err(|e| Error::Settings(e.to_string()))?
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect();
                names
                    .into_iter()
                    .map(|name| {
                        let values = step
                            .worker_param(w, &name)
                            .map_err(|e| Error::Settings(e.to_string()))?;
                        Ok((name, values))
                    })
                    .collect()
            }
        }
    }

    /// This process's shards (a cluster's rank), or worker 0's (threads),
    /// with the optimizer state.
    pub fn local_shards(&self) -> Result<NamedParams> {
        self.worker_params(0)
    }

    /// Rank `rank`'s shards of whole-model parameters `full` (as
    /// [`params`](Self::params) returns them).
    pub fn shard_of(&self, full: &NamedParams, rank: usize) -> NamedParams {
        full.iter()
            .map(|(name, v)| {
                let shape = &self
                    .full_shapes
                    .iter()
                    .find(|(n, _)| n == name)
                    .expect("a model parameter")
                    .1;
                let mine = match BlockStack::shard_axis(name) {
                    Some(axis) => shard(v, shape, axis, rank, self.workers),
                    None => v.clone(),
                };
                (name.clone(), mine)
            })
            .collect()
    }

    /// The model's parameters, shards joined (optimizer state excluded);
    /// with thread workers only (a cluster's rank holds just its shards:
    /// see [`local_shards`](Self::local_shards)).
    pub fn params(&self) -> Result<NamedParams> {
        if let Engine::Replicas(inner) = &self.engine {
            if inner.is_local() {
                return Err(Error::Batch(
                    "a rank holds only its own shards: use local_shards".into(),
                ));
            }
        }
        let per_worker: Vec<NamedParams> = (0..self.workers)
            .map(|r| self.worker_params(r))
            .collect::<Result<_>>()?;
        Ok(join_shards(
            &self.full_shapes,
            &per_worker,
            BlockStack::shard_axis,
        ))
    }
}

/// The whole parameters named in `full_shapes` from every worker's shards
/// (`per_worker[r]`: worker `r`'s named values), joined along the axis
/// `axis_of` gives (`None`: every worker holds all of it; worker 0's counts).
pub(crate) fn join_shards(
    full_shapes: &[(String, Shape)],
    per_worker: &[NamedParams],
    axis_of: impl Fn(&str) -> Option<usize>,
) -> NamedParams {
    full_shapes
        .iter()
        .map(|(name, shape)| {
            let parts: Vec<&[f32]> = per_worker
                .iter()
                .map(|p| {
                    p.iter()
                        .find(|(n, _)| n == name)
                        .map_or(&[][..], |(_, v)| v.as_slice())
                })
                .collect();
            let whole = match axis_of(name) {
                Some(axis) => unshard(&parts, shape, axis),
                None => parts[0].to_vec(),
            };
            (name.clone(), whole)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_join_back() {
        let shape = Shape::of(&[2, 6]);
        let v: Vec<f32> = (0..12).map(|i| i as f32).collect();
        for (axis, n) in [(1, 2), (1, 3), (0, 2)] {
            let parts: Vec<Vec<f32>> = (0..n).map(|r| shard(&v, &shape, axis, r, n)).collect();
            let refs: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
            assert_eq!(unshard(&refs, &shape, axis), v, "axis {axis}, {n} shards");
        }
        assert_eq!(shard(&v, &shape, 1, 1, 3), vec![2.0, 3.0, 8.0, 9.0]);
    }
}
