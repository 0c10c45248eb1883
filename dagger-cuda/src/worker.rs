//! A GPU as a worker of a dagger runtime.
//!
//! ```ignore
//! let gpu = GpuWorker::open(0, speed, None)?;          // speed vs one core
//! let rt = Runtime::builder().accelerator(Arc::new(gpu)).build();
//! ```
//!
//! The runtime gives the GPU a worker thread of its own (the context is
//! bound to it once); tasks with a device body (`#[task(gpu = body)]`)
//! placed there by a scheduler run `body(&GpuDevice, args...)`.
//! `dagger::platform::gpu_workers` opens every GPU of the machine with a
//! measured speed and link. The worker tells the runtime where
//! [`Resident`](crate::resident::Resident) values are and prefetches the
//! inputs of the tasks queued on it.

use crate::{resident, CudaError, GpuDevice};
use dagger_ir::model::{Link, ProcKind, Processor};
use dagger_runtime::device::Accelerator;
use dagger_runtime::device::Residency;
use dagger_runtime::Datum;
use std::any::Any;

/// A [`GpuDevice`] with what the schedulers need to know of it.
pub struct GpuWorker {
    device: GpuDevice,
    name: String,
    speed: f64,
    link: Option<Link>,
}

impl GpuWorker {
    /// Opens device `ordinal` (two streams) as a worker `speed` times as
    /// fast as one CPU core, with its host link if measured.
    pub fn open(ordinal: usize, speed: f64, link: Option<Link>) -> Result<GpuWorker, CudaError> {
        let device = GpuDevice::open(ordinal, 2)?;
        let name = device.name()?;
        Ok(GpuWorker {
            device,
            name,
            speed,
            link,
        })
    }

    /// The device.
    pub fn device(&self) -> &GpuDevice {
        &self.device
    }
}

impl Accelerator for GpuWorker {
    fn describe(&self) -> String {
        format!(
            "GPU {}: {} ({:.0}x a core)",
            self.device.ordinal(),
            self.name,
            self.speed
        )
    }

    fn processor(&self) -> Processor {
        Processor {
            kind: ProcKind::Gpu,
            speed: self.speed,
            node: 0,
        }
    }

    fn host_link(&self) -> Option<Link> {
        self.link
    }

    fn as_any(&self) -> &dyn Any {
        &self.device
    }

    fn residency(&self, value: &Datum) -> Option<Residency> {
        resident::erased::residency(value, self.device.ordinal())
    }

    fn prefetch(&self, value: &Datum) {
        // A failed prefetch is not an error: the task's body copies what
        // it needs itself, and reports the failure if it recurs.
        let _ = resident::erased::prefetch(value, &self.device);
    }

    /// Waits for stream 0, the stream device bodies compute on (the copy
    /// stream's prefetches for later tasks go on meanwhile).
    fn finish(&self) -> Result<(), String> {
        self.device
            .stream(0)
            .synchronize()
            .map_err(|e| format!("GPU {}: {e:?}", self.device.ordinal()))
    }

    fn bind_thread(&self) {
        if let Err(e) = self.device.ctx.bind_to_thread() {
            eprintln!(
                "dagger: cannot bind GPU {} to its worker: {e:?}",
                self.device.ordinal()
            );
        }
    }
}
