//! Choosing how to parallelize a step by predicting each way: the
//! FlexFlow/Alpa idea on this project's own lowering and schedulers.
//!
//! A [`Strategy`] is a data x tensor grid of workers and a number of
//! micro-batches. [`parallelize`] builds the step of each strategy (the
//! caller's `build`: the net split `tensor` ways on a replica's share of the
//! batch, unrolled over the micro-batches, with its training step and its
//! placement), lowers it, predicts one step with the caller's `predict`
//! from the tasks' predicted times (their
//! floating-point work over [`LowerOptions::flops_per_second`], the bytes
//! they copy over [`LowerOptions::copy_bytes_per_second`], and
//! [`LowerOptions::task_seconds`] each: calibrate them on a measured step),
//! drops the strategies whose workers would hold more than the memory each
//! has, and returns the fastest, with every candidate's prediction or why
//! it was dropped.
//!
//! `predict` says what a processor is. Where each worker has a device of
//! its own, each device is one, and a list scheduler places the tasks
//! ([`TaskStep::predict`] with
//! [`HeftScheduler`](dagger_ir::sched::HeftScheduler) on the platform). On
//! one CPU the executor runs every ready task at once and a task's
//! products fork onto idle cores (`join`): predict with
//! [`TaskStep::predict_shared`] on
//! [`SharedCores`](dagger_ir::sched::SharedCores), the lowering's rates
//! one core's (see [`calibrate`](super::calibrate)).
//!
//! # Examples
//!
//! ```
//! use dagger_ir::model::{HistoryModel, Platform};
//! use dagger_ir::sched::HeftScheduler;
//! use dagger_tensor::task_step::strategy::{parallelize, Strategy};
//! use dagger_tensor::task_step::{LowerOptions, StepPlacement, TaskStep};
//! use dagger_tensor::TensorGraph;
//!
//! // A step with nothing to split: every strategy but one worker is refused.
//! let build = |s: Strategy| {
//!     if s.workers() > 1 {
//!         return Err(format!("{s}: the model does not split"));
//!     }
//!     let mut g = TensorGraph::new();
//!     let x = g.input("x", [4, 4]);
//!     let w = g.param("w", [4, 4]);
//!     let y = g.matmul(x, w).map_err(|e| e.to_string())?;
//!     g.set_outputs(vec![y]).map_err(|e| e.to_string())?;
//!     Ok((g, StepPlacement::OneDevice))
//! };
//! let strategies = Strategy::grid(2, &[1]);
//! let platform = Platform::local(2);
//! let options = LowerOptions::default();
//! let heft = |s: &TaskStep| s.predict(&platform, &HistoryModel::new(), &HeftScheduler);
//! let (choice, _) = parallelize(&strategies, build, &heft, 1 << 20, options).unwrap();
//! assert_eq!(choice.best().strategy, Strategy { data: 1, tensor: 1, micro: 1 });
//! assert!(choice.candidates.iter().filter(|c| c.refused.is_some()).count() == 2);
//! ```

use super::{lower_step, LowerError, LowerOptions, StepPlacement, TaskStep};
use crate::TensorGraph;
use std::fmt;

/// One way to split a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Strategy {
    /// Data-parallel replicas.
    pub data: usize,
    /// Tensor-parallel shards of each replica.
    pub tensor: usize,
    /// Micro-batches of each replica's share of the batch.
    pub micro: usize,
}

impl Strategy {
    /// Workers of its grid, `data x tensor`.
    pub fn workers(&self) -> usize {
        self.data * self.tensor
    }

    /// Every grid of at most `workers` workers, with each of `micro`
    /// micro-batch counts.
    pub fn grid(workers: usize, micro: &[usize]) -> Vec<Strategy> {
        let mut all = Vec::new();
        for data in 1..=workers {
            for tensor in 1..=workers / data {
                for &micro in micro {
                    all.push(Strategy {
                        data,
                        tensor,
                        micro,
                    });
                }
            }
        }
        all
    }
}

impl fmt::Display for Strategy {
    /// `data x tensor x micro`, e.g. `2 x 1 x 4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} x {} x {}", self.data, self.tensor, self.micro)
    }
}

/// A strategy as predicted, or why it was dropped.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The strategy.
    pub strategy: Strategy,
    /// Seconds `predict` gave for one step (`None` when refused).
    pub predicted_seconds: Option<f64>,
    /// Bytes each worker would hold (0 when it was not built).
    pub bytes_per_worker: usize,
    /// Tasks of the lowered step (every worker's segments, the all-reduces
    /// and the gathering of the results).
    pub tasks: usize,
    /// Why it was dropped: the model does not split so, or a worker's
    /// memory is too small.
    pub refused: Option<String>,
}

/// Every candidate and the one chosen.
#[derive(Clone, Debug)]
pub struct Choice {
    /// The candidates, in the order given.
    pub candidates: Vec<Candidate>,
    /// The index of the fastest one kept.
    pub chosen: usize,
}

impl Choice {
    /// The chosen candidate.
    pub fn best(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }
}

/// Predicts each of `strategies` and returns the fastest that fits in
/// `memory_per_worker` bytes, with the chosen strategy's lowered step (see
/// the [module docs](self)). `build` gives a strategy's step graph (one
/// worker's) and placement, or why the model does not split so;
/// `predict` gives a lowered step's seconds. Errors
/// when none fits, naming the least memory one would need.
pub fn parallelize(
    strategies: &[Strategy],
    build: impl Fn(Strategy) -> Result<(TensorGraph, StepPlacement), String>,
    predict: &dyn Fn(&TaskStep) -> Result<f64, LowerError>,
    memory_per_worker: usize,
    options: LowerOptions,
) -> Result<(Choice, TaskStep), LowerError> {
    let mut candidates = Vec::with_capacity(strategies.len());
    let mut best: Option<(usize, f64, TaskStep)> = None;
    for &strategy in strategies {
        let mut candidate = Candidate {
            strategy,
            predicted_seconds: None,
            bytes_per_worker: 0,
            tasks: 0,
            refused: None,
        };
        match build(strategy) {
            Err(why) => candidate.refused = Some(why),
            Ok((graph, placement)) => {
                let options = LowerOptions {
                    data: strategy.data,
                    tensor: strategy.tensor,
                    ..options
                };
                let lowered = lower_step(&graph, &placement, options)?;
                candidate.bytes_per_worker = lowered.bytes_per_worker();
                candidate.tasks = lowered.dag().plan()?.task_count();
                if candidate.bytes_per_worker > memory_per_worker {
                    candidate.refused = Some(format!(
                        "{strategy}: a worker would hold {} bytes, {memory_per_worker} available",
                        candidate.bytes_per_worker
                    ));
                } else {
                    let seconds = predict(&lowered)?;
                    candidate.predicted_seconds = Some(seconds);
                    if best.as_ref().is_none_or(|b| seconds < b.1) {
                        best = Some((candidates.len(), seconds, lowered));
                    }
                }
            }
        }
        candidates.push(candidate);
    }
    let Some((chosen, _, lowered)) = best else {
        let least = candidates
            .iter()
            .filter(|c| c.bytes_per_worker > 0)
            .min_by_key(|c| c.bytes_per_worker);
        return Err(LowerError::Unsupported(match least {
            Some(c) => format!(
                "no strategy fits: the least memory one needs is {} bytes a worker ({}), {memory_per_worker} available",
                c.bytes_per_worker, c.strategy
            ),
            None => format!(
                "no strategy splits the model: {}",
                candidates
                    .iter()
                    .filter_map(|c| c.refused.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }));
    };
    Ok((Choice { candidates, chosen }, lowered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_lists_every_split_of_at_most_the_workers() {
        let all = Strategy::grid(4, &[1, 2]);
        let grids: Vec<(usize, usize)> = all
            .iter()
            .filter(|s| s.micro == 1)
            .map(|s| (s.data, s.tensor))
            .collect();
        assert_eq!(
            grids,
            [
                (1, 1),
                (1, 2),
                (1, 3),
                (1, 4),
                (2, 1),
                (2, 2),
                (3, 1),
                (4, 1)
            ]
        );
        assert_eq!(all.len(), 16);
        assert_eq!(all[1].to_string(), "1 x 1 x 2");
    }
}
