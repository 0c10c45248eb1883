//! CPU kernels of the ops that are not fused: products, reductions,
//! softmax, losses and data movement.
//!
//! Each takes its operands as slices with their shapes and writes a result
//! slice the memory plan guarantees to be distinct from them. Matrix
//! products call faer (blocked, vectorized; large ones split between the
//! runtime's workers); the rest are plain loops over an `(outer, axis,
//! inner)` view or an odometer over the result's indices.

use crate::{Binary, Shape, Unary};
use faer::{Accum, MatMut, MatRef, Par};

/// Products with at least this many multiply-adds are split between the
/// runtime's workers.
const PARALLEL_FLOPS: usize = 1 << 22;

/// Fewest rows (or, for a product of few rows, columns) of the result a
/// split product hands to one worker.
const MIN_ROWS: usize = 64;

/// `out = op(a) op(b)` for row-major matrices `a: sa`, `b: sb`.
///
/// The product is faer's, on one thread per block: large products are cut
/// in halves by rows of the result (by columns where it has too few rows,
/// as a training step's forward products of a small batch have) and the
/// halves forked with the runtime's [`join`](dagger_runtime::join::join)
/// (which allocates nothing), so a training step's products use every core
/// without an allocation.
pub fn matmul(
    a: &[f32],
    sa: &Shape,
    b: &[f32],
    sb: &Shape,
    trans_a: bool,
    trans_b: bool,
    out: &mut [f32],
) {
    let (ra, ca) = (sa.dims()[0], sa.dims()[1]);
    let (rb, cb) = (sb.dims()[0], sb.dims()[1]);
    let a = MatRef::from_row_major_slice(a, ra, ca);
    let a = if trans_a { a.transpose() } else { a };
    let b = MatRef::from_row_major_slice(b, rb, cb);
    let b = if trans_b { b.transpose() } else { b };
    let (m, n) = (a.nrows(), b.ncols());
    product(MatMut::from_row_major_slice_mut(out, m, n), a, b);
}

fn product(out: MatMut<'_, f32>, a: MatRef<'_, f32>, b: MatRef<'_, f32>) {
    let (m, n, k) = (out.nrows(), out.ncols(), a.ncols());
    let large = m * n * k >= PARALLEL_FLOPS;
    if large && m >= 2 * MIN_ROWS {
        let half = m / 2;
        let (top, bottom) = out.split_at_row_mut(half);
        let (a_top, a_bottom) = a.split_at_row(half);
        dagger_runtime::join::join(|| product(top, a_top, b), || product(bottom, a_bottom, b));
    } else if large && n >= 2 * MIN_ROWS {
        let half = n / 2;
        let (left, right) = out.split_at_col_mut(half);
        let (b_left, b_right) = b.split_at_col(half);
        dagger_runtime::join::join(|| product(left, a, b_left), || product(right, a, b_right));
    } else {
        faer::linalg::matmul::matmul(out, Accum::Replace, a, b, 1.0f32, Par::Seq);
    }
}

use crate::MAX_RANK;

/// Calls `f(i, j)` for every element of a tensor of extents `dims` in
/// row-major order, where `i` is its index and `j` its offset in a tensor
/// read with `strides` (stride 0 repeats an axis).
fn odometer(dims: &[usize], strides: &[usize], mut f: impl FnMut(usize, usize)) {
    let rank = dims.len();
    if rank == 0 {
        f(0, 0);
        return;
    }
    let (last, last_stride) = (dims[rank - 1], strides[rank - 1]);
    let mut coord = [0usize; MAX_RANK];
    let mut base = 0;
    let mut i = 0;
    let total: usize = dims.iter().product();
    while i < total {
        for c in 0..last {
            f(i + c, base + c * last_stride);
        }
        i += last;
        // Carry into the outer axes.
        let mut axis = rank - 1;
        while axis > 0 {
            axis -= 1;
            coord[axis] += 1;
            base += strides[axis];
            if coord[axis] < dims[axis] {
                break;
            }
            base -= strides[axis] * dims[axis];
            coord[axis] = 0;
        }
    }
}

/// Row-major strides of `dims`.
fn strides_of(dims: &[usize]) -> [usize; MAX_RANK] {
    let mut strides = [0usize; MAX_RANK];
    let mut step = 1;
    for axis in (0..dims.len()).rev() {
        strides[axis] = step;
        step *= dims[axis];
    }
    strides
}

/// Strides that read a tensor of extents `from` broadcast to `to`'s rank
/// and extents.
fn broadcast_strides(from: &[usize], to: &[usize]) -> [usize; MAX_RANK] {
    let own = strides_of(from);
    let lead = to.len() - from.len();
    let mut strides = [0usize; MAX_RANK];
    for (axis, s) in strides.iter_mut().enumerate().take(to.len()) {
        if axis >= lead && from[axis - lead] != 1 {
            *s = own[axis - lead];
        }
    }
    strides
}

/// `out` (shape `to`) = `a` (shape `from`) repeated along broadcast axes.
pub fn broadcast_to(a: &[f32], from: &Shape, to: &Shape, out: &mut [f32]) {
    let strides = broadcast_strides(from.dims(), to.dims());
    odometer(to.dims(), &strides[..to.rank()], |i, j| out[i] = a[j]);
}

/// `out` (extents `to`) = `a` (extents `from`) summed over the axes `to`
/// broadcasts along: the reverse of [`broadcast_to`].
pub fn sum_to(a: &[f32], from: &[usize], to: &[usize], out: &mut [f32]) {
    out.fill(0.0);
    let strides = broadcast_strides(to, from);
    odometer(from, &strides[..from.len()], |i, j| out[j] += a[i]);
}

/// `out` = `a` summed over `axes`.
pub fn sum_axes(a: &[f32], shape: &Shape, axes: &[usize], out: &mut [f32]) {
    let mut kept = [0usize; MAX_RANK];
    for (axis, k) in kept.iter_mut().enumerate().take(shape.rank()) {
        *k = if axes.contains(&axis) {
            1
        } else {
            shape.dims()[axis]
        };
    }
    sum_to(a, shape.dims(), &kept[..shape.rank()], out);
}

/// The `(outer, extent, inner)` view of `shape` around `axis`.
fn around(shape: &Shape, axis: usize) -> (usize, usize, usize) {
    let d = shape.dims();
    (
        d[..axis].iter().product(),
        d[axis],
        d[axis + 1..].iter().product(),
    )
}

/// Softmax (or, with `log`, log-softmax) of `a` along `axis`.
pub fn softmax(a: &[f32], shape: &Shape, axis: usize, log: bool, out: &mut [f32]) {
    let (outer, n, inner) = around(shape, axis);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * n * inner + j * inner + i;
            let max = (0..n).map(|j| a[at(j)]).fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0.0;
            for j in 0..n {
                let e = (a[at(j)] - max).exp();
                out[at(j)] = e;
                total += e;
            }
            if log {
                let lse = total.ln();
                for j in 0..n {
                    out[at(j)] = a[at(j)] - max - lse;
                }
            } else {
                for j in 0..n {
                    out[at(j)] /= total;
                }
            }
        }
    }
}

/// Mean over rows of `-sum(target * log_softmax(logits))` along the last axis.
pub fn cross_entropy(logits: &[f32], target: &[f32], shape: &Shape) -> f32 {
    let classes = *shape.dims().last().expect("rank >= 1");
    let rows = shape.numel() / classes.max(1);
    let mut total = 0.0f64;
    for r in 0..rows {
        let z = &logits[r * classes..(r + 1) * classes];
        let t = &target[r * classes..(r + 1) * classes];
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + z.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
        total -= z
            .iter()
            .zip(t)
            .map(|(&zv, &tv)| (tv * (zv - lse)) as f64)
            .sum::<f64>();
    }
    (total / rows.max(1) as f64) as f32
}

/// Mean of `(a - b)^2`.
pub fn mse(a: &[f32], b: &[f32]) -> f32 {
    let total: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| ((x - y) as f64).powi(2))
        .sum();
    (total / a.len().max(1) as f64) as f32
}

/// `out` = `a` (shape `shape`) with axes permuted by `perm`.
pub fn transpose(a: &[f32], shape: &Shape, perm: &[usize], out: &mut [f32]) {
    let own = strides_of(shape.dims());
    let (mut dims, mut strides) = ([0usize; MAX_RANK], [0usize; MAX_RANK]);
    for (i, &p) in perm.iter().enumerate() {
        dims[i] = shape.dims()[p];
        strides[i] = own[p];
    }
    let rank = perm.len();
    odometer(&dims[..rank], &strides[..rank], |i, j| out[i] = a[j]);
}

/// Copies `a` into `out` window by window along `axis`: `a`'s elements
/// `a_start..a_start + len` along the axis go to `out`'s `out_start..`.
/// Slices, pads and concatenations are all this copy.
#[allow(clippy::too_many_arguments)]
pub fn copy_along(
    a: &[f32],
    a_shape: &Shape,
    axis: usize,
    a_start: usize,
    len: usize,
    out: &mut [f32],
    out_extent: usize,
    out_start: usize,
) {
    let (outer, a_extent, inner) = around(a_shape, axis);
    let chunk = len * inner;
    for o in 0..outer {
        let from = (o * a_extent + a_start) * inner;
        let to = (o * out_extent + out_start) * inner;
        out[to..to + chunk].copy_from_slice(&a[from..from + chunk]);
    }
}

/// An elementwise op with any broadcasting: the general path for nodes the
/// fusion pass left alone. Reads and writes through raw pointers because
/// the memory plan may let `out` be an operand's buffer (in place).
///
/// # Safety
/// Each operand pointer must be valid for its shape's elements and `out`
/// for `out_shape`'s; an operand sharing `out`'s memory must have its shape.
pub unsafe fn elementwise(
    op: Elementwise,
    operands: &[(*const f32, &Shape)],
    out_shape: &Shape,
    out: *mut f32,
) {
    let rank = out_shape.rank();
    let mut strides = [[0usize; MAX_RANK]; 2];
    for (k, (_, shape)) in operands.iter().enumerate() {
        strides[k] = broadcast_strides(shape.dims(), out_shape.dims());
    }
    for i in 0..out_shape.numel() {
        // The element's coordinates, and each operand's offset from them.
        let (mut rest, mut offsets) = (i, [0usize; 2]);
        for axis in (0..rank).rev() {
            let extent = out_shape.dims()[axis];
            let coord = rest % extent;
            rest /= extent;
            for (k, offset) in offsets.iter_mut().enumerate() {
                *offset += coord * strides[k][axis];
            }
        }
        let x = *operands[0].0.add(offsets[0]);
        let v = match op {
            Elementwise::Unary(u) => u.apply(x),
            Elementwise::Binary(b) => b.apply(x, *operands[1].0.add(offsets[1])),
        };
        *out.add(i) = v;
    }
}

/// The op of an unfused elementwise node.
#[derive(Clone, Copy, Debug)]
pub enum Elementwise {
    /// One operand.
    Unary(Unary),
    /// Two operands, broadcast.
    Binary(Binary),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_handles_every_transpose() {
        // a = [[1, 2, 3], [4, 5, 6]], b = [[1, 0], [0, 1], [1, 1]]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let (sa, sb) = (Shape::of(&[2, 3]), Shape::of(&[3, 2]));
        let mut out = [0.0; 4];
        matmul(&a, &sa, &b, &sb, false, false, &mut out);
        assert_eq!(out, [4.0, 5.0, 10.0, 11.0]);
        // aᵀ (3x2) times aᵀᵀ... : (aᵀ)ᵀ bᵀ = a bᵀ would be 2x3 by 2x3: use bᵀ aᵀ = (a b)ᵀ.
        matmul(&b, &sb, &a, &sa, true, true, &mut out);
        assert_eq!(out, [4.0, 10.0, 5.0, 11.0]);
    }

    #[test]
    fn split_products_equal_the_plain_product() {
        // Large enough to split: by rows (256 rows), and by columns (a
        // small batch's 64 rows), each with every transpose.
        for (m, k, n) in [(256, 128, 160), (64, 256, 1024)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
            let mut plain = vec![0.0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    plain[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                }
            }
            let at = transposed(&a, m, k);
            let bt = transposed(&b, k, n);
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let (x, sx) = if ta { (&at, [k, m]) } else { (&a, [m, k]) };
                let (y, sy) = if tb { (&bt, [n, k]) } else { (&b, [k, n]) };
                let mut out = vec![0.0f32; m * n];
                matmul(x, &Shape::of(&sx), y, &Shape::of(&sy), ta, tb, &mut out);
                assert_eq!(out, plain, "{m}x{k}x{n}, transposes {ta} {tb}");
            }
        }
    }

    fn transposed(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| a[(i % rows) * cols + i / rows])
            .collect()
    }

    #[test]
    fn sums_broadcasts_and_transposes() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let s = Shape::of(&[2, 3]);
        let mut cols = [0.0; 3];
        sum_to(&a, s.dims(), &[3], &mut cols);
        assert_eq!(cols, [5.0, 7.0, 9.0]);
        let mut rows = [0.0; 2];
        sum_axes(&a, &s, &[1], &mut rows);
        assert_eq!(rows, [6.0, 15.0]);
        let mut back = [0.0; 6];
        broadcast_to(&rows, &Shape::of(&[2, 1]), &s, &mut back);
        assert_eq!(back, [6.0, 6.0, 6.0, 15.0, 15.0, 15.0]);
        let mut t = [0.0; 6];
        transpose(&a, &s, &[1, 0], &mut t);
        assert_eq!(t, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_cross_entropy_matches() {
        let z = [1.0, 2.0, 3.0, 1.0, 1.0, 1.0];
        let s = Shape::of(&[2, 3]);
        let mut p = [0.0; 6];
        softmax(&z, &s, 1, false, &mut p);
        assert!((p[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((p[3] - 1.0 / 3.0).abs() < 1e-6);
        let t = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        let expected = -(p[2].ln() + p[3].ln()) / 2.0;
        assert!((cross_entropy(&z, &t, &s) - expected).abs() < 1e-6);
    }
}
