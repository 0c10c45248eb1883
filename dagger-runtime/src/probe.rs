//! The platform of a runtime, from a file or from a short calibration probe.
//!
//! The schedulers need a [`Platform`]: the processors with their relative
//! speeds and the links between them. [`Runtime::platform`] gives the one
//! this runtime uses: the file named by `DAGGER_PLATFORM` (a `Platform` as
//! JSON) if set, else the result of [`Runtime::probe_platform`], measured
//! once per runtime on first use (a few milliseconds).
//!
//! The probe runs the same fixed integer kernel on every worker at once,
//! each pinned to its worker, three times, and takes each worker's best
//! time. A worker's speed is the fastest worker's time over its own. When
//! every worker is within [`HOMOGENEOUS_SPREAD`] of the fastest the cores are
//! taken as identical (speed 1.0): differences that small are noise of the
//! measurement, and a scheduler fed noise would prefer cores at random.
//! The runtime's accelerators follow the CPU workers as processors of
//! their own, with the speed and host link they report
//! ([`Accelerator::processor`](crate::device::Accelerator::processor)).
//! Links to other nodes keep [`Platform::local`]'s values.

use crate::error::RunError;
use crate::pool::{Execute, Job, WorkerCtx};
use crate::runtime::Runtime;
use dagger_ir::model::Platform;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Workers whose speeds differ by less than this fraction count as identical.
pub const HOMOGENEOUS_SPREAD: f64 = 0.15;

/// Iterations of the probe kernel (about a millisecond on a current core).
const PROBE_ITERATIONS: u64 = 1 << 20;

/// One round of the probe: the kernel on every worker, each time recorded.
struct ProbeRound {
    seconds: Mutex<Vec<f64>>,
    left: AtomicUsize,
}

impl Execute for ProbeRound {
    fn execute(self: Arc<Self>, index: u32, _worker: &WorkerCtx) {
        let start = Instant::now();
        std::hint::black_box(kernel(PROBE_ITERATIONS));
        let took = start.elapsed().as_secs_f64();
        self.seconds.lock().unwrap_or_else(|p| p.into_inner())[index as usize] = took;
        self.left.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A dependent chain of multiply-adds: pure core speed, no memory traffic.
fn kernel(iterations: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..iterations {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(i | 1);
        x ^= x >> 29;
    }
    x
}

/// Reads a platform file for `workers` workers.
fn load_platform(path: &std::path::Path, workers: usize) -> Result<Platform, RunError> {
    let error = |message: String| RunError::Platform {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let platform = Platform::from_json(&text).map_err(|e| error(e.to_string()))?;
    if platform.processors.len() != workers {
        return Err(error(format!(
            "it describes {} processors but this runtime has {workers} workers",
            platform.processors.len()
        )));
    }
    Ok(platform)
}

/// Speeds from each worker's best time: the fastest is 1.0; all 1.0 when
/// they are within [`HOMOGENEOUS_SPREAD`] of each other.
pub(crate) fn speeds(best_seconds: &[f64]) -> Vec<f64> {
    let fastest = best_seconds.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest = best_seconds.iter().copied().fold(0.0, f64::max);
    if slowest <= fastest * (1.0 + HOMOGENEOUS_SPREAD) {
        return vec![1.0; best_seconds.len()];
    }
    best_seconds.iter().map(|&t| fastest / t).collect()
}

impl Runtime {
    /// The platform this runtime schedules on: the `DAGGER_PLATFORM` file if
    /// set (its processor count must equal the workers'), else the probe's,
    /// measured on first use and kept.
    pub fn platform(&self) -> Result<Platform, RunError> {
        if let Some(path) = std::env::var_os("DAGGER_PLATFORM") {
            return load_platform(std::path::Path::new(&path), self.pool().workers());
        }
        Ok(self.probed_platform().clone())
    }

    /// Measures this runtime's CPU workers (see the [module docs](crate::probe))
    /// and returns the local platform with their speeds, its accelerators after them.
    pub fn probe_platform(&self) -> Platform {
        let pool = self.pool();
        let workers = pool.cpu_workers();
        let mut best = vec![f64::INFINITY; workers];
        for _ in 0..3 {
            let round = Arc::new(ProbeRound {
                seconds: Mutex::new(vec![0.0; workers]),
                left: AtomicUsize::new(workers),
            });
            for w in 0..workers {
                pool.submit_to(w, Job::Shared(round.clone(), w as u32), 0);
            }
            pool.wait_until(|| round.left.load(Ordering::Acquire) == 0);
            let seconds = round.seconds.lock().unwrap_or_else(|p| p.into_inner());
            for (b, &s) in best.iter_mut().zip(seconds.iter()) {
                *b = b.min(s);
            }
        }
        let mut platform = Platform::local(workers);
        for (p, speed) in platform.processors.iter_mut().zip(speeds(&best)) {
            p.speed = speed;
        }
        for device in &pool.devices {
            platform.processors.push(device.processor());
            if let Some(link) = device.host_link() {
                platform.host_device = link;
            }
        }
        platform
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_times_are_identical_cores_and_far_ones_are_not() {
        assert_eq!(speeds(&[1.0, 1.1, 1.05]), vec![1.0, 1.0, 1.0]);
        assert_eq!(speeds(&[1.0, 2.0, 4.0]), vec![1.0, 0.5, 0.25]);
    }

    #[test]
    fn a_platform_file_must_fit_the_runtime() {
        let dir = std::env::temp_dir().join(format!("dagger-platform-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.json");
        let two = serde_json::to_string(&Platform::local(2)).unwrap();
        std::fs::write(&file, &two).unwrap();
        assert_eq!(load_platform(&file, 2).unwrap(), Platform::local(2));
        let err = load_platform(&file, 3).unwrap_err().to_string();
        assert!(
            err.contains("2 processors") && err.contains("3 workers"),
            "{err}"
        );
        std::fs::write(&file, "{\"processors\": [").unwrap();
        let err = load_platform(&file, 2).unwrap_err().to_string();
        assert!(err.contains("p.json"), "{err}");
        let err = load_platform(&dir.join("missing.json"), 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_probe_measures_every_worker() {
        let rt = Runtime::builder().threads(3).build();
        let p = rt.probe_platform();
        assert_eq!(p.processors.len(), 3);
        assert!(p.processors.iter().all(|q| q.speed > 0.0 && q.speed <= 1.0));
        assert!(p.processors.iter().any(|q| q.speed == 1.0));
    }
}
