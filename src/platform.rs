//! This machine as the scheduling model sees it: the runtime's CPU
//! workers (probed) and, when there are any, its GPUs.
//!
//! A GPU's relative speed is its f32 GEMM speed over one CPU core's, both
//! measured here (the processors' speeds are relative to the fastest core,
//! 1.0), and the host-device link is measured with pinned copies. This is
//! what `dagger platform` prints; the history model refines it per task.

use crate::cuda::{GpuDevice, GpuWorker};
use dagger_ir::model::Platform;
use dagger_ir::tensor::Shape;
use dagger_runtime::device::Accelerator;
use dagger_runtime::Runtime;
use std::sync::Arc;
use std::time::Instant;

/// Side of the matrices timed on a CPU core: small enough that the product
/// stays on the calling thread.
const CPU_GEMM: usize = 128;
/// Side of the matrices timed on a GPU.
const GPU_GEMM: usize = 4096;

/// The runtime's probed workers plus this machine's GPUs (those the
/// runtime has as workers are already among its processors; the others
/// are opened and measured here).
pub fn local_platform(runtime: &Runtime) -> Platform {
    let mut platform = runtime.probe_platform();
    if !runtime.devices().is_empty() {
        return platform;
    }
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
/// let mut builder = dagger::Runtime::builder();
/// for gpu in dagger::platform::gpu_workers() {
///     builder = builder.accelerator(gpu);
/// }
/// let rt = builder.build();
/// ```
pub fn gpu_workers() -> Vec<Arc<GpuWorker>> {
    let Ok(gpus) = crate::cuda::gpus() else {
        return Vec::new();
    };
    if gpus.is_empty() {
        return Vec::new();
    }
    let core = cpu_gemm_flops();
    let measure = |ordinal: usize| -> Result<GpuWorker, crate::cuda::CudaError> {
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

/// One CPU core's f32 GEMM speed in FLOP/s (best of 5).
fn cpu_gemm_flops() -> f64 {
    let n = CPU_GEMM;
    let shape = Shape::of(&[n, n]);
    let (a, b) = (vec![1.0f32; n * n], vec![0.5f32; n * n]);
    let mut c = vec![0.0f32; n * n];
    let mut best = f64::INFINITY;
    for _ in 0..6 {
        let t = Instant::now();
        dagger_runtime::tensor::kernels::matmul(&a, &shape, &b, &shape, false, false, &mut c);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagger_ir::model::{ProcKind, Processor};

    #[test]
    fn the_local_platform_has_every_worker_and_each_gpu_found() {
        let rt = Runtime::builder().threads(2).build();
        let p = local_platform(&rt);
        let cpus = p
            .processors
            .iter()
            .filter(|q| q.kind == ProcKind::Cpu)
            .count();
        assert_eq!(cpus, 2);
        let gpus: Vec<&Processor> = p
            .processors
            .iter()
            .filter(|q| q.kind == ProcKind::Gpu)
            .collect();
        match crate::cuda::gpus() {
            Ok(found) => assert_eq!(gpus.len(), found.len()),
            Err(why) => {
                println!("no GPU in the platform: {why}");
                assert!(gpus.is_empty());
            }
        }
        assert!(
            gpus.iter().all(|g| g.speed > 1.0),
            "a GPU outruns a core at GEMM"
        );
        assert!(cpu_gemm_flops() > 1e8, "a core does at least 0.1 GFLOP/s");
    }
}
