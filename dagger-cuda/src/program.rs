//! [`GpuProgram`]: a tensor graph compiled for one GPU and ready to run.
//!
//! The GPU counterpart of the CPU's `dagger_tensor::Program`, with
//! the same passes and the same memory plan: compiling optimizes the graph
//! (dead nodes, elementwise fusion), plans its buffers by liveness,
//! allocates them once in device memory and compiles every fused kernel to
//! CUDA C with NVRTC. A run queues every node on stream 0 and returns: no
//! allocation, no copy to the host, no wait. Each op has its GPU kernel:
//!
//! | ops | kernel |
//! |---|---|
//! | fused elementwise chains (and their sums) | generated CUDA C ([`codegen`](crate::codegen)) |
//! | elementwise ops fusion left alone | the same, one op each, operands broadcast first |
//! | matmul (either operand transposed) | cuBLAS `Sgemm` |
//! | softmax, log-softmax, cross-entropy, MSE | [`softmax`](crate::softmax) |
//! | transpose, broadcast, sum over axes / to a shape, slice, pad, concat | [`layout`](crate::layout) |
//! | all-reduce | gradient buckets reduced with NCCL or a host ring ([`buckets`](crate::buckets)) |
//! | enter-parallel | device-to-device copy |
//!
//! Inputs and parameters go in with [`GpuProgram::set`] (a host-to-device
//! copy) and results come back with [`GpuProgram::get`] and
//! [`GpuProgram::output`] (which wait for the run). A graph with a custom op
//! (a CPU function) is refused at compile time, naming the op.
//!
//! A data-parallel training step (one with all-reduce nodes) reduces over
//! the other replicas once it is given a ring: [`GpuProgram::set_nccl`]
//! (GPU to GPU) or [`GpuProgram::set_ring`] (through host memory, beside
//! CPU replicas or across processes); [`GpuProgram::broadcast_params`]
//! starts every replica from rank 0's parameters.

use crate::buckets::{GpuBuckets, GpuRing};
use crate::nccl::NcclRank;
pub use crate::program_error::GpuProgramError;
use crate::{call, GpuDevice};
use cudarc::cublas::{sys::cublasOperation_t, Gemm, GemmConfig};
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, DevicePtr};
use dagger_tensor::{
    matrix_view, optimize, plan_memory, unplanned_bytes, Broadcast, FuseOptions, FusedLayout,
    Kernel, KernelStep, MemoryPlan, ParallelGroup, ProgramStats, RingLink, Shape, Tensor,
    TensorError, TensorGraph, TensorOp, MAX_RANK,
};

/// An elementwise node's kernel: generated CUDA C over its operands, the
/// ones that need it broadcast first into scratch buffers of the result's
/// shape.
struct ElementwiseCall {
    kernel: Kernel,
    layout: FusedLayout,
    /// Per operand: a scratch buffer it is broadcast into first, if any.
    scratch: Vec<Option<CudaSlice<f32>>>,
}

/// A tensor graph compiled for one GPU (see the [module docs](self)).
pub struct GpuProgram {
    /// Dropped first (see [`GpuBuckets`]'s rings).
    buckets: GpuBuckets,
    gpu: GpuDevice,
    graph: TensorGraph,
    plan: MemoryPlan,
    /// The planned buffers; each is taken out while a node writes it.
    buffers: Vec<Option<CudaSlice<f32>>>,
    elementwise: Vec<Option<ElementwiseCall>>,
    fed: Vec<bool>,
    stats: ProgramStats,
}

fn no_kernel(op: &TensorOp) -> GpuProgramError {
    GpuProgramError::NoGpuKernel { op: op.to_string() }
}

/// The single-op kernel of an elementwise node fusion left alone.
fn single_op(op: &TensorOp) -> Option<Kernel> {
    let mut k = Kernel::default();
    match *op {
        TensorOp::Unary(u) => {
            let x = k.push(KernelStep::Load(0));
            k.push(KernelStep::Unary(u, x));
        }
        TensorOp::Binary(b) => {
            let x = k.push(KernelStep::Load(0));
            let y = k.push(KernelStep::Load(1));
            k.push(KernelStep::Binary(b, x, y));
        }
        _ => return None,
    }
    Some(k)
}

impl GpuProgram {
    /// Compiles `graph` for `gpu` with the fusion pass's `options`.
    pub fn compile(
        graph: &TensorGraph,
        gpu: &GpuDevice,
        options: FuseOptions,
    ) -> Result<GpuProgram, GpuProgramError> {
        let (g, report) = optimize(graph, options);
        for node in g.nodes() {
            if matches!(node.op, TensorOp::Custom(_)) {
                return Err(no_kernel(&node.op));
            }
            if node.shape.rank() > MAX_RANK {
                return Err(TensorError::Shape {
                    op: node.op.to_string(),
                    detail: format!(
                        "shape {} has more than {MAX_RANK} axes, the most the GPU kernels take",
                        node.shape
                    ),
                }
                .into());
            }
        }
        let plan = plan_memory(&g);
        let stream = gpu.stream(0);
        let mut buffers = Vec::with_capacity(plan.sizes.len());
        for &n in &plan.sizes {
            buffers.push(Some(stream.alloc_zeros::<f32>(n.max(1)).map_err(call)?));
        }
        let mut elementwise: Vec<Option<ElementwiseCall>> = Vec::new();
        for (i, node) in g.nodes().iter().enumerate() {
            if let TensorOp::Const { value } = node.op {
                let b = buffers[plan.buffer_of[i]].as_mut().expect("allocated");
                let n = node.shape.numel();
                stream
                    .memcpy_htod(&vec![value; n], &mut b.slice_mut(..n))
                    .map_err(call)?;
            }
            let shapes: Vec<&Shape> = node.inputs.iter().map(|&v| g.shape(v)).collect();
            let call_of = match &node.op {
                TensorOp::Fused(kernel) => {
                    let layout = FusedLayout::of(kernel, &node.shape, &shapes)
                        .ok_or_else(|| no_kernel(&node.op))?;
                    let scratch = shapes.iter().map(|_| None).collect();
                    Some((kernel.clone(), layout, scratch))
                }
                op => match single_op(op) {
                    Some(kernel) => {
                        // Operands broadcast some other way are expanded to
                        // the result's shape first.
                        let mut scratch = Vec::new();
                        for s in &shapes {
                            scratch.push(match Broadcast::of(s, &node.shape) {
                                Some(_) => None,
                                None => Some(
                                    stream
                                        .alloc_zeros::<f32>(node.shape.numel().max(1))
                                        .map_err(call)?,
                                ),
                            });
                        }
                        let expanded: Vec<&Shape> = shapes
                            .iter()
                            .zip(&scratch)
                            .map(|(s, x)| if x.is_some() { &node.shape } else { *s })
                            .collect();
                        let layout = FusedLayout::of(&kernel, &node.shape, &expanded)
                            .ok_or_else(|| no_kernel(&node.op))?;
                        Some((kernel, layout, scratch))
                    }
                    None => None,
                },
            };
            elementwise.push(match call_of {
                Some((kernel, layout, scratch)) => {
                    // Compile now: errors show here, and the first run is not slower.
                    gpu.fused_function(&kernel, &layout.patterns)?;
                    Some(ElementwiseCall {
                        kernel,
                        layout,
                        scratch,
                    })
                }
                None => None,
            });
        }
        let stats = ProgramStats {
            nodes: g.nodes().len(),
            kernels: report.kernels,
            fused_ops: report.ops,
            planned_bytes: plan.bytes(),
            unplanned_bytes: unplanned_bytes(&g),
        };
        let buckets = GpuBuckets::of(&g, gpu)?;
        Ok(GpuProgram {
            buckets,
            gpu: gpu.clone(),
            fed: vec![false; g.nodes().len()],
            graph: g,
            plan,
            buffers,
            elementwise,
            stats,
        })
    }

    /// Makes this program rank `nccl.rank()` of an NCCL group for `group`:
    /// its all-reduce nodes of that group reduce over the group's GPUs,
    /// overlapping the rest of each run. Without a ring they return their
    /// operand (the reduction over one worker).
    pub fn set_nccl(&mut self, group: ParallelGroup, nccl: NcclRank) {
        self.buckets.set_ring(group, GpuRing::Nccl(nccl));
    }

    /// Makes this program one worker of the host ring `link` for `group`
    /// (threads of this process, or ranks of a cluster, CPU replicas among
    /// them): buckets go through host memory.
    pub fn set_ring(&mut self, group: ParallelGroup, link: Box<dyn RingLink>) {
        self.buckets.set_ring(group, GpuRing::host(link));
    }

    /// Gives every worker of the data-parallel ring worker 0's parameters
    /// (do it once, after setting them, so that all replicas start equal).
    pub fn broadcast_params(&mut self) -> Result<(), GpuProgramError> {
        let params = self.graph.params();
        match self.buckets.ring(ParallelGroup::Data) {
            None => {}
            Some(GpuRing::Nccl(rank)) => {
                for p in params {
                    let n = self.graph.shape(p).numel();
                    let b = self.plan.buffer_of[p.index()];
                    let buffer = self.buffers[b].as_mut().expect("buffers are back");
                    rank.broadcast(&mut buffer.slice_mut(..n))?;
                }
            }
            Some(GpuRing::Host(reducer)) => {
                let mut all = Vec::new();
                for &p in &params {
                    all.extend(self.download(p)?);
                }
                let all = reducer.broadcast(all)?;
                let mut at = 0;
                for p in params {
                    let n = self.graph.shape(p).numel();
                    let b = self.plan.buffer_of[p.index()];
                    let buffer = self.buffers[b].as_mut().expect("buffers are back");
                    self.gpu
                        .stream(0)
                        .memcpy_htod(&all[at..at + n], &mut buffer.slice_mut(..n))
                        .map_err(call)?;
                    at += n;
                }
            }
        }
        Ok(())
    }

    /// The graph as compiled (after the passes).
    pub fn graph(&self) -> &TensorGraph {
        &self.graph
    }

    /// What compiling did.
    pub fn stats(&self) -> &ProgramStats {
        &self.stats
    }

    /// The buffer of node `i`'s value.
    fn buffer(&self, i: usize) -> &CudaSlice<f32> {
        self.buffers[self.plan.buffer_of[i]]
            .as_ref()
            .expect("buffers are back after each node")
    }

    /// Feeds an input, or sets a parameter, by name (a host-to-device copy).
    pub fn set(&mut self, name: &str, data: &[f32]) -> Result<(), GpuProgramError> {
        let v = self.graph.lookup_for(name, data.len())?;
        let b = self.plan.buffer_of[v.index()];
        let buffer = self.buffers[b].as_mut().expect("buffers are back");
        self.gpu
            .stream(0)
            .memcpy_htod(data, &mut buffer.slice_mut(..data.len()))
            .map_err(call)?;
        self.fed[v.index()] = true;
        Ok(())
    }

    fn download(&self, v: Tensor) -> Result<Vec<f32>, GpuProgramError> {
        let n = self.graph.shape(v).numel();
        let view = self.buffer(v.index()).slice(..n);
        Ok(self.gpu.stream(0).clone_dtoh(&view).map_err(call)?)
    }

    /// The parameters by name, with their current values, in graph order
    /// (downloaded; waits for the run).
    pub fn params(&self) -> Result<Vec<(String, Vec<f32>)>, GpuProgramError> {
        self.graph
            .named()
            .filter(|(_, _, n)| matches!(n.op, TensorOp::Param { .. }))
            .map(|(v, name, _)| Ok((name.to_string(), self.download(v)?)))
            .collect()
    }

    /// The GPU it runs on.
    pub fn device(&self) -> &GpuDevice {
        &self.gpu
    }

    /// The current value of an input or parameter (waits for the run).
    pub fn get(&self, name: &str) -> Result<Vec<f32>, GpuProgramError> {
        self.download(self.graph.lookup(name)?)
    }

    /// The `k`-th output of the last run (waits for it).
    pub fn output(&self, k: usize) -> Result<Vec<f32>, GpuProgramError> {
        self.download(self.graph.outputs()[k])
    }

    /// Waits until the queued runs are done.
    pub fn synchronize(&self) -> Result<(), GpuProgramError> {
        Ok(self.gpu.stream(0).synchronize().map_err(call)?)
    }

    /// Waits until the queued runs are done, or until `give_up()` (asked
    /// while waiting) says to stop; returns whether they are done. A worker
    /// of an NCCL group waits so: a run whose collectives wait for a peer
    /// that failed would never end, and giving up lets it drop its
    /// communicator (`ncclCommAbort`), which ends them.
    pub fn wait_or(&self, give_up: impl Fn() -> bool) -> Result<bool, GpuProgramError> {
        let done = self.gpu.stream(0).record_event(None).map_err(call)?;
        let mut polls = 0u32;
        while !done.try_is_complete().map_err(call)? {
            if give_up() {
                return Ok(false);
            }
            // Yield while a step is likely about to end, then nap.
            polls += 1;
            if polls < 1000 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
        Ok(true)
    }

    /// Queues one run of the graph and its parameter updates on stream 0.
    pub fn run(&mut self) -> Result<(), GpuProgramError> {
        self.graph.check_fed(&self.fed)?;
        // cuBLAS calls on the thread's current context: a program may run
        // on any thread (a lowered step's tasks run on the runtime's
        // workers), after programs of other GPUs ran there.
        self.gpu.bind_to_thread()?;
        for i in 0..self.graph.nodes().len() {
            self.run_node(i)?;
            let (graph, plan, buffers) = (&self.graph, &self.plan, &self.buffers);
            let value = |v: Tensor| {
                let b = buffers[plan.buffer_of[v.index()]].as_ref();
                b.expect("buffers are back").slice(..graph.shape(v).numel())
            };
            self.buckets.after_node(i, &self.gpu, value)?;
        }
        for k in 0..self.graph.updates().len() {
            let (p, v) = self.graph.updates()[k];
            self.copy(v.index(), p.index())?;
        }
        Ok(())
    }

    /// Copies node `from`'s value into node `to`'s buffer (nothing when
    /// they share one).
    fn copy(&mut self, from: usize, to: usize) -> Result<(), GpuProgramError> {
        let (bf, bt) = (self.plan.buffer_of[from], self.plan.buffer_of[to]);
        if bf == bt {
            return Ok(());
        }
        let n = self.graph.nodes()[to].shape.numel();
        let mut dst = self.buffers[bt].take().expect("buffers are back");
        let result = self
            .gpu
            .stream(0)
            .memcpy_dtod(&self.buffer(from).slice(..n), &mut dst.slice_mut(..n))
            .map_err(call);
        self.buffers[bt] = Some(dst);
        Ok(result?)
    }

    fn run_node(&mut self, i: usize) -> Result<(), GpuProgramError> {
        if let Some(mut call) = self.elementwise[i].take() {
            let result = self.run_elementwise(i, &mut call);
            self.elementwise[i] = Some(call);
            return result;
        }
        let node = &self.graph.nodes()[i];
        match &node.op {
            TensorOp::Input { .. }
            | TensorOp::Param { .. }
            | TensorOp::Const { .. }
            | TensorOp::Reshape => Ok(()),
            TensorOp::EnterParallel => self.copy(node.inputs[0].index(), i),
            TensorOp::AllReduce { .. } => {
                let n = node.shape.numel();
                let b = self.plan.buffer_of[i];
                let dst = self.buffers[b].as_mut().expect("buffers are back");
                let reduced = self.buckets.reduced(i, &self.gpu)?;
                self.gpu
                    .stream(0)
                    .memcpy_dtod(&reduced, &mut dst.slice_mut(..n))
                    .map_err(call)?;
                Ok(())
            }
            _ => self.run_library_op(i),
        }
    }

    fn run_elementwise(&self, i: usize, call: &mut ElementwiseCall) -> Result<(), GpuProgramError> {
        let node = &self.graph.nodes()[i];
        let stream = self.gpu.stream(0);
        let n = node.shape.numel();
        for (&v, scratch) in node.inputs.iter().zip(&mut call.scratch) {
            if let Some(s) = scratch {
                let source = self.buffer(v.index()).slice(..self.graph.shape(v).numel());
                let mut target = s.slice_mut(..n);
                self.gpu
                    .broadcast_to(&source, self.graph.shape(v), &node.shape, &mut target)?;
            }
        }
        let guards: Vec<_> = node
            .inputs
            .iter()
            .zip(&call.scratch)
            .map(|(&v, scratch)| {
                scratch
                    .as_ref()
                    .unwrap_or(self.buffer(v.index()))
                    .device_ptr(stream)
            })
            .collect();
        let operands: Vec<u64> = guards.iter().map(|g| g.0).collect();
        let out = self.buffer(i);
        let (out_ptr, _out_guard) = out.device_ptr(stream);
        // SAFETY: every address is a live buffer of this program, sized by
        // the plan for the values the layout reads and writes; an operand
        // sharing the result's buffer has its shape (the memory plan's rule).
        unsafe {
            self.gpu
                .launch_fused_at(&call.kernel, &call.layout, &operands, (out_ptr, out.len()))
        }?;
        Ok(())
    }

    /// Runs a node that is neither elementwise nor a copy: its result's
    /// buffer is taken out while the library kernel writes it (the memory
    /// plan never gives such a node an operand's buffer).
    fn run_library_op(&mut self, i: usize) -> Result<(), GpuProgramError> {
        let b = self.plan.buffer_of[i];
        let mut out = self.buffers[b].take().expect("buffers are back");
        let result = self.library_op(i, &mut out);
        self.buffers[b] = Some(out);
        result
    }

    fn library_op(&self, i: usize, out: &mut CudaSlice<f32>) -> Result<(), GpuProgramError> {
        let node = &self.graph.nodes()[i];
        let gpu = &self.gpu;
        let shape = |k: usize| self.graph.shape(node.inputs[k]);
        let operand = |k: usize| -> Result<CudaView<'_, f32>, GpuProgramError> {
            let v = node.inputs[k];
            let buffer = self.buffers[self.plan.buffer_of[v.index()]]
                .as_ref()
                .ok_or_else(|| no_kernel(&node.op))?;
            Ok(buffer.slice(..self.graph.shape(v).numel()))
        };
        let mut y = out.slice_mut(..node.shape.numel().max(1));
        match &node.op {
            TensorOp::MatMul { trans_a, trans_b } => {
                let (a, b) = (operand(0)?, operand(1)?);
                self.matmul((&a, shape(0), *trans_a), (&b, shape(1), *trans_b), &mut y)?;
            }
            TensorOp::Sum { axes, .. } => gpu.sum_axes(&operand(0)?, shape(0), axes, &mut y)?,
            TensorOp::SumTo => gpu.sum_to(&operand(0)?, shape(0), &node.shape, &mut y)?,
            TensorOp::BroadcastTo => {
                gpu.broadcast_to(&operand(0)?, shape(0), &node.shape, &mut y)?
            }
            TensorOp::Softmax { axis } | TensorOp::LogSoftmax { axis } => {
                let d = shape(0).dims();
                let around = (
                    d[..*axis].iter().product(),
                    d[*axis],
                    d[*axis + 1..].iter().product(),
                );
                let log = matches!(node.op, TensorOp::LogSoftmax { .. });
                gpu.softmax(&operand(0)?, &mut y, around, log)?;
            }
            TensorOp::CrossEntropy => {
                let rows_cols = matrix_view(shape(0));
                gpu.cross_entropy(&operand(0)?, &operand(1)?, &mut y, rows_cols)?;
            }
            TensorOp::Mse => gpu.mse(&operand(0)?, &operand(1)?, &mut y, shape(0).numel())?,
            TensorOp::Transpose { perm } => gpu.transpose(&operand(0)?, shape(0), perm, &mut y)?,
            TensorOp::Slice { axis, start, end } => {
                let len = end - start;
                let args = crate::layout::copy_args(shape(0), *axis, *start, len, len, 0)?;
                gpu.copy_along(&operand(0)?, &mut y, &args)?;
            }
            TensorOp::Pad {
                axis,
                before,
                after,
            } => gpu.pad(&operand(0)?, shape(0), *axis, (*before, *after), &mut y)?,
            TensorOp::Concat { axis } => {
                let extent = node.shape.dims()[*axis];
                let mut at = 0;
                for k in 0..node.inputs.len() {
                    let len = shape(k).dims()[*axis];
                    let args = crate::layout::copy_args(shape(k), *axis, 0, len, extent, at)?;
                    gpu.copy_along(&operand(k)?, &mut y, &args)?;
                    at += len;
                }
            }
            op => return Err(no_kernel(op)),
        }
        Ok(())
    }

    /// `y = op(a) op(b)` of row-major matrices on cuBLAS: as column-major
    /// matrices they are their transposes, so cuBLAS computes
    /// `y^T = op(b)^T op(a)^T`.
    fn matmul(
        &self,
        (a, sa, trans_a): (&CudaView<'_, f32>, &Shape, bool),
        (b, sb, trans_b): (&CudaView<'_, f32>, &Shape, bool),
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), GpuProgramError> {
        let (ar, ac) = (sa.dims()[0], sa.dims()[1]);
        let (br, bc) = (sb.dims()[0], sb.dims()[1]);
        let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
        let n = if trans_b { br } else { bc };
        let op = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let cfg = GemmConfig {
            transa: op(trans_b),
            transb: op(trans_a),
            m: n as i32,
            n: m as i32,
            k: k as i32,
            alpha: 1.0f32,
            lda: bc as i32,
            ldb: ac as i32,
            beta: 0.0f32,
            ldc: n as i32,
        };
        // SAFETY: the graph's shape inference checked `op(a) op(b)`; each
        // view holds its operand's elements and `y` the m x n result.
        unsafe { self.gpu.blas.gemm(cfg, b, a, y) }.map_err(call)?;
        Ok(())
    }
}
