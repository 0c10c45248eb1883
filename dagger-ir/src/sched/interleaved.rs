//! The interleaved 1F1B pipeline schedule (Narayanan et al., SC21, §2.2.2).
//!
//! Each of `K` devices holds `v` model chunks (virtual stages) instead of
//! one stage: the model is cut into `K v` chunks and device `d` holds
//! chunks `d, d + K, d + 2K, ...`, so a micro-batch visits every device `v`
//! times. Device `d` runs Megatron-LM's order
//! (`forward_backward_pipelining_with_interleaving`): micro-batches go in
//! groups of `K`, a group through each of the device's chunks in turn;
//! `(K - d - 1) x 2 + (v - 1) x K` warm-up forwards (all `v M` when
//! `M = K`), then one forward one backward, then the backwards left
//! (backwards visit the chunks last first). With `v = 1` this is
//! [`PipelineKind::OneFOneB`]'s order, as Megatron runs then.
//!
//! With equal chunks of `f / v` and `b / v` seconds and no transfer, each
//! device works `M (f + b)` and idles `(K - 1)(f + b) / v`: the bubble of
//! 1F1B divided by `v`, as the paper says, so the idle fraction is
//! `(K - 1) / (v M + K - 1)` ([`interleaved_bubble_formula`]). The price:
//! `v` times as many transfers, and more activations in flight (device 0
//! holds `(v - 1) K + 2 (K - 1) + 1` chunks' worth, each `1 / v` of a
//! stage's, against 1F1B's `K` stages' worth).
//!
//! Megatron needs `M` to be a multiple of `K` when `v > 1`;
//! [`simulate_interleaved`] refuses other counts with an
//! [`InterleaveError`].
//!
//! # Examples
//!
//! ```
//! use dagger_ir::sched::interleaved::{interleaved_bubble_formula, simulate_interleaved};
//!
//! // 4 devices, 2 chunks each, 8 micro-batches: chunks of half a stage.
//! let s = simulate_interleaved(&[0.5; 8], &[1.0; 8], 4, 8, 0.0).unwrap();
//! assert!((s.bubble_fraction() - interleaved_bubble_formula(4, 2, 8)).abs() < 1e-12);
//! assert!(simulate_interleaved(&[0.5; 8], &[1.0; 8], 4, 6, 0.0).is_err());
//! ```

use super::pipeline::{simulate_orders, stage_order, Pass, PipelineKind, PipelineSchedule};
use super::schedule::Schedule;
use std::fmt;

/// Why an interleaved schedule cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterleaveError {
    /// The chunks do not share out evenly over the devices.
    Chunks {
        /// Chunks given.
        chunks: usize,
        /// Devices.
        devices: usize,
    },
    /// The micro-batches are not a multiple of the devices.
    MicroBatches {
        /// Micro-batches of the step.
        micro_batches: usize,
        /// Devices.
        devices: usize,
    },
}

impl fmt::Display for InterleaveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterleaveError::Chunks { chunks, devices } => write!(
                f,
                "{chunks} chunks do not share out over {devices} devices (need a positive multiple)"
            ),
            InterleaveError::MicroBatches {
                micro_batches,
                devices,
            } => write!(
                f,
                "the interleaved schedule needs micro-batches a multiple of the {devices} \
                 devices, not {micro_batches}"
            ),
        }
    }
}

impl std::error::Error for InterleaveError {}

/// The idle fraction of equal chunks without transfers: `(K-1)/(vM+K-1)`.
pub fn interleaved_bubble_formula(devices: usize, chunks: usize, micro_batches: usize) -> f64 {
    (devices as f64 - 1.0) / (chunks * micro_batches + devices - 1) as f64
}

/// The forwards device `d` of `devices` runs before its first backward,
/// with `chunks` chunks a device and `micro` micro-batches: 1F1B's
/// `K - d - 1` with one chunk, else Megatron's `(K - d - 1) x 2 + (v - 1) x K`
/// (all `v M` when `M = K`), at most the `v M` forwards there are. Device
/// `d` then holds at most one more chunk activation than this, up to `v M`.
pub fn warmup_forwards(devices: usize, chunks: usize, micro: usize, d: usize) -> usize {
    let total = chunks * micro;
    if chunks == 1 {
        (devices - 1 - d).min(micro)
    } else if micro == devices {
        total
    } else {
        ((devices - d - 1) * 2 + (chunks - 1) * devices).min(total)
    }
}

/// The `(pass, chunk, micro-batch)` that device `d` of `devices` runs in
/// turn, with `chunks` chunks a device (chunk `c` is on device
/// `c % devices`) and `micro` micro-batches, a multiple of `devices`.
pub fn device_order(
    devices: usize,
    chunks: usize,
    micro: usize,
    d: usize,
) -> Vec<(Pass, usize, usize)> {
    if chunks == 1 {
        return stage_order(PipelineKind::OneFOneB, devices, micro, d)
            .into_iter()
            .map(|(pass, m)| (pass, d, m))
            .collect();
    }
    let total = chunks * micro;
    let warmup = warmup_forwards(devices, chunks, micro, d);
    // Megatron's get_model_chunk_id and microbatch id of the k-th pass.
    let pass = |pass: Pass, k: usize| {
        let in_group = k % (devices * chunks);
        let local = in_group / devices;
        let local = if pass == Pass::Forward {
            local
        } else {
            chunks - 1 - local
        };
        let m = k / (devices * chunks) * devices + k % devices;
        (pass, local * devices + d, m)
    };
    let mut order: Vec<_> = (0..warmup).map(|k| pass(Pass::Forward, k)).collect();
    for k in 0..total - warmup {
        order.push(pass(Pass::Forward, warmup + k));
        order.push(pass(Pass::Backward, k));
    }
    order.extend((total - warmup..total).map(|k| pass(Pass::Backward, k)));
    order
}

/// An interleaved schedule: the simulated [`PipelineSchedule`] of the
/// chunks (its `stages` are the `K v` chunks, each op's `stage` its
/// chunk), with the devices that hold them.
#[derive(Clone, Debug, PartialEq)]
pub struct InterleavedSchedule {
    /// Devices `K`.
    pub devices: usize,
    /// Chunks a device `v`.
    pub chunks: usize,
    /// The chunks' schedule.
    pub schedule: PipelineSchedule,
}

/// Simulates the interleaved 1F1B schedule of `forward.len()` chunks
/// taking `forward[c]` and `backward[c]` seconds a micro-batch, over
/// `devices` devices (chunk `c` on device `c % devices`), with `transfer`
/// seconds to pass an activation or its gradient between devices. Errors
/// when the chunks are not a positive multiple of the devices, or, with
/// more than one chunk a device, the micro-batches not a multiple of the
/// devices (Megatron's condition).
pub fn simulate_interleaved(
    forward: &[f64],
    backward: &[f64],
    devices: usize,
    micro_batches: usize,
    transfer: f64,
) -> Result<InterleavedSchedule, InterleaveError> {
    let n = forward.len();
    if devices == 0 || n == 0 || !n.is_multiple_of(devices) || backward.len() != n {
        return Err(InterleaveError::Chunks { chunks: n, devices });
    }
    if n > devices && (micro_batches == 0 || !micro_batches.is_multiple_of(devices)) {
        return Err(InterleaveError::MicroBatches {
            micro_batches,
            devices,
        });
    }
    let chunks = n / devices;
    let orders: Vec<_> = (0..devices)
        .map(|d| device_order(devices, chunks, micro_batches, d))
        .collect();
    let schedule = simulate_orders(
        PipelineKind::OneFOneB,
        &orders,
        forward,
        backward,
        micro_batches,
        transfer,
    );
    Ok(InterleavedSchedule {
        devices,
        chunks,
        schedule,
    })
}

impl InterleavedSchedule {
    /// Time of the whole step.
    pub fn makespan(&self) -> f64 {
        self.schedule.makespan()
    }

    /// Fraction of device time spent idle during the step.
    pub fn bubble_fraction(&self) -> f64 {
        let busy: f64 = self.schedule.ops.iter().map(|o| o.finish - o.start).sum();
        1.0 - busy / (self.devices as f64 * self.makespan())
    }

    /// Most chunk activations device `d` holds at once (a chunk's forward
    /// of a micro-batch done, its backward not yet); each is `1 / v` of a
    /// whole stage's.
    pub fn peak_activations(&self, d: usize) -> usize {
        self.schedule.peak_alive(|c| c % self.devices == d)
    }

    /// The schedule for the Gantt and trace writers, one processor per
    /// device, labelled by pass, micro-batch and chunk (`F3.1`: the
    /// forward of micro-batch 3 through the device's chunk 1).
    pub fn to_schedule(&self) -> (Schedule, Vec<String>) {
        let (mut schedule, labels) = self.schedule.to_schedule();
        for p in &mut schedule.placement {
            p.0 %= self.devices;
        }
        let ops = &self.schedule.ops;
        let labels = labels
            .into_iter()
            .zip(ops)
            .map(|(l, o)| format!("{l}.{}", o.stage / self.devices))
            .collect();
        (schedule, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::pipeline::simulate;

    /// Equal chunks: a stage of 1 s forward, 2 s backward cut in `v`.
    fn equal(k: usize, v: usize, m: usize, transfer: f64) -> InterleavedSchedule {
        let (f, b) = (vec![1.0 / v as f64; k * v], vec![2.0 / v as f64; k * v]);
        simulate_interleaved(&f, &b, k, m, transfer).unwrap()
    }

    #[test]
    fn equal_chunks_leave_the_formulas_bubble_v_times_smaller() {
        for (k, v, m) in [
            (2, 2, 4),
            (4, 2, 4),
            (4, 2, 8),
            (4, 4, 8),
            (4, 2, 16),
            (8, 2, 16),
            (3, 3, 6),
        ] {
            let s = equal(k, v, m, 0.0);
            assert_eq!(s.schedule.ops.len(), 2 * k * v * m);
            let formula = interleaved_bubble_formula(k, v, m);
            assert!(
                (s.bubble_fraction() - formula).abs() < 1e-9,
                "K={k} v={v} M={m}: {} vs {formula}",
                s.bubble_fraction()
            );
            // Idle time: 1F1B's (K - 1)(f + b), divided by v.
            let idle = s.makespan() - 3.0 * m as f64;
            assert!(
                (idle - 3.0 * (k - 1) as f64 / v as f64).abs() < 1e-9,
                "{idle}"
            );
        }
    }

    #[test]
    fn one_chunk_a_device_is_one_f_one_b() {
        let (f, b) = ([1.0, 2.0, 1.5, 1.0], [2.0, 3.0, 2.5, 2.5]);
        let flat = simulate(PipelineKind::OneFOneB, &f, &b, 8, 0.25);
        let one = simulate_interleaved(&f, &b, 4, 8, 0.25).unwrap();
        assert_eq!(one.schedule, flat);
        assert_eq!(one.bubble_fraction(), flat.bubble_fraction());
        for d in 0..4 {
            assert_eq!(one.peak_activations(d), flat.peak_activations(d));
        }
    }

    #[test]
    fn chunks_respect_their_dependencies_and_devices_never_overlap() {
        let (k, v, m, transfer) = (3, 2, 6, 0.25);
        let f = [1.0, 2.0, 1.5, 0.5, 1.0, 0.75];
        let b = [2.0, 3.0, 2.5, 1.0, 2.0, 1.5];
        let s = simulate_interleaved(&f, &b, k, m, transfer).unwrap();
        let ops = &s.schedule.ops;
        let at = |c: usize, micro: usize, pass: Pass| {
            *ops.iter()
                .find(|o| o.stage == c && o.micro == micro && o.pass == pass)
                .unwrap()
        };
        for micro in 0..m {
            for c in 1..k * v {
                let (prev, this) = (at(c - 1, micro, Pass::Forward), at(c, micro, Pass::Forward));
                assert!(this.start >= prev.finish + transfer - 1e-12);
            }
            for c in 0..k * v - 1 {
                let (next, this) = (
                    at(c + 1, micro, Pass::Backward),
                    at(c, micro, Pass::Backward),
                );
                assert!(this.start >= next.finish + transfer - 1e-12);
                assert!(this.start >= at(c, micro, Pass::Forward).finish);
            }
        }
        let (sched, labels) = s.to_schedule();
        for (i, a) in sched.placement.iter().enumerate() {
            assert!(a.0 < k);
            for b in &sched.placement[i + 1..] {
                assert!(a.0 != b.0 || a.2 <= b.1 + 1e-12 || b.2 <= a.1 + 1e-12);
            }
        }
        assert!(labels.contains(&"B5.1".to_string()));
        // Unequal chunks and transfers: more idle than the formula.
        assert!(s.bubble_fraction() > interleaved_bubble_formula(k, v, m));
    }

    #[test]
    fn interleaving_holds_more_activations_each_smaller() {
        let (k, v, m) = (4, 2, 16);
        let s = equal(k, v, m, 0.0);
        // Device 0: (v - 1) K + 2 (K - 1) warm-up forwards, then one more.
        assert_eq!(s.peak_activations(0), (v - 1) * k + 2 * (k - 1) + 1);
        // The last device: (v - 1) K warm-up, then one more.
        assert_eq!(s.peak_activations(k - 1), (v - 1) * k + 1);
        let flat = equal(k, 1, m, 0.0);
        assert_eq!(flat.peak_activations(0), k);
        for d in 0..k {
            let most = (warmup_forwards(k, v, m, d) + 1).min(v * m);
            assert_eq!(s.peak_activations(d), most, "device {d}");
        }
    }

    #[test]
    fn megatrons_condition_is_refused_with_a_reason() {
        let e = simulate_interleaved(&[1.0; 8], &[2.0; 8], 4, 6, 0.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the interleaved schedule needs micro-batches a multiple of the 4 devices, not 6"
        );
        let e = simulate_interleaved(&[1.0; 6], &[2.0; 6], 4, 8, 0.0).unwrap_err();
        assert_eq!(
            e,
            InterleaveError::Chunks {
                chunks: 6,
                devices: 4
            }
        );
    }
}
