//! Collectives across GPUs with NCCL.
//!
//! Two ways to hold communicators:
//! - [`NcclRank`]: one GPU's place in a group, for a thread (or process)
//!   per GPU, the layout data-parallel training uses. Rank 0 makes an
//!   [`NcclId`], every rank calls [`NcclRank::join`] with it at the same
//!   time; the communicator runs on the device's
//!   [`collective_stream`](GpuDevice::collective_stream), so reductions
//!   overlap the compute of stream 0 (cudarc's per-buffer events order
//!   them). A [`GpuProgram`](crate::program::GpuProgram) reduces its
//!   gradient buckets over one ([`GpuProgram::set_nccl`](crate::program::GpuProgram::set_nccl)).
//! - [`NcclGroup`]: one communicator per device, all driven by one thread
//!   (`ncclCommInitAll`, on each device's stream 0);
//!   [`NcclGroup::all_reduce_sum`] groups its calls
//!   (`ncclGroupStart`/`End`) so that a single thread can issue them all
//!   without deadlock.
//!
//! Across processes and machines without a shared NCCL id, the cluster
//! ring over UCX reduces instead (`dagger::cluster`).
//!
//! NCCL is loaded at run time: without it the answer is
//! [`CudaError::NoNccl`].

use crate::{call, CudaError, GpuDevice};
use cudarc::driver::CudaSlice;
use cudarc::driver::DevicePtrMut;
use cudarc::nccl::{group_end, group_start, Comm, ReduceOp};

/// The name of an NCCL group: made once (by rank 0) and given to every
/// rank that joins.
pub use cudarc::nccl::Id as NcclId;

/// Whether NCCL can be loaded.
pub fn nccl_present() -> bool {
    // SAFETY: only tries to load the library.
    unsafe { cudarc::nccl::sys::is_culib_present() }
}

/// A fresh id for a new group.
pub fn new_nccl_id() -> Result<NcclId, CudaError> {
    if !nccl_present() {
        return Err(CudaError::NoNccl);
    }
    NcclId::new().map_err(call)
}

/// One GPU's communicator in a group of `size` ranks (see the
/// [module docs](self)). It may move to another thread (a program holding
/// it runs on whichever worker takes its task), and is used by one thread
/// at a time: it is `Send`, not `Sync`.
pub struct NcclRank {
    comm: Comm,
}

// SAFETY: NCCL lets any thread operate a communicator "as long as users
// can guarantee only one thread operates the communicator at a time"
// (NCCL user guide, Thread Safety); it keeps no state tied to the thread
// that made it. An `NcclRank` is not `Sync`, so only the thread that owns
// it calls into NCCL through it (`all_reduce` and `broadcast` take `&self`,
// which cannot reach a second thread), dropping (`ncclCommAbort`)
// included. It issues no grouped calls, which NCCL wants from one thread
// (`NcclGroup` does, and stays `!Send`). Its other part, cudarc's stream,
// is `Send + Sync`. Each call first makes the communicator's device
// current on the calling thread.
unsafe impl Send for NcclRank {}

impl NcclRank {
    /// Joins group `id` as `rank` of `size`, on `gpu`'s collective stream.
    /// Blocks until every rank has joined: call it on all ranks at once
    /// (one thread or process each).
    pub fn join(
        gpu: &GpuDevice,
        rank: usize,
        size: usize,
        id: NcclId,
    ) -> Result<NcclRank, CudaError> {
        if !nccl_present() {
            return Err(CudaError::NoNccl);
        }
        if rank >= size {
            return Err(CudaError::Call(format!(
                "NCCL rank {rank} of a group of {size}"
            )));
        }
        // ncclCommInitRank takes the thread's current device.
        gpu.bind_to_thread()?;
        let comm =
            Comm::from_rank(gpu.collective_stream().clone(), rank, size, id).map_err(call)?;
        Ok(NcclRank { comm })
    }

    /// This GPU's rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.comm.world_size()
    }

    /// Replaces `buffer` on every rank by the mean (`mean`) or the sum over
    /// the ranks. Queued on the collective stream, after the last write of
    /// `buffer`; later work on other streams that reads it waits for it.
    pub fn all_reduce<B: DevicePtrMut<f32>>(
        &self,
        buffer: &mut B,
        mean: bool,
    ) -> Result<(), CudaError> {
        let op = if mean { ReduceOp::Avg } else { ReduceOp::Sum };
        self.comm.context().bind_to_thread().map_err(call)?;
        self.comm.all_reduce_in_place(buffer, &op).map_err(call)?;
        Ok(())
    }

    /// Gives every rank rank 0's `buffer` (queued like [`Self::all_reduce`]).
    pub fn broadcast<B: DevicePtrMut<f32>>(&self, buffer: &mut B) -> Result<(), CudaError> {
        self.comm.context().bind_to_thread().map_err(call)?;
        self.comm.broadcast_in_place(buffer, 0).map_err(call)?;
        Ok(())
    }
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
