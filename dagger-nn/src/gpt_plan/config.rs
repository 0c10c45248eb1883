//! A GPT model as counts: its matmuls' floating-point work, its parameters,
//! the bytes its activations hold and the bytes its memory-bound ops move.
//!
//! The layer is Megatron's (Shoeybi et al., 2019; Narayanan et al., 2021):
//! layer norm, self-attention (QKV projection, scores `Q K^T`, softmax,
//! dropout, attention over values, output projection), bias + dropout +
//! residual, layer norm, MLP `h -> 4h -> h` with GELU, bias + dropout +
//! residual. Activations are 16-bit (2 bytes an element).

use crate::{Error, Result};

/// A GPT-style model and its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GptConfig {
    /// Transformer layers `l`.
    pub layers: usize,
    /// Hidden size `h`.
    pub hidden: usize,
    /// Attention heads `a`.
    pub heads: usize,
    /// Sequence length `s`.
    pub seq: usize,
    /// Vocabulary size `V`.
    pub vocab: usize,
    /// Sequences a step (the global batch `B`).
    pub batch: usize,
}

/// Bytes of one 16-bit element.
const HALF: f64 = 2.0;

impl GptConfig {
    /// A model of the paper's family: sequence 2048, vocabulary 51200.
    pub const fn megatron(layers: usize, hidden: usize, heads: usize, batch: usize) -> Self {
        GptConfig {
            layers,
            hidden,
            heads,
            seq: 2048,
            vocab: 51200,
            batch,
        }
    }

    /// Refuses a size of zero and heads that do not divide the hidden size.
    pub fn validate(&self) -> Result<()> {
        let sizes = [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("seq", self.seq),
            ("vocab", self.vocab),
            ("batch", self.batch),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(Error::Settings(format!(
                "a GPT's `{name}` must be positive"
            )));
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(Error::Settings(format!(
                "{} heads do not divide the hidden size {}",
                self.heads, self.hidden
            )));
        }
        Ok(())
    }

    fn bsh(&self, micro_batch: usize) -> f64 {
        (micro_batch * self.seq * self.hidden) as f64
    }

    /// Floating-point work of one layer's forward matmuls on `micro_batch`
    /// sequences: QKV `6bsh^2`, scores `2bs^2h`, attention over values
    /// `2bs^2h`, projection `2bsh^2`, MLP `16bsh^2`; in all `24bsh^2 (1 +
    /// s/6h)`.
    pub fn layer_forward_flops(&self, micro_batch: usize) -> f64 {
        let (s, h) = (self.seq as f64, self.hidden as f64);
        24.0 * self.bsh(micro_batch) * h * (1.0 + s / (6.0 * h))
    }

    /// Floating-point work of the logits' forward matmul: `2bshV`.
    pub fn logits_forward_flops(&self, micro_batch: usize) -> f64 {
        2.0 * self.bsh(micro_batch) * self.vocab as f64
    }

    /// The paper's floating-point work of one step (its eq. 3, with
    /// activation recomputation: each layer's forward counted twice, its
    /// backward as two forwards; the logits not recomputed):
    /// `96 B s l h^2 (1 + s/6h + V/16lh)`.
    pub fn step_flops(&self) -> f64 {
        let (l, h) = (self.layers as f64, self.hidden as f64);
        let (s, v) = (self.seq as f64, self.vocab as f64);
        96.0 * self.batch as f64 * s * l * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * l * h))
    }

    /// Parameters of one layer: QKV `3h^2 + 3h`, projection `h^2 + h`, MLP
    /// `8h^2 + 5h`, two layer norms `4h`.
    pub fn layer_parameters(&self) -> u64 {
        let h = self.hidden as u64;
        12 * h * h + 13 * h
    }

    /// Parameters of the embeddings: words `Vh` (tied to the logits) and
    /// positions `sh`.
    pub fn embedding_parameters(&self) -> u64 {
        ((self.vocab + self.seq) * self.hidden) as u64
    }

    /// Every parameter: `l (12h^2 + 13h) + Vh + sh + 2h` (the last `2h`:
    /// the final layer norm).
    pub fn parameters(&self) -> u64 {
        self.layers as u64 * self.layer_parameters()
            + self.embedding_parameters()
            + 2 * self.hidden as u64
    }

    /// Bytes a layer keeps for its backward when nothing is recomputed, on
    /// each of `tensor` shards (Korthikanti et al., 2022, without sequence
    /// parallelism): `sbh (10 + 24/t + 5as/ht)`. With full recomputation
    /// this is the working set of the one layer being recomputed.
    pub fn layer_activation_bytes(&self, micro_batch: usize, tensor: usize) -> f64 {
        let (t, a) = (tensor as f64, self.heads as f64);
        let (s, h) = (self.seq as f64, self.hidden as f64);
        self.bsh(micro_batch) * (10.0 + 24.0 / t + 5.0 * a * s / (h * t))
    }

    /// Bytes a layer keeps under full recomputation: its 16-bit input,
    /// `2bsh` (whole on every tensor shard).
    pub fn layer_input_bytes(&self, micro_batch: usize) -> f64 {
        HALF * self.bsh(micro_batch)
    }

    /// Bytes of the logits and their gradient on each of `tensor` shards
    /// (the vocabulary split), 16-bit: `4bsV/t`.
    pub fn logits_bytes(&self, micro_batch: usize, tensor: usize) -> f64 {
        2.0 * HALF * (micro_batch * self.seq) as f64 * (self.vocab / tensor) as f64
    }

    /// Bytes the memory-bound ops of one layer's forward read and write on
    /// each of `tensor` shards: two layer norms (`4bsh` each), two fused
    /// bias + dropout + residual adds (`7bsh` each: two inputs, an output,
    /// a 1-byte mask), the fused scale + mask + softmax of the scores
    /// (`4bas^2/t`), their dropout (`5bas^2/t`) and the fused bias + GELU
    /// of the MLP (`16bsh/t`). Layer norms and residuals are whole on every
    /// shard (no sequence parallelism).
    pub fn layer_memory_bytes(&self, micro_batch: usize, tensor: usize) -> f64 {
        let t = tensor as f64;
        let scores = (micro_batch * self.heads * self.seq * self.seq) as f64;
        let bsh = self.bsh(micro_batch);
        22.0 * bsh + 16.0 * bsh / t + 9.0 * scores / t
    }

    /// Bytes of one tensor-parallel all-reduce: the layer's 16-bit output
    /// of attention or MLP, `2bsh`.
    pub fn tensor_all_reduce_bytes(&self, micro_batch: usize) -> f64 {
        HALF * self.bsh(micro_batch)
    }

    /// Bytes one pipeline stage sends the next per micro-batch: the 16-bit
    /// activation `2bsh` (its gradient, as many, comes back).
    pub fn stage_transfer_bytes(&self, micro_batch: usize) -> f64 {
        HALF * self.bsh(micro_batch)
    }
}

impl std::fmt::Display for GptConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GPT {:.1}B (l {}, h {}, a {}, s {}, V {}, batch {})",
            self.parameters() as f64 / 1e9,
            self.layers,
            self.hidden,
            self.heads,
            self.seq,
            self.vocab,
            self.batch
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_3_counts_the_flops_of_a_small_model_by_hand() {
        // l 2, h 64, s 128, V 1024, B 4: 96 B s l h^2 = 402_653_184 times
        // (1 + 128/384 + 1024/2048) = 11/6.
        let c = GptConfig {
            layers: 2,
            hidden: 64,
            heads: 4,
            seq: 128,
            vocab: 1024,
            batch: 4,
        };
        assert!(
            (c.step_flops() - 738_197_504.0).abs() < 1e-3,
            "{}",
            c.step_flops()
        );
        // The same from its parts: 4 forwards of each layer, 3 of the logits.
        let parts = 4.0 * 2.0 * c.layer_forward_flops(4) + 3.0 * c.logits_forward_flops(4);
        assert!((parts - c.step_flops()).abs() < 1e-3, "{parts}");
    }

    #[test]
    fn zero_sizes_and_heads_not_dividing_hidden_are_refused() {
        let ok = GptConfig::megatron(2, 64, 4, 8);
        assert!(ok.validate().is_ok());
        let e = GptConfig { heads: 5, ..ok }.validate().unwrap_err();
        assert!(
            e.to_string()
                .contains("5 heads do not divide the hidden size 64"),
            "{e}"
        );
        let e = GptConfig { batch: 0, ..ok }.validate().unwrap_err();
        assert!(e.to_string().contains("`batch` must be positive"), "{e}");
    }
}
