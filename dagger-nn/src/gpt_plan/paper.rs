//! The published figures this planner is set beside: Table 1 of Narayanan
//! et al., "Efficient Large-Scale Language Model Training on GPU Clusters
//! Using Megatron-LM" (SC21), weak scaling of GPT models on DGX A100 nodes
//! (Selene): sequence 2048, vocabulary 51200, mixed precision, activation
//! recomputation, the interleaved 1F1B schedule where it helped. Table 1
//! does not give the micro-batch sizes.

use super::GptConfig;

/// One row of Table 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PaperRow {
    /// Billions of parameters, as the paper rounds them.
    pub billions: f64,
    /// The model and its batch.
    pub config: GptConfig,
    /// Tensor-parallel size `t`.
    pub tensor: usize,
    /// Pipeline-parallel size `p`.
    pub pipeline: usize,
    /// GPUs `n` (data-parallel size `n / (t p)`).
    pub gpus: usize,
    /// Achieved teraFLOP/s per GPU (eq. 3's work over the measured time).
    pub tflops_per_gpu: f64,
}

const fn row(
    billions: f64,
    (heads, hidden, layers): (usize, usize, usize),
    (tensor, pipeline, gpus, batch): (usize, usize, usize, usize),
    tflops_per_gpu: f64,
) -> PaperRow {
    PaperRow {
        billions,
        config: GptConfig::megatron(layers, hidden, heads, batch),
        tensor,
        pipeline,
        gpus,
        tflops_per_gpu,
    }
}

/// Table 1: heads, hidden, layers; tensor, pipeline, GPUs, batch; TFLOP/s
/// per GPU.
pub const TABLE_1: [PaperRow; 10] = [
    row(1.7, (24, 2304, 24), (1, 1, 32, 512), 137.0),
    row(3.6, (32, 3072, 30), (2, 1, 64, 512), 138.0),
    row(7.5, (32, 4096, 36), (4, 1, 128, 512), 142.0),
    row(18.4, (48, 6144, 40), (8, 1, 256, 1024), 135.0),
    row(39.1, (64, 8192, 48), (8, 2, 512, 1536), 138.0),
    row(76.1, (80, 10240, 60), (8, 4, 1024, 1792), 140.0),
    row(145.6, (96, 12288, 80), (8, 8, 1536, 2304), 148.0),
    row(310.1, (128, 16384, 96), (8, 16, 1920, 2160), 155.0),
    row(529.6, (128, 20480, 105), (8, 35, 2520, 2520), 163.0),
    row(1008.0, (160, 25600, 128), (8, 64, 3072, 3072), 163.0),
];

/// The row of `gpus` GPUs, if Table 1 has one.
pub fn table_1_row(gpus: usize) -> Option<&'static PaperRow> {
    TABLE_1.iter().find(|r| r.gpus == gpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_counts_its_parameters_and_splits_its_gpus() {
        for r in &TABLE_1 {
            // The paper rounds to the tenth of a billion (1.65 is its 1.7).
            let b = r.config.parameters() as f64 / 1e9;
            assert!((b - r.billions).abs() < 0.051, "{}: {b}B", r.billions);
            assert_eq!(r.gpus % (r.tensor * r.pipeline), 0, "{}B", r.billions);
            assert_eq!(r.config.layers % r.pipeline, 0, "{}B", r.billions);
        }
        assert_eq!(table_1_row(512).unwrap().billions, 39.1);
    }
}
