//! The CUDA C of fused kernels, checked on the CPU: each generated kernel
//! is compiled with the host's C++ compiler behind a few lines that stand
//! in for CUDA's built-ins (block and thread indices, `atomicAdd`,
//! `__int_as_float`), run thread by thread over its launch shape, and
//! compared with the IR's reference semantics ([`Kernel::eval`]). On a GPU
//! the same source goes through NVRTC (`tests` of `dagger_cuda::fused`).
//! Without a C++ compiler the test says so and passes.

mod common;

use dagger_cuda::codegen::{cuda_source, LaunchShape};
use dagger_tensor::{Binary, Broadcast, Kernel, KernelStep, Reduce, Reduction, Shape, Unary};

/// Runs `kernel` on the CPU as the GPU would (every thread of its launch,
/// one after the other) and returns the result; `None` without `c++`.
fn run_on_cpu(
    kernel: &Kernel,
    patterns: &[Broadcast],
    operands: &[Vec<f32>],
    (rows, cols): (usize, usize),
    out_len: usize,
) -> Option<Vec<f32>> {
    let launch = LaunchShape::of(kernel, rows, cols);
    common::run_cuda_on_cpu(
        &cuda_source("fused", kernel, patterns),
        "fused",
        (launch.grid, launch.block),
        operands,
        &format!("{rows}ULL, {cols}ULL"),
        out_len,
    )
}

/// Operand `n`'s element at `(r, c)` under its pattern.
fn load(data: &[f32], pattern: Broadcast, r: usize, c: usize, cols: usize) -> f32 {
    match pattern {
        Broadcast::Full => data[r * cols + c],
        Broadcast::Scalar => data[0],
        Broadcast::Row => data[c],
        Broadcast::Column => data[r],
    }
}

/// What the kernel computes, by the IR's reference semantics.
fn reference(
    kernel: &Kernel,
    patterns: &[Broadcast],
    operands: &[Vec<f32>],
    (rows, cols): (usize, usize),
) -> Vec<f32> {
    let at = |r: usize, c: usize| {
        let loads: Vec<f32> = operands
            .iter()
            .zip(patterns)
            .map(|(d, &p)| load(d, p, r, c, cols))
            .collect();
        kernel.eval(&loads)
    };
    match kernel.reduce.as_ref().map(|r| r.kind) {
        None => (0..rows * cols).map(|i| at(i / cols, i % cols)).collect(),
        Some(Reduction::Rows) => (0..rows)
            .map(|r| (0..cols).map(|c| at(r, c)).sum())
            .collect(),
        Some(Reduction::Columns) => (0..cols)
            .map(|c| (0..rows).map(|r| at(r, c)).sum())
            .collect(),
        Some(Reduction::All) => vec![(0..rows * cols).map(|i| at(i / cols, i % cols)).sum()],
    }
}

/// Data for an operand of `pattern` in a `rows x cols` domain; positive
/// when `positive` (for log, sqrt, recip).
fn operand(
    pattern: Broadcast,
    (rows, cols): (usize, usize),
    positive: bool,
    seed: usize,
) -> Vec<f32> {
    let len = match pattern {
        Broadcast::Full => rows * cols,
        Broadcast::Scalar => 1,
        Broadcast::Row => cols,
        Broadcast::Column => rows,
    };
    (0..len)
        .map(|i| {
            let v = ((i * 37 + seed * 11) % 23) as f32 / 5.0 - 2.2;
            if positive {
                v.abs() + 0.1
            } else {
                v
            }
        })
        .collect()
}

fn check(kernel: &Kernel, patterns: &[Broadcast], dims: (usize, usize), positive: bool) -> bool {
    let operands: Vec<Vec<f32>> = patterns
        .iter()
        .enumerate()
        .map(|(i, &p)| operand(p, dims, positive, i))
        .collect();
    let want = reference(kernel, patterns, &operands, dims);
    let Some(got) = run_on_cpu(kernel, patterns, &operands, dims, want.len()) else {
        return false;
    };
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let tolerance = 1e-5 * w.abs().max(1.0);
        assert!(
            (g - w).abs() <= tolerance,
            "{kernel}: element {i}: {g} vs {w}"
        );
    }
    true
}

#[test]
fn generated_kernels_compute_what_the_ir_means() {
    let dims = (7, 5);
    // Every unary op, after a constant scaling.
    for op in Unary::ALL {
        let mut k = Kernel::default();
        let x = k.push(KernelStep::Load(0));
        let c = k.push(KernelStep::Const(0.75));
        let s = k.push(KernelStep::Binary(Binary::Mul, x, c));
        k.push(KernelStep::Unary(op, s));
        let positive = matches!(op, Unary::Log | Unary::Sqrt | Unary::Recip);
        if !check(&k, &[Broadcast::Full], dims, positive) {
            return;
        }
    }
    // Every binary op, its second operand under every pattern.
    for op in Binary::ALL {
        for pattern in [
            Broadcast::Full,
            Broadcast::Scalar,
            Broadcast::Row,
            Broadcast::Column,
        ] {
            let mut k = Kernel::default();
            let a = k.push(KernelStep::Load(0));
            let b = k.push(KernelStep::Load(1));
            k.push(KernelStep::Binary(op, a, b));
            check(&k, &[Broadcast::Full, pattern], dims, op == Binary::Div);
        }
    }
    // A tree ending in each reduction: sum((a - b)^2) by rows, columns, all.
    for kind in [Reduction::Rows, Reduction::Columns, Reduction::All] {
        let mut k = Kernel::default();
        let a = k.push(KernelStep::Load(0));
        let b = k.push(KernelStep::Load(1));
        let d = k.push(KernelStep::Binary(Binary::Sub, a, b));
        k.push(KernelStep::Unary(Unary::Square, d));
        k.reduce = Some(Reduce {
            kind,
            domain: Shape::of(&[dims.0, dims.1]),
        });
        check(&k, &[Broadcast::Full, Broadcast::Row], dims, false);
    }
    // More rows than one block of threads.
    let mut k = Kernel::default();
    let a = k.push(KernelStep::Load(0));
    k.push(KernelStep::Unary(Unary::Tanh, a));
    check(&k, &[Broadcast::Full], (300, 3), false);
    k.reduce = Some(Reduce {
        kind: Reduction::All,
        domain: Shape::of(&[300, 3]),
    });
    check(&k, &[Broadcast::Full], (300, 3), false);
}
