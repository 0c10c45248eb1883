//! Pipeline-parallel training of an MLP: its layers cut into balanced
//! stages, one thread per stage, micro-batches scheduled GPipe-style or
//! 1F1B (see [`crate::ir::sched::pipeline`]).
//!
//! Each stage has three compiled programs: a forward pass (input activation
//! to output activation), a backward pass that recomputes its forward from
//! the stored input activation (as GPipe does) and returns the gradients of
//! its parameters and of its input, and the optimizer's update. Stage `s`
//! sends activations to stage `s + 1` and gradients to stage `s - 1` over
//! channels; gradients of the micro-batches are summed and scaled by
//! `1 / M`, so one step equals a step on the whole batch.

use super::data_parallel::NamedParams;
use super::net::{Activation, Net};
use super::optim::Optimizer;
use crate::ir::sched::pipeline::{balanced_stages, stage_order, Pass, PipelineKind};
use dagger_ir::tensor::{TensorError, TensorGraph};
use dagger_runtime::tensor::{CompileOptions, Program, ProgramError};
use std::ops::Range;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

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

/// Why a pipeline run failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Building or running a stage's program failed.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// The settings do not fit the model or the batch.
    #[error("{0}")]
    Settings(String),
    /// A stage's thread stopped.
    #[error("stage {0} stopped: {1}")]
    StageLost(usize, String),
}

impl From<TensorError> for PipelineError {
    fn from(e: TensorError) -> Self {
        PipelineError::Program(e.into())
    }
}

/// A stage's three programs and what it knows of the model.
struct Stage {
    index: usize,
    last: bool,
    forward: Option<Program>,
    backward: Program,
    update: Program,
    params: Vec<String>,
    /// Name of the stage's input: `x` on the first stage, `act_in` after.
    input: &'static str,
    micro_batches: usize,
}

/// Per step: the stage's inputs (micro-batches of `x` on the first stage,
/// of `y` on the last).
struct StepData {
    x: Vec<Vec<f32>>,
    y: Vec<Vec<f32>>,
}

enum Command {
    Step(StepData),
    Params,
}

enum Reply {
    Loss(f32),
    Params(NamedParams),
}

/// Channels of a stage to its neighbours.
struct Links {
    from_prev: Option<Receiver<Vec<f32>>>,
    to_next: Option<Sender<Vec<f32>>>,
    from_next: Option<Receiver<Vec<f32>>>,
    to_prev: Option<Sender<Vec<f32>>>,
}

impl Stage {
    fn build(
        spec: &MlpSpec,
        layers: Range<usize>,
        (index, stages): (usize, usize),
        (micro_batches, micro): (usize, usize),
        optimizer: &dyn Optimizer,
    ) -> Result<Stage, PipelineError> {
        let last = index + 1 == stages;
        let width_in = if layers.start == 0 {
            spec.inputs
        } else {
            spec.widths[layers.start - 1]
        };
        let width_out = spec.widths[layers.end - 1];
        let input = if index == 0 { "x" } else { "act_in" };
        // Forward: input activation to output activation.
        let mut fwd = Net::new();
        let a = fwd.input(input, [micro, width_in]);
        let out = fwd.mlp_layers(a, &spec.widths, spec.activation, layers.clone())?;
        let params: Vec<String> = fwd
            .graph()
            .named()
            .filter(|(_, _, n)| matches!(n.op, dagger_ir::tensor::TensorOp::Param { .. }))
            .map(|(_, n, _)| n.to_string())
            .collect();
        let forward = if last {
            None
        } else {
            let mut g = fwd.clone();
            g.set_outputs(vec![out])?;
            Some(Program::compile(&g, CompileOptions::default())?)
        };
        // Backward: the loss (last stage) or sum(out * g_out), differentiated.
        let mut bwd = fwd.clone();
        let loss = if last {
            let y = bwd.input("y", [micro, width_out]);
            bwd.cross_entropy(out, y)?
        } else {
            let g_out = bwd.input("g_out", [micro, width_out]);
            let weighted = bwd.mul(out, g_out)?;
            bwd.sum(weighted, &[0, 1], false)?
        };
        let mut wrt = bwd.graph().params();
        if index > 0 {
            wrt.insert(0, a);
        }
        let (g, grads) = bwd.graph().grad(loss, &wrt)?;
        let mut g: TensorGraph = g;
        let mut outputs = vec![loss];
        outputs.extend(grads);
        g.set_outputs(outputs)?;
        let backward = Program::compile(&g, CompileOptions::default())?;
        // Update: the optimizer's rule on gradients fed as inputs.
        let mut upd = Net::new();
        let mut ps = Vec::new();
        let mut gs = Vec::new();
        for name in &params {
            let shape = fwd.shape(fwd.by_name(name).expect("param")).clone();
            ps.push(upd.param(name, shape.clone()));
            gs.push(upd.input(&format!("grad.{name}"), shape));
        }
        optimizer.apply(&mut upd, &ps, &gs)?;
        let update = Program::compile(&upd, CompileOptions::default())?;
        Ok(Stage {
            index,
            last,
            forward,
            backward,
            update,
            params,
            input,
            micro_batches,
        })
    }

    fn set_param(&mut self, name: &str, values: &[f32]) -> Result<(), TensorError> {
        if let Some(f) = &mut self.forward {
            f.set(name, values)?;
        }
        self.backward.set(name, values)?;
        self.update.set(name, values)
    }

    /// One step: the passes in schedule order; returns the mean loss (last stage).
    fn step(
        &mut self,
        kind: PipelineKind,
        stages: usize,
        data: StepData,
        links: &Links,
    ) -> Result<f32, PipelineError> {
        let micro = self.micro_batches;
        let lost = |what: &str| {
            PipelineError::StageLost(self.index, format!("its {what} neighbour is gone"))
        };
        let mut stored: Vec<Option<Vec<f32>>> = vec![None; micro];
        let mut sums: Vec<Vec<f32>> = Vec::new();
        let mut loss = 0.0;
        let first_grad = usize::from(self.index > 0) + 1;
        for (pass, m) in stage_order(kind, stages, micro, self.index) {
            match pass {
                Pass::Forward => {
                    let act = match &links.from_prev {
                        None => data.x[m].clone(),
                        Some(rx) => rx.recv().map_err(|_| lost("previous"))?,
                    };
                    if let (Some(f), Some(tx)) = (&mut self.forward, &links.to_next) {
                        f.set(self.input, &act)?;
                        f.run()?;
                        tx.send(f.output(0).to_vec()).map_err(|_| lost("next"))?;
                    }
                    stored[m] = Some(act);
                }
                Pass::Backward => {
                    let act = stored[m].take().expect("forward before backward");
                    self.backward.set(self.input, &act)?;
                    match &links.from_next {
                        None => self.backward.set("y", &data.y[m])?,
                        Some(rx) => self
                            .backward
                            .set("g_out", &rx.recv().map_err(|_| lost("next"))?)?,
                    }
                    self.backward.run()?;
                    if self.last {
                        loss += self.backward.output(0)[0];
                    }
                    if let Some(tx) = &links.to_prev {
                        tx.send(self.backward.output(1).to_vec())
                            .map_err(|_| lost("previous"))?;
                    }
                    for k in 0..self.params.len() {
                        let g = self.backward.output(first_grad + k);
                        match sums.get_mut(k) {
                            Some(acc) => acc.iter_mut().zip(g).for_each(|(a, v)| *a += v),
                            None => sums.push(g.to_vec()),
                        }
                    }
                }
            }
        }
        let scale = 1.0 / micro as f32;
        for (name, mut acc) in self.params.clone().into_iter().zip(sums) {
            acc.iter_mut().for_each(|v| *v *= scale);
            self.update.set(&format!("grad.{name}"), &acc)?;
        }
        self.update.run()?;
        for name in self.params.clone() {
            let values = self.update.get(&name)?.to_vec();
            self.set_param(&name, &values)?;
        }
        Ok(loss * scale)
    }
}

struct StageThread {
    commands: Sender<Command>,
    replies: Receiver<Result<Reply, PipelineError>>,
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

/// A pipeline-parallel trainer (see the [module docs](self)).
pub struct Pipeline {
    options: PipelineOptions,
    spec: MlpSpec,
    /// The layers of each stage.
    pub layers: Vec<Range<usize>>,
    /// Bytes of each stage's planned buffers (its three programs).
    pub memory: Vec<usize>,
    stages: Vec<StageThread>,
}

impl Pipeline {
    /// Cuts `spec`'s layers into `options.stages` stages balanced by their
    /// work and starts one thread per stage, each with the parameters the
    /// whole model gets from `options.seed`.
    pub fn new(
        spec: MlpSpec,
        options: PipelineOptions,
        optimizer: &dyn Optimizer,
    ) -> Result<Pipeline, PipelineError> {
        let (k, m) = (options.stages, options.micro_batches);
        if k == 0 || k > spec.widths.len() {
            return Err(PipelineError::Settings(format!(
                "{k} stages for {} layers: each stage needs at least one layer",
                spec.widths.len()
            )));
        }
        if m == 0 || !options.batch.is_multiple_of(m) {
            return Err(PipelineError::Settings(format!(
                "a batch of {} does not split into {m} equal micro-batches",
                options.batch
            )));
        }
        let micro = options.batch / m;
        // Work per layer (multiply-adds of its product) balances the stages.
        let mut fan_in = spec.inputs;
        let costs: Vec<f64> = spec
            .widths
            .iter()
            .map(|&w| {
                let c = (fan_in * w) as f64;
                fan_in = w;
                c
            })
            .collect();
        let layers = balanced_stages(&costs, k);
        // The whole model's initial parameters, as one net would draw them.
        let mut whole = Net::new();
        let x = whole.input("x", [micro, spec.inputs]);
        let out = whole.mlp(x, &spec.widths, spec.activation)?;
        whole.set_outputs(vec![out])?;
        let mut init = Program::compile(&whole, CompileOptions::default())?;
        whole.init_params(&mut init, options.seed)?;
        let initial: NamedParams = init
            .params()
            .into_iter()
            .map(|(n, _, d)| (n.to_string(), d.to_vec()))
            .collect();

        let mut links: Vec<Links> = (0..k)
            .map(|_| Links {
                from_prev: None,
                to_next: None,
                from_next: None,
                to_prev: None,
            })
            .collect();
        for s in 0..k.saturating_sub(1) {
            let (tx, rx) = channel();
            links[s].to_next = Some(tx);
            links[s + 1].from_prev = Some(rx);
            let (tx, rx) = channel();
            links[s + 1].to_prev = Some(tx);
            links[s].from_next = Some(rx);
        }
        let mut stages = Vec::with_capacity(k);
        let mut memory = Vec::with_capacity(k);
        for (s, link) in links.into_iter().enumerate() {
            let mut stage = Stage::build(&spec, layers[s].clone(), (s, k), (m, micro), optimizer)?;
            memory.push(
                [
                    stage.forward.as_ref(),
                    Some(&stage.backward),
                    Some(&stage.update),
                ]
                .into_iter()
                .flatten()
                .map(|p| p.stats().planned_bytes)
                .sum(),
            );
            for (name, values) in &initial {
                if stage.params.contains(name) {
                    stage.set_param(name, values)?;
                }
            }
            stages.push(spawn_stage(stage, link, options.kind, k));
        }
        Ok(Pipeline {
            options,
            spec,
            layers,
            memory,
            stages,
        })
    }

    /// One training step on a batch of `x` (`batch x inputs`) and one-hot
    /// `y`; returns the mean loss.
    pub fn step(&mut self, x: &[f32], y: &[f32]) -> Result<f32, PipelineError> {
        let (m, batch) = (self.options.micro_batches, self.options.batch);
        let classes = *self.spec.widths.last().expect("layers");
        if x.len() != batch * self.spec.inputs || y.len() != batch * classes {
            return Err(PipelineError::Settings(format!(
                "a step takes {} inputs and {} targets, got {} and {}",
                batch * self.spec.inputs,
                batch * classes,
                x.len(),
                y.len()
            )));
        }
        let split = |data: &[f32]| -> Vec<Vec<f32>> {
            data.chunks(data.len() / m).map(<[f32]>::to_vec).collect()
        };
        let k = self.stages.len();
        for (s, stage) in self.stages.iter().enumerate() {
            let data = StepData {
                x: if s == 0 { split(x) } else { Vec::new() },
                y: if s + 1 == k { split(y) } else { Vec::new() },
            };
            stage
                .commands
                .send(Command::Step(data))
                .map_err(|_| PipelineError::StageLost(s, "its thread ended".into()))?;
        }
        let mut loss = 0.0;
        for (s, stage) in self.stages.iter().enumerate() {
            match stage.replies.recv() {
                Ok(Ok(Reply::Loss(l))) => {
                    if s + 1 == k {
                        loss = l;
                    }
                }
                Ok(Ok(Reply::Params(_))) => unreachable!("a step replies with its loss"),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(PipelineError::StageLost(s, "its thread ended".into())),
            }
        }
        Ok(loss)
    }

    /// Every stage's parameters and optimizer state, by name.
    pub fn params(&self) -> Result<NamedParams, PipelineError> {
        let mut all = Vec::new();
        for (s, stage) in self.stages.iter().enumerate() {
            stage
                .commands
                .send(Command::Params)
                .map_err(|_| PipelineError::StageLost(s, "its thread ended".into()))?;
            match stage.replies.recv() {
                Ok(Ok(Reply::Params(p))) => all.extend(p),
                Ok(Err(e)) => return Err(e),
                _ => {
                    return Err(PipelineError::StageLost(
                        s,
                        "no parameters came back".into(),
                    ))
                }
            }
        }
        Ok(all)
    }
}

fn spawn_stage(mut stage: Stage, links: Links, kind: PipelineKind, stages: usize) -> StageThread {
    let (commands, inbox) = channel::<Command>();
    let (outbox, replies) = channel::<Result<Reply, PipelineError>>();
    let thread = std::thread::Builder::new()
        .name(format!("dagger-stage-{}", stage.index))
        .spawn(move || {
            for command in inbox {
                let reply = match command {
                    Command::Step(data) => stage.step(kind, stages, data, &links).map(Reply::Loss),
                    Command::Params => Ok(Reply::Params(
                        stage
                            .update
                            .params()
                            .into_iter()
                            .map(|(n, _, d)| (n.to_string(), d.to_vec()))
                            .collect(),
                    )),
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
