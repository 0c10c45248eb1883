//! The CUDA C of transposes, broadcasts, sums over axes and window copies,
//! checked on the CPU (see `common`) against the CPU kernels of the tensor
//! programs (`dagger_tensor::cpu::kernels`), the reference they must
//! match, with the launch parameters from the same functions the GPU
//! launchers call. Without a C++ compiler the tests say so and pass.

mod common;

use common::{assert_close, run_cuda_on_cpu, values};
use dagger_cuda::codegen::BLOCK;
use dagger_cuda::layout::{
    broadcast_args, copy_args, permute_args, sum_axes_args, sum_to_args, CopyArgs, PermuteArgs,
    SumArgs, SOURCE,
};
use dagger_cuda::softmax::blocks_striding;
use dagger_tensor::cpu::kernels;
use dagger_tensor::Shape;

/// `dagger_permute` over `x` with `args`, on the CPU.
fn permute(x: &[f32], args: &PermuteArgs) -> Option<Vec<f32>> {
    let n = args.n as usize;
    run_cuda_on_cpu(
        SOURCE,
        "dagger_permute",
        (blocks_striding(n), BLOCK),
        &[x.to_vec()],
        &format!(
            "{}, {}, {}, {}ULL",
            args.dims.c_literal(),
            args.strides.c_literal(),
            args.rank,
            args.n
        ),
        n,
    )
}

/// `dagger_sum_to` over `x` with `args`, on the CPU.
fn sum(x: &[f32], args: &SumArgs) -> Option<Vec<f32>> {
    let n = args.n as usize;
    run_cuda_on_cpu(
        SOURCE,
        "dagger_sum_to",
        (blocks_striding(n), BLOCK),
        &[x.to_vec()],
        &format!(
            "{}, {}, {}, {}, {}, {}, {}ULL, {}ULL",
            args.out_dims.c_literal(),
            args.out_strides.c_literal(),
            args.out_rank,
            args.red_dims.c_literal(),
            args.red_strides.c_literal(),
            args.red_rank,
            args.n,
            args.m
        ),
        n,
    )
}

/// `dagger_copy_along` of `x` with `args` into a zeroed output, on the CPU.
fn copy(x: &[f32], args: &CopyArgs) -> Option<Vec<f32>> {
    let a = args;
    run_cuda_on_cpu(
        SOURCE,
        "dagger_copy_along",
        (blocks_striding(a.copied()), BLOCK),
        &[x.to_vec()],
        &format!(
            "{}ULL, {}ULL, {}ULL, {}ULL, {}ULL, {}ULL, {}ULL",
            a.outer, a.len, a.inner, a.a_extent, a.a_start, a.out_extent, a.out_start
        ),
        a.out_len(),
    )
}

#[test]
fn transpose_matches_the_cpu_kernel_under_every_permutation() {
    let shape = Shape::of(&[2, 3, 4]);
    let perms: [&[usize]; 6] = [
        &[0, 1, 2],
        &[0, 2, 1],
        &[1, 0, 2],
        &[1, 2, 0],
        &[2, 0, 1],
        &[2, 1, 0],
    ];
    let mut cases: Vec<(Shape, &[usize])> = perms.iter().map(|&p| (shape.clone(), p)).collect();
    cases.push((Shape::of(&[7, 5]), &[1, 0]));
    for (shape, perm) in cases {
        let x = values(shape.numel(), 5);
        let mut want = vec![0.0; x.len()];
        kernels::transpose(&x, &shape, perm, &mut want);
        let Some(got) = permute(&x, &permute_args(&shape, perm).unwrap()) else {
            return;
        };
        assert_eq!(got, want, "transpose of {shape} by {perm:?}");
    }
    assert!(permute_args(&shape, &[0, 0, 1]).is_err());
    assert!(permute_args(&shape, &[0, 1]).is_err());
}

/// The broadcasts checked, `from -> to`; the sums reverse them.
fn broadcast_pairs() -> [(Shape, Shape); 3] {
    [
        (Shape::of(&[3, 1]), Shape::of(&[2, 3, 4])),
        (Shape::of(&[4]), Shape::of(&[3, 4])),
        (Shape::of(&[1]), Shape::of(&[5])),
    ]
}

#[test]
fn broadcast_to_matches_the_cpu_kernel() {
    for (from, to) in broadcast_pairs() {
        let x = values(from.numel(), 3);
        let mut want = vec![0.0; to.numel()];
        kernels::broadcast_to(&x, &from, &to, &mut want);
        let Some(got) = permute(&x, &broadcast_args(&from, &to).unwrap()) else {
            return;
        };
        assert_eq!(got, want, "broadcast of {from} to {to}");
    }
    assert!(broadcast_args(&Shape::of(&[3]), &Shape::of(&[4])).is_err());
}

#[test]
fn sum_to_matches_the_cpu_kernel() {
    for (to, from) in broadcast_pairs() {
        let x = values(from.numel(), 11);
        let mut want = vec![0.0; to.numel()];
        kernels::sum_to(&x, from.dims(), to.dims(), &mut want);
        let Some(got) = sum(&x, &sum_to_args(&from, &to).unwrap()) else {
            return;
        };
        assert_close(&got, &want, &format!("sum of {from} to {to}"));
    }
    assert!(sum_to_args(&Shape::of(&[3, 4]), &Shape::of(&[3])).is_err());
}

#[test]
fn sum_axes_matches_the_cpu_kernel() {
    let shape = Shape::of(&[3, 5, 4]);
    let x = values(shape.numel(), 13);
    let axes: [&[usize]; 4] = [&[0], &[1], &[0, 2], &[0, 1, 2]];
    for axes in axes {
        let mut want = vec![0.0; shape.reduced_keep(axes).numel()];
        kernels::sum_axes(&x, &shape, axes, &mut want);
        let Some(got) = sum(&x, &sum_axes_args(&shape, axes).unwrap()) else {
            return;
        };
        assert_close(&got, &want, &format!("sum over {axes:?}"));
    }
    assert!(sum_axes_args(&shape, &[3]).is_err());
}

/// The CPU kernel's copy into a zeroed output of `out_extent` along `axis`.
fn cpu_copy(x: &[f32], shape: &Shape, axis: usize, window: [usize; 4]) -> Vec<f32> {
    let [a_start, len, out_extent, out_start] = window;
    let mut out = vec![0.0; shape.numel() / shape.dims()[axis] * out_extent];
    kernels::copy_along(
        x, shape, axis, a_start, len, &mut out, out_extent, out_start,
    );
    out
}

#[test]
fn slice_pad_and_concat_match_the_cpu_kernel() {
    let shape = Shape::of(&[3, 5, 4]);
    let x = values(shape.numel(), 17);
    // A slice (1..4 along axis 1) and a pad (2 before, 1 after) of each axis.
    let mut windows = vec![(shape.clone(), 1, [1, 3, 3, 0], x.clone())];
    for axis in 0..3 {
        let extent = shape.dims()[axis];
        windows.push((shape.clone(), axis, [0, extent, extent + 3, 2], x.clone()));
    }
    // Concatenations along axes 0 and 2: each operand copied into its window.
    for (axis, first, second) in [(0, [2, 3, 4], [3, 3, 4]), (2, [3, 5, 2], [3, 5, 4])] {
        let (a, b) = (Shape::of(&first), Shape::of(&second));
        let total = first[axis] + second[axis];
        let window = [0, first[axis], total, 0];
        windows.push((a.clone(), axis, window, values(a.numel(), 19)));
        let window = [0, second[axis], total, first[axis]];
        windows.push((b.clone(), axis, window, values(b.numel(), 23)));
    }
    for (shape, axis, window, x) in windows {
        let want = cpu_copy(&x, &shape, axis, window);
        let [a_start, len, out_extent, out_start] = window;
        let args = copy_args(&shape, axis, a_start, len, out_extent, out_start).unwrap();
        let Some(got) = copy(&x, &args) else {
            return;
        };
        assert_eq!(got, want, "copy of {window:?} along axis {axis} of {shape}");
    }
    assert!(copy_args(&shape, 1, 3, 3, 5, 0).is_err());
    assert!(copy_args(&shape, 1, 0, 5, 4, 0).is_err());
    assert!(copy_args(&shape, 3, 0, 1, 1, 0).is_err());
}
