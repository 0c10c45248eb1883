//! Running one graph under every placement policy, for comparison tables.
//!
//! [`Runtime::run_under_every_policy`] runs a graph under work stealing,
//! each other dynamic policy ([`DynamicPolicy`]) and each static list scheduler
//! ([`dagger_ir::sched::static_schedulers`]), timing each run and, for the
//! static ones, keeping the makespan the scheduler predicted. The examples'
//! policy tables (`wordcount --policies`, `cholesky`) are built on it.

use crate::dag::{Dag, Inputs};
use crate::error::RunError;
use crate::runtime::Runtime;
use dagger_ir::model::HistoryModel;
use dagger_ir::sched::DynamicPolicy;
use std::time::Instant;

/// One run of a graph under one policy.
#[derive(Debug)]
pub struct PolicyRun<O> {
    /// The policy's name (`work-stealing`, `eager`, ..., `heft`, ...).
    pub policy: &'static str,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// The makespan (seconds) the static scheduler predicted, if static.
    pub predicted: Option<f64>,
    /// The graph's outputs.
    pub output: O,
}

impl<O> PolicyRun<O> {
    /// The header of the table [`row`](Self::row) fills (Markdown).
    pub const TABLE_HEADER: &'static str =
        "| policy | measured ms | predicted ms | measured / predicted |\n|---|---|---|---|";

    /// This run as a row of a Markdown table: policy, measured and
    /// predicted milliseconds, their ratio.
    pub fn row(&self) -> String {
        match self.predicted {
            Some(p) => format!(
                "| {} | {:.1} | {:.1} | {:.2} |",
                self.policy,
                self.seconds * 1e3,
                p * 1e3,
                self.seconds / p
            ),
            None => format!("| {} | {:.1} | - | - |", self.policy, self.seconds * 1e3),
        }
    }
}

impl Runtime {
    /// Runs `dag` on clones of `inputs` under work stealing, every other
    /// dynamic policy and every static scheduler, in that order, and hands each run
    /// to `each` (to check its output and print a row). Task costs for the
    /// model-driven policies come from `model` (see
    /// [`run_scheduled`](Self::run_scheduled)). Stops at the first error of
    /// a run or of `each`.
    pub fn run_under_every_policy<I: Inputs + Clone, O>(
        &self,
        dag: &Dag<I, O>,
        inputs: &I,
        model: &HistoryModel,
        mut each: impl FnMut(PolicyRun<O>) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        let (seconds, output) = timed(|| self.run(dag, inputs.clone()))?;
        each(PolicyRun {
            policy: "work-stealing",
            seconds,
            predicted: None,
            output,
        })?;
        let others = DynamicPolicy::ALL
            .into_iter()
            .filter(|&p| p != DynamicPolicy::WorkStealing);
        for policy in others {
            let (seconds, output) =
                timed(|| self.run_with_policy(dag, inputs.clone(), policy, model))?;
            each(PolicyRun {
                policy: policy.name(),
                seconds,
                predicted: None,
                output,
            })?;
        }
        for scheduler in dagger_ir::sched::static_schedulers() {
            let (seconds, (output, schedule)) =
                timed(|| self.run_scheduled(dag, inputs.clone(), scheduler.as_ref(), model))?;
            each(PolicyRun {
                policy: scheduler.name(),
                seconds,
                predicted: Some(schedule.makespan()),
                output,
            })?;
        }
        Ok(())
    }
}

/// Runs `run` and returns its wall-clock seconds with its result.
fn timed<T>(run: impl FnOnce() -> Result<T, RunError>) -> Result<(f64, T), RunError> {
    let start = Instant::now();
    let out = run()?;
    Ok((start.elapsed().as_secs_f64(), out))
}
