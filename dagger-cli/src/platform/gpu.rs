//! This machine's GPUs as runtime workers, each measured here (the `cuda`
//! feature).

use dagger_cuda::{GpuDevice, GpuWorker};
use dagger_ir::model::Platform;
use dagger_runtime::device::Accelerator;
use dagger_tensor::Shape;
use std::sync::Arc;
use std::time::Instant;

/// Side of the matrices timed on a CPU core: small enough that the product
/// stays on the calling thread.
const CPU_GEMM: usize = 128;
/// Side of the matrices timed on a GPU.
const GPU_GEMM: usize = 4096;

/// `platform` (the runtime's probed workers, none of them a GPU) with
/// every GPU of this machine, measured.
pub(super) fn with_gpus(mut platform: Platform) -> Platform {
    for gpu in gpu_workers() {
        platform.processors.push(gpu.processor());
        if let Some(link) = gpu.host_link() {
            platform.host_device = link;
        }
    }
    platform
}

/// Every GPU of this machine as a runtime worker, each with its measured
/// speed (f32 GEMM, over one core's) and host link (pinned copies). None
/// without a driver; a GPU that fails to open or measure is left out with
/// the reason printed.
///
/// ```no_run
/// let mut builder = dagger_runtime::Runtime::builder();
/// for gpu in dagger_cli::platform::gpu_workers() {
///     builder = builder.accelerator(gpu);
/// }
/// let rt = builder.build();
/// ```
pub fn gpu_workers() -> Vec<Arc<GpuWorker>> {
    let Ok(gpus) = dagger_cuda::gpus() else {
        return Vec::new();
    };
    if gpus.is_empty() {
        return Vec::new();
    }
    let core = cpu_gemm_flops();
    let measure = |ordinal: usize| -> Result<GpuWorker, dagger_cuda::CudaError> {
        let device = GpuDevice::open(ordinal, 1)?;
        let flops = device.measure_gemm_flops(GPU_GEMM, 5)?;
        let link = device.measure_host_link(64 << 20, 5)?;
        drop(device);
        GpuWorker::open(ordinal, flops / core, Some(link))
    };
    gpus.iter()
        .filter_map(|gpu| match measure(gpu.ordinal) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                eprintln!("dagger: GPU {} left out: {e}", gpu.ordinal);
                None
            }
        })
        .collect()
}

/// This machine's GPUs in a few words: their names, that there is none,
/// or why they could not be listed.
pub(super) fn gpus_seen() -> String {
    match dagger_cuda::gpus() {
        Ok(g) if g.is_empty() => "no GPU found".to_string(),
        Ok(g) => {
            let names: Vec<&str> = g.iter().map(|d| d.name.as_str()).collect();
            format!("{} GPU(s) seen: {}", g.len(), names.join(", "))
        }
        Err(e) => e.to_string(),
    }
}

/// One CPU core's f32 GEMM speed in FLOP/s (best of 5).
fn cpu_gemm_flops() -> f64 {
    let n = CPU_GEMM;
    let shape = Shape::of(&[n, n]);
    let (a, b) = (vec![1.0f32; n * n], vec![0.5f32; n * n]);
    let mut c = vec![0.0f32; n * n];
    let mut best = f64::INFINITY;
    for _ in 0..6 {
        let t = Instant::now();
        dagger_tensor::cpu::kernels::matmul(&a, &shape, &b, &shape, false, false, &mut c);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_is_measured_at_a_plausible_gemm_speed() {
        assert!(cpu_gemm_flops() > 1e8, "a core does at least 0.1 GFLOP/s");
    }
}
