//! Fitting the lowering's cost model to steps measured on this machine.
//!
//! Before a step has run, a segment's predicted time is linear in three
//! constants of [`LowerOptions`]:
//!
//! ```text
//! seconds = flops / flops_per_second
//!         + (streamed_bytes + copied_bytes) / copy_bytes_per_second
//!         + task_seconds
//! ```
//!
//! (products' work; the bytes the memory-bound nodes stream and the copies
//! in and out; a cost a task). [`copy_bytes_per_second`] measures the
//! memory's rate (a large `memcpy`). [`fit`] finds the other two from
//! steps timed on *one* worker, where a step's time is the sum of its
//! tasks': with `x = 1 / flops_per_second` and `t = task_seconds`, each
//! timed step `i` of `F_i` flops, `C_i` bytes streamed or copied and `N_i`
//! tasks says `T_i - C_i / copy_rate = F_i x + N_i t`, and
//! the least-squares `(x, t)` of those equations (the normal equations of
//! two unknowns) is the fit. Two lowerings of one step, cut into few and
//! into many tasks, tell the work's rate from the cost of a task; more
//! steps average out noise.
//!
//! [`shared_cores`] measures the machine for
//! [`SharedCores`]: a step on one worker, on every worker (how much faster
//! a task alone runs on the machine: its `alone`), and one copy on each
//! worker at once (what the cores do together: its `throughput`, the
//! number of cores where they are independent, less where two share a
//! physical core or the memory bandwidth).
//!
//! # Examples
//!
//! ```
//! use dagger_tensor::task_step::calibrate::fit;
//! use dagger_tensor::task_step::{lower_step, LowerOptions, StepPlacement};
//! use dagger_tensor::TensorGraph;
//!
//! let mut g = TensorGraph::new();
//! let x = g.input("x", [64, 64]);
//! let (w, v) = (g.param("w", [64, 64]), g.param("v", [64, 64]));
//! let y = g.matmul(x, w).unwrap();
//! let z = g.relu(y).unwrap();
//! let out = g.matmul(z, v).unwrap();
//! g.set_outputs(vec![out]).unwrap();
//! let options = LowerOptions { copy_bytes_per_second: 1e10, ..LowerOptions::default() };
//! let whole = lower_step(&g, &StepPlacement::OneDevice, options).unwrap();
//! let per_op = lower_step(&g, &StepPlacement::OneDevice, LowerOptions { max_nodes: 1, ..options })
//!     .unwrap();
//! // Timings that 1 GFLOP/s and 10 us a task explain exactly.
//! let time = |s: &dagger_tensor::task_step::TaskStep| {
//!     s.segments()
//!         .iter()
//!         .map(|g| g.flops / 1e9 + (g.streamed_bytes + g.copied_bytes) as f64 / 1e10 + 10e-6)
//!         .sum::<f64>()
//! };
//! let fitted = fit(&[(&whole, time(&whole)), (&per_op, time(&per_op))], options).unwrap();
//! assert!((fitted.flops_per_second / 1e9 - 1.0).abs() < 1e-6);
//! assert!((fitted.task_seconds - 10e-6).abs() < 1e-12);
//! ```

use super::{LowerError, LowerOptions, TaskStep};
use dagger_ir::sched::SharedCores;
use dagger_runtime::Runtime;
use std::sync::Barrier;
use std::time::Instant;

/// Seconds a step took in [`shared_cores`]' three runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MachineTimes {
    /// On a runtime of one worker.
    pub one_worker: f64,
    /// On a runtime of a worker per copy.
    pub every_worker: f64,
    /// Each copy on a runtime of its own, all at once.
    pub side_by_side: f64,
}

/// The machine as [`SharedCores`], measured with `copies` (one lowered
/// step per core to model, all the same step) fed `inputs`: the mean of
/// `steps` steps after two warm-up steps, on one worker, on one runtime
/// of a worker per copy, and side by side (see the [module docs](self)).
pub fn shared_cores(
    copies: &mut [TaskStep],
    inputs: &[(&str, &[f32])],
    steps: usize,
) -> Result<(SharedCores, MachineTimes), LowerError> {
    let Some(first) = copies.first_mut() else {
        return Err(LowerError::Unsupported(
            "measuring the machine needs a step per core, none given".into(),
        ));
    };
    let one_worker = seconds_a_step(first, &Runtime::builder().threads(1).build(), inputs, steps)?;
    let every = Runtime::builder().threads(copies.len()).build();
    let every_worker = seconds_a_step(&mut copies[0], &every, inputs, steps)?;
    let start = Barrier::new(copies.len());
    let side_by_side = std::thread::scope(|scope| {
        let runs: Vec<_> = copies
            .iter_mut()
            .map(|copy| {
                let start = &start;
                scope.spawn(move || {
                    let rt = Runtime::builder().threads(1).build();
                    seconds_a_step(copy, &rt, inputs, 0)?;
                    start.wait();
                    seconds_a_step(copy, &rt, inputs, steps)
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("a calibration step panicked"))
            .try_fold(0.0f64, |slowest, seconds| {
                Ok::<_, LowerError>(slowest.max(seconds?))
            })
    })?;
    // Timing noise aside, n cores do at most n cores' work.
    let n = copies.len() as f64;
    let machine = SharedCores::new(
        (n * one_worker / side_by_side).min(n),
        one_worker / every_worker,
    );
    Ok((
        machine,
        MachineTimes {
            one_worker,
            every_worker,
            side_by_side,
        },
    ))
}

/// Mean seconds of `steps` steps of `step` on `rt`, after two warm-up
/// steps (only those when `steps` is 0).
fn seconds_a_step(
    step: &mut TaskStep,
    rt: &Runtime,
    inputs: &[(&str, &[f32])],
    steps: usize,
) -> Result<f64, LowerError> {
    for _ in 0..2 {
        step.run(rt, inputs)?;
    }
    let t = Instant::now();
    for _ in 0..steps {
        step.run(rt, inputs)?;
    }
    Ok(t.elapsed().as_secs_f64() / steps.max(1) as f64)
}

/// Bytes per second of copying 64 MiB of floats on this machine (the best
/// of 5 copies).
pub fn copy_bytes_per_second() -> f64 {
    let from = vec![1.0f32; 16 << 20];
    let mut to = vec![0.0f32; 16 << 20];
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            to.copy_from_slice(&from);
            std::hint::black_box(&to);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    (64 << 20) as f64 / best
}

/// `options` with [`LowerOptions::flops_per_second`] and
/// [`LowerOptions::task_seconds`] fitted to `timed`: lowered steps of one
/// worker and the seconds each took on one worker (see the
/// [module docs](self)); the copy rate stays `options`'. Errors when the
/// steps cannot tell the rate from the cost of a task (their work and
/// task counts are proportional: time the step cut into more tasks) or
/// when the times are shorter than their copies alone.
pub fn fit(timed: &[(&TaskStep, f64)], options: LowerOptions) -> Result<LowerOptions, LowerError> {
    let (mut ff, mut fn_, mut nn, mut fy, mut ny) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(step, seconds) in timed {
        let segments = step.segments();
        let flops: f64 = segments.iter().map(|s| s.flops).sum();
        let copied: usize = segments
            .iter()
            .map(|s| s.streamed_bytes + s.copied_bytes)
            .sum();
        let tasks = segments.len() as f64;
        let y = seconds - copied as f64 / options.copy_bytes_per_second;
        ff += flops * flops;
        fn_ += flops * tasks;
        nn += tasks * tasks;
        fy += flops * y;
        ny += tasks * y;
    }
    let det = ff * nn - fn_ * fn_;
    if det.is_nan() || det <= 1e-9 * ff * nn {
        return Err(LowerError::Unsupported(format!(
            "fitting the cost model needs steps whose work and task counts differ in proportion ({} timed step(s) given): time the step cut into more tasks too",
            timed.len()
        )));
    }
    let (mut per_flop, mut per_task) = ((fy * nn - ny * fn_) / det, (ff * ny - fn_ * fy) / det);
    if per_task < 0.0 {
        // Tasks cost nothing measurable: the work alone explains the times.
        per_task = 0.0;
        per_flop = fy / ff;
    }
    if per_flop.is_nan() || per_flop <= 0.0 {
        return Err(LowerError::Unsupported(format!(
            "the timed steps took less than their copies at {:.1} GB/s: no rate of work explains them",
            options.copy_bytes_per_second / 1e9
        )));
    }
    Ok(LowerOptions {
        flops_per_second: 1.0 / per_flop,
        task_seconds: per_task,
        ..options
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task_step::{lower_step, StepPlacement};
    use crate::TensorGraph;

    fn step(max_nodes: usize) -> TaskStep {
        let mut g = TensorGraph::new();
        let x = g.input("x", [8, 8]);
        let w = g.param("w", [8, 8]);
        let y = g.matmul(x, w).unwrap();
        let z = g.relu(y).unwrap();
        g.set_outputs(vec![z]).unwrap();
        let options = LowerOptions {
            max_nodes,
            ..LowerOptions::default()
        };
        lower_step(&g, &StepPlacement::OneDevice, options).unwrap()
    }

    #[test]
    fn one_cut_cannot_tell_work_from_tasks_and_too_fast_times_are_refused() {
        let whole = step(usize::MAX);
        let err = fit(&[(&whole, 1e-3), (&whole, 2e-3)], LowerOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("time the step cut into more tasks"), "{err}");
        let per_op = step(1);
        let err = fit(&[(&whole, 0.0), (&per_op, 0.0)], LowerOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("less than their copies"), "{err}");
    }

    #[test]
    fn a_negative_cost_a_task_is_zero_and_the_rate_takes_the_rest() {
        let (whole, per_op) = (step(usize::MAX), step(1));
        let options = LowerOptions {
            copy_bytes_per_second: f64::INFINITY,
            ..LowerOptions::default()
        };
        // More tasks took less time: no cost a task; the rate fits both.
        let fitted = fit(&[(&whole, 2e-3), (&per_op, 1e-3)], options).unwrap();
        assert_eq!(fitted.task_seconds, 0.0);
        let flops: f64 = whole.segments().iter().map(|s| s.flops).sum();
        assert!((fitted.flops_per_second - flops / 1.5e-3).abs() / fitted.flops_per_second < 1e-9);
        assert!(copy_bytes_per_second() > 1e8);
    }

    #[test]
    fn the_machine_is_measured_with_a_step_a_core() {
        let err = shared_cores(&mut [], &[], 1).unwrap_err().to_string();
        assert!(err.contains("none given"), "{err}");
        let mut copies = [step(1), step(1)];
        let x = [0.5f32; 64];
        let (machine, times) = shared_cores(&mut copies, &[("x", &x)], 3).unwrap();
        for t in [times.one_worker, times.every_worker, times.side_by_side] {
            assert!(t > 0.0 && t < 1.0, "{times:?}");
        }
        let throughput = (2.0 * times.one_worker / times.side_by_side).clamp(1.0, 2.0);
        assert_eq!(machine.throughput(), throughput, "{times:?}");
        let alone = (times.one_worker / times.every_worker).clamp(1.0, throughput);
        assert_eq!(machine.alone(), alone, "{times:?}");
    }
}
