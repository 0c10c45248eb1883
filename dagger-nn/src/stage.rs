//! One stage of a pipeline: its three programs (forward, backward that
//! recomputes from the stored input activation, update) and the step that
//! runs its passes in the schedule's order (see [`super::pipeline`]).

use super::error::{Error, Result};
use super::io::NamedParams;
use super::net::Net;
use super::optim::Optimizer;
use super::stage_link::StageLinks;
use super::stage_model::StageModel;
use dagger_ir::sched::pipeline::{stage_order, Pass, PipelineKind, PipelineOp};
use dagger_tensor::{
    ring_all_reduce_mean, CollectiveError, CompileOptions, ParallelGroup, Program, RingLink,
    TensorGraph,
};
use std::ops::Range;
use std::time::Instant;

/// A stage's three programs and what it knows of the model.
pub(crate) struct Stage {
    pub(crate) index: usize,
    pub(crate) last: bool,
    pub(crate) forward: Option<Program>,
    pub(crate) backward: Program,
    pub(crate) update: Program,
    pub(crate) params: Vec<String>,
    /// Name of the stage's input: `x` on the first stage, `act_in` after.
    pub(crate) input: &'static str,
    pub(crate) micro_batches: usize,
    /// The ring of this stage's data-parallel replicas, if any: gradients
    /// (and the loss) are averaged over it before the update.
    pub(crate) replicas: Option<Box<dyn RingLink>>,
}

/// Per step: the stage's inputs (micro-batches of `x` on the first stage,
/// of `y` on the last).
pub(crate) struct StepData {
    pub(crate) x: Vec<Vec<f32>>,
    pub(crate) y: Vec<Vec<f32>>,
    /// When the step started (the time origin of the measured passes).
    pub(crate) epoch: Instant,
}

impl Stage {
    /// Builds stage `index` of `stages`: units `units` of `model`, as
    /// tensor-parallel worker of `shards` (1: no tensor parallelism), for
    /// `micro_batches` micro-batches of `micro` samples.
    pub(crate) fn build(
        model: &dyn StageModel,
        units: Range<usize>,
        (index, stages): (usize, usize),
        (micro_batches, micro): (usize, usize),
        shards: usize,
        optimizer: &dyn Optimizer,
    ) -> Result<Stage> {
        let last = index + 1 == stages;
        let width_in = model.width_in(units.start);
        let width_out = model.width_out(units.end - 1);
        let input = if index == 0 { "x" } else { "act_in" };
        // Forward: input activation to output activation.
        let mut fwd = Net::new();
        let a = fwd.input(input, [micro, width_in]);
        let out = model.add_units(&mut fwd, a, units, shards)?;
        let params: Vec<String> = fwd
            .graph()
            .named()
            .filter(|(_, _, n)| matches!(n.op, dagger_tensor::TensorOp::Param { .. }))
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
            replicas: None,
        })
    }

    /// Connects the stage's programs to the other tensor-parallel shards
    /// of the stage: one ring for its forward program (none on the last
    /// stage, which has none) and one for its backward program.
    pub(crate) fn set_tensor_rings(
        &mut self,
        forward: Box<dyn RingLink>,
        backward: Box<dyn RingLink>,
    ) {
        if let Some(f) = &mut self.forward {
            f.set_ring(ParallelGroup::Tensor, forward);
        }
        self.backward.set_ring(ParallelGroup::Tensor, backward);
    }

    /// The stage's parameters and optimizer state.
    pub(crate) fn named_params(&self) -> NamedParams {
        self.update
            .params()
            .into_iter()
            .map(|(n, _, d)| (n.to_string(), d.to_vec()))
            .collect()
    }

    pub(crate) fn set_param(&mut self, name: &str, values: &[f32]) -> Result<()> {
        if let Some(f) = &mut self.forward {
            f.set(name, values)?;
        }
        self.backward.set(name, values)?;
        Ok(self.update.set(name, values)?)
    }

    /// One step: the passes in schedule order; returns the mean loss (last stage).
    pub(crate) fn step(
        &mut self,
        kind: PipelineKind,
        stages: usize,
        data: StepData,
        links: &mut dyn StageLinks,
    ) -> Result<(f32, Vec<PipelineOp>)> {
        let micro = self.micro_batches;
        let mut ops = Vec::with_capacity(2 * micro);
        let since = |t: Instant| t.duration_since(data.epoch).as_secs_f64();
        let index = self.index;
        let lost = |why: String| Error::StageLost(index, why);
        let mut stored: Vec<Option<Vec<f32>>> = vec![None; micro];
        let mut sums: Vec<Vec<f32>> = Vec::new();
        let mut loss = 0.0;
        let first_grad = usize::from(self.index > 0) + 1;
        for (pass, m) in stage_order(kind, stages, micro, self.index) {
            // Each arm returns when its computing began (after its input arrived).
            let start = match pass {
                Pass::Forward => {
                    let act = if links.has_prev() {
                        links.recv_prev().map_err(lost)?
                    } else {
                        data.x[m].clone()
                    };
                    let start = Instant::now();
                    if let (Some(f), true) = (&mut self.forward, links.has_next()) {
                        f.set(self.input, &act)?;
                        f.run()?;
                        links.send_next(f.output(0).to_vec()).map_err(lost)?;
                    }
                    stored[m] = Some(act);
                    start
                }
                Pass::Backward => {
                    let act = stored[m].take().expect("forward before backward");
                    let g_out = if links.has_next() {
                        Some(links.recv_next().map_err(lost)?)
                    } else {
                        None
                    };
                    let start = Instant::now();
                    self.backward.set(self.input, &act)?;
                    match g_out {
                        Some(g) => self.backward.set("g_out", &g)?,
                        None => self.backward.set("y", &data.y[m])?,
                    }
                    self.backward.run()?;
                    if self.last {
                        loss += self.backward.output(0)[0];
                    }
                    if links.has_prev() {
                        links
                            .send_prev(self.backward.output(1).to_vec())
                            .map_err(lost)?;
                    }
                    for k in 0..self.params.len() {
                        let g = self.backward.output(first_grad + k);
                        match sums.get_mut(k) {
                            Some(acc) => acc.iter_mut().zip(g).for_each(|(a, v)| *a += v),
                            None => sums.push(g.to_vec()),
                        }
                    }
                    start
                }
            };
            let finish = since(Instant::now());
            ops.push(PipelineOp {
                stage: index,
                micro: m,
                pass,
                start: since(start),
                finish,
            });
        }
        let scale = 1.0 / micro as f32;
        let mut all: Vec<f32> = sums.iter().flatten().map(|v| v * scale).collect();
        if let Some(ring) = &mut self.replicas {
            let failed = |e: CollectiveError| Error::StageLost(index, e.to_string());
            ring_all_reduce_mean(ring.as_mut(), &mut all, &mut Vec::new()).map_err(failed)?;
        }
        let mut at = 0;
        for (name, acc) in self.params.clone().into_iter().zip(&sums) {
            self.update
                .set(&format!("grad.{name}"), &all[at..at + acc.len()])?;
            at += acc.len();
        }
        self.update.run()?;
        for name in self.params.clone() {
            let values = self.update.get(&name)?.to_vec();
            self.set_param(&name, &values)?;
        }
        // The last stage's loss travels back so that every stage returns it.
        let mut loss = loss * scale;
        if links.has_next() {
            loss = links
                .recv_next()
                .map_err(lost)?
                .first()
                .copied()
                .unwrap_or(f32::NAN);
        }
        if links.has_prev() {
            links.send_prev(vec![loss]).map_err(lost)?;
        }
        if let Some(ring) = &mut self.replicas {
            let mut l = [loss];
            let failed = |e: CollectiveError| Error::StageLost(index, e.to_string());
            ring_all_reduce_mean(ring.as_mut(), &mut l, &mut Vec::new()).map_err(failed)?;
            loss = l[0];
        }
        links.flush().map_err(lost)?;
        Ok((loss, ops))
    }
}
