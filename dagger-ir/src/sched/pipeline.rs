//! Pipeline-parallel schedules: GPipe and 1F1B (PipeDream-Flush).
//!
//! A model cut into `K` stages (one per device) trains on `M` micro-batches
//! per step. Stage `s` runs the forward pass `F(s, m)` of micro-batch `m`
//! after `F(s - 1, m)` (plus the transfer of its activation), and the
//! backward pass `B(s, m)` after `F(s, m)` and `B(s + 1, m)`.
//!
//! - **GPipe** (Huang et al., 2019): every stage runs all forwards, then all
//!   backwards. Each stage holds the activations of all `M` micro-batches.
//! - **1F1B** (PipeDream-Flush, Narayanan et al., 2021): stage `s` runs
//!   `K - 1 - s` warm-up forwards, then alternates one forward and one
//!   backward, then drains the backwards: the same bubble, but at most
//!   `K - s` micro-batches' activations alive on stage `s`.
//!
//! With equal stages and no transfer time, both leave each device idle for
//! the fraction `(K - 1) / (M + K - 1)` of the step ([`bubble_formula`]);
//! [`PipelineSchedule::bubble_fraction`] measures it on any schedule.
//! [`balanced_stages`] cuts a sequence of layer costs into `K` contiguous
//! stages minimizing the slowest one. The interleaved 1F1B schedule, with
//! several chunks a device, is in [`interleaved`](super::interleaved); it
//! runs on the same simulator.

use super::schedule::Schedule;
use std::ops::Range;

/// Which pipeline schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipelineKind {
    /// All forwards, then all backwards.
    GPipe,
    /// Warm-up forwards, then one forward one backward, then drain.
    OneFOneB,
}

/// Forward or backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The forward pass of a micro-batch on a stage.
    Forward,
    /// Its backward pass.
    Backward,
}

/// One pass of one micro-batch on one stage, placed in time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PipelineOp {
    /// The stage (device).
    pub stage: usize,
    /// The micro-batch.
    pub micro: usize,
    /// Forward or backward.
    pub pass: Pass,
    /// Start time.
    pub start: f64,
    /// Finish time.
    pub finish: f64,
}

/// A simulated pipeline schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSchedule {
    /// Which schedule.
    pub kind: PipelineKind,
    /// Stages `K`.
    pub stages: usize,
    /// Micro-batches `M`.
    pub micro_batches: usize,
    /// Every pass, in the order each stage runs them.
    pub ops: Vec<PipelineOp>,
}

/// The idle fraction of equal stages without transfers: `(K-1)/(M+K-1)`.
pub fn bubble_formula(stages: usize, micro_batches: usize) -> f64 {
    (stages as f64 - 1.0) / (micro_batches + stages - 1) as f64
}

/// The order stage `s` runs its passes in.
pub fn stage_order(
    kind: PipelineKind,
    stages: usize,
    micro: usize,
    s: usize,
) -> Vec<(Pass, usize)> {
    match kind {
        PipelineKind::GPipe => (0..micro)
            .map(|m| (Pass::Forward, m))
            .chain((0..micro).map(|m| (Pass::Backward, m)))
            .collect(),
        PipelineKind::OneFOneB => {
            let warmup = (stages - 1 - s).min(micro);
            let mut order: Vec<(Pass, usize)> = (0..warmup).map(|m| (Pass::Forward, m)).collect();
            for i in 0..micro - warmup {
                order.push((Pass::Forward, warmup + i));
                order.push((Pass::Backward, i));
            }
            order.extend((micro - warmup..micro).map(|m| (Pass::Backward, m)));
            order
        }
    }
}

/// Simulates `kind` for stages taking `forward[s]` and `backward[s]`
/// seconds per micro-batch, with `transfer` seconds to pass an activation
/// or its gradient between neighbouring stages.
pub fn simulate(
    kind: PipelineKind,
    forward: &[f64],
    backward: &[f64],
    micro_batches: usize,
    transfer: f64,
) -> PipelineSchedule {
    let k = forward.len();
    let orders: Vec<Vec<(Pass, usize, usize)>> = (0..k)
        .map(|s| {
            stage_order(kind, k, micro_batches, s)
                .into_iter()
                .map(|(pass, m)| (pass, s, m))
                .collect()
        })
        .collect();
    simulate_orders(kind, &orders, forward, backward, micro_batches, transfer)
}

/// Simulates `orders[d]`, the `(pass, chunk, micro-batch)` that device `d`
/// runs in turn, for `forward.len()` chunks (virtual stages) in a chain,
/// chunk `c` on device `c % orders.len()`, taking `forward[c]` and
/// `backward[c]` seconds a micro-batch; `transfer` seconds are paid
/// between chunks on different devices. The ops name their chunk as their
/// `stage`; with one chunk a device this is [`simulate`].
pub(super) fn simulate_orders(
    kind: PipelineKind,
    orders: &[Vec<(Pass, usize, usize)>],
    forward: &[f64],
    backward: &[f64],
    micro_batches: usize,
    transfer: f64,
) -> PipelineSchedule {
    let (devices, chunks) = (orders.len(), forward.len());
    let hop = |a: usize, b: usize| {
        if a % devices == b % devices {
            0.0
        } else {
            transfer
        }
    };
    // Finish times, `None` until scheduled: [pass][chunk][micro].
    let mut done = [
        vec![vec![None::<f64>; micro_batches]; chunks],
        vec![vec![None::<f64>; micro_batches]; chunks],
    ];
    let mut next = vec![0usize; devices];
    let mut free_at = vec![0.0f64; devices];
    let total: usize = orders.iter().map(Vec::len).sum();
    let mut ops = Vec::with_capacity(total);
    while ops.len() < total {
        let mut progressed = false;
        for d in 0..devices {
            let Some(&(pass, c, m)) = orders[d].get(next[d]) else {
                continue;
            };
            let ready = match pass {
                Pass::Forward if c == 0 => Some(0.0),
                Pass::Forward => done[0][c - 1][m].map(|t| t + hop(c - 1, c)),
                Pass::Backward => {
                    let own = done[0][c][m];
                    let later = if c + 1 == chunks {
                        Some(0.0)
                    } else {
                        done[1][c + 1][m].map(|t| t + hop(c + 1, c))
                    };
                    own.zip(later).map(|(a, b)| a.max(b))
                }
            };
            let Some(ready) = ready else { continue };
            let start = ready.max(free_at[d]);
            let finish = start
                + if pass == Pass::Forward {
                    forward[c]
                } else {
                    backward[c]
                };
            done[usize::from(pass == Pass::Backward)][c][m] = Some(finish);
            free_at[d] = finish;
            next[d] += 1;
            ops.push(PipelineOp {
                stage: c,
                micro: m,
                pass,
                start,
                finish,
            });
            progressed = true;
        }
        assert!(
            progressed,
            "pipeline orders are deadlock-free by construction"
        );
    }
    PipelineSchedule {
        kind,
        stages: chunks,
        micro_batches,
        ops,
    }
}

impl PipelineSchedule {
    /// Time of the whole step.
    pub fn makespan(&self) -> f64 {
        self.ops.iter().map(|o| o.finish).fold(0.0, f64::max)
    }

    /// Fraction of device time spent idle during the step.
    pub fn bubble_fraction(&self) -> f64 {
        let busy: f64 = self.ops.iter().map(|o| o.finish - o.start).sum();
        1.0 - busy / (self.stages as f64 * self.makespan())
    }

    /// Most micro-batches whose activations stage `s` holds at once
    /// (forward done, backward not yet).
    pub fn peak_activations(&self, s: usize) -> usize {
        self.peak_alive(|stage| stage == s)
    }

    /// Most activations alive at once over the stages (chunks) that `on`
    /// accepts: one a forward finished, until its backward finishes.
    pub(super) fn peak_alive(&self, on: impl Fn(usize) -> bool) -> usize {
        let mut events: Vec<(f64, i32)> = Vec::new();
        for o in self.ops.iter().filter(|o| on(o.stage)) {
            match o.pass {
                Pass::Forward => events.push((o.finish, 1)),
                Pass::Backward => events.push((o.finish, -1)),
            }
        }
        events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let (mut alive, mut peak) = (0i32, 0i32);
        for (_, d) in events {
            alive += d;
            peak = peak.max(alive);
        }
        peak as usize
    }

    /// The schedule for the Gantt and trace writers, with labels
    /// (`F3`, `B3`), one processor per stage.
    pub fn to_schedule(&self) -> (Schedule, Vec<String>) {
        let placement = self
            .ops
            .iter()
            .map(|o| (o.stage, o.start, o.finish))
            .collect();
        let labels = self
            .ops
            .iter()
            .map(|o| {
                format!(
                    "{}{}",
                    if o.pass == Pass::Forward { "F" } else { "B" },
                    o.micro
                )
            })
            .collect();
        (Schedule { placement }, labels)
    }
}

/// Cuts layers of costs `costs` into `k` contiguous stages minimizing the
/// cost of the slowest stage (dynamic programming over prefix sums).
pub fn balanced_stages(costs: &[f64], k: usize) -> Vec<Range<usize>> {
    let n = costs.len();
    let k = k.clamp(1, n.max(1));
    let mut prefix = vec![0.0; n + 1];
    for (i, c) in costs.iter().enumerate() {
        prefix[i + 1] = prefix[i] + c;
    }
    // best[j][i]: slowest stage when the first i layers form j stages.
    let mut best = vec![vec![f64::INFINITY; n + 1]; k + 1];
    let mut cut = vec![vec![0usize; n + 1]; k + 1];
    best[0][0] = 0.0;
    for j in 1..=k {
        for i in j..=n {
            for p in (j - 1)..i {
                let v = best[j - 1][p].max(prefix[i] - prefix[p]);
                if v < best[j][i] {
                    best[j][i] = v;
                    cut[j][i] = p;
                }
            }
        }
    }
    let mut ranges = Vec::with_capacity(k);
    let mut end = n;
    for j in (1..=k).rev() {
        let start = cut[j][end];
        ranges.push(start..end);
        end = start;
    }
    ranges.reverse();
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_stages_leave_the_formulas_bubble() {
        for (k, m) in [(2, 4), (4, 8), (4, 16), (3, 1)] {
            for kind in [PipelineKind::GPipe, PipelineKind::OneFOneB] {
                let s = simulate(kind, &vec![1.0; k], &vec![2.0; k], m, 0.0);
                assert_eq!(s.ops.len(), 2 * k * m);
                assert!(
                    (s.bubble_fraction() - bubble_formula(k, m)).abs() < 1e-12,
                    "{kind:?} K={k} M={m}"
                );
                assert!((s.makespan() - 3.0 * (m + k - 1) as f64).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn one_f_one_b_holds_fewer_activations() {
        let (k, m) = (4, 8);
        let gpipe = simulate(PipelineKind::GPipe, &[1.0; 4], &[2.0; 4], m, 0.0);
        let ofob = simulate(PipelineKind::OneFOneB, &[1.0; 4], &[2.0; 4], m, 0.0);
        for s in 0..k {
            assert_eq!(gpipe.peak_activations(s), m);
            assert_eq!(ofob.peak_activations(s), k - s);
        }
    }

    #[test]
    fn passes_respect_their_dependencies() {
        let s = simulate(
            PipelineKind::OneFOneB,
            &[1.0, 2.0, 1.5],
            &[2.0, 3.0, 2.5],
            5,
            0.25,
        );
        let at = |stage: usize, micro: usize, pass: Pass| {
            *s.ops
                .iter()
                .find(|o| o.stage == stage && o.micro == micro && o.pass == pass)
                .unwrap()
        };
        for m in 0..5 {
            for st in 1..3 {
                assert!(
                    at(st, m, Pass::Forward).start >= at(st - 1, m, Pass::Forward).finish + 0.25
                );
            }
            for st in 0..2 {
                assert!(
                    at(st, m, Pass::Backward).start >= at(st + 1, m, Pass::Backward).finish + 0.25
                );
            }
        }
        // Unequal stages: the bubble exceeds the formula's.
        assert!(s.bubble_fraction() > bubble_formula(3, 5));
    }

    #[test]
    fn balanced_stages_minimize_the_slowest() {
        let stages = balanced_stages(&[1.0, 1.0, 1.0, 6.0, 1.0, 1.0, 1.0], 3);
        assert_eq!(stages, vec![0..3, 3..4, 4..7]);
        assert_eq!(balanced_stages(&[1.0; 8], 4), vec![0..2, 2..4, 4..6, 6..8]);
    }
}
