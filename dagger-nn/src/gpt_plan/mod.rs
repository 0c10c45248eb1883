//! Planning GPT training on GPU clusters by simulation: which Megatron
//! split (data x tensor x pipeline, a micro-batch size, and how many model
//! chunks a GPU interleaves) trains a step
//! fastest, predicted from an analytic model of the layer on a platform
//! file, as Megatron-LM's PTD-P (Narayanan et al., SC21) splits it.
//!
//! The tensor IR has no attention op, so a GPT here is counts
//! ([`GptConfig`]): its matmuls' work, its parameters, its activations'
//! bytes, its memory-bound ops' bytes. A [`GpuModel`] turns them into
//! seconds (matmuls at a fraction of peak plus bytes at the memory's
//! bandwidth); the platform ([`Platform::gpu_cluster`], or a file such as
//! `examples/platforms/dgx_a100.json`) says which GPUs share a node and
//! what joins them. For each split ([`MegatronSplit::all`]) [`plan`]:
//!
//! 1. refuses it when a GPU would hold more than its memory: 16 bytes a
//!    parameter (mixed-precision Adam, no ZeRO, as in the paper), the
//!    inputs of every layer of the micro-batches in flight under 1F1B, or
//!    of the chunks in flight under interleaved 1F1B (full activation
//!    recomputation keeps nothing else), one layer's
//!    activations being recomputed, the last stage's logits;
//! 2. times each stage's forward and backward of a micro-batch (backward:
//!    the recomputed forward plus twice the forward's work), with two ring
//!    all-reduces of the layer's output per forward over the node's links;
//! 3. simulates the stages' 1F1B pipeline over the step's micro-batches,
//!    or with `v > 1` the paper's interleaved 1F1B of `v` chunks a GPU,
//!    each `1 / v` of the stage
//!    ([`dagger_ir::sched::interleaved::simulate_interleaved`]), with each
//!    activation crossing the link between neighbouring GPUs (`v` times a
//!    micro-batch when interleaved);
//! 4. adds the ring all-reduce of each stage's 16-bit gradients across its
//!    replicas, after the pipeline (not overlapped), and the Adam update;
//!
//! and returns the fastest, with every candidate's prediction or refusal
//! ([`Choice`]). Throughput is the paper's: its eq. 3 work
//! ([`GptConfig::step_flops`]) over GPUs x step seconds. [`TABLE_1`] holds
//! the paper's published splits and throughputs to set beside the plan
//! (`cargo run --release --example megatron_plan`).
//!
//! [`Platform::gpu_cluster`]: dagger_ir::model::Platform::gpu_cluster
//!
//! # Examples
//!
//! ```
//! use dagger_ir::model::{Link, Platform};
//! use dagger_nn::gpt_plan::{plan, GpuModel, GptConfig};
//!
//! // Two nodes of 4 A100s: NVLink inside a node, 25 GB/s a GPU between.
//! let nvlink = Link { latency: 3e-6, bandwidth: 300e9 };
//! let network = Link { latency: 5e-6, bandwidth: 25e9 };
//! let platform = Platform::gpu_cluster(2, 4, 1000.0, nvlink, network);
//! let gpt = GptConfig::megatron(24, 2304, 24, 64); // 1.7B
//! let choice = plan(&gpt, &platform, &GpuModel::a100_80gb()).unwrap();
//! let best = choice.best();
//! let predicted = best.prediction.as_ref().unwrap();
//! assert_eq!(best.split.gpus(), 8);
//! assert!(predicted.tflops_per_gpu > 50.0 && predicted.tflops_per_gpu < 312.0);
//! // 8 A100s cannot hold 145.6B parameters at 16 bytes each.
//! let big = GptConfig::megatron(80, 12288, 96, 8);
//! let e = plan(&big, &platform, &GpuModel::a100_80gb()).unwrap_err();
//! assert!(e.to_string().contains("A100 80GB"), "{e}");
//! ```

mod config;
mod gpu;
mod paper;
mod predict;
mod split;

pub use config::GptConfig;
pub use gpu::GpuModel;
pub use paper::{table_1_row, PaperRow, TABLE_1};
pub use predict::{predict, Cluster, Prediction};
pub use split::{MegatronSplit, BYTES_PER_PARAMETER};

use crate::{Error, Result};
use dagger_ir::model::Platform;

/// One split considered, with its prediction or why it was refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The split.
    pub split: MegatronSplit,
    /// Bytes its hungriest GPU holds.
    pub bytes_per_gpu: u64,
    /// Its predicted step, `None` when refused.
    pub prediction: Option<Prediction>,
    /// Why it was refused, `None` when kept.
    pub refused: Option<String>,
}

/// Every split of a plan and the fastest.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// Every split, in [`MegatronSplit::all`]'s order.
    pub candidates: Vec<Candidate>,
    /// The index of the fastest kept one.
    pub chosen: usize,
}

impl Choice {
    /// The fastest kept candidate.
    pub fn best(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }

    /// The fastest kept candidate with `data x tensor x pipeline` (any
    /// micro-batch and interleaving), if one was kept.
    pub fn best_of(&self, data: usize, tensor: usize, pipeline: usize) -> Option<&Candidate> {
        let same = |c: &Candidate| {
            (c.split.data, c.split.tensor, c.split.pipeline) == (data, tensor, pipeline)
        };
        fastest(&self.candidates, same).map(|i| &self.candidates[i])
    }
}

/// The index of the fastest kept candidate that `among` accepts; of those
/// within a billionth of it (apart by rounding only), the first.
fn fastest(candidates: &[Candidate], among: impl Fn(&Candidate) -> bool) -> Option<usize> {
    let seconds = |c: &Candidate| {
        c.prediction
            .as_ref()
            .filter(|_| among(c))
            .map_or(f64::INFINITY, |p| p.step_seconds)
    };
    let least = candidates.iter().map(seconds).fold(f64::INFINITY, f64::min);
    candidates
        .iter()
        .position(|c| seconds(c) <= least * (1.0 + 1e-9) && least.is_finite())
}

/// Plans `config` on every GPU of `platform`, each a `gpu`: every split
/// predicted or refused, the fastest chosen (the first in
/// [`MegatronSplit::all`]'s order where only rounding tells them apart). Errors: a bad config, a
/// platform without GPUs or of unequal nodes, no split of its GPUs count,
/// or none fitting the memory ([`Error::NoSplitFits`], naming the device
/// and the bytes the least hungry split needs).
pub fn plan(config: &GptConfig, platform: &Platform, gpu: &GpuModel) -> Result<Choice> {
    config.validate()?;
    let cluster = Cluster::new(platform)?;
    let splits = MegatronSplit::all(config, cluster.gpus(), cluster.gpus_per_node());
    let candidates: Vec<Candidate> = splits
        .into_iter()
        .map(|split| {
            let bytes_per_gpu = split.bytes_per_gpu(config);
            let fits = bytes_per_gpu <= gpu.memory_bytes;
            Candidate {
                split,
                bytes_per_gpu,
                prediction: fits.then(|| predict(config, &split, &cluster, gpu)),
                refused: (!fits).then(|| {
                    format!(
                        "needs {bytes_per_gpu} bytes a GPU, over the {} bytes of a {}",
                        gpu.memory_bytes, gpu.name
                    )
                }),
            }
        })
        .collect();
    let chosen = fastest(&candidates, |_| true);
    match (chosen, candidates.iter().min_by_key(|c| c.bytes_per_gpu)) {
        (Some(chosen), _) => Ok(Choice { candidates, chosen }),
        (None, Some(least)) => Err(Error::NoSplitFits {
            device: gpu.name.clone(),
            available: gpu.memory_bytes,
            split: least.split.to_string(),
            needed: least.bytes_per_gpu,
        }),
        (None, None) => Err(Error::Settings(format!(
            "no split of {config} over {} GPUs ({} a node): tensor sizes dividing the heads, \
             pipeline sizes dividing the layers, replicas dividing the batch",
            cluster.gpus(),
            cluster.gpus_per_node()
        ))),
    }
}

#[cfg(test)]
mod tests;
