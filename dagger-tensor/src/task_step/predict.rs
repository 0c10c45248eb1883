//! Predicting a lowered step's time before it runs: on a platform's
//! processors by a list scheduler ([`TaskStep::predict`]), or on one
//! machine's shared cores ([`TaskStep::predict_shared`], each task as much
//! faster alone as its products' share lets it).

use super::{LowerError, TaskStep};
use dagger_ir::model::{HistoryModel, Platform};
use dagger_ir::sched::{Scheduler, SharedCores};

impl TaskStep {
    /// The seconds `scheduler` predicts for one step on `platform`'s
    /// processors: each task costs what `model` has measured for it, else
    /// its predicted seconds ([`SegmentInfo::seconds`](super::SegmentInfo::seconds)).
    pub fn predict(
        &self,
        platform: &Platform,
        model: &HistoryModel,
        scheduler: &dyn Scheduler,
    ) -> Result<f64, LowerError> {
        let plan = self.dag.plan()?;
        let (problem, _) = plan.problem(platform, model);
        Ok(scheduler.schedule(&problem).makespan())
    }

    /// Seconds `machine` predicts for one step, each task at its one-core
    /// predicted time and alone on the machine as much faster as its
    /// products' share lets it (Amdahl: `1 / ((1 - p) + p / alone)`,
    /// `alone` the machine's; the all-reduces and the other tasks 1).
    pub fn predict_shared(&self, machine: &SharedCores) -> Result<f64, LowerError> {
        let plan = self.dag.plan()?;
        let (problem, _) = plan.problem(&Platform::local(1), &HistoryModel::new());
        let speedups: Vec<f64> = problem
            .ids
            .iter()
            .map(|id| {
                let name = id.rsplit_once('#').map_or(id.as_str(), |(name, _)| name);
                self.product_shares
                    .get(name)
                    .map_or(1.0, |&p| 1.0 / ((1.0 - p) + p / machine.alone()))
            })
            .collect();
        Ok(machine
            .schedule_with_speedups(&problem, &speedups)
            .makespan())
    }

    /// Its products' share of its segments' predicted seconds (worker
    /// 0's): what of it forks onto idle cores.
    pub fn product_share(&self) -> f64 {
        let (products, all) = self.segments.iter().fold((0.0, 0.0), |(p, a), s| {
            (p + s.product_seconds, a + s.seconds)
        });
        if all > 0.0 {
            products / all
        } else {
            0.0
        }
    }
}
