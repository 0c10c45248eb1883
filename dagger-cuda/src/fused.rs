//! Fused elementwise kernels on a GPU: the CUDA C of [`codegen`](crate::codegen)
//! compiled by NVRTC once per distinct kernel (the device keeps the loaded
//! modules by source; hand-written kernels such as [`softmax`](crate::softmax)
//! share the cache) and launched on stream 0.

use crate::codegen::{cuda_source, LaunchShape};
use crate::{call, CudaError, GpuDevice, GpuMatrix};
use cudarc::driver::{
    CudaFunction, CudaModule, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use dagger_tensor::{Broadcast, FusedLayout, Kernel, Reduction};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The name of every generated kernel function (one per module).
const ENTRY: &str = "dagger_fused";

/// Compiled modules of one device, by their source.
#[derive(Default)]
pub(crate) struct KernelCache(Mutex<HashMap<String, Arc<CudaModule>>>);

/// Whether NVRTC can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to load the library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

impl GpuDevice {
    /// Function `entry` of CUDA C `source`, compiled (by NVRTC) and loaded
    /// the first time the source is asked for.
    pub(crate) fn library_function(
        &self,
        source: &str,
        entry: &str,
    ) -> Result<CudaFunction, CudaError> {
        let mut cache = self.kernels.0.lock().unwrap_or_else(|p| p.into_inner());
        let module = match cache.get(source) {
            Some(m) => m.clone(),
            None => {
                if !nvrtc_present() {
                    return Err(CudaError::NoNvrtc);
                }
                let ptx = cudarc::nvrtc::compile_ptx(source)
                    .map_err(|e| CudaError::Call(format!("NVRTC: {e:?}\n{source}")))?;
                let module = self.ctx.load_module(ptx).map_err(call)?;
                cache.insert(source.to_string(), module.clone());
                module
            }
        };
        module.load_function(entry).map_err(call)
    }

    /// Runs the fused `kernel` on stream 0: operand `i` is `operands[i]`,
    /// read by `patterns[i]`; the domain is `rows x cols`; `out` receives
    /// the elements, or the sums of the kernel's reduction. Returns before
    /// the kernel completes.
    pub fn launch_fused(
        &self,
        kernel: &Kernel,
        patterns: &[Broadcast],
        operands: &[&GpuMatrix<f32>],
        out: &mut GpuMatrix<f32>,
        (rows, cols): (usize, usize),
    ) -> Result<(), CudaError> {
        let stream = self.stream(0);
        let guards: Vec<_> = operands.iter().map(|a| a.data.device_ptr(stream)).collect();
        let pointers: Vec<u64> = guards.iter().map(|g| g.0).collect();
        let out_len = out.data.len();
        let (out_ptr, _out_guard) = out.data.device_ptr_mut(stream);
        let layout = FusedLayout {
            patterns: patterns.to_vec(),
            rows,
            cols,
            accumulates: false,
        };
        // SAFETY: the pointers come from live buffers of these lengths,
        // kept alive (and their events recorded) by the guards.
        unsafe { self.launch_fused_at(kernel, &layout, &pointers, (out_ptr, out_len)) }
    }

    /// Compiles (once per device) the CUDA C of a fused kernel.
    pub(crate) fn fused_function(
        &self,
        kernel: &Kernel,
        patterns: &[Broadcast],
    ) -> Result<CudaFunction, CudaError> {
        self.library_function(&cuda_source(ENTRY, kernel, patterns), ENTRY)
    }

    /// [`launch_fused`](Self::launch_fused) on raw device addresses: the
    /// operands at `operands`, the result at `out` (`out.1` values), which
    /// may be an operand's address when that operand has the result's shape
    /// (each thread reads its elements before writing them).
    ///
    /// # Safety
    /// Each address must point to device memory of this device holding the
    /// values `layout` reads or writes, alive until the kernel completes.
    pub(crate) unsafe fn launch_fused_at(
        &self,
        kernel: &Kernel,
        layout: &FusedLayout,
        operands: &[u64],
        (out, out_len): (u64, usize),
    ) -> Result<(), CudaError> {
        let (rows, cols) = (layout.rows, layout.cols);
        let expected_out = match kernel.reduce.as_ref().map(|r| r.kind) {
            None => rows * cols,
            Some(Reduction::Rows) => rows,
            Some(Reduction::Columns) => cols,
            Some(Reduction::All) => 1,
        };
        if operands.len() != layout.patterns.len() || out_len < expected_out {
            return Err(CudaError::Call(format!(
                "fused kernel: {} operands for {} patterns, a result of {out_len} for {expected_out} values",
                operands.len(),
                layout.patterns.len(),
            )));
        }
        let function = self.fused_function(kernel, &layout.patterns)?;
        let stream = self.stream(0);
        if matches!(kernel.reduce.as_ref().map(|r| r.kind), Some(Reduction::All)) {
            // The blocks add their partial sums into it.
            // SAFETY: `out` holds at least `expected_out` f32 (checked above).
            unsafe {
                cudarc::driver::result::memset_d8_async(
                    out,
                    0,
                    expected_out * 4,
                    stream.cu_stream(),
                )
            }
            .map_err(call)?;
        }
        let shape = LaunchShape::of(kernel, rows, cols);
        let (rows, cols) = (rows as u64, cols as u64);
        let mut launch = stream.launch_builder(&function);
        for a in operands {
            launch.arg(a);
        }
        launch.arg(&out).arg(&rows).arg(&cols);
        let config = LaunchConfig {
            grid_dim: (shape.grid, 1, 1),
            block_dim: (shape.block, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the generated kernel reads each operand within its
        // pattern's extent of the rows x cols domain and writes `expected_out`
        // values, which the checks above and the caller guarantee.
        unsafe { launch.launch(config) }.map_err(call)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::device;
    use dagger_tensor::{Binary, Broadcast, Kernel, KernelStep, Reduce, Reduction, Shape, Unary};

    #[test]
    fn a_fused_kernel_runs_on_the_gpu_as_the_ir_means() {
        let Some(gpu) = device() else { return };
        let (rows, cols) = (300, 70);
        let a: Vec<f32> = (0..rows * cols)
            .map(|i| (i % 13) as f32 * 0.25 - 1.5)
            .collect();
        let b: Vec<f32> = (0..cols).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
        let mut k = Kernel::default();
        let x = k.push(KernelStep::Load(0));
        let y = k.push(KernelStep::Load(1));
        let s = k.push(KernelStep::Binary(Binary::Add, x, y));
        k.push(KernelStep::Unary(Unary::Gelu, s));
        let patterns = [Broadcast::Full, Broadcast::Row];
        let (ga, gb) = (
            gpu.upload(rows, cols, &a).unwrap(),
            gpu.upload(1, cols, &b).unwrap(),
        );
        let mut out = gpu.zeros::<f32>(rows, cols).unwrap();
        gpu.launch_fused(&k, &patterns, &[&ga, &gb], &mut out, (rows, cols))
            .unwrap();
        let got = gpu.download(&out).unwrap();
        for (i, g) in got.iter().enumerate() {
            let want = k.eval(&[a[i], b[i % cols]]);
            assert!(
                (g - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{i}: {g} vs {want}"
            );
        }
        // The same program summed over everything.
        k.reduce = Some(Reduce {
            kind: Reduction::All,
            domain: Shape::of(&[rows, cols]),
        });
        let mut total = gpu.zeros::<f32>(1, 1).unwrap();
        gpu.launch_fused(&k, &patterns, &[&ga, &gb], &mut total, (rows, cols))
            .unwrap();
        let want: f32 = (0..rows * cols).map(|i| k.eval(&[a[i], b[i % cols]])).sum();
        let got = gpu.download(&total).unwrap()[0];
        assert!(
            (got - want).abs() <= 1e-3 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }
}
