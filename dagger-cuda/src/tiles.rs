//! The tile kernels of a tiled Cholesky factorization on the GPU.
//!
//! Square column-major f64 tiles of order `n` (LAPACK's layout, and
//! faer's), one routine per task of the right-looking algorithm:
//!
//! | routine | computes | library |
//! |---|---|---|
//! | [`GpuDevice::potrf_lower`] | `A = L L^T`, `L` in the lower triangle | cuSOLVER `Dpotrf` |
//! | [`GpuDevice::trsm_lower_transposed`] | `A := A L^-T` | cuBLAS `Dtrsm` |
//! | [`GpuDevice::syrk_lower_sub`] | `C := C - A A^T` (lower triangle) | cuBLAS `Dsyrk` |
//! | [`GpuDevice::gemm_nt_sub`] | `C := C - A B^T` | cuBLAS `Dgemm` |
//!
//! Each is queued on stream 0 (cuBLAS's and cuSOLVER's) and returns before
//! it completes, except `potrf_lower`, which reads back LAPACK's `info` to
//! report a tile that is not positive definite. Tiles move between host
//! and device with [`GpuDevice::upload_tile`] and
//! [`GpuDevice::download_tile`], through pooled pinned staging buffers, on
//! the device's copy stream (cudarc's events order the kernels after them).

use crate::pool::Pooled;
use crate::{call, check_status, CudaError, GpuDevice};
use cudarc::cublas::sys::{
    cublasDiagType_t, cublasFillMode_t, cublasOperation_t, cublasSideMode_t, cublasStatus_t,
};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};

/// A square column-major f64 tile in device memory (a pooled buffer).
pub struct DeviceTile {
    /// Its order.
    pub n: usize,
    /// Its `n * n` entries, column by column.
    pub data: Pooled<CudaSlice<f64>>,
}

fn blas_status(what: &str, status: cublasStatus_t) -> Result<(), CudaError> {
    check_status(what, status, cublasStatus_t::CUBLAS_STATUS_SUCCESS)
}

impl GpuDevice {
    /// Copies a tile given column by column (`columns(j)` is column `j`)
    /// to the device, through a pinned staging buffer.
    pub fn upload_tile<'a>(
        &self,
        n: usize,
        columns: impl Fn(usize) -> &'a [f64],
    ) -> Result<DeviceTile, CudaError> {
        let mut staging = self.staging_buffer(n * n)?;
        {
            let host = staging.as_mut_slice().map_err(call)?;
            for (j, dst) in host.chunks_exact_mut(n).enumerate() {
                dst.copy_from_slice(columns(j));
            }
        }
        let mut data = self.device_buffer::<f64>(n * n)?;
        self.copy_stream()
            .memcpy_htod(&*staging, &mut *data)
            .map_err(call)?;
        Ok(DeviceTile { n, data })
    }

    /// A second tile on this device equal to `tile` (a device-to-device
    /// copy on the copy stream).
    pub fn duplicate_tile(&self, tile: &DeviceTile) -> Result<DeviceTile, CudaError> {
        let mut data = self.device_buffer::<f64>(tile.n * tile.n)?;
        self.copy_stream()
            .memcpy_dtod(&*tile.data, &mut *data)
            .map_err(call)?;
        Ok(DeviceTile { n: tile.n, data })
    }

    /// Copies a tile back, handing each column to `column(j, values)`;
    /// waits for the tile's pending work.
    pub fn download_tile(
        &self,
        tile: &DeviceTile,
        mut column: impl FnMut(usize, &[f64]),
    ) -> Result<(), CudaError> {
        let n = tile.n;
        let mut staging = self.staging_buffer(n * n)?;
        self.copy_stream()
            .memcpy_dtoh(&*tile.data, &mut *staging)
            .map_err(call)?;
        let host = staging.as_slice().map_err(call)?;
        for (j, values) in host.chunks_exact(n).enumerate() {
            column(j, values);
        }
        Ok(())
    }

    /// `A := A L^-T` (solves `X L^T = A`), `L` lower triangular.
    pub fn trsm_lower_transposed(
        &self,
        l: &DeviceTile,
        a: &mut DeviceTile,
    ) -> Result<(), CudaError> {
        let n = same_order(&[l, a])?;
        let stream = self.stream(0);
        let (pl, _gl) = l.data.device_ptr(stream);
        let (pa, _ga) = a.data.device_ptr_mut(stream);
        let one = 1.0f64;
        // SAFETY: both tiles hold n * n entries on this device, and the
        // guards keep their events until the call is queued.
        let status = unsafe {
            cudarc::cublas::sys::cublasDtrsm_v2(
                *self.blas.handle(),
                cublasSideMode_t::CUBLAS_SIDE_RIGHT,
                cublasFillMode_t::CUBLAS_FILL_MODE_LOWER,
                cublasOperation_t::CUBLAS_OP_T,
                cublasDiagType_t::CUBLAS_DIAG_NON_UNIT,
                n,
                n,
                &one,
                pl as *const f64,
                n,
                pa as *mut f64,
                n,
            )
        };
        blas_status("cublasDtrsm", status)
    }

    /// `C := C - A A^T` on the lower triangle of `C`.
    pub fn syrk_lower_sub(&self, c: &mut DeviceTile, a: &DeviceTile) -> Result<(), CudaError> {
        let n = same_order(&[c, a])?;
        let stream = self.stream(0);
        let (pa, _ga) = a.data.device_ptr(stream);
        let (pc, _gc) = c.data.device_ptr_mut(stream);
        let (minus_one, one) = (-1.0f64, 1.0f64);
        // SAFETY: as in `trsm_lower_transposed`.
        let status = unsafe {
            cudarc::cublas::sys::cublasDsyrk_v2(
                *self.blas.handle(),
                cublasFillMode_t::CUBLAS_FILL_MODE_LOWER,
                cublasOperation_t::CUBLAS_OP_N,
                n,
                n,
                &minus_one,
                pa as *const f64,
                n,
                &one,
                pc as *mut f64,
                n,
            )
        };
        blas_status("cublasDsyrk", status)
    }

    /// `C := C - A B^T`.
    pub fn gemm_nt_sub(
        &self,
        c: &mut DeviceTile,
        a: &DeviceTile,
        b: &DeviceTile,
    ) -> Result<(), CudaError> {
        let n = same_order(&[c, a, b])?;
        let stream = self.stream(0);
        let (pa, _ga) = a.data.device_ptr(stream);
        let (pb, _gb) = b.data.device_ptr(stream);
        let (pc, _gc) = c.data.device_ptr_mut(stream);
        let (minus_one, one) = (-1.0f64, 1.0f64);
        // SAFETY: as in `trsm_lower_transposed`.
        let status = unsafe {
            cudarc::cublas::sys::cublasDgemm_v2(
                *self.blas.handle(),
                cublasOperation_t::CUBLAS_OP_N,
                cublasOperation_t::CUBLAS_OP_T,
                n,
                n,
                n,
                &minus_one,
                pa as *const f64,
                n,
                pb as *const f64,
                n,
                &one,
                pc as *mut f64,
                n,
            )
        };
        blas_status("cublasDgemm", status)
    }
}

/// The common order of `tiles` as cuBLAS takes it, or a shape error.
fn same_order(tiles: &[&DeviceTile]) -> Result<i32, CudaError> {
    let n = tiles[0].n;
    if tiles.iter().any(|t| t.n != n) {
        let orders: Vec<usize> = tiles.iter().map(|t| t.n).collect();
        return Err(CudaError::Call(format!(
            "tiles of different orders: {orders:?}"
        )));
    }
    i32::try_from(n).map_err(|_| CudaError::Call(format!("tile order {n} exceeds i32")))
}
