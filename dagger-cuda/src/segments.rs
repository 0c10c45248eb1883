//! A lowered training step on GPUs: [`CudaSegments`] compiles each segment
//! of `dagger_tensor::task_step::lower_step_on` into a [`GpuProgram`] on
//! the GPU its place maps to, so a pipeline placed over devices, or the
//! shards and replicas of a data x tensor grid, run each on its GPU.
//!
//! Places are numbered by [`SegmentPlace::slot`] (each worker's placement
//! devices in a row), and slot `s` is GPU `ordinals[s]`. Ordinals may
//! repeat: two places on one GPU are two programs there (their own
//! buffers, one context), which is how a one-GPU machine runs a step
//! placed over two devices. Each GPU is opened once.
//!
//! The tasks are the lowering's: each copies its operands to its GPU,
//! queues its kernels and reads its outputs back (so values travel between
//! GPUs through host memory), and the all-reduces between workers run on
//! the host. A program binds its GPU to the worker thread that runs it.
//!
//! # Examples
//!
//! ```
//! use dagger_cuda::segments::CudaSegments;
//! use dagger_tensor::task_step::{lower_step_on, LowerOptions, StepPlacement};
//! use dagger_tensor::TensorGraph;
//!
//! let mut g = TensorGraph::new();
//! let x = g.input("x", [4]);
//! let y = g.mul(x, x).unwrap();
//! g.set_outputs(vec![y]).unwrap();
//! // Where there is a GPU: the step's one segment compiles on GPU 0.
//! if let Ok(gpus) = CudaSegments::open(&[0]) {
//!     let step = lower_step_on(&g, &StepPlacement::OneDevice, LowerOptions::default(), &gpus);
//!     assert_eq!(step.unwrap().segments()[0].backend, "cuda:0");
//! }
//! ```

use crate::backend::CudaBackend;
use crate::program::GpuProgram;
use crate::CudaError;
use dagger_tensor::task_step::{SegmentBackend, SegmentPlace};
use dagger_tensor::{Backend, BackendError, Executable, FuseOptions, TensorGraph};

/// One GPU per place of a lowered step (see the [module docs](self)).
pub struct CudaSegments {
    /// The GPU of each slot.
    gpus: Vec<CudaBackend>,
}

impl CudaSegments {
    /// Slot `s` on GPU `ordinals[s]`, each GPU opened once.
    pub fn open(ordinals: &[usize]) -> Result<CudaSegments, CudaError> {
        let mut opened: Vec<CudaBackend> = Vec::new();
        let mut gpus = Vec::with_capacity(ordinals.len());
        for &ordinal in ordinals {
            let gpu = match opened.iter().find(|b| b.gpu.ordinal() == ordinal) {
                Some(known) => known.clone(),
                None => {
                    let new = CudaBackend::open(ordinal)?;
                    opened.push(new.clone());
                    new
                }
            };
            gpus.push(gpu);
        }
        Ok(CudaSegments { gpus })
    }

    /// The GPU of `place`, or an error naming the place past the ordinals.
    fn at(&self, place: SegmentPlace) -> Result<&CudaBackend, BackendError> {
        self.gpus
            .get(place.slot())
            .ok_or_else(|| BackendError::Device {
                backend: "cuda".into(),
                source: format!(
                    "device {} of worker {} is slot {}, and GPUs were given for {} slots",
                    place.device,
                    place.worker,
                    place.slot(),
                    self.gpus.len()
                )
                .into(),
            })
    }
}

impl SegmentBackend for CudaSegments {
    fn name_at(&self, place: SegmentPlace) -> String {
        self.at(place).map_or_else(|_| "cuda".into(), Backend::name)
    }

    fn compile_at(
        &self,
        place: SegmentPlace,
        graph: &TensorGraph,
        fuse: FuseOptions,
    ) -> Result<Box<dyn Executable + Send>, BackendError> {
        let gpu = CudaBackend {
            fuse,
            ..self.at(place)?.clone()
        };
        let program: GpuProgram = gpu.compile(graph)?;
        Ok(Box::new(program))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_past_the_ordinals_is_refused_naming_its_slot() {
        let none = CudaSegments { gpus: Vec::new() };
        let place = SegmentPlace {
            worker: 1,
            device: 0,
            devices: 2,
        };
        let err = none.at(place).err().unwrap().to_string();
        assert_eq!(
            err,
            "cuda: device 0 of worker 1 is slot 2, and GPUs were given for 0 slots"
        );
        assert_eq!(none.name_at(place), "cuda");
        let mut g = TensorGraph::new();
        let x = g.input("x", [2]);
        g.set_outputs(vec![x]).unwrap();
        let compiled = none.compile_at(place, &g, FuseOptions::default());
        assert!(compiled.is_err());
    }
}
