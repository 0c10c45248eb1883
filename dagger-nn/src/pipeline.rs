//! Pipeline-parallel training of an MLP: its layers cut into balanced
//! stages, one thread per stage, micro-batches scheduled GPipe-style or
//! 1F1B (see [`dagger_ir::sched::pipeline`]).
//!
//! Each stage has three compiled programs: a forward pass (input activation
//! to output activation), a backward pass that recomputes its forward from
//! the stored input activation (as GPipe does) and returns the gradients of
//! its parameters and of its input, and the optimizer's update. Stage `s`
//! sends activations to stage `s + 1` and gradients to stage `s - 1` over
//! channels (or, on a cluster, over UCX: `Pipeline::on_cluster`, with the
//! `cluster` feature);
//! gradients of the micro-batches are summed and scaled by `1 / M`, so one
//! step equals a step on the whole batch. [`Pipeline::with_data_parallel`]
//! runs several copies of the pipeline, each stage averaging its gradients
//! with its copies (data x pipeline parallelism).

#[cfg(feature = "cluster")]
use super::cluster_links::ClusterLinks;
use super::error::{Error, Result};
use super::io::NamedParams;
use super::net::Net;
use super::optim::Optimizer;
use super::replies::first_cause;
use super::stage::{Stage, StepData};
use super::stage_link::{channel_links, StageLinks};
use super::stage_model::{MlpSpec, StageModel};
use super::tensor_parallel::{join_shards, shard as shard_of, BlockStack};
#[cfg(feature = "cluster")]
use dagger_cluster::cluster::Cluster;
use dagger_ir::sched::pipeline::{balanced_stages, PipelineKind, PipelineOp, PipelineSchedule};
use dagger_tensor::{thread_ring, CompileOptions, Program, Shape, ThreadLink};
use std::ops::Range;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Settings of a pipeline run.
#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    /// Stages (threads).
    pub stages: usize,
    /// Micro-batches per step.
    pub micro_batches: usize,
    /// Samples per step (a multiple of `micro_batches`).
    pub batch: usize,
    /// GPipe or 1F1B.
    pub kind: PipelineKind,
    /// Seed of the initial parameters (the same as [`Net::init_params`]'s
    /// on the whole model).
    pub seed: u64,
}

enum Command {
    Step(StepData),
    Params,
}

enum Reply {
    /// The step's loss and the stage's passes, timed.
    Step(f32, Vec<PipelineOp>),
    Params(NamedParams),
}

struct StageThread {
    commands: Sender<Command>,
    replies: Receiver<Result<Reply>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for StageThread {
    fn drop(&mut self) {
        let (closed, _) = channel();
        self.commands = closed;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where the stages run.
enum Stages {
    /// One thread per stage, in this process.
    Threads(Vec<StageThread>),
    /// This rank's stage of a cluster (rank `s` runs stage `s`).
    #[cfg(feature = "cluster")]
    Local {
        stage: Box<Stage>,
        links: ClusterLinks,
    },
}

/// A pipeline-parallel trainer (see the [module docs](self)).
pub struct Pipeline {
    options: PipelineOptions,
    model: Arc<dyn StageModel>,
    /// The units (layers, blocks) of each stage.
    pub layers: Vec<Range<usize>>,
    /// Bytes of each stage's planned buffers (its three programs; on a
    /// cluster only this rank's stage is known, the others read 0; with
    /// tensor parallelism, one shard's).
    pub memory: Vec<usize>,
    /// Data-parallel copies of the pipeline (1: none).
    replicas: usize,
    /// Tensor-parallel shards of every stage (1: none).
    shards: usize,
    /// The whole model's parameters' shapes.
    full_shapes: Vec<(String, Shape)>,
    stages: Stages,
    last_schedule: Option<PipelineSchedule>,
}

/// Stage `s`'s planned bytes.
fn stage_bytes(stage: &Stage) -> usize {
    [
        stage.forward.as_ref(),
        Some(&stage.backward),
        Some(&stage.update),
    ]
    .into_iter()
    .flatten()
    .map(|p| p.stats().planned_bytes)
    .sum()
}

impl Pipeline {
    /// Cuts `spec`'s layers into `options.stages` stages balanced by their
    /// work and starts one thread per stage, each with the parameters the
    /// whole model gets from `options.seed`.
    pub fn new(
        spec: MlpSpec,
        options: PipelineOptions,
        optimizer: &dyn Optimizer,
    ) -> Result<Pipeline> {
        Self::with_data_parallel(spec, options, optimizer, 1)
    }

    /// `replicas` data-parallel copies of the pipeline of [`new`](Self::new)
    /// on `replicas x stages` threads: copy `d` trains on part `d` of every
    /// batch, and each stage averages its gradients (and the loss) with the
    /// same stage of the other copies before its update.
    pub fn with_data_parallel(
        spec: MlpSpec,
        options: PipelineOptions,
        optimizer: &dyn Optimizer,
        replicas: usize,
    ) -> Result<Pipeline> {
        Self::on_threads(Arc::new(spec), options, optimizer, (replicas, 1))
    }

    /// Data, pipeline and tensor parallelism at once: `dp` copies of a
    /// pipeline of `options.stages` stages of `model`'s Megatron blocks,
    /// every stage split over `tp` tensor-parallel shards, on
    /// `dp x tp x stages` threads. Worker `(d, t, s)` runs stage `s`'s
    /// shard `t` on part `d` of every batch: it sums partial results with
    /// the other shards of its stage (Megatron's all-reduces, in its
    /// forward and backward programs), passes activations and gradients to
    /// shard `t` of the neighbouring stages, and averages its gradients
    /// with the other copies of `(t, s)` before its update.
    pub fn megatron(
        model: BlockStack,
        options: PipelineOptions,
        optimizer: &dyn Optimizer,
        (dp, tp): (usize, usize),
    ) -> Result<Pipeline> {
        if let Some(&(hidden, _)) = model.blocks.iter().find(|(h, _)| tp == 0 || h % tp != 0) {
            return Err(Error::Settings(format!(
                "a hidden width of {hidden} does not split over {tp} tensor-parallel shards"
            )));
        }
        Self::on_threads(Arc::new(model), options, optimizer, (dp, tp))
    }

    /// The trainer on `dp x tp x stages` threads.
    fn on_threads(
        model: Arc<dyn StageModel>,
        options: PipelineOptions,
        optimizer: &dyn Optimizer,
        (replicas, shards): (usize, usize),
    ) -> Result<Pipeline> {
        let k = options.stages;
        if replicas == 0 || !options.batch.is_multiple_of(replicas) {
            return Err(Error::Settings(format!(
                "a batch of {} does not split evenly over {replicas} replicas",
                options.batch
            )));
        }
        let share = PipelineOptions {
            batch: options.batch / replicas,
            ..options
        };
        // Per (shard, stage): a ring over the copies.
        let mut data_rings: Vec<Vec<ThreadLink>> =
            (0..shards * k).map(|_| thread_ring(replicas)).collect();
        let mut threads = Vec::with_capacity(replicas * shards * k);
        let mut layers = Vec::new();
        let mut memory = Vec::new();
        let mut full_shapes = Vec::new();
        for _ in 0..replicas {
            // Per stage of this copy: rings over the shards, for its
            // forward and its backward program.
            let mut tensor_rings: Vec<[Vec<ThreadLink>; 2]> = (0..k)
                .map(|_| [thread_ring(shards), thread_ring(shards)])
                .collect();
            for t in 0..shards {
                let built = Self::build_stages(&*model, share, optimizer, 0..k, (t, shards))?;
                memory = built.stages.iter().map(stage_bytes).collect();
                (layers, full_shapes) = (built.layers, built.full_shapes);
                let lanes = built.stages.into_iter().zip(channel_links(k));
                for (s, (mut stage, link)) in lanes.enumerate() {
                    if replicas > 1 {
                        stage.replicas = Some(Box::new(data_rings[t * k + s].remove(0)));
                    }
                    if shards > 1 {
                        let [forward, backward] = &mut tensor_rings[s];
                        stage.set_tensor_rings(
                            Box::new(forward.remove(0)),
                            Box::new(backward.remove(0)),
                        );
                    }
                    threads.push(spawn_stage(stage, Box::new(link), options.kind, k));
                }
            }
        }
        Ok(Pipeline {
            options,
            model,
            layers,
            memory,
            replicas,
            shards,
            full_shapes,
            stages: Stages::Threads(threads),
            last_schedule: None,
        })
    }

    /// As [`new`](Self::new), for the ranks of `cluster`: this process runs
    /// stage `rank` (`options.stages` must be the cluster's size) and
    /// every rank calls [`step`](Self::step) with the same batch.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn on_cluster(
        spec: MlpSpec,
        options: PipelineOptions,
        optimizer: &dyn Optimizer,
        cluster: Arc<Cluster>,
    ) -> Result<Pipeline> {
        let (rank, k) = (cluster.rank() as usize, cluster.size() as usize);
        if options.stages != k {
            return Err(Error::Settings(format!(
                "{} stages on a cluster of {k} ranks: one stage per rank",
                options.stages
            )));
        }
        let mut built = Self::build_stages(&spec, options, optimizer, rank..rank + 1, (0, 1))?;
        let stage = built.stages.pop().expect("one stage");
        let mut memory = vec![0; k];
        memory[rank] = stage_bytes(&stage);
        let links = ClusterLinks::new(cluster);
        let stages = Stages::Local {
            stage: Box::new(stage),
            links,
        };
        Ok(Pipeline {
            options,
            model: Arc::new(spec),
            layers: built.layers,
            memory,
            replicas: 1,
            shards: 1,
            full_shapes: built.full_shapes,
            stages,
            last_schedule: None,
        })
    }

    /// Checks the settings, balances the stages and builds stages `which`
    /// (as shard `shard` of `shards`) with the whole model's initial
    /// parameters.
    fn build_stages(
        model: &dyn StageModel,
        options: PipelineOptions,
        optimizer: &dyn Optimizer,
        which: Range<usize>,
        (shard, shards): (usize, usize),
    ) -> Result<BuiltStages> {
        let (k, m) = (options.stages, options.micro_batches);
        if k == 0 || k > model.units() {
            return Err(Error::Settings(format!(
                "{k} stages for {} layers: each stage needs at least one layer",
                model.units()
            )));
        }
        if m == 0 || !options.batch.is_multiple_of(m) {
            return Err(Error::Settings(format!(
                "a batch of {} does not split into {m} equal micro-batches",
                options.batch
            )));
        }
        let micro = options.batch / m;
        // Work per unit balances the stages.
        let layers = balanced_stages(&model.unit_costs(), k);
        // The whole model's initial parameters, as one device would draw them.
        let mut whole = Net::new();
        let x = whole.input("x", [micro, model.inputs()]);
        let out = model.add_units(&mut whole, x, 0..model.units(), 1)?;
        whole.set_outputs(vec![out])?;
        let mut init = Program::compile(&whole, CompileOptions::default())?;
        whole.init_params(&mut init, options.seed)?;
        let mut stages = Vec::with_capacity(which.len());
        for s in which {
            let units = layers[s].clone();
            let mut stage = Stage::build(model, units, (s, k), (m, micro), shards, optimizer)?;
            for (name, shape, values) in init.params() {
                if stage.params.iter().any(|p| p == name) {
                    match model.split_axis(name) {
                        Some(axis) => {
                            stage.set_param(name, &shard_of(values, shape, axis, shard, shards))?
                        }
                        None => stage.set_param(name, values)?,
                    }
                }
            }
            stages.push(stage);
        }
        let full_shapes = init
            .params()
            .into_iter()
            .map(|(name, shape, _)| (name.to_string(), shape.clone()))
            .collect();
        Ok(BuiltStages {
            layers,
            stages,
            full_shapes,
        })
    }

    /// One training step on a batch of `x` (`batch x inputs`) and one-hot
    /// `y`; returns the mean loss.
    pub fn step(&mut self, x: &[f32], y: &[f32]) -> Result<f32> {
        let (m, batch, k) = (
            self.options.micro_batches,
            self.options.batch,
            self.options.stages,
        );
        let classes = self.model.width_out(self.model.units() - 1);
        let inputs = self.model.inputs();
        if x.len() != batch * inputs || y.len() != batch * classes {
            return Err(Error::Settings(format!(
                "a step takes {} inputs and {} targets, got {} and {}",
                batch * inputs,
                batch * classes,
                x.len(),
                y.len()
            )));
        }
        let replicas = self.replicas;
        let epoch = Instant::now();
        // Stage s of copy d: its copy's share of the batch, in micro-batches.
        let data_for = |d: usize, s: usize| {
            let split = |data: &[f32]| -> Vec<Vec<f32>> {
                let share = data.len() / replicas;
                let part = &data[d * share..(d + 1) * share];
                part.chunks(part.len() / m).map(<[f32]>::to_vec).collect()
            };
            StepData {
                x: if s == 0 { split(x) } else { Vec::new() },
                y: if s + 1 == k { split(y) } else { Vec::new() },
                epoch,
            }
        };
        let mut ops = Vec::new();
        let loss = match &mut self.stages {
            #[cfg(feature = "cluster")]
            Stages::Local { stage, links } => {
                let data = data_for(0, stage.index);
                let (loss, mine) = stage.step(self.options.kind, k, data, links)?;
                ops = mine;
                loss
            }
            Stages::Threads(threads) => {
                let lane = self.shards * k;
                for (s, stage) in threads.iter().enumerate() {
                    stage
                        .commands
                        .send(Command::Step(data_for(s / lane, s % k)))
                        .map_err(|_| Error::StageLost(s, "its thread ended".into()))?;
                }
                // Every stage answers (a failed one stops: see
                // `spawn_stage`), so no reply of this step is left over.
                let replies =
                    threads
                        .iter()
                        .enumerate()
                        .map(|(s, stage)| match stage.replies.recv() {
                            Ok(Ok(Reply::Step(l, timed))) => Ok((l, timed)),
                            Ok(Ok(Reply::Params(_))) => {
                                unreachable!("a step replies with its loss")
                            }
                            Ok(Err(e)) => Err(e),
                            Err(_) => Err(Error::StageLost(s, "its thread ended".into())),
                        });
                let stepped =
                    first_cause(replies.collect(), |e| matches!(e, Error::StageLost(..)))?;
                let mut loss = 0.0;
                for (s, (l, timed)) in stepped.into_iter().enumerate() {
                    loss = l;
                    if s < k {
                        ops.extend(timed);
                    }
                }
                loss
            }
        };
        self.last_schedule = Some(PipelineSchedule {
            kind: self.options.kind,
            stages: k,
            micro_batches: m,
            ops,
        });
        Ok(loss)
    }

    /// The last step's passes as they ran (copy 0's stages; on a cluster,
    /// this rank's stage, timed by its own clock): the measured counterpart
    /// of [`simulate`](dagger_ir::sched::pipeline::simulate), for the same
    /// bubble measure and Gantt chart.
    pub fn last_schedule(&self) -> Option<&PipelineSchedule> {
        self.last_schedule.as_ref()
    }

    /// The parameters and optimizer state of every stage (on a cluster:
    /// of this rank's stage), by name. With tensor parallelism, the model's
    /// parameters with their shards joined (optimizer state excluded).
    pub fn params(&self) -> Result<NamedParams> {
        match &self.stages {
            #[cfg(feature = "cluster")]
            Stages::Local { stage, .. } => Ok(stage.named_params()),
            Stages::Threads(threads) => self.threads_params(threads),
        }
    }

    /// [`params`](Self::params) of stages on `threads`.
    fn threads_params(&self, threads: &[StageThread]) -> Result<NamedParams> {
        // Copy 0's stages (every copy holds the same), shard by shard.
        let k = self.options.stages;
        let mut per_shard: Vec<NamedParams> = Vec::with_capacity(self.shards);
        for (s, stage) in threads.iter().take(self.shards * k).enumerate() {
            let lost = |why: &str| Error::StageLost(s % k, why.into());
            stage
                .commands
                .send(Command::Params)
                .map_err(|_| lost("its thread ended"))?;
            let params = match stage.replies.recv() {
                Ok(Ok(Reply::Params(p))) => p,
                Ok(Err(e)) => return Err(e),
                _ => return Err(lost("no parameters came back")),
            };
            match per_shard.get_mut(s / k) {
                Some(all) => all.extend(params),
                None => per_shard.push(params),
            }
        }
        if self.shards == 1 {
            return Ok(per_shard.pop().unwrap_or_default());
        }
        Ok(join_shards(&self.full_shapes, &per_shard, |name| {
            self.model.split_axis(name)
        }))
    }
}

/// Stages built for one shard, with what every shard shares.
struct BuiltStages {
    /// The units of every stage.
    layers: Vec<Range<usize>>,
    stages: Vec<Stage>,
    /// The whole model's parameters' shapes.
    full_shapes: Vec<(String, Shape)>,
}

/// Starts a stage's thread. A stage whose step fails stops: it drops its
/// program and links, so that its neighbours and ring peers learn it is
/// gone instead of waiting for it, and answers later calls with why.
fn spawn_stage(
    stage: Stage,
    links: Box<dyn StageLinks>,
    kind: PipelineKind,
    stages: usize,
) -> StageThread {
    let (commands, inbox) = channel::<Command>();
    let (outbox, replies) = channel::<Result<Reply>>();
    let index = stage.index;
    let thread = std::thread::Builder::new()
        .name(format!("dagger-stage-{index}"))
        .spawn(move || {
            let mut live = Ok((stage, links));
            for command in inbox {
                let reply = match (&mut live, command) {
                    (Err(why), _) => Err(Error::StageLost(
                        index,
                        format!("an earlier step failed: {why}"),
                    )),
                    (Ok((stage, links)), Command::Step(data)) => {
                        let stepped = stage.step(kind, stages, data, links.as_mut());
                        if let Err(e) = &stepped {
                            live = Err(e.to_string());
                        }
                        stepped.map(|(loss, ops)| Reply::Step(loss, ops))
                    }
                    (Ok((stage, _)), Command::Params) => Ok(Reply::Params(stage.named_params())),
                };
                if outbox.send(reply).is_err() {
                    return;
                }
            }
        })
        .expect("spawn a stage thread");
    StageThread {
        commands,
        replies,
        thread: Some(thread),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, MlpSpec, Sgd};

    #[test]
    fn a_stage_whose_step_fails_lets_its_neighbours_go_and_says_why_later() {
        let spec = MlpSpec {
            inputs: 3,
            widths: vec![4, 2],
            activation: Activation::Tanh,
        };
        let options = PipelineOptions {
            stages: 2,
            micro_batches: 1,
            batch: 2,
            kind: PipelineKind::GPipe,
            seed: 1,
        };
        let optimizer = Sgd { lr: 0.1 };
        let built = Pipeline::build_stages(&spec, options, &optimizer, 0..2, (0, 1)).unwrap();
        let first = built.stages.into_iter().next().unwrap();
        let mut links = channel_links(2);
        let mut second = links.pop().unwrap();
        let stage = spawn_stage(first, Box::new(links.pop().unwrap()), options.kind, 2);
        // One value short of a micro-batch of 2 x 3 inputs.
        let data = StepData {
            x: vec![vec![0.5; 5]],
            y: Vec::new(),
            epoch: Instant::now(),
        };
        stage.commands.send(Command::Step(data)).unwrap();
        let Err(why) = stage.replies.recv().unwrap() else {
            panic!("a micro-batch of the wrong size was taken");
        };
        assert_eq!(
            why.to_string(),
            "`x` needs 6 elements (shape [2, 3]), got 5"
        );
        // The next stage learns that this one is gone instead of waiting.
        assert_eq!(
            second.recv_prev(),
            Err("the neighbouring stage is gone".into())
        );
        stage.commands.send(Command::Params).unwrap();
        let Err(later) = stage.replies.recv().unwrap() else {
            panic!("a stopped stage answered");
        };
        let expected = format!("stage 0 stopped: an earlier step failed: {why}");
        assert_eq!(later.to_string(), expected);
    }
}
