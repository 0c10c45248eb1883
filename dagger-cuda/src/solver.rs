//! Cholesky factorization of one tile on the GPU, through cuSOLVER.
//!
//! cuSOLVER is loaded at run time like the other CUDA libraries; its
//! handle is made on first use, on stream 0 (shared with cuBLAS, so a
//! factorization is ordered after the updates queued before it). Without
//! the library the answer is [`CudaError::NoCusolver`], and a caller such
//! as the tiled Cholesky example factors that tile on a CPU core instead.

use crate::tiles::DeviceTile;
use crate::{call, check_status, CudaError, GpuDevice};
use cudarc::cusolver::safe::DnHandle;
use cudarc::cusolver::sys::{cublasFillMode_t, cusolverStatus_t};
use cudarc::driver::DevicePtrMut;

/// Whether cuSOLVER can be loaded.
pub fn cusolver_present() -> bool {
    // SAFETY: only tries to load the library.
    unsafe { cudarc::cusolver::sys::is_culib_present() }
}

fn solver_status(what: &str, status: cusolverStatus_t) -> Result<(), CudaError> {
    check_status(what, status, cusolverStatus_t::CUSOLVER_STATUS_SUCCESS)
}

impl GpuDevice {
    /// The cuSOLVER handle, made on first use.
    fn solver(&self) -> Result<&DnHandle, CudaError> {
        self.solver
            .get_or_init(|| {
                if !cusolver_present() {
                    return Err(CudaError::NoCusolver);
                }
                DnHandle::new(self.stream(0).clone()).map_err(call)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Factors `a = L L^T` in place: `L` in its lower triangle (the upper
    /// triangle is left as it was). Waits for the result, to report a
    /// tile that is not positive definite as [`CudaError::NotPositiveDefinite`].
    pub fn potrf_lower(&self, a: &mut DeviceTile) -> Result<(), CudaError> {
        let dn = self.solver()?;
        let n = i32::try_from(a.n).map_err(|_| CudaError::Call(format!("order {}", a.n)))?;
        let stream = self.stream(0);
        let mut lwork = 0i32;
        {
            let (pa, _ga) = a.data.device_ptr_mut(stream);
            // SAFETY: the tile holds n * n entries; the call only reads its size.
            let status = unsafe {
                cudarc::cusolver::sys::cusolverDnDpotrf_bufferSize(
                    dn.cu(),
                    cublasFillMode_t::CUBLAS_FILL_MODE_LOWER,
                    n,
                    pa as *mut f64,
                    n,
                    &mut lwork,
                )
            };
            solver_status("cusolverDnDpotrf_bufferSize", status)?;
        }
        let mut work = self.device_buffer::<f64>(lwork.max(1) as usize)?;
        let mut info = stream.alloc_zeros::<i32>(1).map_err(call)?;
        {
            let (pa, _ga) = a.data.device_ptr_mut(stream);
            let (pw, _gw) = work.device_ptr_mut(stream);
            let (pi, _gi) = info.device_ptr_mut(stream);
            // SAFETY: the tile holds n * n entries, the workspace the size
            // cuSOLVER asked for, `info` one integer; all on this device.
            let status = unsafe {
                cudarc::cusolver::sys::cusolverDnDpotrf(
                    dn.cu(),
                    cublasFillMode_t::CUBLAS_FILL_MODE_LOWER,
                    n,
                    pa as *mut f64,
                    n,
                    pw as *mut f64,
                    lwork,
                    pi as *mut i32,
                )
            };
            solver_status("cusolverDnDpotrf", status)?;
        }
        let info = stream.clone_dtoh(&info).map_err(call)?[0];
        if info > 0 {
            return Err(CudaError::NotPositiveDefinite {
                minor: info as usize,
            });
        }
        Ok(())
    }
}
