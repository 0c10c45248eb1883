//! This machine as the scheduling model sees it: the runtime's CPU
//! workers (probed) and, when there are any, its GPUs.
//!
//! A GPU's relative speed is its f32 GEMM speed over one CPU core's, both
//! measured here (the processors' speeds are relative to the fastest core,
//! 1.0), and the host-device link is measured with pinned copies. This is
//! what `dagger platform` prints; the history model refines it per task.
//! GPUs are found and measured with the `cuda` feature only.

use dagger_ir::model::Platform;
use dagger_runtime::Runtime;

#[cfg(feature = "cuda")]
mod gpu;

#[cfg(feature = "cuda")]
#[cfg_attr(docsrs, doc(cfg(feature = "cuda")))]
pub use gpu::gpu_workers;

/// The runtime's probed workers plus this machine's GPUs (those the
/// runtime has as workers are already among its processors; the others
/// are opened and measured here, with the `cuda` feature).
pub fn local_platform(runtime: &Runtime) -> Platform {
    let platform = runtime.probe_platform();
    #[cfg(feature = "cuda")]
    if runtime.devices().is_empty() {
        return gpu::with_gpus(platform);
    }
    platform
}

/// This machine's GPUs in a few words, as a program says them at start:
/// their names, that there is none, why they could not be listed, or that
/// this build has no `cuda` feature.
pub fn gpus_seen() -> String {
    #[cfg(feature = "cuda")]
    {
        gpu::gpus_seen()
    }
    #[cfg(not(feature = "cuda"))]
    {
        "no GPU (built without the `cuda` feature)".to_string()
    }
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
        #[cfg(feature = "cuda")]
        match dagger_cuda::gpus() {
            Ok(found) => assert_eq!(gpus.len(), found.len()),
            Err(why) => {
                println!("no GPU in the platform: {why}");
                assert!(gpus.is_empty());
            }
        }
        #[cfg(not(feature = "cuda"))]
        assert!(gpus.is_empty(), "a build without `cuda` opens no GPU");
        assert!(
            gpus.iter().all(|g| g.speed > 1.0),
            "a GPU outruns a core at GEMM"
        );
    }

    #[test]
    fn the_gpus_seen_are_said_in_one_line() {
        let line = gpus_seen();
        assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
        if cfg!(not(feature = "cuda")) {
            assert!(line.contains("without the `cuda` feature"), "{line}");
        }
    }
}
