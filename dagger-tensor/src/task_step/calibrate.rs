//! Fitting the lowering's cost model to steps measured on this machine.
//!
//! Before a step has run, a segment's predicted time is linear in four
//! constants of [`LowerOptions`]:
//!
//! ```text
//! seconds = flops / flops_per_second
//!         + streamed_bytes / stream_bytes_per_second
//!         + copied_bytes / copy_bytes_per_second
//!         + task_seconds
//! ```
//!
//! (products' work; the bytes its nodes stream, mostly in cache; the
//! copies in and out, which cross tasks and often cores; a cost a task).
//! [`copy_bytes_per_second`] measures the copies' rate (a large `memcpy`).
//! [`fit`] finds the other three from steps timed on *one* worker, where
//! a step's time is the sum of its tasks'. With `x = 1 /
//! flops_per_second`, `s = 1 / stream_bytes_per_second` and `t =
//! task_seconds`, each timed step `i` of `F_i` flops, `S_i` bytes streamed,
//! `C_i` copied and `N_i` tasks says
//!
//! ```text
//! T_i - C_i / copy_bytes_per_second = F_i x + S_i s + N_i t
//! ```
//!
//! and the least-squares `(x, s, t)` of those equations (their normal
//! equations) is the fit. It takes steps of different mixes: one
//! step cut into few and into many tasks tells the work from the cost of
//! a task, the step at another batch size the products from the streams
//! (a weight's bytes do not grow with the batch; its products' work does).
//! Given two steps, the streams' rate stays the one given; more steps
//! average out noise.
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
//! let options = LowerOptions {
//!     stream_bytes_per_second: 1e10,
//!     copy_bytes_per_second: 1e10,
//!     ..LowerOptions::default()
//! };
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

/// The machine of `rt` as [`SharedCores`], measured with `copies` (one
/// lowered step per worker of `rt`, all the same step) fed `inputs`: a
/// step ([`seconds_a_step`] of `steps`) on one worker, on `rt`, and side
/// by side, each copy on a runtime of one worker of its own (the slowest
/// copy's); see the [module docs](self). Errors when the copies are not
/// one per worker.
pub fn shared_cores(
    rt: &Runtime,
    copies: &mut [TaskStep],
    inputs: &[(&str, &[f32])],
    steps: usize,
) -> Result<(SharedCores, MachineTimes), LowerError> {
    if copies.len() != rt.threads() {
        return Err(LowerError::Unsupported(format!(
            "measuring the machine needs a step per worker: {} given for {} workers",
            copies.len(),
            rt.threads()
        )));
    }
    let one = Runtime::builder().threads(1).build();
    let one_worker = seconds_a_step(&mut copies[0], &one, inputs, steps)?;
    let every_worker = seconds_a_step(&mut copies[0], rt, inputs, steps)?;
    let side_by_side = side_by_side(copies, inputs, steps)?;
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

/// The speed-up of products alone on the machine, from that of a whole
/// step (`step_alone`, as [`shared_cores`] measures it) whose products
/// take `product_share` of its one-core time ([`TaskStep::product_share`]
/// of the step lowered with the fitted rates): Amdahl's law solved for the
/// parallel part, `p / (1 / step_alone - (1 - p))`; the machine's
/// `throughput` where the rest would have to take no time.
pub fn products_alone(step_alone: f64, product_share: f64, throughput: f64) -> f64 {
    let p = product_share.clamp(0.0, 1.0);
    let left = 1.0 / step_alone.max(1.0) - (1.0 - p);
    if p == 0.0 || left <= p / throughput {
        throughput
    } else {
        (p / left).max(1.0)
    }
}

/// Rounds of [`seconds_a_step`].
const ROUNDS: usize = 3;

/// Steps run before [`seconds_a_step`] times any: the buffers touched, the
/// workers awake.
const WARM_UP: usize = 5;

/// The slowest copy's [`seconds_a_step`] with each of `copies` on a
/// runtime of one worker of its own, all at once.
fn side_by_side(
    copies: &mut [TaskStep],
    inputs: &[(&str, &[f32])],
    steps: usize,
) -> Result<f64, LowerError> {
    let start = Barrier::new(copies.len());
    std::thread::scope(|scope| {
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
    })
}

/// Seconds a step of `step` takes on `rt` fed `inputs`, as the
/// calibration times it (and should time what it predicts): five warm-up
/// steps, then three rounds of about `steps / 3` steps, each round's
/// median step, the least of the rounds (a spell of other work on the
/// machine, or workers asleep when a round begins, slow a round; nothing
/// makes one faster). 0 when `steps` is 0.
pub fn seconds_a_step(
    step: &mut TaskStep,
    rt: &Runtime,
    inputs: &[(&str, &[f32])],
    steps: usize,
) -> Result<f64, LowerError> {
    for _ in 0..WARM_UP {
        step.run(rt, inputs)?;
    }
    if steps == 0 {
        return Ok(0.0);
    }
    let per_round = steps.div_ceil(ROUNDS);
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let mut times = Vec::with_capacity(per_round);
        for _ in 0..per_round {
            let t = Instant::now();
            step.run(rt, inputs)?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        best = best.min(times[per_round / 2]);
    }
    Ok(best)
}

/// Bytes of this machine's last-level cache (Linux's
/// `/sys/devices/system/cpu/cpu0/cache`: the highest level's size), or
/// `None` where it does not say.
pub fn last_level_cache_bytes() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).ok();
    dir.filter_map(|entry| {
        let path = entry.ok()?.path();
        let level: u32 = read(path.join("level"))?.trim().parse().ok()?;
        let size = read(path.join("size"))?;
        let size = size.trim();
        let (digits, unit) = size.split_at(
            size.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(size.len()),
        );
        let scale = match unit {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            _ => return None,
        };
        Some((level, digits.parse::<usize>().ok()? * scale))
    })
    .max()
    .map(|(_, bytes)| bytes)
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

/// `options` with the cost model fitted to `timed`: lowered steps of one
/// worker and the seconds each took on one worker (see the
/// [module docs](self)); the copy rate stays `options'`
/// ([`copy_bytes_per_second`] measures it). The products' rate
/// ([`LowerOptions::flops_per_second`]), the streams'
/// ([`LowerOptions::stream_bytes_per_second`]) and the cost a task
/// ([`LowerOptions::task_seconds`]) are fitted together where the steps
/// tell them apart (three or more steps of different mixes: cut
/// differently, at different batch sizes) and every one comes out
/// positive (a task's cost may be 0); otherwise the streams' rate stays
/// `options'` and the other two are fitted. Errors when the steps cannot
/// tell the products' rate from the cost of a task (their work and task
/// counts are proportional: time the step cut into more tasks too) or no
/// positive rate of work explains the times (shorter than their bytes).
pub fn fit(timed: &[(&TaskStep, f64)], options: LowerOptions) -> Result<LowerOptions, LowerError> {
    fit_holding(timed, options, None)
}

/// [`fit`] with the products' rate held at `options'` (measure it with
/// [`product_flops_per_second`]): the streams' rate and the cost a task
/// fitted, which two lowerings of one step tell apart (cut into few and
/// into many tasks).
pub fn fit_streams(
    timed: &[(&TaskStep, f64)],
    options: LowerOptions,
) -> Result<LowerOptions, LowerError> {
    fit_holding(timed, options, Some(1.0 / options.flops_per_second))
}

/// Floating-point operations a second of an `m x k` by `k x n` product on
/// one core, this thread (faer's kernel, as a segment runs it; the best
/// of 5).
pub fn product_flops_per_second(m: usize, k: usize, n: usize) -> f64 {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut out = vec![0.0f32; m * n];
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            let a = faer::MatRef::from_row_major_slice(&a, m, k);
            let b = faer::MatRef::from_row_major_slice(&b, k, n);
            let c = faer::MatMut::from_row_major_slice_mut(&mut out, m, n);
            faer::linalg::matmul::matmul(c, faer::Accum::Replace, a, b, 1.0f32, faer::Par::Seq);
            std::hint::black_box(&out);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    (2 * m * k * n) as f64 / best
}

/// [`fit`], the products' seconds a flop held at `per_flop` if given.
fn fit_holding(
    timed: &[(&TaskStep, f64)],
    options: LowerOptions,
    per_flop: Option<f64>,
) -> Result<LowerOptions, LowerError> {
    // Each step's flops, bytes streamed and tasks, and its seconds less
    // its copies.
    let rows: Vec<([f64; 3], f64)> = timed
        .iter()
        .map(|&(step, seconds)| {
            let segments = step.segments();
            let flops: f64 = segments.iter().map(|s| s.flops).sum();
            let streamed: usize = segments.iter().map(|s| s.streamed_bytes).sum();
            let copied: usize = segments.iter().map(|s| s.copied_bytes).sum();
            let y = seconds - copied as f64 / options.copy_bytes_per_second;
            ([flops, streamed as f64, segments.len() as f64], y)
        })
        .collect();
    let per_byte = 1.0 / options.stream_bytes_per_second;
    let fitted = |c: [f64; 3], memory: Option<f64>| LowerOptions {
        flops_per_second: per_flop.map_or(1.0 / c[0], |_| options.flops_per_second),
        stream_bytes_per_second: memory.map_or(1.0 / c[1], |_| options.stream_bytes_per_second),
        task_seconds: c[2],
        ..options
    };
    let mut solvable = false;
    // The streams' rate fitted too, or given.
    for memory in [None, Some(per_byte)] {
        let Some(c) = least_squares(&rows, [per_flop, memory, None]) else {
            continue;
        };
        solvable = true;
        let rates =
            |c: [f64; 3]| (per_flop.is_some() || c[0] > 0.0) && (memory.is_some() || c[1] > 0.0);
        if rates(c) && c[2] >= 0.0 {
            return Ok(fitted(c, memory));
        }
        if c[2] < 0.0 {
            // Tasks cost nothing measurable: the rest explains the times.
            if let Some(c) = least_squares(&rows, [per_flop, memory, Some(0.0)]) {
                if rates(c) {
                    return Ok(fitted(c, memory));
                }
            }
        }
    }
    Err(LowerError::Unsupported(if solvable {
        format!(
            "the timed steps took less than their copies at {:.1} GB/s and streams at {:.1} GB/s: no positive rate of work explains them",
            options.copy_bytes_per_second / 1e9,
            options.stream_bytes_per_second / 1e9
        )
    } else {
        format!(
            "fitting the cost model needs steps whose work and task counts differ in proportion ({} timed step(s) given): time the step cut into more tasks too",
            timed.len()
        )
    }))
}

/// The least-squares coefficients `c` of `seconds = row . c` over `rows`,
/// those `held` fixed at their value and the rest fitted (`None` when the
/// rows cannot tell the fitted ones apart): the normal equations of the
/// columns scaled to unit size, by Gaussian elimination.
fn least_squares(rows: &[([f64; 3], f64)], held: [Option<f64>; 3]) -> Option<[f64; 3]> {
    let free: Vec<usize> = (0..3).filter(|&j| held[j].is_none()).collect();
    let n = free.len();
    let scale: Vec<f64> = free
        .iter()
        .map(|&j| rows.iter().map(|(r, _)| r[j] * r[j]).sum::<f64>().sqrt())
        .collect();
    if scale.iter().any(|&s| s.is_nan() || s <= 0.0) || rows.len() < n {
        return None;
    }
    // [A^T A | A^T y] over the scaled free columns.
    let mut m = vec![vec![0.0; n + 1]; n];
    for (r, seconds) in rows {
        let y = seconds
            - (0..3)
                .filter_map(|j| held[j].map(|c| c * r[j]))
                .sum::<f64>();
        let a: Vec<f64> = free.iter().zip(&scale).map(|(&j, s)| r[j] / s).collect();
        for i in 0..n {
            for k in 0..n {
                m[i][k] += a[i] * a[k];
            }
            m[i][n] += a[i] * y;
        }
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-9 {
            return None;
        }
        m.swap(col, pivot);
        let pivot_row = m[col].clone();
        for (row, values) in m.iter_mut().enumerate() {
            if row != col {
                let f = values[col] / pivot_row[col];
                for (v, p) in values.iter_mut().zip(&pivot_row).skip(col) {
                    *v -= f * p;
                }
            }
        }
    }
    let mut c = held.map(|h| h.unwrap_or(0.0));
    for (i, &j) in free.iter().enumerate() {
        c[j] = m[i][n] / m[i][i] / scale[i];
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task_step::{lower_step, StepPlacement};
    use crate::TensorGraph;

    /// The seconds of `s` at 2 GFLOP/s, 3 GB/s streams, 1 GB/s copies and
    /// 7 us a task.
    fn explained(s: &TaskStep) -> f64 {
        s.segments()
            .iter()
            .map(|g| {
                g.flops / 2e9 + g.streamed_bytes as f64 / 3e9 + g.copied_bytes as f64 / 1e9 + 7e-6
            })
            .sum()
    }

    fn step(max_nodes: usize) -> TaskStep {
        step_of(8, max_nodes)
    }

    fn step_of(rows: usize, max_nodes: usize) -> TaskStep {
        let mut g = TensorGraph::new();
        let x = g.input("x", [rows, 8]);
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
            stream_bytes_per_second: f64::INFINITY,
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
    fn three_mixes_fit_the_products_the_memory_and_the_tasks() {
        let steps = [
            step_of(8, usize::MAX),
            step_of(8, 1),
            step_of(256, usize::MAX),
        ];
        // Times that 2 GFLOP/s, 3 GB/s streams, 1 GB/s copies and 7 us a
        // task explain exactly.
        let time = explained;
        let timed: Vec<(&TaskStep, f64)> = steps.iter().map(|s| (s, time(s))).collect();
        let copies = LowerOptions {
            copy_bytes_per_second: 1e9,
            ..LowerOptions::default()
        };
        let fitted = fit(&timed, copies).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b;
        assert!(close(fitted.flops_per_second, 2e9), "{fitted:?}");
        assert!(close(fitted.stream_bytes_per_second, 3e9), "{fitted:?}");
        assert!(close(fitted.task_seconds, 7e-6), "{fitted:?}");
        assert_eq!(fitted.copy_bytes_per_second, 1e9);
        // Two of them hold the streams' rate given, and fit the rest.
        let given = LowerOptions {
            stream_bytes_per_second: 3e9,
            ..copies
        };
        let two = fit(&timed[..2], given).unwrap();
        assert!(
            close(two.flops_per_second, 2e9) && close(two.task_seconds, 7e-6),
            "{two:?}"
        );
        assert_eq!(two.stream_bytes_per_second, 3e9);
    }

    #[test]
    fn with_the_products_measured_two_cuts_fit_the_streams_and_the_tasks() {
        let (whole, per_op) = (step(usize::MAX), step(1));
        // Times that 2 GFLOP/s, 3 GB/s streams, 1 GB/s copies and 7 us a
        // task explain.
        let time = explained;
        let measured = LowerOptions {
            flops_per_second: 2e9,
            copy_bytes_per_second: 1e9,
            ..LowerOptions::default()
        };
        let fitted = fit_streams(
            &[(&whole, time(&whole)), (&per_op, time(&per_op))],
            measured,
        )
        .unwrap();
        assert_eq!(fitted.flops_per_second, 2e9);
        assert!(
            (fitted.stream_bytes_per_second / 3e9 - 1.0).abs() < 1e-6,
            "{fitted:?}"
        );
        assert!(
            (fitted.task_seconds / 7e-6 - 1.0).abs() < 1e-6,
            "{fitted:?}"
        );
        let rate = product_flops_per_second(64, 64, 64);
        assert!(rate > 1e8 && rate.is_finite(), "{rate}");
        if let Some(bytes) = last_level_cache_bytes() {
            assert!(bytes >= 1 << 16, "a last-level cache of {bytes} bytes");
        }
    }

    #[test]
    fn a_steps_speed_up_is_its_products_under_amdahls_law() {
        // Half products at 3x: the step 1 / (0.5 + 0.5 / 3) = 1.5x.
        assert!((products_alone(1.5, 0.5, 4.0) - 3.0).abs() < 1e-12);
        // All products: the step's own; none gains at all: the throughput.
        assert!((products_alone(1.8, 1.0, 2.0) - 1.8).abs() < 1e-12);
        assert_eq!(products_alone(1.9, 0.5, 2.0), 2.0);
        assert_eq!(products_alone(1.2, 0.0, 2.0), 2.0);
    }

    #[test]
    fn the_machine_is_measured_with_a_step_a_core() {
        let rt = Runtime::builder().threads(2).build();
        let err = shared_cores(&rt, &mut [step(1)], &[], 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 given for 2 workers"), "{err}");
        let mut copies = [step(1), step(1)];
        let x = [0.5f32; 64];
        let (machine, times) = shared_cores(&rt, &mut copies, &[("x", &x)], 3).unwrap();
        for t in [times.one_worker, times.every_worker, times.side_by_side] {
            assert!(t > 0.0 && t < 1.0, "{times:?}");
        }
        let throughput = (2.0 * times.one_worker / times.side_by_side).clamp(1.0, 2.0);
        assert_eq!(machine.throughput(), throughput, "{times:?}");
        let alone = (times.one_worker / times.every_worker).clamp(1.0, throughput);
        assert_eq!(machine.alone(), alone, "{times:?}");
    }
}
