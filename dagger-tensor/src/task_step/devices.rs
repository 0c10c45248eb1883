//! Where a lowered step's segments are compiled: a [`SegmentBackend`] turns
//! each segment's own tensor graph into an [`Executable`] for the place the
//! lowering put it on ([`SegmentPlace`]: a device of the placement, in one
//! worker of the data x tensor grid).
//!
//! [`CpuBackend`] is one: every place is the cores of this process, which
//! is what [`lower_step`](super::lower_step) uses. A GPU backend maps
//! places to GPUs (`dagger_cuda::segments::CudaSegments`), and
//! [`lower_step_on`](super::lower_step_on) lowers with it: the same task
//! graph, each task feeding, running and reading its own device's program.
//!
//! # Examples
//!
//! A backend that compiles for the cores and names each place:
//!
//! ```
//! use dagger_tensor::task_step::{lower_step_on, LowerOptions, SegmentBackend, SegmentPlace, StepPlacement};
//! use dagger_tensor::{BackendError, CpuBackend, Executable, FuseOptions, TensorGraph};
//!
//! struct Named;
//!
//! impl SegmentBackend for Named {
//!     fn name_at(&self, place: SegmentPlace) -> String {
//!         format!("cores{}", place.slot())
//!     }
//!
//!     fn compile_at(
//!         &self,
//!         place: SegmentPlace,
//!         graph: &TensorGraph,
//!         fuse: FuseOptions,
//!     ) -> Result<Box<dyn Executable + Send>, BackendError> {
//!         CpuBackend::default().compile_at(place, graph, fuse)
//!     }
//! }
//!
//! let mut g = TensorGraph::new();
//! let x = g.input("x", [2]);
//! let y = g.add(x, x).unwrap();
//! g.set_outputs(vec![y]).unwrap();
//! let lowered = lower_step_on(&g, &StepPlacement::OneDevice, LowerOptions::default(), &Named).unwrap();
//! assert_eq!(lowered.segments()[0].backend, "cores0");
//! ```

use crate::backend::{Backend, BackendError, CpuBackend, Executable};
use crate::cpu::program::CompileOptions;
use crate::{FuseOptions, TensorGraph};

/// Where one segment runs: device `device` of the placement (an index into
/// its devices; 0 for [`StepPlacement::OneDevice`](super::StepPlacement))
/// in worker `worker` of the data x tensor grid (see
/// [`LowerOptions::workers`](super::LowerOptions::workers)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SegmentPlace {
    /// The worker (`d * tensor + t`: shard `t` of replica `d`).
    pub worker: usize,
    /// The placement's device.
    pub device: usize,
    /// How many devices the placement has (1 for one device).
    pub devices: usize,
}

impl SegmentPlace {
    /// The place's index among the step's `workers x devices` places, each
    /// worker's devices in a row: `worker * devices + device`.
    pub fn slot(&self) -> usize {
        self.worker * self.devices + self.device
    }
}

/// Compiles a segment's tensor graph for the place it was put on (see the
/// [module docs](self)).
pub trait SegmentBackend {
    /// The name of the backend at `place` in reports
    /// ([`SegmentInfo::backend`](super::SegmentInfo::backend): `cpu`,
    /// `cuda:1`).
    fn name_at(&self, place: SegmentPlace) -> String;

    /// Compiles `graph` (one segment's) for `place`, fusing by `fuse` (the
    /// lowering's [`LowerOptions::fuse`](super::LowerOptions::fuse)). The
    /// executable is sent to the runtime's workers, and run by one at a
    /// time.
    fn compile_at(
        &self,
        place: SegmentPlace,
        graph: &TensorGraph,
        fuse: FuseOptions,
    ) -> Result<Box<dyn Executable + Send>, BackendError>;
}

/// Every place is the cores of this process.
impl SegmentBackend for CpuBackend {
    fn name_at(&self, _place: SegmentPlace) -> String {
        Backend::name(self)
    }

    fn compile_at(
        &self,
        _place: SegmentPlace,
        graph: &TensorGraph,
        fuse: FuseOptions,
    ) -> Result<Box<dyn Executable + Send>, BackendError> {
        let cores = CpuBackend {
            options: CompileOptions { fuse },
        };
        Ok(Box::new(Backend::compile(&cores, graph)?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{lower_step, lower_step_on, LowerOptions, StepPlacement};
    use super::*;
    use crate::Tensor;
    use dagger_ir::model::Link;
    use dagger_runtime::Runtime;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// The cores, counting the segments compiled for each place.
    #[derive(Default)]
    struct Counting {
        compiled: RefCell<BTreeMap<(usize, usize), usize>>,
    }

    impl SegmentBackend for Counting {
        fn name_at(&self, place: SegmentPlace) -> String {
            format!("counted:{}", place.slot())
        }

        fn compile_at(
            &self,
            place: SegmentPlace,
            graph: &TensorGraph,
            fuse: FuseOptions,
        ) -> Result<Box<dyn Executable + Send>, BackendError> {
            *self
                .compiled
                .borrow_mut()
                .entry((place.worker, place.device))
                .or_default() += 1;
            CpuBackend::default().compile_at(place, graph, fuse)
        }
    }

    /// Three branches off one input, joined: HEFT runs them on both of two
    /// equal devices joined by a free link.
    fn branches() -> TensorGraph {
        let mut g = TensorGraph::new();
        let x = g.input("x", [8, 32]);
        let out: Vec<Tensor> = (0..3)
            .map(|b| {
                let w = g.param(&format!("w{b}"), [32, 32]);
                let h = g.matmul(x, w).unwrap();
                g.relu(h).unwrap()
            })
            .collect();
        let joined = g.add(out[0], out[1]).unwrap();
        let y = g.add(joined, out[2]).unwrap();
        g.set_outputs(vec![y]).unwrap();
        g
    }

    fn two_devices() -> StepPlacement {
        let free = Link {
            latency: 0.0,
            bandwidth: 1e15,
        };
        StepPlacement::equal_devices(2, 1e9, 1 << 30, free)
    }

    #[test]
    fn each_segment_compiles_for_the_device_and_worker_it_was_placed_on() {
        let g = branches();
        let options = LowerOptions {
            max_nodes: 2,
            ..LowerOptions::default()
        };
        let counting = Counting::default();
        let mut lowered = lower_step_on(&g, &two_devices(), options, &counting).unwrap();
        let mut per_device = BTreeMap::new();
        for s in lowered.segments() {
            *per_device.entry((0, s.device)).or_insert(0) += 1;
            assert_eq!(s.backend, format!("counted:{}", s.device), "{s:?}");
        }
        assert_eq!(per_device.len(), 2, "both devices hold segments");
        assert_eq!(*counting.compiled.borrow(), per_device);
        // The executables it made are the ones that run: the step computes
        // what the cores' lowering does.
        let mut cores = lower_step(&g, &two_devices(), options).unwrap();
        let rt = Runtime::builder().threads(2).build();
        let x: Vec<f32> = (0..8 * 32).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        for b in 0..3 {
            let w: Vec<f32> = (0..32 * 32).map(|i| ((i + b) % 5) as f32 * 0.02).collect();
            lowered.set_param(&format!("w{b}"), &w).unwrap();
            cores.set_param(&format!("w{b}"), &w).unwrap();
        }
        let got = lowered.run(&rt, &[("x", &x)]).unwrap();
        assert_eq!(got, cores.run(&rt, &[("x", &x)]).unwrap());
        assert!(cores.segments().iter().all(|s| s.backend == "cpu"));
        // Two replicas on one device: each worker compiles every segment.
        let grid = LowerOptions { data: 2, ..options };
        let counting = Counting::default();
        let lowered = lower_step_on(&g, &StepPlacement::OneDevice, grid, &counting).unwrap();
        let segments = lowered.segments().len();
        let want = BTreeMap::from([((0, 0), segments), ((1, 0), segments)]);
        assert_eq!(*counting.compiled.borrow(), want);
    }

    #[test]
    fn a_place_numbers_each_workers_devices_in_a_row() {
        let place = SegmentPlace {
            worker: 2,
            device: 1,
            devices: 3,
        };
        assert_eq!(place.slot(), 7);
    }
}
