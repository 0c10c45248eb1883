//! Softmax, log-softmax and the two losses of the IR on the GPU, as CUDA C.
//!
//! The tensor ops that are not elementwise chains ([`codegen`](crate::codegen)
//! covers those) nor matrix products (cuBLAS): [`SOURCE`] holds one kernel
//! per op, each the same formula as the CPU kernels of
//! `dagger_tensor::cpu::kernels` (the reference its CPU check compares
//! with, `tests/softmax_on_cpu.rs`):
//! - `dagger_softmax`: softmax or log-softmax along an axis of a tensor seen
//!   as `outer x len x inner`, one thread per `(outer, inner)` pair, max
//!   subtracted first;
//! - `dagger_cross_entropy`: the mean over rows of `-sum(target *
//!   log_softmax(logits))`, one thread per row, each adding its share to
//!   the (zeroed) scalar result;
//! - `dagger_mse`: the mean of `(a - b)^2`, a grid-stride loop per thread.
//!
//! NVRTC compiles the source once per device (the kernel cache of
//! [`GpuDevice`]); [`GpuDevice::softmax`], [`GpuDevice::cross_entropy`] and
//! [`GpuDevice::mse`] launch them on stream 0.

use crate::codegen::BLOCK;
use crate::{call, CudaError, GpuDevice};
use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

/// The kernels' CUDA C.
pub const SOURCE: &str = r#"
extern "C" __global__ void dagger_softmax(const float* __restrict__ x, float* __restrict__ y,
        unsigned long long outer, unsigned long long len, unsigned long long inner, int log_out) {
    unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= outer * inner) return;
    unsigned long long base = (t / inner) * len * inner + t % inner;
    float m = __int_as_float(0xff800000); // -infinity (NVRTC has no INFINITY)
    for (unsigned long long j = 0; j < len; j++) m = fmaxf(m, x[base + j * inner]);
    float s = 0.0f;
    for (unsigned long long j = 0; j < len; j++) s += expf(x[base + j * inner] - m);
    if (log_out) {
        float lse = logf(s);
        for (unsigned long long j = 0; j < len; j++) y[base + j * inner] = x[base + j * inner] - m - lse;
    } else {
        for (unsigned long long j = 0; j < len; j++) y[base + j * inner] = expf(x[base + j * inner] - m) / s;
    }
}

extern "C" __global__ void dagger_cross_entropy(const float* __restrict__ z, const float* __restrict__ target,
        float* __restrict__ out, unsigned long long rows, unsigned long long cols) {
    unsigned long long r = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* zr = z + r * cols;
    const float* tr = target + r * cols;
    float m = __int_as_float(0xff800000); // -infinity (NVRTC has no INFINITY)
    for (unsigned long long c = 0; c < cols; c++) m = fmaxf(m, zr[c]);
    float s = 0.0f;
    for (unsigned long long c = 0; c < cols; c++) s += expf(zr[c] - m);
    float lse = m + logf(s);
    float loss = 0.0f;
    for (unsigned long long c = 0; c < cols; c++) loss -= tr[c] * (zr[c] - lse);
    atomicAdd(out, loss / (float)rows);
}

extern "C" __global__ void dagger_mse(const float* __restrict__ a, const float* __restrict__ b,
        float* __restrict__ out, unsigned long long n) {
    unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    float partial = 0.0f;
    for (unsigned long long i = t; i < n; i += stride) {
        float d = a[i] - b[i];
        partial += d * d;
    }
    atomicAdd(out, partial / (float)n);
}
"#;

/// Blocks of a launch with one thread per item (at least one block).
pub fn blocks_for(items: usize) -> u32 {
    (items.max(1) as u32).div_ceil(BLOCK)
}

/// Blocks of a grid-stride launch over `items` (enough to fill a GPU).
pub fn blocks_striding(items: usize) -> u32 {
    blocks_for(items.min(1 << 16))
}

fn config(blocks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn check_len(what: &str, got: usize, want: usize) -> Result<(), CudaError> {
    if got < want {
        return Err(CudaError::Call(format!(
            "{what}: a buffer of {got} values for {want}"
        )));
    }
    Ok(())
}

impl GpuDevice {
    /// Softmax (log-softmax with `log`) of `x`, seen as `outer x len x
    /// inner`, along its middle axis, into `y`.
    pub fn softmax(
        &self,
        x: &CudaView<'_, f32>,
        y: &mut CudaViewMut<'_, f32>,
        (outer, len, inner): (usize, usize, usize),
        log: bool,
    ) -> Result<(), CudaError> {
        let n = outer * len * inner;
        check_len("softmax input", x.len(), n)?;
        check_len("softmax output", y.len(), n)?;
        let f = self.library_function(SOURCE, "dagger_softmax")?;
        let (outer, len, inner, log) = (outer as u64, len as u64, inner as u64, log as i32);
        let mut launch = self.stream(0).launch_builder(&f);
        launch
            .arg(x)
            .arg(y)
            .arg(&outer)
            .arg(&len)
            .arg(&inner)
            .arg(&log);
        // SAFETY: the buffers hold the `outer * len * inner` values the
        // kernel reads and writes; the arguments match its parameters.
        unsafe { launch.launch(config(blocks_for((outer * inner) as usize))) }.map_err(call)?;
        Ok(())
    }

    /// `out[0]` := the mean over the `rows` rows of `-sum(target *
    /// log_softmax(z))` (rows of `cols` values).
    pub fn cross_entropy(
        &self,
        z: &CudaView<'_, f32>,
        target: &CudaView<'_, f32>,
        out: &mut CudaViewMut<'_, f32>,
        (rows, cols): (usize, usize),
    ) -> Result<(), CudaError> {
        check_len("cross-entropy logits", z.len(), rows * cols)?;
        check_len("cross-entropy target", target.len(), rows * cols)?;
        check_len("cross-entropy result", out.len(), 1)?;
        let f = self.library_function(SOURCE, "dagger_cross_entropy")?;
        let stream = self.stream(0);
        stream.memset_zeros(out).map_err(call)?;
        let (r, c) = (rows as u64, cols as u64);
        let mut launch = stream.launch_builder(&f);
        launch.arg(z).arg(target).arg(out).arg(&r).arg(&c);
        // SAFETY: as in `softmax`.
        unsafe { launch.launch(config(blocks_for(rows))) }.map_err(call)?;
        Ok(())
    }

    /// `out[0]` := the mean of `(a - b)^2` over `n` values.
    pub fn mse(
        &self,
        a: &CudaView<'_, f32>,
        b: &CudaView<'_, f32>,
        out: &mut CudaViewMut<'_, f32>,
        n: usize,
    ) -> Result<(), CudaError> {
        check_len("mse operand", a.len().min(b.len()), n)?;
        check_len("mse result", out.len(), 1)?;
        let f = self.library_function(SOURCE, "dagger_mse")?;
        let stream = self.stream(0);
        stream.memset_zeros(out).map_err(call)?;
        let count = n as u64;
        let mut launch = stream.launch_builder(&f);
        launch.arg(a).arg(b).arg(out).arg(&count);
        // SAFETY: as in `softmax`.
        unsafe { launch.launch(config(blocks_striding(n))) }.map_err(call)?;
        Ok(())
    }
}
