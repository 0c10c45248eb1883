//! All-reduce across the GPUs of this machine, with NCCL.
//!
//! [`NcclGroup::new`] makes one communicator per device (`ncclCommInitAll`,
//! one process driving every GPU, on each device's stream 0);
//! [`NcclGroup::all_reduce_sum`] sums one buffer per device into every one
//! of them, the calls grouped (`ncclGroupStart`/`End`) so that a single
//! thread can issue them all without deadlock. It is what data-parallel
//! training on several GPUs of one node reduces its gradients with; across
//! processes and machines the cluster ring over UCX does
//! (`dagger::cluster`).
//!
//! NCCL is loaded at run time: without it the answer is
//! [`CudaError::NoNccl`].

use crate::{call, CudaError, GpuDevice};
use cudarc::driver::CudaSlice;
use cudarc::nccl::{group_end, group_start, Comm, ReduceOp};

/// Whether NCCL can be loaded.
pub fn nccl_present() -> bool {
    // SAFETY: only tries to load the library.
    unsafe { cudarc::nccl::sys::is_culib_present() }
}

/// One NCCL communicator per GPU of this process.
pub struct NcclGroup {
    comms: Vec<Comm>,
}

impl NcclGroup {
    /// Communicators for `devices` (rank `i` is `devices[i]`, each on its
    /// stream 0).
    pub fn new(devices: &[&GpuDevice]) -> Result<NcclGroup, CudaError> {
        if !nccl_present() {
            return Err(CudaError::NoNccl);
        }
        let streams = devices.iter().map(|d| d.stream(0).clone()).collect();
        let comms = Comm::from_devices(streams).map_err(call)?;
        Ok(NcclGroup { comms })
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.comms.len()
    }

    /// Whether the group has no device.
    pub fn is_empty(&self) -> bool {
        self.comms.is_empty()
    }

    /// Sums `buffers[i]` (on device `i`, all of one length) into every one
    /// of them. Queued on each device's stream 0; returns before it
    /// completes.
    pub fn all_reduce_sum(&self, buffers: &mut [&mut CudaSlice<f32>]) -> Result<(), CudaError> {
        if buffers.len() != self.comms.len() {
            return Err(CudaError::Call(format!(
                "all-reduce over {} devices given {} buffers",
                self.comms.len(),
                buffers.len()
            )));
        }
        let len = buffers.first().map_or(0, |b| b.len());
        if buffers.iter().any(|b| b.len() != len) {
            let lens: Vec<usize> = buffers.iter().map(|b| b.len()).collect();
            return Err(CudaError::Call(format!(
                "all-reduce of buffers of different lengths: {lens:?}"
            )));
        }
        group_start().map_err(call)?;
        let queued: Result<Vec<_>, _> = self
            .comms
            .iter()
            .zip(buffers.iter_mut())
            .map(|(comm, buffer)| comm.all_reduce_in_place(&mut **buffer, &ReduceOp::Sum))
            .collect();
        let ended = group_end();
        queued.map_err(call)?;
        ended.map_err(call)?;
        Ok(())
    }
}
