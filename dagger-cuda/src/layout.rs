//! Transposes, broadcasts, sums over axes and window copies on the GPU, as
//! CUDA C.
//!
//! The tensor ops that move or reduce elements without arithmetic across
//! them: [`SOURCE`] holds three kernels, each the same index arithmetic as
//! the CPU kernels of `dagger_tensor::cpu::kernels` (the reference its
//! CPU check compares with, `tests/layout_on_cpu.rs`):
//! - `dagger_permute`: `y[i] = x[offset(i)]`, where `offset` reads the
//!   coordinates of output element `i` (row-major over `dims`) and adds
//!   `coordinate * stride` over the axes. With the input's strides
//!   permuted it is a transpose; with stride 0 along the axes the input
//!   repeats it is a broadcast ([`permute_args`], [`broadcast_args`]);
//! - `dagger_copy_along`: the operand seen as `outer x a_extent x inner`,
//!   the output as `outer x out_extent x inner`; a window of `len` along the
//!   middle axis is copied from `a_start` to `out_start`. Slice, pad (after
//!   zeroing the output) and concatenation (one copy per operand) are all
//!   this copy ([`copy_args`]);
//! - `dagger_sum_to`: the reverse of a broadcast. The input's axes split
//!   into kept ones (the output's) and reduced ones (where the output has
//!   extent 1 or no axis at all); each output element is one thread that
//!   walks its reduced axes in row-major order and adds up. No atomics: the
//!   sums are deterministic, in the CPU kernel's order. Summing over axes is
//!   the same kernel, with the target shape the input's with those axes set
//!   to 1 ([`sum_to_args`], [`sum_axes_args`]); dropping the axes instead
//!   (`keep_dims = false`) leaves the elements in the same order.
//!
//! Shapes and strides travel to the kernels by value, as a `Shape8` (a C
//! struct of [`MAX_RANK`] = 8 extents, [`Shape8`] here). The launch
//! parameters come from pure functions of the shapes, which the CPU check
//! calls too. The operand and result must not overlap (`__restrict__`).
//!
//! Every kernel is a grid-stride loop, bounds-checked, with 64-bit indices.
//! NVRTC compiles the source once per device (the kernel cache of
//! [`GpuDevice`]); [`GpuDevice::transpose`], [`GpuDevice::broadcast_to`],
//! [`GpuDevice::sum_to`], [`GpuDevice::sum_axes`],
//! [`GpuDevice::copy_along`] and [`GpuDevice::pad`] launch them on stream 0.

use crate::codegen::BLOCK;
use crate::softmax::blocks_striding;
use crate::{call, CudaError, GpuDevice};
use cudarc::driver::{CudaView, CudaViewMut, DeviceRepr, LaunchConfig, PushKernelArg};
use dagger_tensor::shape::broadcasts_to;
use dagger_tensor::{Shape, MAX_RANK};

/// The kernels' CUDA C.
pub const SOURCE: &str = r#"
struct Shape8 { unsigned long long d[8]; };

// Offset, in a tensor read with `strides`, of element `i` of a row-major
// tensor of extents `dims` (`rank` axes).
__device__ unsigned long long dagger_offset(unsigned long long i, const Shape8& dims,
        const Shape8& strides, int rank) {
    unsigned long long at = 0;
    for (int a = rank - 1; a >= 0; a--) {
        at += (i % dims.d[a]) * strides.d[a];
        i /= dims.d[a];
    }
    return at;
}

extern "C" __global__ void dagger_permute(const float* __restrict__ x, float* __restrict__ y,
        Shape8 dims, Shape8 strides, int rank, unsigned long long n) {
    unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        y[i] = x[dagger_offset(i, dims, strides, rank)];
}

extern "C" __global__ void dagger_copy_along(const float* __restrict__ x, float* __restrict__ y,
        unsigned long long outer, unsigned long long len, unsigned long long inner,
        unsigned long long a_extent, unsigned long long a_start,
        unsigned long long out_extent, unsigned long long out_start) {
    unsigned long long n = outer * len * inner;
    unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        unsigned long long k = i % inner, row = i / inner;
        unsigned long long j = row % len, o = row / len;
        y[(o * out_extent + out_start + j) * inner + k] = x[(o * a_extent + a_start + j) * inner + k];
    }
}

extern "C" __global__ void dagger_sum_to(const float* __restrict__ x, float* __restrict__ y,
        Shape8 out_dims, Shape8 out_strides, int out_rank,
        Shape8 red_dims, Shape8 red_strides, int red_rank,
        unsigned long long n, unsigned long long m) {
    unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        unsigned long long base = dagger_offset(i, out_dims, out_strides, out_rank);
        float s = 0.0f;
        for (unsigned long long r = 0; r < m; r++) s += x[base + dagger_offset(r, red_dims, red_strides, red_rank)];
        y[i] = s;
    }
}
"#;

// The C struct holds 8 extents.
const _: () = assert!(MAX_RANK == 8);

/// Up to [`MAX_RANK`] extents or strides, passed to a kernel by value as
/// the C struct `Shape8` (unused entries are 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape8 {
    /// The values, axis by axis.
    pub d: [u64; MAX_RANK],
}

// SAFETY: `#[repr(C)]` array of u64, the layout of the C struct
// `{ unsigned long long d[8]; }`; every bit pattern is valid.
unsafe impl DeviceRepr for Shape8 {}

impl Shape8 {
    /// The first `values.len()` (at most [`MAX_RANK`]) entries set.
    fn of(values: &[usize]) -> Shape8 {
        let mut d = [0; MAX_RANK];
        for (slot, &v) in d.iter_mut().zip(values) {
            *slot = v as u64;
        }
        Shape8 { d }
    }

    /// The value as a C++ expression, `Shape8{{1ULL, 2ULL, ...}}`.
    pub fn c_literal(&self) -> String {
        let values: Vec<String> = self.d.iter().map(|v| format!("{v}ULL")).collect();
        format!("Shape8{{{{{}}}}}", values.join(", "))
    }
}

/// The parameters of `dagger_permute` after the two buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermuteArgs {
    /// The output's extents.
    pub dims: Shape8,
    /// For each output axis, the stride to read the input with.
    pub strides: Shape8,
    /// The output's rank.
    pub rank: i32,
    /// The output's number of elements.
    pub n: u64,
}

/// The parameters of `dagger_sum_to` after the two buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SumArgs {
    /// Extents of the kept axes (the output's, in order).
    pub out_dims: Shape8,
    /// The input's strides along the kept axes.
    pub out_strides: Shape8,
    /// Number of kept axes.
    pub out_rank: i32,
    /// Extents of the reduced axes.
    pub red_dims: Shape8,
    /// The input's strides along the reduced axes.
    pub red_strides: Shape8,
    /// Number of reduced axes.
    pub red_rank: i32,
    /// The output's number of elements.
    pub n: u64,
    /// Input elements summed into each output element.
    pub m: u64,
}

/// The parameters of `dagger_copy_along` after the two buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyArgs {
    /// Product of the extents before the axis.
    pub outer: u64,
    /// Length of the copied window along the axis.
    pub len: u64,
    /// Product of the extents after the axis.
    pub inner: u64,
    /// The operand's extent along the axis.
    pub a_extent: u64,
    /// Where the window starts in the operand.
    pub a_start: u64,
    /// The output's extent along the axis.
    pub out_extent: u64,
    /// Where the window goes in the output.
    pub out_start: u64,
}

impl CopyArgs {
    /// Elements copied (one thread each).
    pub fn copied(&self) -> usize {
        (self.outer * self.len * self.inner) as usize
    }

    /// Elements of the operand.
    pub fn in_len(&self) -> usize {
        (self.outer * self.a_extent * self.inner) as usize
    }

    /// Elements of the output.
    pub fn out_len(&self) -> usize {
        (self.outer * self.out_extent * self.inner) as usize
    }
}

fn invalid(op: &str, why: String) -> CudaError {
    CudaError::Call(format!("{op}: {why}"))
}

fn check_rank(op: &str, shape: &Shape) -> Result<(), CudaError> {
    if shape.rank() > MAX_RANK {
        return Err(invalid(
            op,
            format!("rank {} above {MAX_RANK} ({shape})", shape.rank()),
        ));
    }
    Ok(())
}

/// Launch parameters of a transpose of a tensor of `shape` by `perm`
/// (output axis `i` is input axis `perm[i]`).
pub fn permute_args(shape: &Shape, perm: &[usize]) -> Result<PermuteArgs, CudaError> {
    check_rank("transpose", shape)?;
    let mut seen = [false; MAX_RANK];
    let valid = perm.len() == shape.rank()
        && perm
            .iter()
            .all(|&p| p < perm.len() && !std::mem::replace(&mut seen[p], true));
    if !valid {
        return Err(invalid(
            "transpose",
            format!("{perm:?} is not a permutation of the axes of {shape}"),
        ));
    }
    let own = shape.strides();
    let dims: Vec<usize> = perm.iter().map(|&p| shape.dims()[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| own[p]).collect();
    Ok(PermuteArgs {
        dims: Shape8::of(&dims),
        strides: Shape8::of(&strides),
        rank: perm.len() as i32,
        n: shape.numel() as u64,
    })
}

/// Launch parameters of the broadcast of a tensor of shape `from` to `to`.
pub fn broadcast_args(from: &Shape, to: &Shape) -> Result<PermuteArgs, CudaError> {
    check_rank("broadcast_to", to)?;
    if !broadcasts_to(from, to) {
        return Err(invalid(
            "broadcast_to",
            format!("{from} does not broadcast to {to}"),
        ));
    }
    let (own, lead) = (from.strides(), to.rank() - from.rank());
    let strides: Vec<usize> = (0..to.rank())
        .map(|axis| match axis.checked_sub(lead) {
            Some(a) if from.dims()[a] != 1 => own[a],
            _ => 0,
        })
        .collect();
    Ok(PermuteArgs {
        dims: Shape8::of(to.dims()),
        strides: Shape8::of(&strides),
        rank: to.rank() as i32,
        n: to.numel() as u64,
    })
}

/// Launch parameters of the sum of a tensor of shape `from` into shape
/// `to` (which broadcasts to `from`).
pub fn sum_to_args(from: &Shape, to: &Shape) -> Result<SumArgs, CudaError> {
    check_rank("sum_to", from)?;
    if !broadcasts_to(to, from) {
        return Err(invalid(
            "sum_to",
            format!("{to} does not broadcast to {from}"),
        ));
    }
    let (own, lead) = (from.strides(), from.rank() - to.rank());
    let (mut kept, mut reduced) = ((vec![], vec![]), (vec![], vec![]));
    for (axis, &extent) in from.dims().iter().enumerate() {
        let target = axis.checked_sub(lead).map_or(1, |a| to.dims()[a]);
        // Axes of extent 1 add nothing to either side.
        if extent == 1 {
            continue;
        }
        let side = if target == extent {
            &mut kept
        } else {
            &mut reduced
        };
        side.0.push(extent);
        side.1.push(own[axis]);
    }
    Ok(SumArgs {
        out_dims: Shape8::of(&kept.0),
        out_strides: Shape8::of(&kept.1),
        out_rank: kept.0.len() as i32,
        red_dims: Shape8::of(&reduced.0),
        red_strides: Shape8::of(&reduced.1),
        red_rank: reduced.0.len() as i32,
        n: to.numel() as u64,
        m: reduced.0.iter().product::<usize>() as u64,
    })
}

/// Launch parameters of the sum of a tensor of `shape` over `axes`.
pub fn sum_axes_args(shape: &Shape, axes: &[usize]) -> Result<SumArgs, CudaError> {
    if let Some(&axis) = axes.iter().find(|&&a| a >= shape.rank()) {
        return Err(invalid("sum_axes", format!("no axis {axis} in {shape}")));
    }
    sum_to_args(shape, &shape.reduced_keep(axes))
}

/// Launch parameters of the copy of the window `a_start..a_start + len`
/// along `axis` of a tensor of `a_shape` to `out_start..` along the same
/// axis of an output whose extent there is `out_extent` (and elsewhere
/// `a_shape`'s).
pub fn copy_args(
    a_shape: &Shape,
    axis: usize,
    a_start: usize,
    len: usize,
    out_extent: usize,
    out_start: usize,
) -> Result<CopyArgs, CudaError> {
    let Some(&a_extent) = a_shape.dims().get(axis) else {
        return Err(invalid(
            "copy_along",
            format!("no axis {axis} in {a_shape}"),
        ));
    };
    if a_start + len > a_extent || out_start + len > out_extent {
        return Err(invalid(
            "copy_along",
            format!(
                "window of {len} at {a_start} of {a_extent} to {out_start} of {out_extent} \
                 along axis {axis} of {a_shape}"
            ),
        ));
    }
    let d = a_shape.dims();
    let as_u64 = |v: usize| v as u64;
    Ok(CopyArgs {
        outer: as_u64(d[..axis].iter().product()),
        len: as_u64(len),
        inner: as_u64(d[axis + 1..].iter().product()),
        a_extent: as_u64(a_extent),
        a_start: as_u64(a_start),
        out_extent: as_u64(out_extent),
        out_start: as_u64(out_start),
    })
}

fn config(items: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks_striding(items), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn check_len(op: &str, what: &str, got: usize, want: usize) -> Result<(), CudaError> {
    if got < want {
        return Err(invalid(
            op,
            format!("a {what} buffer of {got} values for {want}"),
        ));
    }
    Ok(())
}

impl GpuDevice {
    /// `y` := `x` (of `shape`) with its axes permuted by `perm`.
    pub fn transpose(
        &self,
        x: &CudaView<'_, f32>,
        shape: &Shape,
        perm: &[usize],
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), CudaError> {
        let args = permute_args(shape, perm)?;
        self.permute("transpose", x, shape.numel(), y, &args)
    }

    /// `y` (of shape `to`) := `x` (of shape `from`) repeated along the axes
    /// it broadcasts along.
    pub fn broadcast_to(
        &self,
        x: &CudaView<'_, f32>,
        from: &Shape,
        to: &Shape,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), CudaError> {
        let args = broadcast_args(from, to)?;
        self.permute("broadcast_to", x, from.numel(), y, &args)
    }

    fn permute(
        &self,
        op: &str,
        x: &CudaView<'_, f32>,
        x_len: usize,
        y: &mut CudaViewMut<'_, f32>,
        args: &PermuteArgs,
    ) -> Result<(), CudaError> {
        let n = args.n as usize;
        check_len(op, "input", x.len(), x_len)?;
        check_len(op, "output", y.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        let f = self.library_function(SOURCE, "dagger_permute")?;
        let mut launch = self.stream(0).launch_builder(&f);
        launch
            .arg(x)
            .arg(y)
            .arg(&args.dims)
            .arg(&args.strides)
            .arg(&args.rank)
            .arg(&args.n);
        // SAFETY: `y` holds the `n` values written; every offset read is
        // below `x_len` (the strides and extents come from the input's
        // shape); the arguments match the kernel's parameters.
        unsafe { launch.launch(config(n)) }.map_err(call)?;
        Ok(())
    }

    /// `y` (of shape `to`) := `x` (of shape `from`) summed over the axes
    /// `to` broadcasts along (`to` may have fewer axes, aligned at the
    /// last).
    pub fn sum_to(
        &self,
        x: &CudaView<'_, f32>,
        from: &Shape,
        to: &Shape,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), CudaError> {
        let args = sum_to_args(from, to)?;
        self.sum("sum_to", x, from.numel(), y, &args)
    }

    /// `y` := `x` (of `shape`) summed over `axes` (kept as extent 1 or
    /// dropped: the same elements in the same order).
    pub fn sum_axes(
        &self,
        x: &CudaView<'_, f32>,
        shape: &Shape,
        axes: &[usize],
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), CudaError> {
        let args = sum_axes_args(shape, axes)?;
        self.sum("sum_axes", x, shape.numel(), y, &args)
    }

    fn sum(
        &self,
        op: &str,
        x: &CudaView<'_, f32>,
        x_len: usize,
        y: &mut CudaViewMut<'_, f32>,
        args: &SumArgs,
    ) -> Result<(), CudaError> {
        let n = args.n as usize;
        check_len(op, "input", x.len(), x_len)?;
        check_len(op, "output", y.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        let f = self.library_function(SOURCE, "dagger_sum_to")?;
        let mut launch = self.stream(0).launch_builder(&f);
        launch
            .arg(x)
            .arg(y)
            .arg(&args.out_dims)
            .arg(&args.out_strides)
            .arg(&args.out_rank)
            .arg(&args.red_dims)
            .arg(&args.red_strides)
            .arg(&args.red_rank)
            .arg(&args.n)
            .arg(&args.m);
        // SAFETY: as in `permute`: `n` values written, offsets read below
        // `x_len`.
        unsafe { launch.launch(config(n)) }.map_err(call)?;
        Ok(())
    }

    /// Copies the window of `args` (from [`copy_args`]) of `x` into `y`;
    /// the rest of `y` is left as it is.
    pub fn copy_along(
        &self,
        x: &CudaView<'_, f32>,
        y: &mut CudaViewMut<'_, f32>,
        args: &CopyArgs,
    ) -> Result<(), CudaError> {
        check_len("copy_along", "input", x.len(), args.in_len())?;
        check_len("copy_along", "output", y.len(), args.out_len())?;
        if args.copied() == 0 {
            return Ok(());
        }
        let f = self.library_function(SOURCE, "dagger_copy_along")?;
        let mut launch = self.stream(0).launch_builder(&f);
        launch
            .arg(x)
            .arg(y)
            .arg(&args.outer)
            .arg(&args.len)
            .arg(&args.inner)
            .arg(&args.a_extent)
            .arg(&args.a_start)
            .arg(&args.out_extent)
            .arg(&args.out_start);
        // SAFETY: `copy_args` keeps both windows within their extents and
        // the checks above the buffers' lengths; the arguments match the
        // kernel's parameters.
        unsafe { launch.launch(config(args.copied())) }.map_err(call)?;
        Ok(())
    }

    /// `y` := `x` (of `shape`) with `before` and `after` zeros added along
    /// `axis`.
    pub fn pad(
        &self,
        x: &CudaView<'_, f32>,
        shape: &Shape,
        axis: usize,
        (before, after): (usize, usize),
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<(), CudaError> {
        let Some(&extent) = shape.dims().get(axis) else {
            return Err(invalid("pad", format!("no axis {axis} in {shape}")));
        };
        let args = copy_args(shape, axis, 0, extent, before + extent + after, before)?;
        check_len("pad", "output", y.len(), args.out_len())?;
        self.stream(0)
            .memset_zeros(&mut y.slice_mut(..args.out_len()))
            .map_err(call)?;
        self.copy_along(x, y, &args)
    }
}
