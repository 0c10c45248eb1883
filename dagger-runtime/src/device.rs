//! Accelerators (GPUs) as workers of the runtime's pool.
//!
//! StarPU's model: each accelerator gets one worker thread of its own that
//! drives it. The pool's CPU workers run task bodies as usual; a device
//! worker runs the *device body* of the tasks placed on it, handing that
//! body the device (its context, streams, memory pool) as `&dyn Any` for
//! the body to take as its concrete type:
//!
//! ```ignore
//! #[task(gpu = gemm_on_gpu)]
//! fn gemm(c: Tile, a: Tile, b: Tile) -> Tile { /* on a CPU core */ }
//!
//! fn gemm_on_gpu(gpu: &dagger::cuda::GpuDevice, c: Tile, a: Tile, b: Tile)
//!     -> Result<Tile, dagger::cuda::CudaError> {
//!     /* the same product on cuBLAS */
//! }
//! ```
//!
//! One task name, two implementations: the placement policies (static
//! schedulers, dmda, ...) see the device as a processor of the platform
//! ([`Accelerator::processor`]) and put each task where it is expected to
//! finish first; a task without a device body is never placed on a device.
//! Work stealing leaves device workers out: they run only what a placement
//! gives them.
//!
//! The runtime knows no GPU API: `dagger-cuda` implements [`Accelerator`]
//! for its `GpuDevice`, and [`RuntimeBuilder::accelerator`] adds one.
//!
//! # Where values live
//!
//! A value type may keep copies of itself in device memory (dagger-cuda's
//! `Resident`: a tile produced by a GPU task stays on that GPU, and is
//! copied to host memory only when a CPU task reads it). The runtime sees
//! such values through two hooks of the accelerator:
//! [`Accelerator::prefetch`], called for each input of a task when the task
//! is queued on the device, so that the copy runs while the device is busy
//! with the tasks ahead of it; and [`Accelerator::residency`], which tells
//! where a value's copies are, so that dmda adds the time to copy the
//! missing ones to each worker's estimated finish (StarPU's data-aware
//! policies).
//!
//! [`RuntimeBuilder::accelerator`]: crate::RuntimeBuilder::accelerator

use crate::datum::Datum;
use dagger_ir::model::{Link, Platform, Processor};
use std::any::Any;

/// A device with a worker thread of its own in the pool.
pub trait Accelerator: Send + Sync + 'static {
    /// One line naming the device (`GPU 0: NVIDIA H100 80GB HBM3`).
    fn describe(&self) -> String;

    /// The device as a processor of the platform model (kind and speed
    /// relative to one CPU core).
    fn processor(&self) -> Processor;

    /// The measured link between host memory and the device, if known
    /// (the platform model's `host_device`).
    fn host_link(&self) -> Option<Link> {
        None
    }

    /// The device itself, for device bodies to take as their concrete type.
    fn as_any(&self) -> &dyn Any;

    /// Called once on the device's worker thread before it runs anything
    /// (a CUDA device binds its context to the thread here).
    fn bind_thread(&self) {}

    /// Where `value`'s copies are, if it is a value that can live in this
    /// device's memory; `None` for plain host values.
    fn residency(&self, _value: &Datum) -> Option<Residency> {
        None
    }

    /// Starts copying `value` into the device's memory if it is not there
    /// yet, without waiting for the copy: the runtime calls it for every
    /// input of a task it queues on this device.
    fn prefetch(&self, _value: &Datum) {}

    /// Waits until the work a device body queued on the device has run.
    /// The worker calls it after each device body, inside the task's
    /// measured time, so that a task placed on the device ends when its
    /// kernels do (StarPU's synchronous CUDA codelets): the cost model
    /// learns the device's time, not the time to queue the work, and a
    /// run's outputs are ready when the run returns. An error fails the
    /// task.
    fn finish(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Where the copies of one value are, as an accelerator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Residency {
    /// Bytes one copy moves.
    pub bytes: u64,
    /// Host memory holds a copy.
    pub on_host: bool,
    /// This device's memory holds a copy.
    pub on_device: bool,
}

/// Seconds to move `bytes` between host memory and `device`, over its
/// measured link or the platform model's default one.
pub fn copy_seconds(device: &dyn Accelerator, bytes: u64) -> f64 {
    device
        .host_link()
        .unwrap_or(Platform::local(1).host_device)
        .transfer_time(bytes)
}

/// Estimated nanoseconds to bring `inputs` into the memory of a worker:
/// accelerator `on_device` (an index into `devices`), or host memory when
/// `None`. Only values some accelerator tracks ([`Accelerator::residency`])
/// count; a plain host value's copy is part of a device body's own time.
pub(crate) fn missing_copies_ns<'a>(
    devices: &[std::sync::Arc<dyn Accelerator>],
    on_device: Option<usize>,
    inputs: impl Iterator<Item = &'a Datum>,
) -> u64 {
    let mut seconds = 0.0;
    for value in inputs {
        match on_device {
            Some(d) => {
                let device = &*devices[d];
                if let Some(r) = device.residency(value).filter(|r| !r.on_device) {
                    seconds += copy_seconds(device, r.bytes);
                }
            }
            None => {
                let holder = devices.iter().find_map(|device| {
                    let r = device.residency(value)?;
                    (!r.on_host && r.on_device).then_some((device, r.bytes))
                });
                if let Some((device, bytes)) = holder {
                    seconds += copy_seconds(&**device, bytes);
                }
            }
        }
    }
    (seconds * 1e9) as u64
}

/// The erased device body of a task: the device (see
/// [`Accelerator::as_any`]) and the arguments, as for [`crate::task::Invoke`].
pub type DeviceInvoke = fn(&dyn Any, &mut [Option<Datum>]) -> Result<Datum, String>;

/// `device` as a `D`, or an error naming the task and both types. Generated
/// code calls it with `D` inferred from the device body's first parameter.
pub fn device_of<'a, D: Any>(device: &'a dyn Any, task: &str) -> Result<&'a D, String> {
    device.downcast_ref::<D>().ok_or_else(|| {
        format!(
            "the device body of `{task}` takes a `{}`, which this worker's device is not",
            std::any::type_name::<D>()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_of_another_type_is_an_error_naming_the_task() {
        let device: &dyn Any = &7u32;
        assert_eq!(device_of::<u32>(device, "t"), Ok(&7));
        let err = device_of::<String>(device, "my::task").unwrap_err();
        assert!(
            err.contains("`my::task`") && err.contains("String"),
            "{err}"
        );
    }
}
