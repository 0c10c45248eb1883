//! The CUDA C of softmax, log-softmax, cross-entropy and MSE, checked on
//! the CPU (see `common`) against the CPU kernels of the tensor programs
//! (`dagger_tensor::cpu::kernels`), the reference they must match.
//! Without a C++ compiler the tests say so and pass.

mod common;

use common::{assert_close, run_cuda_on_cpu, values};
use dagger_cuda::codegen::BLOCK;
use dagger_cuda::softmax::{blocks_for, blocks_striding, SOURCE};
use dagger_tensor::cpu::kernels;
use dagger_tensor::Shape;

#[test]
fn softmax_and_log_softmax_match_the_cpu_kernel_along_every_axis() {
    let shape = Shape::of(&[3, 5, 4]);
    let x = values(shape.numel(), 7);
    for axis in 0..3 {
        let dims = shape.dims();
        let (outer, len, inner) = (
            dims[..axis].iter().product::<usize>(),
            dims[axis],
            dims[axis + 1..].iter().product::<usize>(),
        );
        for log in [false, true] {
            let mut want = vec![0.0; x.len()];
            kernels::softmax(&x, &shape, axis, log, &mut want);
            let Some(got) = run_cuda_on_cpu(
                SOURCE,
                "dagger_softmax",
                (blocks_for(outer * inner), BLOCK),
                std::slice::from_ref(&x),
                &format!("{outer}ULL, {len}ULL, {inner}ULL, {}", log as i32),
                x.len(),
            ) else {
                return;
            };
            assert_close(&got, &want, &format!("axis {axis}, log {log}"));
        }
    }
}

#[test]
fn cross_entropy_matches_the_cpu_kernel() {
    // More rows than one block, so that several blocks add their shares.
    let (rows, cols) = (300, 10);
    let z = values(rows * cols, 3);
    let target: Vec<f32> = (0..rows * cols)
        .map(|i| {
            if i % cols == (i / cols) % cols {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let want = kernels::cross_entropy(&z, &target, &Shape::of(&[rows, cols]));
    let Some(got) = run_cuda_on_cpu(
        SOURCE,
        "dagger_cross_entropy",
        (blocks_for(rows), BLOCK),
        &[z, target],
        &format!("{rows}ULL, {cols}ULL"),
        1,
    ) else {
        return;
    };
    assert_close(&got, &[want], "cross-entropy");
}

#[test]
fn mse_matches_the_cpu_kernel() {
    let n = 70_000;
    let (a, b) = (values(n, 1), values(n, 2));
    let want = kernels::mse(&a, &b);
    let Some(got) = run_cuda_on_cpu(
        SOURCE,
        "dagger_mse",
        (blocks_striding(n), BLOCK),
        &[a, b],
        &format!("{n}ULL"),
        1,
    ) else {
        return;
    };
    assert!(
        (got[0] - want).abs() <= 1e-4 * want.abs(),
        "{} vs {want}",
        got[0]
    );
}
