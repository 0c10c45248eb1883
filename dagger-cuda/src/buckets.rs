//! The gradient buckets of a [`GpuProgram`](crate::program::GpuProgram) and
//! how they reach the other workers.
//!
//! The GPU counterpart of the CPU runtime's `reducer`, on the same
//! [`BucketPlans`]: when the node that completes a bucket's last gradient
//! has been queued, its gradients are packed (device-to-device copies on
//! stream 0) into the bucket's staging buffer in device memory, and the
//! buffer is reduced over the workers of the bucket's group while stream 0
//! goes on with the rest of the backward pass. Each all-reduce node then
//! copies its part out. Two kinds of ring ([`GpuRing`]):
//!
//! - **NCCL** ([`NcclRank`]): the all-reduce is queued on the device's
//!   collective stream, GPU to GPU, and nothing waits on the host: cudarc's
//!   per-buffer events make the collective stream wait for the packing and
//!   stream 0 wait for the reduction before the copies out.
//! - **A host ring** (a `RingLink`: threads of this process, ranks of a
//!   cluster over UCX): the packed bucket is downloaded, reduced by the
//!   runtime's `Reducer` thread while the host queues the rest of the
//!   step, and uploaded back when the first of its all-reduce nodes runs.
//!   This is how a GPU replica trains beside CPU replicas, or across
//!   processes.
//!
//! With no ring a bucket is reduced over one worker: the staging buffer
//! already holds the answer.

use crate::nccl::NcclRank;
use crate::program_error::GpuProgramError;
use crate::{call, CudaError, GpuDevice};
use cudarc::driver::{CudaSlice, CudaView};
use dagger_tensor::{
    plan_buckets, BucketPlans, ParallelGroup, Reducer, RingLink, Tensor, TensorError, TensorGraph,
};

/// How a group's buckets reach the other workers (see the
/// [module docs](self)).
pub enum GpuRing {
    /// GPU to GPU with NCCL.
    Nccl(NcclRank),
    /// Through host memory, over a ring of host workers.
    Host(Reducer),
}

impl GpuRing {
    /// A host ring over `link` (its reductions run on a thread of their own).
    pub fn host(link: Box<dyn RingLink>) -> GpuRing {
        GpuRing::Host(Reducer::start(link))
    }
}

/// The buckets of a program, their staging buffers and rings.
pub(crate) struct GpuBuckets {
    /// The ring of each group, by [`ParallelGroup::index`]. Dropped first:
    /// dropping an NCCL communicator aborts its collectives, which a failed
    /// peer would otherwise leave waiting (and the buffers' frees with them).
    rings: [Option<GpuRing>; 2],
    plans: BucketPlans,
    staging: Vec<CudaSlice<f32>>,
    /// Per bucket: sent to a host reducer and not back yet.
    pending: Vec<bool>,
}

impl GpuBuckets {
    /// The buckets of `g`, with staging buffers on `gpu`.
    pub(crate) fn of(g: &TensorGraph, gpu: &GpuDevice) -> Result<GpuBuckets, GpuProgramError> {
        let plans = plan_buckets(g)?;
        let staging = plans
            .buckets
            .iter()
            .map(|p| {
                gpu.stream(0)
                    .alloc_zeros::<f32>(p.len().max(1))
                    .map_err(call)
            })
            .collect::<Result<Vec<_>, CudaError>>()?;
        Ok(GpuBuckets {
            pending: vec![false; plans.buckets.len()],
            plans,
            staging,
            rings: [None, None],
        })
    }

    /// Sets the ring of `group`.
    pub(crate) fn set_ring(&mut self, group: ParallelGroup, ring: GpuRing) {
        self.rings[group.index()] = Some(ring);
    }

    /// The ring of `group`, if any.
    pub(crate) fn ring(&self, group: ParallelGroup) -> Option<&GpuRing> {
        self.rings[group.index()].as_ref()
    }

    /// After node `i` was queued: packs every bucket it completes and
    /// starts its reduction. `value(v)` is a value's device buffer.
    pub(crate) fn after_node<'a>(
        &mut self,
        i: usize,
        gpu: &GpuDevice,
        value: impl Fn(Tensor) -> CudaView<'a, f32>,
    ) -> Result<(), GpuProgramError> {
        let stream = gpu.stream(0);
        for (b, plan) in self.plans.buckets.iter().enumerate() {
            if plan.launch_after != i {
                continue;
            }
            if self.pending[b] {
                return Err(TensorError::Collective(format!(
                    "bucket {b} is still being reduced: an earlier run failed during its all-reduce"
                ))
                .into());
            }
            let staging = &mut self.staging[b];
            for m in &plan.members {
                stream
                    .memcpy_dtod(&value(m.operand), &mut staging.slice_mut(m.range.clone()))
                    .map_err(call)?;
            }
            match &self.rings[plan.group.index()] {
                None => {}
                Some(GpuRing::Nccl(rank)) => {
                    rank.all_reduce(&mut staging.slice_mut(..plan.len()), plan.is_mean())?
                }
                Some(GpuRing::Host(reducer)) => {
                    let packed = stream
                        .clone_dtoh(&staging.slice(..plan.len()))
                        .map_err(call)?;
                    reducer.reduce(b, packed, plan.is_mean())?;
                    self.pending[b] = true;
                }
            }
        }
        Ok(())
    }

    /// The reduced values of all-reduce node `i` in device memory: waits
    /// (on the host) only for a bucket still with a host reducer.
    pub(crate) fn reduced(
        &mut self,
        i: usize,
        gpu: &GpuDevice,
    ) -> Result<CudaView<'_, f32>, GpuProgramError> {
        let b = self.plans.of_node[i].expect("an all-reduce node");
        let plan = &self.plans.buckets[b];
        while self.pending[b] {
            let Some(GpuRing::Host(reducer)) = &self.rings[plan.group.index()] else {
                return Err(
                    TensorError::Collective("a bucket was sent to no reducer".into()).into(),
                );
            };
            let (got, data) = reducer.receive_bucket()?;
            let staging = self.staging.get_mut(got).ok_or_else(|| {
                TensorError::Collective(format!("bucket {got} came back but was never sent"))
            })?;
            gpu.stream(0)
                .memcpy_htod(&data, &mut staging.slice_mut(..data.len()))
                .map_err(call)?;
            self.pending[got] = false;
        }
        let range = plan.range_of(i).expect("a member of its bucket");
        Ok(self.staging[b].slice(range))
    }
}
