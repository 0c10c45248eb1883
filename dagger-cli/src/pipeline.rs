//! `dagger pipeline`: GPipe and 1F1B simulated for K stages and M
//! micro-batches.

use crate::sched::{gantt_too_large, GANTT_MAX_TASKS};
use dagger_ir::sched;
use std::path::Path;

/// The most stages x micro-batches `dagger pipeline` simulates: its memory
/// grows with the product (about 110 MB at this bound, 400 MB at 1M).
const PIPELINE_MAX_SLOTS: usize = 250_000;

/// `dagger pipeline`: both schedules simulated, as a table (and a chart).
pub(crate) fn pipeline(
    stages: usize,
    micro_batches: usize,
    forward: &[f64],
    backward: f64,
    transfer: f64,
    gantt: Option<&Path>,
) -> Result<(), String> {
    use sched::pipeline::{bubble_formula, simulate, PipelineKind};
    if stages == 0 || micro_batches == 0 {
        return Err("--stages and --micro-batches must be at least 1".into());
    }
    if stages.saturating_mul(micro_batches) > PIPELINE_MAX_SLOTS {
        return Err(format!(
            "--stages {stages} x --micro-batches {micro_batches} is {} stage-micro-batches, \
             above the {PIPELINE_MAX_SLOTS} this simulation holds in memory",
            stages as u128 * micro_batches as u128
        ));
    }
    if gantt.is_some() && 2 * stages * micro_batches > GANTT_MAX_TASKS {
        return Err(gantt_too_large(2 * stages * micro_batches));
    }
    let forward: Vec<f64> = if forward.is_empty() {
        vec![1.0; stages]
    } else {
        forward.to_vec()
    };
    if forward.len() != stages {
        return Err(format!(
            "--forward gives {} times for {stages} stages",
            forward.len()
        ));
    }
    if forward
        .iter()
        .chain([&backward, &transfer])
        .any(|t| !t.is_finite() || *t < 0.0)
    {
        return Err("times must be finite and not negative".into());
    }
    let back: Vec<f64> = forward.iter().map(|f| f * backward).collect();
    // Times are in the units of --forward (seconds if those are seconds).
    println!(
        "| schedule | step time (units of --forward) | bubble (idle share) | (K-1)/(M+K-1) | peak activations per stage (micro-batches) |"
    );
    println!("|---|---|---|---|---|");
    let mut charts = Vec::new();
    for kind in [PipelineKind::GPipe, PipelineKind::OneFOneB] {
        let s = simulate(kind, &forward, &back, micro_batches, transfer);
        let peaks: Vec<usize> = (0..stages).map(|st| s.peak_activations(st)).collect();
        println!(
            "| {kind:?} | {:.3} | {:.1}% | {:.1}% | {peaks:?} |",
            s.makespan(),
            100.0 * s.bubble_fraction(),
            100.0 * bubble_formula(stages, micro_batches)
        );
        let (schedule, labels) = s.to_schedule();
        charts.push(sched::gantt::Chart {
            title: format!("{kind:?}"),
            processors: stages,
            labels,
            schedule,
        });
    }
    if let Some(path) = gantt {
        std::fs::write(
            path,
            sched::gantt::draw(&charts, sched::gantt::TimeUnit::Abstract),
        )
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("Gantt chart: {}", path.display());
    }
    Ok(())
}
