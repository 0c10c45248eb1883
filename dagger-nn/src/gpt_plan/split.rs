//! Megatron's splits of a GPT over GPUs (PTD-P): data x tensor x pipeline,
//! with a micro-batch size and an interleaving degree, and what each holds
//! in memory.

use super::GptConfig;
use dagger_ir::sched::interleaved::warmup_forwards;
use std::fmt;

/// One way to split a model and its batch over GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MegatronSplit {
    /// Data-parallel replicas `d`.
    pub data: usize,
    /// Tensor-parallel shards of every layer `t` (GPUs of one node).
    pub tensor: usize,
    /// Pipeline stages `p`, each of `layers / p` layers.
    pub pipeline: usize,
    /// Sequences of a micro-batch `b`.
    pub micro_batch: usize,
    /// Model chunks a GPU holds `v`, each of `layers / (p v)` layers: the
    /// interleaved 1F1B schedule when above 1, plain 1F1B at 1.
    pub interleave: usize,
}

/// Bytes a parameter costs in mixed-precision Adam without ZeRO: 16-bit
/// weight and gradient, 32-bit master weight and two moments.
pub const BYTES_PER_PARAMETER: u64 = 2 + 2 + 4 + 4 + 4;

impl MegatronSplit {
    /// GPUs it takes: `d t p`.
    pub fn gpus(&self) -> usize {
        self.data * self.tensor * self.pipeline
    }

    /// Micro-batches each replica runs a step: `B / (d b)`.
    pub fn micro_batches(&self, config: &GptConfig) -> usize {
        config.batch / (self.data * self.micro_batch)
    }

    /// Every split of `gpus` GPUs: `t` at most `gpus_per_node` and dividing
    /// the heads (so also the hidden size and the MLP's `4h`), `p`
    /// dividing the layers, `d t p = gpus`, `b` dividing a replica's batch
    /// `B / d`; `v` every power of two dividing `layers / p`, above 1
    /// only when `p > 1` and `p` divides the micro-batches (Megatron's
    /// condition). Ordered by `t`, `p`, `b`, then `v`.
    pub fn all(config: &GptConfig, gpus: usize, gpus_per_node: usize) -> Vec<MegatronSplit> {
        let divides = |n: usize| move |k: &usize| n.is_multiple_of(*k);
        let mut all = Vec::new();
        for tensor in (1..=gpus_per_node.min(config.heads)).filter(divides(config.heads)) {
            for pipeline in (1..=config.layers).filter(divides(config.layers)) {
                if !gpus.is_multiple_of(tensor * pipeline) {
                    continue;
                }
                let data = gpus / (tensor * pipeline);
                if !config.batch.is_multiple_of(data) {
                    continue;
                }
                let share = config.batch / data;
                for micro_batch in (1..=share).filter(divides(share)) {
                    let micro = share / micro_batch;
                    let chunks = config.layers / pipeline;
                    let interleaves = pipeline > 1 && micro.is_multiple_of(pipeline);
                    all.extend(
                        std::iter::successors(Some(1), |v| Some(v * 2))
                            .take_while(|&v| v <= chunks && (v == 1 || interleaves))
                            .filter(divides(chunks))
                            .map(|interleave| MegatronSplit {
                                data,
                                tensor,
                                pipeline,
                                micro_batch,
                                interleave,
                            }),
                    );
                }
            }
        }
        all
    }

    /// Parameters on one GPU of stage `stage`: its layers' shard, plus the
    /// word embedding's shard (split by vocabulary) and the positions on
    /// the first stage, and the logits' tied copy of the word embedding and
    /// the final layer norm on the last.
    pub fn stage_parameters(&self, config: &GptConfig, stage: usize) -> u64 {
        let (t, h) = (self.tensor as u64, config.hidden as u64);
        let layers = (config.layers / self.pipeline) as u64;
        let mut params = layers * config.layer_parameters() / t;
        let words = config.vocab as u64 * h / t;
        if stage == 0 {
            params += words + config.seq as u64 * h;
        }
        if stage + 1 == self.pipeline {
            params += 2 * h + if stage == 0 { 0 } else { words };
        }
        params
    }

    /// Bytes one GPU of stage `stage` holds at its peak, with full
    /// activation recomputation under (interleaved) 1F1B:
    /// [`BYTES_PER_PARAMETER`] for each of its parameters; the inputs of
    /// its chunks' layers for the chunk activations in flight (one more
    /// than its warm-up forwards, [`warmup_forwards`]: `p - stage` under
    /// 1F1B, `(p - stage - 1) x 2 + (v - 1) p + 1` chunks of `1 / v` of the
    /// stage interleaved, at most all of the step's); the whole activations
    /// of the one layer being recomputed; on the last stage, one
    /// micro-batch's logits and their gradient.
    pub fn stage_bytes(&self, config: &GptConfig, stage: usize) -> u64 {
        let b = self.micro_batch;
        let (v, micro) = (self.interleave, self.micro_batches(config));
        let chunk_layers = (config.layers / (self.pipeline * v)) as f64;
        let in_flight = (warmup_forwards(self.pipeline, v, micro, stage) + 1).min(v * micro) as f64;
        let mut activations = in_flight * chunk_layers * config.layer_input_bytes(b)
            + config.layer_activation_bytes(b, self.tensor);
        if stage + 1 == self.pipeline {
            activations += config.logits_bytes(b, self.tensor);
        }
        BYTES_PER_PARAMETER * self.stage_parameters(config, stage) + activations.ceil() as u64
    }

    /// Bytes of the hungriest GPU: the first stage's or the last's (the
    /// ones between hold less than the first).
    pub fn bytes_per_gpu(&self, config: &GptConfig) -> u64 {
        self.stage_bytes(config, 0)
            .max(self.stage_bytes(config, self.pipeline - 1))
    }
}

impl fmt::Display for MegatronSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} x {} x {}, b {}",
            self.data, self.tensor, self.pipeline, self.micro_batch
        )?;
        if self.interleave > 1 {
            write!(f, ", v {}", self.interleave)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_respect_nodes_heads_layers_and_the_batch() {
        let c = GptConfig {
            layers: 6,
            hidden: 64,
            heads: 4,
            seq: 16,
            vocab: 32,
            batch: 8,
        };
        let all = MegatronSplit::all(&c, 16, 8);
        assert!(all.iter().all(|s| s.gpus() == 16));
        assert!(all
            .iter()
            .all(|s| c.heads.is_multiple_of(s.tensor) && s.tensor <= 8));
        assert!(all.iter().all(|s| c.layers.is_multiple_of(s.pipeline)));
        // t 4, p 2, d 2: micro-batches of 1, 2 or 4 of a replica's 4.
        let some = |t, p| all.iter().filter(move |s| (s.tensor, s.pipeline) == (t, p));
        let sizes: Vec<usize> = some(4, 2).map(|s| s.micro_batch).collect();
        assert_eq!(sizes, [1, 2, 4]);
        // p 3 and p 6 do not divide 16 GPUs; t 1 p 1 leaves d 16 > batch 8.
        assert!(all.iter().all(|s| s.pipeline <= 2));
        assert_eq!(some(1, 1).count(), 0);
        // No pipeline, no interleaving; else v divides the 6 / p layers of
        // a stage and p the micro-batches.
        assert!(all.iter().all(|s| s.interleave == 1 || s.pipeline > 1));
        assert!(all
            .iter()
            .all(|s| (c.layers / s.pipeline).is_multiple_of(s.interleave)
                && (s.interleave == 1 || s.micro_batches(&c).is_multiple_of(s.pipeline))));
        // p 2 leaves 3 layers a stage: no v 2.
        assert!(some(4, 2).all(|s| s.interleave == 1));
        let c = GptConfig { layers: 8, ..c };
        let all = MegatronSplit::all(&c, 16, 8);
        let some = |t, p| all.iter().filter(move |s| (s.tensor, s.pipeline) == (t, p));
        // t 4 p 2 d 2: 4 layers a stage; b 1, 2, 4 leave 4, 2, 1
        // micro-batches, and p 2 divides 4 and 2.
        let bv: Vec<(usize, usize)> = some(4, 2).map(|s| (s.micro_batch, s.interleave)).collect();
        assert_eq!(bv, [(1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4), (4, 1)]);
    }

    #[test]
    fn a_gpu_holds_sixteen_bytes_a_parameter_and_the_in_flight_inputs() {
        let c = GptConfig::megatron(48, 8192, 64, 1536);
        let s = MegatronSplit {
            data: 32,
            tensor: 8,
            pipeline: 2,
            micro_batch: 1,
            interleave: 1,
        };
        let first = s.stage_parameters(&c, 0);
        let last = s.stage_parameters(&c, 1);
        // The layers and two copies of the words split 8 ways; positions
        // and the final layer norm whole.
        let split = (48 * c.layer_parameters() + 2 * 51200 * 8192) / 8;
        assert_eq!(first + last, split + 2048 * 8192 + 2 * 8192);
        // Stage 0: 2 micro-batches of 24 layers' inputs, 2 x 2048 x 8192 bytes each.
        let held = s.stage_bytes(&c, 0) - 16 * first;
        let inputs = 2 * 24 * 2 * 2048 * 8192;
        let recompute = c.layer_activation_bytes(1, 8) as u64;
        assert!(held.abs_diff(inputs + recompute) <= 1, "{held}");
        // Interleaved, v 2: (2 - 0 - 1) x 2 + (2 - 1) x 2 + 1 = 5 chunks of
        // 12 layers' inputs on stage 0, 3 on stage 1.
        let v2 = MegatronSplit { interleave: 2, ..s };
        assert_eq!(v2.stage_parameters(&c, 0), first);
        let held = v2.stage_bytes(&c, 0) - 16 * first;
        assert!(
            held.abs_diff(5 * 12 * 2 * 2048 * 8192 + recompute) <= 1,
            "{held}"
        );
        let last_held = v2.stage_bytes(&c, 1) - s.stage_bytes(&c, 1);
        assert!(last_held.abs_diff(12 * 2 * 2048 * 8192) <= 1, "{last_held}");
    }
}
