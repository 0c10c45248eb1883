//! [`Program`]: a tensor graph compiled for the CPU and ready to run.
//!
//! Compiling runs the IR passes (dead-node elimination, elementwise fusion,
//! memory planning), JIT-compiles every fused kernel with Cranelift and
//! allocates the planned buffers once. A run then walks the nodes in order,
//! calling the kernels on fixed buffers, and applies the parameter updates:
//! it allocates nothing.

use super::collective::RingLink;
use super::jit::{Jit, JitError, KernelFn};
use super::kernels::{self, Elementwise};
use super::reducer::{Buckets, Reducer, Reducers};
use crate::{
    optimize, plan_memory, unplanned_bytes, FuseOptions, FusedLayout, MemoryPlan, ParallelGroup,
    Shape, Tensor, TensorError, TensorGraph, TensorOp,
};

/// How to compile a tensor graph.
#[derive(Clone, Copy, Debug, Default)]
pub struct CompileOptions {
    /// Options of the fusion pass (`max_ops: 1` compiles one kernel per op).
    pub fuse: FuseOptions,
}

/// What compiling did, for reports and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// Nodes after the passes.
    pub nodes: usize,
    /// JIT-compiled elementwise kernels.
    pub kernels: usize,
    /// Elementwise ops inside them.
    pub fused_ops: usize,
    /// Bytes of the planned buffers.
    pub planned_bytes: usize,
    /// Bytes with one buffer per value.
    pub unplanned_bytes: usize,
}

/// Why a graph could not be compiled or run.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// The graph is wrong, or was fed wrong data.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The JIT failed.
    #[error(transparent)]
    Jit(#[from] JitError),
}

/// A fused node's compiled kernel and its fixed arguments.
struct FusedCall {
    kernel: KernelFn,
    /// The kernel adds into its result (column and total sums): zero it first.
    accumulates: bool,
    rows: usize,
    cols: usize,
    operands: Vec<*const f32>,
}

/// A compiled tensor graph (see the [module docs](self)).
pub struct Program {
    graph: TensorGraph,
    plan: MemoryPlan,
    buffers: Vec<Box<[f32]>>,
    fused: Vec<Option<FusedCall>>,
    fed: Vec<bool>,
    stats: ProgramStats,
    buckets: Buckets,
    reducers: Reducers,
    // Owns the code the kernel pointers point into; declared last so it is
    // dropped after them.
    _jit: Jit,
}

// SAFETY: the raw pointers point into `buffers` and `_jit`, which the
// program owns and moves with it; nothing is shared with other threads.
unsafe impl Send for Program {}

impl Program {
    /// Compiles `graph` (see the [module docs](self)).
    pub fn compile(graph: &TensorGraph, options: CompileOptions) -> Result<Program, ProgramError> {
        let (g, report) = optimize(graph, options.fuse);
        if let Some(node) = g.nodes().iter().find(|n| n.shape.rank() > crate::MAX_RANK) {
            return Err(TensorError::Shape {
                op: node.op.to_string(),
                detail: format!(
                    "shape {} has more than {} axes, the most the CPU kernels take",
                    node.shape,
                    crate::MAX_RANK
                ),
            }
            .into());
        }
        let plan = plan_memory(&g);
        let buckets = Buckets::of(&g)?;
        let mut buffers: Vec<Box<[f32]>> = plan
            .sizes
            .iter()
            .map(|&n| vec![0.0f32; n].into_boxed_slice())
            .collect();
        for (i, node) in g.nodes().iter().enumerate() {
            if let TensorOp::Const { value } = node.op {
                buffers[plan.buffer_of[i]].fill(value);
            }
        }
        let ptr = |buffers: &mut Vec<Box<[f32]>>, v: Tensor| {
            buffers[plan.buffer_of[v.index()]].as_mut_ptr()
        };
        let mut jit = Jit::new()?;
        let mut pending = Vec::new();
        for (i, node) in g.nodes().iter().enumerate() {
            let TensorOp::Fused(kernel) = &node.op else {
                continue;
            };
            let operand_shapes: Vec<&Shape> = node.inputs.iter().map(|&v| g.shape(v)).collect();
            let layout = FusedLayout::of(kernel, &node.shape, &operand_shapes)
                .expect("fusion checked the patterns");
            let operands = node
                .inputs
                .iter()
                .map(|&v| ptr(&mut buffers, v) as *const f32)
                .collect();
            let k = jit.declare(kernel, &layout.patterns)?;
            pending.push((i, k, layout, operands));
        }
        let compiled = jit.finish()?;
        let mut fused: Vec<Option<FusedCall>> = (0..g.nodes().len()).map(|_| None).collect();
        for (i, k, layout, operands) in pending {
            fused[i] = Some(FusedCall {
                kernel: compiled[k],
                accumulates: layout.accumulates,
                rows: layout.rows,
                cols: layout.cols,
                operands,
            });
        }
        let stats = ProgramStats {
            nodes: g.nodes().len(),
            kernels: report.kernels,
            fused_ops: report.ops,
            planned_bytes: plan.bytes(),
            unplanned_bytes: unplanned_bytes(&g),
        };
        Ok(Program {
            fed: vec![false; g.nodes().len()],
            graph: g,
            plan,
            buffers,
            fused,
            stats,
            buckets,
            reducers: [None, None],
            _jit: jit,
        })
    }

    /// Makes this program one worker of the ring `link` for `group`: its
    /// all-reduce nodes of that group reduce over the ring's workers, on a
    /// thread of their own that overlaps the rest of each run. Without a
    /// ring they return their operand (the reduction over one worker).
    pub fn set_ring(&mut self, group: ParallelGroup, link: Box<dyn RingLink>) {
        self.reducers[group.index()] = Some(Reducer::start(link));
    }

    /// Gives every worker of the data-parallel ring its worker 0's
    /// parameters (do it once, after initializing them, so that all
    /// replicas start equal).
    pub fn broadcast_params(&mut self) -> Result<(), TensorError> {
        let Some(reducer) = &self.reducers[ParallelGroup::Data.index()] else {
            return Ok(());
        };
        let params: Vec<Tensor> = self.graph.params();
        let mut all = Vec::new();
        for &p in &params {
            all.extend_from_slice(self.data(p));
        }
        let all = reducer.broadcast(all)?;
        let mut at = 0;
        for &p in &params {
            let n = self.graph.shape(p).numel();
            let b = self.plan.buffer_of[p.index()];
            self.buffers[b][..n].copy_from_slice(&all[at..at + n]);
            at += n;
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

    fn data(&self, v: Tensor) -> &[f32] {
        &self.buffers[self.plan.buffer_of[v.index()]][..self.graph.shape(v).numel()]
    }

    /// Feeds an input, or sets a parameter, by name.
    pub fn set(&mut self, name: &str, data: &[f32]) -> Result<(), TensorError> {
        let v = self.graph.lookup_for(name, data.len())?;
        let b = self.plan.buffer_of[v.index()];
        self.buffers[b][..data.len()].copy_from_slice(data);
        self.fed[v.index()] = true;
        Ok(())
    }

    /// The current value of an input or parameter.
    pub fn get(&self, name: &str) -> Result<&[f32], TensorError> {
        Ok(self.data(self.graph.lookup(name)?))
    }

    /// The `k`-th output of the last run.
    pub fn output(&self, k: usize) -> &[f32] {
        self.data(self.graph.outputs()[k])
    }

    /// The parameters: name, shape and current value, in graph order.
    pub fn params(&self) -> Vec<(&str, &Shape, &[f32])> {
        self.graph
            .named()
            .filter(|(_, _, n)| matches!(n.op, TensorOp::Param { .. }))
            .map(|(v, name, n)| (name, &n.shape, self.data(v)))
            .collect()
    }

    /// Runs the graph once, then applies its parameter updates.
    pub fn run(&mut self) -> Result<(), TensorError> {
        self.graph.check_fed(&self.fed)?;
        self.buckets.reset();
        for i in 0..self.graph.nodes().len() {
            if let TensorOp::AllReduce { .. } = self.graph.nodes()[i].op {
                let out = self.buffers[self.plan.buffer_of[i]].as_mut_ptr();
                let reduced = self.buckets.reduced(i, &self.reducers)?;
                // SAFETY: the node's own buffer holds at least its elements,
                // and the bucket's staging buffer is not one of the program's.
                unsafe { std::ptr::copy_nonoverlapping(reduced.as_ptr(), out, reduced.len()) };
            } else {
                self.run_node(i)?;
            }
            let (graph, plan, buffers) = (&self.graph, &self.plan, &self.buffers);
            let data = |v: Tensor| &buffers[plan.buffer_of[v.index()]][..graph.shape(v).numel()];
            self.buckets.after_node(i, &self.reducers, data)?;
        }
        for k in 0..self.graph.updates().len() {
            let (p, v) = self.graph.updates()[k];
            let (bp, bv) = (
                self.plan.buffer_of[p.index()],
                self.plan.buffer_of[v.index()],
            );
            let n = self.graph.shape(p).numel();
            if bp != bv {
                let (src, dst) = (self.buffers[bv].as_ptr(), self.buffers[bp].as_mut_ptr());
                // SAFETY: distinct buffers, both at least n long.
                unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
            }
        }
        Ok(())
    }

    fn run_node(&mut self, i: usize) -> Result<(), TensorError> {
        let node = &self.graph.nodes()[i];
        let out_ptr = self.buffers[self.plan.buffer_of[i]].as_mut_ptr();
        let out_len = node.shape.numel();
        if let Some(call) = &self.fused[i] {
            if call.accumulates {
                // SAFETY: the node's own buffer, at least out_len long.
                unsafe { std::slice::from_raw_parts_mut(out_ptr, out_len) }.fill(0.0);
            }
            // SAFETY: the pointers were taken from this program's buffers,
            // sized by the plan; the kernel reads/writes within rows x cols.
            unsafe { (call.kernel)(call.rows, call.cols, call.operands.as_ptr(), out_ptr) };
            return Ok(());
        }
        let operand = |k: usize| -> (&[f32], &Shape) {
            let v = node.inputs[k];
            let b = &self.buffers[self.plan.buffer_of[v.index()]];
            // SAFETY: the plan gives a non-elementwise node's result a buffer
            // distinct from its live operands', so this shared view does not
            // overlap the mutable `out` below.
            let s = unsafe { std::slice::from_raw_parts(b.as_ptr(), self.graph.shape(v).numel()) };
            (s, self.graph.shape(v))
        };
        // SAFETY: see above; `out` is this node's own buffer.
        let out = unsafe { std::slice::from_raw_parts_mut(out_ptr, out_len) };
        match &node.op {
            TensorOp::Input { .. }
            | TensorOp::Param { .. }
            | TensorOp::Const { .. }
            | TensorOp::Reshape => {}
            TensorOp::Fused(_) => unreachable!("fused nodes are compiled"),
            TensorOp::AllReduce { .. } => unreachable!("all-reduce nodes are run by `run`"),
            TensorOp::EnterParallel => out.copy_from_slice(operand(0).0),
            TensorOp::Unary(u) => {
                let (a, sa) = operand(0);
                // SAFETY: pointers from the plan's buffers, sized by the shapes.
                unsafe {
                    kernels::elementwise(
                        Elementwise::Unary(*u),
                        &[(a.as_ptr(), sa)],
                        &node.shape,
                        out_ptr,
                    )
                }
            }
            TensorOp::Binary(bop) => {
                let ((a, sa), (b, sb)) = (operand(0), operand(1));
                let ops = [(a.as_ptr(), sa), (b.as_ptr(), sb)];
                // SAFETY: as above.
                unsafe {
                    kernels::elementwise(Elementwise::Binary(*bop), &ops, &node.shape, out_ptr)
                }
            }
            TensorOp::MatMul { trans_a, trans_b } => {
                let ((a, sa), (b, sb)) = (operand(0), operand(1));
                kernels::matmul(a, sa, b, sb, *trans_a, *trans_b, out);
            }
            TensorOp::Sum { axes, .. } => {
                let (a, sa) = operand(0);
                kernels::sum_axes(a, sa, axes, out);
            }
            TensorOp::SumTo => {
                let (a, sa) = operand(0);
                kernels::sum_to(a, sa.dims(), node.shape.dims(), out);
            }
            TensorOp::BroadcastTo => {
                let (a, sa) = operand(0);
                kernels::broadcast_to(a, sa, &node.shape, out);
            }
            TensorOp::Softmax { axis } | TensorOp::LogSoftmax { axis } => {
                let (a, sa) = operand(0);
                kernels::softmax(
                    a,
                    sa,
                    *axis,
                    matches!(node.op, TensorOp::LogSoftmax { .. }),
                    out,
                );
            }
            TensorOp::CrossEntropy => {
                let ((z, sz), (t, _)) = (operand(0), operand(1));
                out[0] = kernels::cross_entropy(z, t, sz);
            }
            TensorOp::Mse => {
                let ((a, _), (b, _)) = (operand(0), operand(1));
                out[0] = kernels::mse(a, b);
            }
            TensorOp::Transpose { perm } => {
                let (a, sa) = operand(0);
                kernels::transpose(a, sa, perm, out);
            }
            TensorOp::Slice { axis, start, end } => {
                let (a, sa) = operand(0);
                kernels::copy_along(a, sa, *axis, *start, end - start, out, end - start, 0);
            }
            TensorOp::Pad { axis, before, .. } => {
                let (a, sa) = operand(0);
                out.fill(0.0);
                let extent = sa.dims()[*axis];
                kernels::copy_along(
                    a,
                    sa,
                    *axis,
                    0,
                    extent,
                    out,
                    node.shape.dims()[*axis],
                    *before,
                );
            }
            TensorOp::Concat { axis } => {
                let mut at = 0;
                for k in 0..node.inputs.len() {
                    let (a, sa) = operand(k);
                    let extent = sa.dims()[*axis];
                    kernels::copy_along(a, sa, *axis, 0, extent, out, node.shape.dims()[*axis], at);
                    at += extent;
                }
            }
            TensorOp::Custom(c) => {
                let operands: Vec<_> = (0..node.inputs.len()).map(operand).collect();
                super::custom::run_custom(c, &operands, &node.shape, out)?;
            }
        }
        Ok(())
    }
}
