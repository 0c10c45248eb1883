//! A GPU as a roofline: matmuls at a fraction of peak, memory-bound ops at
//! the memory's bandwidth, and the memory that must hold a stage.

/// What one GPU does in a second and holds.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuModel {
    /// Its name, for messages.
    pub name: String,
    /// Peak 16-bit tensor-core floating-point operations a second.
    pub peak_flops: f64,
    /// The fraction of `peak_flops` a transformer's matmuls reach.
    pub gemm_efficiency: f64,
    /// Bytes a second its memory reads or writes (memory-bound ops).
    pub hbm_bytes_per_second: f64,
    /// Bytes of memory a GPU has for parameters, optimizer state and
    /// activations.
    pub memory_bytes: u64,
}

impl GpuModel {
    /// An NVIDIA A100 80GB (SXM), as assumptions: 312 TFLOP/s peak (its
    /// bf16/fp16 tensor cores, dense), matmuls at 75% of that (cuBLAS
    /// reaches about 230-260 TFLOP/s on large bf16 GEMMs; a transformer
    /// shard's are smaller), 2.0 TB/s of HBM2e (its 2.04 TB/s peak, which
    /// makes the memory-bound ops optimistic), 80 GiB all usable (nothing
    /// held back for the CUDA context, NCCL buffers or fragmentation).
    pub fn a100_80gb() -> Self {
        GpuModel {
            name: "A100 80GB".into(),
            peak_flops: 312e12,
            gemm_efficiency: 0.75,
            hbm_bytes_per_second: 2.0e12,
            memory_bytes: 80 << 30,
        }
    }

    /// Seconds of a kernel sequence doing `flops` of matmuls and moving
    /// `bytes` in memory-bound ops: the sum of the two (the ops are separate
    /// kernels, each bound by one of the two, so their times add).
    pub fn seconds(&self, flops: f64, bytes: f64) -> f64 {
        flops / (self.peak_flops * self.gemm_efficiency) + bytes / self.hbm_bytes_per_second
    }
}

impl Default for GpuModel {
    /// [`GpuModel::a100_80gb`].
    fn default() -> Self {
        GpuModel::a100_80gb()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_and_memory_times_add() {
        let gpu = GpuModel::a100_80gb();
        // 234 TFLOP of matmuls at 75% of 312, and 2 TB at 2 TB/s.
        let t = gpu.seconds(234e12, 2e12);
        assert!((t - 2.0).abs() < 1e-12, "{t}");
    }
}
