//! Predicting one training step of a split on a cluster: stages timed on
//! the [`GpuModel`], tensor-parallel all-reduces and pipeline transfers on
//! the platform's links, the pipeline simulated under 1F1B (interleaved
//! when the split's `v > 1`), then the data-parallel all-reduce and the
//! optimizer.

use super::{GptConfig, GpuModel, MegatronSplit};
use crate::{Error, Result};
use dagger_ir::model::{Platform, ProcKind};
use dagger_ir::sched::interleaved::simulate_interleaved;

/// Bytes the Adam update reads and writes a parameter: the 16-bit
/// gradient, the 32-bit master weight and both moments read and written,
/// the 16-bit weight written.
const OPTIMIZER_BYTES_PER_PARAMETER: f64 = 2.0 + 3.0 * 8.0 + 2.0;

/// The GPUs of a platform and how they are joined. GPU `r` of a split
/// (rank `r`) is the platform's `r`-th GPU; Megatron's order places ranks
/// `stage x (d t) + replica x t + shard`, so a tensor-parallel group is
/// consecutive GPUs (one node when `t` divides the GPUs of a node).
#[derive(Clone, Debug)]
pub struct Cluster<'a> {
    platform: &'a Platform,
    gpus: Vec<usize>,
    gpus_per_node: usize,
}

impl<'a> Cluster<'a> {
    /// The GPUs of `platform`; every node that has GPUs must have as many.
    pub fn new(platform: &'a Platform) -> Result<Self> {
        let gpus: Vec<usize> = (0..platform.processors.len())
            .filter(|&i| platform.processors[i].kind == ProcKind::Gpu)
            .collect();
        let mut per_node = std::collections::BTreeMap::<usize, usize>::new();
        for &g in &gpus {
            *per_node.entry(platform.processors[g].node).or_default() += 1;
        }
        let counts: Vec<usize> = per_node.values().copied().collect();
        match counts.first() {
            None => Err(Error::Settings("the platform has no GPU".into())),
            Some(&first) if counts.iter().all(|&c| c == first) => Ok(Cluster {
                platform,
                gpus,
                gpus_per_node: first,
            }),
            Some(_) => Err(Error::Settings(format!(
                "the platform's nodes have different numbers of GPUs: {counts:?}"
            ))),
        }
    }

    /// GPUs in all.
    pub fn gpus(&self) -> usize {
        self.gpus.len()
    }

    /// GPUs of each node.
    pub fn gpus_per_node(&self) -> usize {
        self.gpus_per_node
    }

    /// Seconds to move `bytes` from rank `a` to rank `b`.
    fn transfer(&self, a: usize, b: usize, bytes: f64) -> f64 {
        self.platform
            .transfer_time(self.gpus[a], self.gpus[b], bytes.ceil() as u64)
    }

    /// Seconds of a ring all-gather of `bytes` in all over `ranks`: `n - 1`
    /// steps, each moving `bytes / n` over the ring's slowest hop.
    pub fn ring_all_gather(&self, ranks: &[usize], bytes: f64) -> f64 {
        let n = ranks.len();
        if n < 2 {
            return 0.0;
        }
        let chunk = bytes / n as f64;
        let hop = (0..n)
            .map(|i| self.transfer(ranks[i], ranks[(i + 1) % n], chunk))
            .fold(0.0, f64::max);
        (n - 1) as f64 * hop
    }

    /// Seconds of a ring all-reduce of `bytes` over `ranks`: a
    /// reduce-scatter and an all-gather, `2 (n - 1)` steps of `bytes / n`,
    /// so `2 (n-1)/n x bytes / bandwidth + 2 (n - 1) x latency`.
    pub fn ring_all_reduce(&self, ranks: &[usize], bytes: f64) -> f64 {
        2.0 * self.ring_all_gather(ranks, bytes)
    }

    /// Seconds until the slowest of several groups' ring all-reduces, each
    /// of its own bytes, has finished (they run at once).
    fn slowest_all_reduce(&self, groups: impl Iterator<Item = (Vec<usize>, f64)>) -> f64 {
        groups
            .map(|(ranks, bytes)| self.ring_all_reduce(&ranks, bytes))
            .fold(0.0, f64::max)
    }
}

/// Where one rank of a split sits: rank `stage x (d t) + replica x t + shard`.
fn rank(split: &MegatronSplit, stage: usize, replica: usize, shard: usize) -> usize {
    (stage * split.data + replica) * split.tensor + shard
}

/// One step of a split, predicted.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Seconds of each stage's forward of one micro-batch (its
    /// tensor-parallel all-reduces included).
    pub stage_forward: Vec<f64>,
    /// Seconds of each stage's backward of one micro-batch: the
    /// recomputed forward, then twice the forward's work, with their
    /// all-reduces.
    pub stage_backward: Vec<f64>,
    /// Of a stage's forward and backward of one micro-batch, the seconds of
    /// its tensor-parallel all-reduces (6 a layer: 2 forward, 2 recomputed,
    /// 2 backward).
    pub tensor_all_reduce_seconds: f64,
    /// Seconds to pass an activation (or its gradient) to the next stage
    /// (with `v` chunks a GPU, `v` times a micro-batch each way).
    pub transfer_seconds: f64,
    /// Seconds of the simulated pipeline of all micro-batches: 1F1B, or
    /// interleaved 1F1B of `v` chunks a GPU, each `1 / v` of the stage.
    pub pipeline_seconds: f64,
    /// Its idle fraction.
    pub bubble_fraction: f64,
    /// Seconds of the data-parallel all-reduce of the 16-bit gradients
    /// after the pipeline (not overlapped).
    pub data_all_reduce_seconds: f64,
    /// Seconds of the Adam update.
    pub optimizer_seconds: f64,
    /// Seconds of the step: pipeline, then all-reduce, then update.
    pub step_seconds: f64,
    /// The paper's eq. 3 floating-point work over GPUs x step seconds, in
    /// teraFLOP/s.
    pub tflops_per_gpu: f64,
}

/// Predicts one step of `split` (one of [`MegatronSplit::all`]: its sizes
/// divide the model's) on the first `d t p` GPUs of `cluster`, each a
/// `gpu`. Its memory is not checked here ([`plan`](super::plan) does).
///
/// # Panics
///
/// When `v > 1` and `p` does not divide the micro-batches, which
/// [`MegatronSplit::all`] never offers (Megatron's condition).
pub fn predict(
    config: &GptConfig,
    split: &MegatronSplit,
    cluster: &Cluster<'_>,
    gpu: &GpuModel,
) -> Prediction {
    let (d, t, p, b) = (split.data, split.tensor, split.pipeline, split.micro_batch);
    let shards = |stage, replica| {
        (0..t)
            .map(move |k| rank(split, stage, replica, k))
            .collect()
    };
    let groups = (0..p).flat_map(|s| (0..d).map(move |r| (s, r)));
    let tensor_bytes = config.tensor_all_reduce_bytes(b);
    let one_all_reduce =
        cluster.slowest_all_reduce(groups.map(|(s, r)| (shards(s, r), tensor_bytes)));
    let (v, layers) = (split.interleave, (config.layers / p) as f64);
    let chunk_layers = layers / v as f64;
    let layer_compute = gpu.seconds(
        config.layer_forward_flops(b) / t as f64,
        config.layer_memory_bytes(b, t),
    );
    // The loss reads and writes as many bytes as the logits and their
    // gradient hold.
    let logits = gpu.seconds(
        config.logits_forward_flops(b) / t as f64,
        config.logits_bytes(b, t),
    );
    // Chunk c of the p v (device c % p) has layers / v of a stage's layers;
    // the last chunk computes the logits.
    let last = |c: usize, x: f64| if c + 1 == p * v { x } else { 0.0 };
    let chunk_forward: Vec<f64> = (0..p * v)
        .map(|c| chunk_layers * (layer_compute + 2.0 * one_all_reduce) + last(c, logits))
        .collect();
    let chunk_backward: Vec<f64> = (0..p * v)
        .map(|c| {
            chunk_layers * (3.0 * layer_compute + 4.0 * one_all_reduce) + last(c, 2.0 * logits)
        })
        .collect();
    let stage_sum = |chunks: &[f64]| -> Vec<f64> {
        (0..p)
            .map(|s| (s..p * v).step_by(p).map(|c| chunks[c]).sum())
            .collect()
    };
    let (stage_forward, stage_backward) = (stage_sum(&chunk_forward), stage_sum(&chunk_backward));
    // Megatron's scatter/gather: each shard sends 1/t of the activation to
    // its peer of the next stage, which all-gather it over their node.
    let sent = config.stage_transfer_bytes(b);
    let transfer_seconds = (0..p.saturating_sub(1))
        .flat_map(|s| (0..d).flat_map(move |r| (0..t).map(move |k| (s, r, k))))
        .map(|(s, r, k)| {
            let send = cluster.transfer(
                rank(split, s, r, k),
                rank(split, s + 1, r, k),
                sent / t as f64,
            );
            send + cluster.ring_all_gather(&shards(s + 1, r), sent)
        })
        .fold(0.0, f64::max);
    let schedule = simulate_interleaved(
        &chunk_forward,
        &chunk_backward,
        p,
        split.micro_batches(config),
        transfer_seconds,
    )
    .expect("MegatronSplit::all interleaves only when the stages divide the micro-batches");
    let replicas = |s: usize, k: usize| (0..d).map(|r| rank(split, s, r, k)).collect::<Vec<_>>();
    let gradients = |s| 2.0 * split.stage_parameters(config, s) as f64;
    let data_all_reduce_seconds = cluster.slowest_all_reduce(
        (0..p)
            .flat_map(|s| (0..t).map(move |k| (s, k)))
            .map(|(s, k)| (replicas(s, k), gradients(s))),
    );
    let most_parameters = (0..p)
        .map(|s| split.stage_parameters(config, s))
        .max()
        .unwrap_or(0);
    let optimizer_seconds =
        most_parameters as f64 * OPTIMIZER_BYTES_PER_PARAMETER / gpu.hbm_bytes_per_second;
    let pipeline_seconds = schedule.makespan();
    let step_seconds = pipeline_seconds + data_all_reduce_seconds + optimizer_seconds;
    Prediction {
        tensor_all_reduce_seconds: layers * 6.0 * one_all_reduce,
        stage_forward,
        stage_backward,
        transfer_seconds,
        pipeline_seconds,
        bubble_fraction: schedule.bubble_fraction(),
        data_all_reduce_seconds,
        optimizer_seconds,
        step_seconds,
        tflops_per_gpu: config.step_flops() / (split.gpus() as f64 * step_seconds) / 1e12,
    }
}
