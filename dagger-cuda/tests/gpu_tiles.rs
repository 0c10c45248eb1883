//! The GPU's tile kernels, memory pools, stream ordering and NCCL, checked
//! against plain CPU loops. Every test prints why it skips and passes on a
//! machine without a GPU.

use dagger_cuda::nccl::NcclGroup;
use dagger_cuda::tiles::DeviceTile;
use dagger_cuda::{CudaError, GpuDevice};

/// The device, or None with the reason printed.
fn device() -> Option<GpuDevice> {
    match GpuDevice::open(0, 2) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("skipping: {e}");
            None
        }
    }
}

const N: usize = 48;

/// A column-major `N x N` matrix with entry `f(i, j)` at `i + j N`.
fn matrix(f: impl Fn(usize, usize) -> f64) -> Vec<f64> {
    (0..N * N).map(|k| f(k % N, k / N)).collect()
}

/// A symmetric positive definite matrix.
fn spd() -> Vec<f64> {
    matrix(|i, j| {
        let base = ((i * 7 + j * 3) % 11) as f64 / 11.0 + ((j * 7 + i * 3) % 11) as f64 / 11.0;
        base + if i == j { N as f64 } else { 0.0 }
    })
}

fn up(gpu: &GpuDevice, m: &[f64]) -> DeviceTile {
    gpu.upload_tile(N, |j| &m[j * N..(j + 1) * N]).unwrap()
}

fn down(gpu: &GpuDevice, t: &DeviceTile) -> Vec<f64> {
    let mut out = vec![0.0; N * N];
    gpu.download_tile(t, |j, v| out[j * N..(j + 1) * N].copy_from_slice(v))
        .unwrap();
    out
}

/// `a b^T` of column-major matrices.
fn times_transposed(a: &[f64], b: &[f64]) -> Vec<f64> {
    matrix(|i, j| (0..N).map(|k| a[i + k * N] * b[j + k * N]).sum())
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() < 1e-9 * (1.0 + w.abs()),
            "{what}: entry {k}: {g} vs {w}"
        );
    }
}

#[test]
fn tile_kernels_match_cpu_loops() {
    let Some(gpu) = device() else { return };
    let a = spd();
    // POTRF: L L^T = A on the lower triangle.
    let mut t = up(&gpu, &a);
    gpu.potrf_lower(&mut t).unwrap();
    let l: Vec<f64> = {
        let raw = down(&gpu, &t);
        matrix(|i, j| if i >= j { raw[i + j * N] } else { 0.0 })
    };
    assert_close(&times_transposed(&l, &l), &a, "potrf");
    // TRSM: X L^T = B.
    let b = matrix(|i, j| (i as f64 - j as f64) / 7.0);
    let (dl, mut dx) = (up(&gpu, &l), up(&gpu, &b));
    gpu.trsm_lower_transposed(&dl, &mut dx).unwrap();
    let x = down(&gpu, &dx);
    assert_close(&times_transposed(&x, &l), &b, "trsm");
    // SYRK (lower triangle) and GEMM: C - A A^T, C - A B^T.
    let c = matrix(|i, j| (i * j) as f64 / 100.0);
    let (mut dc, db) = (up(&gpu, &c), up(&gpu, &b));
    gpu.syrk_lower_sub(&mut dc, &db).unwrap();
    let bbt = times_transposed(&b, &b);
    let want = matrix(|i, j| {
        if i >= j {
            c[i + j * N] - bbt[i + j * N]
        } else {
            c[i + j * N]
        }
    });
    assert_close(&down(&gpu, &dc), &want, "syrk");
    let mut dc = up(&gpu, &c);
    gpu.gemm_nt_sub(&mut dc, &dl, &db).unwrap();
    let lbt = times_transposed(&l, &b);
    let want: Vec<f64> = c.iter().zip(&lbt).map(|(c, p)| c - p).collect();
    assert_close(&down(&gpu, &dc), &want, "gemm");
}

#[test]
fn a_matrix_that_is_not_positive_definite_is_an_error() {
    let Some(gpu) = device() else { return };
    let mut t = up(
        &gpu,
        &matrix(|i, j| {
            if i == j && i == 5 {
                -1.0
            } else if i == j {
                1.0
            } else {
                0.0
            }
        }),
    );
    match gpu.potrf_lower(&mut t) {
        Err(CudaError::NotPositiveDefinite { minor }) => assert_eq!(minor, 6),
        other => panic!("expected NotPositiveDefinite, got {other:?}"),
    }
}

#[test]
fn pools_hand_released_buffers_out_again() {
    let Some(gpu) = device() else { return };
    let before = gpu.pool_stats();
    drop(gpu.device_buffer::<f64>(1 << 20).unwrap());
    drop(gpu.device_buffer::<f64>(1 << 20).unwrap());
    drop(gpu.staging_buffer(1000).unwrap());
    drop(gpu.staging_buffer(1000).unwrap());
    let after = gpu.pool_stats();
    assert_eq!(after[1].hits - before[1].hits, 1, "{after:?}");
    assert_eq!(after[2].hits - before[2].hits, 1, "{after:?}");
    assert_eq!(after[1].cached_bytes, 8 << 20);
}

#[test]
fn a_copy_on_one_stream_is_ordered_before_work_on_another() {
    let Some(gpu) = device() else { return };
    let values: Vec<f32> = (0..1 << 20).map(|i| i as f32).collect();
    let mut dev = gpu.stream(1).alloc_zeros::<f32>(values.len()).unwrap();
    gpu.stream(1).memcpy_htod(&values, &mut dev).unwrap();
    gpu.order(1, 0).unwrap();
    let back = gpu.stream(0).clone_dtoh(&dev).unwrap();
    assert_eq!(back, values);
}

#[test]
fn nccl_all_reduce_over_this_machines_gpus_sums() {
    let Some(gpu) = device() else { return };
    let group = match NcclGroup::new(&[&gpu]) {
        Ok(g) => g,
        Err(e) => {
            println!("skipping: {e}");
            return;
        }
    };
    assert_eq!(group.len(), 1);
    let values: Vec<f32> = (0..4096).map(|i| i as f32 * 0.5).collect();
    let mut buffer = gpu.stream(0).clone_htod(&values).unwrap();
    group.all_reduce_sum(&mut [&mut buffer]).unwrap();
    assert_eq!(
        gpu.stream(0).clone_dtoh(&buffer).unwrap(),
        values,
        "one rank: the sum is itself"
    );
    let mut short = gpu.stream(0).alloc_zeros::<f32>(3).unwrap();
    let err = group
        .all_reduce_sum(&mut [&mut buffer, &mut short])
        .unwrap_err();
    assert!(
        err.to_string().contains("1 devices given 2 buffers"),
        "{err}"
    );
}

/// The device address of a pooled buffer, to tell a move from a copy.
fn address(
    gpu: &GpuDevice,
    data: &dagger_cuda::pool::Pooled<cudarc::driver::CudaSlice<f64>>,
) -> u64 {
    use cudarc::driver::DevicePtr;
    data.device_ptr(gpu.stream(0)).0
}

#[test]
fn resident_values_are_copied_only_where_they_are_read() {
    use dagger_cuda::resident::Resident;
    let Some(gpu) = device() else { return };
    let ordinal = gpu.ordinal();
    let v: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();

    // A host value: prefetched once, then used where it is.
    let r = Resident::new(v.clone());
    assert!(r.is_on_host() && !r.is_on(ordinal));
    r.prefetch(&gpu).unwrap();
    assert!(r.is_on(ordinal), "prefetch made the device copy");
    let (a, b) = (r.on(&gpu).unwrap(), r.on(&gpu).unwrap());
    assert!(std::sync::Arc::ptr_eq(&a, &b), "one copy per device");
    let shared_at = address(&gpu, &a);
    drop((a, b));

    // Taking a shared value's device copy for an update duplicates it.
    let taken = r.clone().into_device(&gpu).unwrap();
    assert_ne!(address(&gpu, &taken), shared_at);

    // A value made on the GPU: no host copy until a host read downloads it.
    let made = Resident::<Vec<f64>>::on_gpu(&gpu, taken);
    assert!(!made.is_on_host() && made.is_on(ordinal));
    assert_eq!(made.residency(ordinal).bytes, 8000);
    assert_eq!(made.host().unwrap(), &v);
    assert!(made.is_on_host());

    // Taking a value nothing else shares moves its device copy.
    let at = address(&gpu, &made.on(&gpu).unwrap());
    let moved = made.into_device(&gpu).unwrap();
    assert_eq!(address(&gpu, &moved), at, "a unique value is not copied");
    assert_eq!(
        Resident::<Vec<f64>>::on_gpu(&gpu, moved)
            .into_host()
            .unwrap(),
        v
    );
}
