//! CUDA GPUs as processors of dagger graphs, through cudarc.
//!
//! cudarc loads the CUDA libraries at run time, so this crate builds and
//! runs on machines without CUDA. Its calls that need the driver panic when
//! `libcuda.so` is absent; every entry point here checks for the library
//! first ([`gpus`] / [`GpuDevice::open`]) and answers
//! [`CudaError::NoDriver`] instead: "no CUDA driver found (libcuda.so is not
//! on this machine)"; what to run instead is the caller's to say.
//!
//! What is here:
//! - device discovery (name, memory) for the platform model ([`gpus`],
//!   [`gpu_processors`]);
//! - a [`GpuDevice`]: its context, a pool of streams with events ordering
//!   them ([`GpuDevice::order`]), a cuBLAS handle, a device memory pool and
//!   pinned staging buffers ([`pool`]), host-device copies, a measurement
//!   of the host-device link for the cost model ([`GpuDevice::measure_host_link`]);
//! - row-major GEMM in f32 and f64 on cuBLAS ([`GpuDevice::gemm`]); the
//!   tile kernels of a tiled Cholesky factorization on cuBLAS and cuSOLVER
//!   ([`tiles`], [`solver`]);
//! - the IR's fused elementwise kernels as CUDA C ([`codegen`]) compiled by
//!   NVRTC and launched ([`GpuDevice::launch_fused`]); softmax, log-softmax,
//!   cross-entropy and MSE as hand-written CUDA C ([`softmax`]);
//! - collectives across GPUs with NCCL ([`nccl`]);
//! - tensor graphs (training steps) compiled for a GPU ([`program`]) behind
//!   the runtime's backend seam ([`backend::CudaBackend`]), their
//!   gradient buckets reduced data-parallel with NCCL or over a host ring
//!   ([`buckets`]);
//! - a lowered training step's segments on GPUs, one per place of the
//!   pipeline or grid ([`segments::CudaSegments`]);
//! - a GPU as a worker of a dagger runtime ([`GpuWorker`]): tasks with a
//!   device body (`#[task(gpu = ...)]`) run there, placed by the schedulers;
//!   values that stay on the GPU between tasks and are copied only where
//!   read, prefetched while the GPU works ([`resident`]).
//!
//! `examples/gpu_gemm.rs` measures GEMM and copies against PyTorch on the
//! same GPU; `examples/cholesky.rs` factors a matrix on cores and GPUs together.

pub mod backend;
pub mod buckets;
pub mod codegen;
pub mod fused;
pub mod layout;
pub mod nccl;
pub mod pool;
pub mod program;
mod program_error;
pub mod resident;
pub mod segments;
pub mod softmax;
pub mod solver;
pub mod tiles;
mod worker;

pub use worker::GpuWorker;

use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, DeviceRepr, PinnedHostSlice, ValidAsZeroBits,
};
use dagger_ir::model::{Link, ProcKind, Processor};
use pool::{BufferPool, PoolStats, Pooled};
use std::sync::Arc;
use std::time::Instant;

/// Why a GPU operation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CudaError {
    /// No CUDA driver library on this machine.
    #[error("no CUDA driver found (libcuda.so is not on this machine)")]
    NoDriver,
    /// The driver is there but NVRTC (the runtime CUDA C compiler) is not.
    #[error("no NVRTC library found (libnvrtc); fused GPU kernels are unavailable")]
    NoNvrtc,
    /// The driver is there but cuBLAS is not.
    #[error("no cuBLAS library found (libcublas); GPU matrix products are unavailable")]
    NoCublas,
    /// The driver is there but cuSOLVER is not.
    #[error("no cuSOLVER library found (libcusolver); GPU factorizations are unavailable")]
    NoCusolver,
    /// The driver is there but NCCL is not.
    #[error("no NCCL library found (libnccl); GPU collectives are unavailable")]
    NoNccl,
    /// A Cholesky factorization met a matrix that is not positive definite.
    #[error("the matrix is not positive definite (leading minor {minor})")]
    NotPositiveDefinite {
        /// Order of the first leading minor that is not positive definite.
        minor: usize,
    },
    /// No device with this ordinal.
    #[error("no CUDA device {0} (this machine has {1})")]
    NoDevice(usize, usize),
    /// A driver or library call failed.
    #[error("CUDA: {0}")]
    Call(String),
    /// Matrices of shapes that do not multiply.
    #[error("GEMM shapes do not match: A is {a:?}, B is {b:?}, C is {c:?}")]
    Shape {
        /// Rows and columns of A.
        a: (usize, usize),
        /// Rows and columns of B.
        b: (usize, usize),
        /// Rows and columns of C.
        c: (usize, usize),
    },
}

fn call<E: std::fmt::Debug>(e: E) -> CudaError {
    CudaError::Call(format!("{e:?}"))
}

/// `Ok` if a library call `what` returned `success`, else its status as an error.
fn check_status<S: PartialEq + std::fmt::Debug>(
    what: &str,
    status: S,
    success: S,
) -> Result<(), CudaError> {
    if status == success {
        Ok(())
    } else {
        Err(CudaError::Call(format!("{what}: {status:?}")))
    }
}

/// Whether the CUDA driver library can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to load the library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// One GPU as the platform model describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuInfo {
    /// Device ordinal.
    pub ordinal: usize,
    /// Its name, as the driver says.
    pub name: String,
    /// Its memory in bytes.
    pub memory: usize,
}

/// The GPUs of this machine ([`CudaError::NoDriver`] without a driver).
pub fn gpus() -> Result<Vec<GpuInfo>, CudaError> {
    if !driver_present() {
        return Err(CudaError::NoDriver);
    }
    let count = CudaContext::device_count().map_err(call)?.max(0) as usize;
    (0..count)
        .map(|ordinal| {
            let ctx = CudaContext::new(ordinal).map_err(call)?;
            Ok(GpuInfo {
                ordinal,
                name: ctx.name().map_err(call)?,
                memory: ctx.total_mem().map_err(call)?,
            })
        })
        .collect()
}

/// The GPUs as processors of the platform model (none without a driver),
/// with `speed` relative to one CPU core (from a measurement or a guess).
pub fn gpu_processors(speed: f64) -> Vec<Processor> {
    gpus().map_or_else(
        |_| Vec::new(),
        |g| {
            g.iter()
                .map(|_| Processor {
                    kind: ProcKind::Gpu,
                    speed,
                    node: 0,
                })
                .collect()
        },
    )
}

/// A dense row-major matrix on a GPU.
pub struct GpuMatrix<T> {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// The entries, row by row.
    pub data: CudaSlice<T>,
}

/// Bytes of released device memory a device keeps for reuse.
const DEVICE_POOL_BYTES: usize = 4 << 30;
/// Bytes of released pinned host memory a device keeps for reuse.
const STAGING_POOL_BYTES: usize = 1 << 30;

/// One GPU: its context, a pool of streams, a cuBLAS handle, memory pools.
/// Cloning it gives another handle to the same device and pools.
#[derive(Clone)]
pub struct GpuDevice {
    ctx: Arc<CudaContext>,
    streams: Vec<Arc<CudaStream>>,
    blas: Arc<CudaBlas>,
    solver: Arc<std::sync::OnceLock<Result<cudarc::cusolver::safe::DnHandle, CudaError>>>,
    kernels: Arc<fused::KernelCache>,
    f32_pool: Arc<BufferPool<CudaSlice<f32>>>,
    f64_pool: Arc<BufferPool<CudaSlice<f64>>>,
    staging: Arc<BufferPool<PinnedHostSlice<f64>>>,
}

/// Element types with a device memory pool of their own.
pub trait PoolElement: DeviceRepr + ValidAsZeroBits + Sized {
    /// The device's pool of buffers of this type.
    fn pool(device: &GpuDevice) -> &Arc<BufferPool<CudaSlice<Self>>>;
}

impl PoolElement for f32 {
    fn pool(device: &GpuDevice) -> &Arc<BufferPool<CudaSlice<f32>>> {
        &device.f32_pool
    }
}

impl PoolElement for f64 {
    fn pool(device: &GpuDevice) -> &Arc<BufferPool<CudaSlice<f64>>> {
        &device.f64_pool
    }
}

impl GpuDevice {
    /// Opens device `ordinal` with `streams` streams (at least one).
    pub fn open(ordinal: usize, streams: usize) -> Result<GpuDevice, CudaError> {
        if !driver_present() {
            return Err(CudaError::NoDriver);
        }
        let count = CudaContext::device_count().map_err(call)?.max(0) as usize;
        if ordinal >= count {
            return Err(CudaError::NoDevice(ordinal, count));
        }
        // SAFETY: only tries to load the library.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(CudaError::NoCublas);
        }
        let ctx = CudaContext::new(ordinal).map_err(call)?;
        let streams = (0..streams.max(1))
            .map(|_| ctx.new_stream().map_err(call))
            .collect::<Result<Vec<_>, _>>()?;
        let blas = CudaBlas::new(streams[0].clone()).map_err(call)?;
        Ok(GpuDevice {
            ctx,
            streams,
            blas: Arc::new(blas),
            solver: Default::default(),
            kernels: Default::default(),
            f32_pool: Arc::new(BufferPool::new(DEVICE_POOL_BYTES)),
            f64_pool: Arc::new(BufferPool::new(DEVICE_POOL_BYTES)),
            staging: Arc::new(BufferPool::new(STAGING_POOL_BYTES)),
        })
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    /// A device buffer of `len` elements from the device's pool (its
    /// contents are whatever its last user left); back to the pool when
    /// dropped.
    pub fn device_buffer<T: PoolElement>(
        &self,
        len: usize,
    ) -> Result<Pooled<CudaSlice<T>>, CudaError> {
        T::pool(self).take(len, std::mem::size_of::<T>(), |len| {
            self.streams[0].alloc_zeros::<T>(len).map_err(call)
        })
    }

    /// A pinned (page-locked) host buffer of `len` f64 for staging copies,
    /// from the device's pool.
    pub fn staging_buffer(&self, len: usize) -> Result<Pooled<PinnedHostSlice<f64>>, CudaError> {
        self.staging.take(len, std::mem::size_of::<f64>(), |len| {
            // SAFETY: f64 has no invalid bit patterns; callers write before reading.
            unsafe { self.ctx.alloc_pinned::<f64>(len) }.map_err(call)
        })
    }

    /// How the device's pools (f32, f64, pinned staging) were used so far.
    pub fn pool_stats(&self) -> [PoolStats; 3] {
        [
            self.f32_pool.stats(),
            self.f64_pool.stats(),
            self.staging.stats(),
        ]
    }

    /// Makes stream `after` wait for the work queued on stream `before` so
    /// far (an event recorded on one, waited on by the other), without
    /// blocking the host: a copy on one stream can overlap a kernel on
    /// another and still be ordered before its consumer.
    pub fn order(&self, before: usize, after: usize) -> Result<(), CudaError> {
        let (before, after) = (self.stream(before), self.stream(after));
        if Arc::ptr_eq(before, after) {
            return Ok(());
        }
        let event = before.record_event(None).map_err(call)?;
        after.wait(&event).map_err(call)
    }

    /// The device's name.
    pub fn name(&self) -> Result<String, CudaError> {
        self.ctx.name().map_err(call)
    }

    /// Stream `i` of the pool (modulo its size); stream 0 runs cuBLAS.
    pub fn stream(&self, i: usize) -> &Arc<CudaStream> {
        &self.streams[i % self.streams.len()]
    }

    /// The stream copies between host and device go on (stream 1, or 0 on
    /// a device opened with one stream), so that they overlap the kernels
    /// of stream 0; cudarc's events order each kernel after the copies of
    /// the buffers it reads.
    pub fn copy_stream(&self) -> &Arc<CudaStream> {
        self.stream(1)
    }

    /// The stream collectives between devices run on (stream 2, modulo the
    /// pool's size), so that an all-reduce overlaps the kernels of stream 0.
    pub fn collective_stream(&self) -> &Arc<CudaStream> {
        self.stream(2)
    }

    /// Makes this device current on the calling thread (libraries that use
    /// the current device, as NCCL's initialization does, need it).
    pub fn bind_to_thread(&self) -> Result<(), CudaError> {
        self.ctx.bind_to_thread().map_err(call)
    }

    /// Copies a row-major `rows x cols` matrix to the device (stream 0).
    pub fn upload<T: DeviceRepr>(
        &self,
        rows: usize,
        cols: usize,
        host: &[T],
    ) -> Result<GpuMatrix<T>, CudaError> {
        assert_eq!(host.len(), rows * cols, "a {rows}x{cols} matrix");
        let data = self.streams[0].clone_htod(host).map_err(call)?;
        Ok(GpuMatrix { rows, cols, data })
    }

    /// A zeroed `rows x cols` matrix on the device.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        rows: usize,
        cols: usize,
    ) -> Result<GpuMatrix<T>, CudaError> {
        let data = self.streams[0].alloc_zeros(rows * cols).map_err(call)?;
        Ok(GpuMatrix { rows, cols, data })
    }

    /// Copies a matrix back (waits for stream 0).
    pub fn download<T: DeviceRepr + Default + Clone>(
        &self,
        m: &GpuMatrix<T>,
    ) -> Result<Vec<T>, CudaError> {
        self.streams[0].clone_dtoh(&m.data).map_err(call)
    }

    /// Measures the host-to-device link with pinned buffers: latency from
    /// 4-byte copies, bandwidth from `bytes`-byte copies (best of `reps`).
    pub fn measure_host_link(&self, bytes: usize, reps: usize) -> Result<Link, CudaError> {
        let stream = &self.streams[0];
        let best = |len: usize| -> Result<f64, CudaError> {
            // SAFETY: the pinned buffer's contents are only copied, never read as values.
            let host = unsafe { self.ctx.alloc_pinned::<u8>(len) }.map_err(call)?;
            let mut dev = stream.alloc_zeros::<u8>(len).map_err(call)?;
            let mut best = f64::INFINITY;
            for _ in 0..reps.max(1) {
                let t = Instant::now();
                stream.memcpy_htod(&host, &mut dev).map_err(call)?;
                stream.synchronize().map_err(call)?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            Ok(best)
        };
        let latency = best(4)?;
        let large = best(bytes)?;
        Ok(Link {
            latency,
            bandwidth: bytes as f64 / (large - latency).max(1e-9),
        })
    }

    /// Sustained f32 GEMM speed in FLOP/s: the best of `reps` products of
    /// two `n x n` matrices (after one untimed product).
    pub fn measure_gemm_flops(&self, n: usize, reps: usize) -> Result<f64, CudaError> {
        let a = self.upload(n, n, &vec![1.0f32; n * n])?;
        let b = self.upload(n, n, &vec![0.5f32; n * n])?;
        let mut c = self.zeros::<f32>(n, n)?;
        self.gemm(1.0, &a, &b, 0.0, &mut c)?;
        self.synchronize()?;
        let mut best = f64::INFINITY;
        for _ in 0..reps.max(1) {
            let t = Instant::now();
            self.gemm(1.0, &a, &b, 0.0, &mut c)?;
            self.synchronize()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(2.0 * (n * n * n) as f64 / best)
    }

    /// Waits until every stream of the pool is idle.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.ctx.synchronize().map_err(call)
    }

    /// `C = alpha A B + beta C` on cuBLAS (row-major matrices; queued on
    /// stream 0, returns before it completes).
    pub fn gemm<T>(
        &self,
        alpha: T,
        a: &GpuMatrix<T>,
        b: &GpuMatrix<T>,
        beta: T,
        c: &mut GpuMatrix<T>,
    ) -> Result<(), CudaError>
    where
        CudaBlas: Gemm<T>,
    {
        if a.cols != b.rows || c.rows != a.rows || c.cols != b.cols {
            return Err(CudaError::Shape {
                a: (a.rows, a.cols),
                b: (b.rows, b.cols),
                c: (c.rows, c.cols),
            });
        }
        // Row-major C = A B is column-major C^T = B^T A^T: cuBLAS multiplies
        // B (as an n x k column-major matrix) by A (k x m).
        let (m, n, k) = (a.rows as i32, b.cols as i32, a.cols as i32);
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_N,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: n,
            n: m,
            k,
            alpha,
            lda: n,
            ldb: k,
            beta,
            ldc: n,
        };
        // SAFETY: the shapes were checked above and every buffer holds
        // rows x cols elements of its matrix.
        unsafe { self.blas.gemm(cfg, &b.data, &a.data, &mut c.data) }.map_err(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The device, or None with the reason printed.
    pub(crate) fn device() -> Option<GpuDevice> {
        match GpuDevice::open(0, 2) {
            Ok(d) => Some(d),
            Err(e) => {
                println!("skipping: {e}");
                None
            }
        }
    }

    #[test]
    fn without_a_driver_the_answer_is_an_error_not_a_panic() {
        if driver_present() {
            assert!(gpus().is_ok());
        } else {
            assert_eq!(gpus(), Err(CudaError::NoDriver));
            assert!(gpu_processors(10.0).is_empty());
            assert_eq!(
                GpuDevice::open(0, 1).err().map(|e| e.to_string()),
                Some("no CUDA driver found (libcuda.so is not on this machine)".to_string())
            );
        }
    }

    #[test]
    fn gemm_matches_a_cpu_product() {
        let Some(gpu) = device() else { return };
        let (m, k, n) = (67, 45, 31);
        let a: Vec<f64> = (0..m * k).map(|i| (i % 7) as f64 - 3.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i % 5) as f64 * 0.5).collect();
        let mut expected = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                expected[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        let (ga, gb) = (gpu.upload(m, k, &a).unwrap(), gpu.upload(k, n, &b).unwrap());
        let mut gc = gpu.zeros::<f64>(m, n).unwrap();
        gpu.gemm(1.0, &ga, &gb, 0.0, &mut gc).unwrap();
        let got = gpu.download(&gc).unwrap();
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-9, "{g} vs {e}");
        }
        let err = gpu.gemm(1.0, &ga, &ga, 0.0, &mut gc).unwrap_err();
        assert!(matches!(err, CudaError::Shape { .. }), "{err}");
    }
}
