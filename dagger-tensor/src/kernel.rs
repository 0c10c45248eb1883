//! Fused elementwise kernels: a small expression program per output element.
//!
//! The [fusion pass](mod@super::fuse) turns a tree of elementwise nodes into one
//! [`TensorOp::Fused`](super::TensorOp::Fused) node whose [`Kernel`] lists
//! the work for one element in SSA order: load operand `i` (broadcast to the
//! node's shape), a constant, or a unary/binary op of earlier steps. The
//! last step is the result. Back ends compile the program (Cranelift on CPU,
//! NVRTC on GPU); [`Kernel::eval`] is the reference they are tested against.

use super::elementwise::{Binary, Unary};
use super::shape::Shape;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One step of a fused kernel; operands are indices of earlier steps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelStep {
    /// The element of operand `n` of the fused node.
    Load(u32),
    /// A constant.
    Const(f32),
    /// A unary op of an earlier step.
    Unary(Unary, u32),
    /// A binary op of two earlier steps.
    Binary(Binary, u32, u32),
}

/// Which sums a kernel with a reduction takes, viewing its domain as a
/// `rows x cols` matrix ([`matrix_view`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// One sum per row (over the last axis).
    Rows,
    /// One sum per column (over every axis but the last: a bias gradient).
    Columns,
    /// One sum of everything.
    All,
}

/// A reduction ending a kernel: the elementwise program runs over `domain`
/// and its results are summed by `kind` into the node's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reduce {
    /// The sums taken.
    pub kind: Reduction,
    /// The shape the elementwise program runs over.
    pub domain: Shape,
}

impl Reduction {
    /// The reduction summing axes `axes` of a tensor of shape `from`, if it
    /// is one of the three (axes of extent 1 do not count).
    pub fn of(from: &Shape, axes: &[usize]) -> Option<Reduction> {
        let rank = from.rank();
        let real: Vec<usize> = (0..rank).filter(|&a| from.0[a] != 1).collect();
        let summed: Vec<usize> = real.iter().copied().filter(|a| axes.contains(a)).collect();
        if summed.is_empty() {
            None
        } else if summed == real {
            Some(Reduction::All)
        } else if summed == [rank - 1] {
            Some(Reduction::Rows)
        } else if summed
            == real
                .iter()
                .copied()
                .filter(|&a| a != rank - 1)
                .collect::<Vec<_>>()
        {
            Some(Reduction::Columns)
        } else {
            None
        }
    }

    /// The axes of `from` that summing it down to `to` (the reverse of
    /// broadcasting `to` to `from`) sums over.
    pub fn summed_axes(from: &Shape, to: &Shape) -> Vec<usize> {
        let lead = from.rank().saturating_sub(to.rank());
        (0..from.rank())
            .filter(|&a| a < lead || (to.0[a - lead] == 1 && from.0[a] != 1))
            .collect()
    }
}

/// An elementwise program computing one element of a fused node, possibly
/// followed by a reduction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    /// The steps in order; the last is the result.
    pub steps: Vec<KernelStep>,
    /// The sums taken of the results, if any.
    pub reduce: Option<Reduce>,
}

impl Kernel {
    /// Appends a step and returns its index.
    pub fn push(&mut self, step: KernelStep) -> u32 {
        self.steps.push(step);
        (self.steps.len() - 1) as u32
    }

    /// Number of operations other than loads and constants.
    pub fn op_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, KernelStep::Unary(..) | KernelStep::Binary(..)))
            .count()
    }

    /// Computes one element from the operands' elements (`loads[n]` is
    /// operand `n`'s): the reference semantics.
    pub fn eval(&self, loads: &[f32]) -> f32 {
        let mut values = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let v = match *step {
                KernelStep::Load(n) => loads[n as usize],
                KernelStep::Const(c) => c,
                KernelStep::Unary(op, a) => op.apply(values[a as usize]),
                KernelStep::Binary(op, a, b) => op.apply(values[a as usize], values[b as usize]),
            };
            values.push(v);
        }
        values.last().copied().unwrap_or(0.0)
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match step {
                KernelStep::Load(n) => write!(f, "t{i} = load {n}")?,
                KernelStep::Const(c) => write!(f, "t{i} = {c}")?,
                KernelStep::Unary(op, a) => write!(f, "t{i} = {}(t{a})", op.name())?,
                KernelStep::Binary(op, a, b) => write!(f, "t{i} = {}(t{a}, t{b})", op.name())?,
            }
        }
        if let Some(r) = &self.reduce {
            let kind = match r.kind {
                Reduction::Rows => "rows",
                Reduction::Columns => "columns",
                Reduction::All => "all",
            };
            write!(f, "; sum {kind} of {}", r.domain)?;
        }
        Ok(())
    }
}

/// How a kernel operand is read, viewing the node's result as a matrix of
/// `rows x cols` with `cols` its last extent. Back ends generate one load
/// form per pattern; operands broadcast any other way are not fused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Broadcast {
    /// Same shape as the result: element `(r, c)` at `r * cols + c`.
    Full,
    /// One element for all.
    Scalar,
    /// One row repeated (a bias): element `c`.
    Row,
    /// One column repeated (a per-row value): element `r`.
    Column,
}

impl Broadcast {
    /// The pattern of an operand of shape `operand` in a result of shape
    /// `out`, if it is one of the four.
    pub fn of(operand: &Shape, out: &Shape) -> Option<Broadcast> {
        if operand == out {
            return Some(Broadcast::Full);
        }
        if operand.numel() == 1 {
            return Some(Broadcast::Scalar);
        }
        let trimmed: Vec<usize> = operand.0.iter().copied().skip_while(|&d| d == 1).collect();
        if out.rank() >= 1 && trimmed == [out.0[out.rank() - 1]] {
            return Some(Broadcast::Row);
        }
        let lead = out.rank().checked_sub(operand.rank())?;
        let padded: Vec<usize> = std::iter::repeat_n(1, lead)
            .chain(operand.0.iter().copied())
            .collect();
        let (last, rest) = padded.split_last()?;
        if *last == 1 && rest == &out.0[..out.rank() - 1] {
            return Some(Broadcast::Column);
        }
        None
    }
}

/// The `(rows, cols)` matrix view of a shape that kernels iterate over.
pub fn matrix_view(out: &Shape) -> (usize, usize) {
    let cols = out.0.last().copied().unwrap_or(1);
    (out.numel().checked_div(cols).unwrap_or(0), cols)
}

/// How a back end runs one fused node: each operand's broadcast pattern,
/// the `rows x cols` domain the kernel walks, and whether the result
/// accumulates (column and total sums: zero it before the kernel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FusedLayout {
    /// How operand `i` is read.
    pub patterns: Vec<Broadcast>,
    /// Rows of the domain (1 when the kernel walks it as one flat row).
    pub rows: usize,
    /// Columns of the domain.
    pub cols: usize,
    /// The kernel adds into its result.
    pub accumulates: bool,
}

impl FusedLayout {
    /// The layout of a fused node with `kernel`, result shape `out` and
    /// operand shapes `operands`; `None` if an operand does not broadcast
    /// to the domain (the fusion pass never makes such a node).
    pub fn of(kernel: &Kernel, out: &Shape, operands: &[&Shape]) -> Option<FusedLayout> {
        let domain = kernel.reduce.as_ref().map_or(out, |r| &r.domain);
        let patterns = operands
            .iter()
            .map(|s| Broadcast::of(s, domain))
            .collect::<Option<Vec<_>>>()?;
        let by_rows = patterns
            .iter()
            .any(|p| matches!(p, Broadcast::Row | Broadcast::Column))
            || kernel
                .reduce
                .as_ref()
                .is_some_and(|r| r.kind != Reduction::All);
        let (rows, cols) = if by_rows {
            matrix_view(domain)
        } else {
            (1, domain.numel())
        };
        let accumulates = kernel
            .reduce
            .as_ref()
            .is_some_and(|r| r.kind != Reduction::Rows);
        Some(FusedLayout {
            patterns,
            rows,
            cols,
            accumulates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_in_order() {
        let mut k = Kernel::default();
        let x = k.push(KernelStep::Load(0));
        let b = k.push(KernelStep::Load(1));
        let s = k.push(KernelStep::Binary(Binary::Add, x, b));
        k.push(KernelStep::Unary(Unary::Relu, s));
        assert_eq!(k.eval(&[1.0, -3.0]), 0.0);
        assert_eq!(k.eval(&[1.0, 3.0]), 4.0);
        assert_eq!(k.op_count(), 2);
        assert_eq!(
            k.to_string(),
            "t0 = load 0; t1 = load 1; t2 = add(t0, t1); t3 = relu(t2)"
        );
    }

    #[test]
    fn broadcast_patterns() {
        let out = Shape::of(&[4, 3]);
        let of = |d: &[usize]| Broadcast::of(&Shape::of(d), &out);
        assert_eq!(of(&[4, 3]), Some(Broadcast::Full));
        assert_eq!(of(&[]), Some(Broadcast::Scalar));
        assert_eq!(of(&[1, 1]), Some(Broadcast::Scalar));
        assert_eq!(of(&[3]), Some(Broadcast::Row));
        assert_eq!(of(&[1, 3]), Some(Broadcast::Row));
        assert_eq!(of(&[4, 1]), Some(Broadcast::Column));
        assert_eq!(
            Broadcast::of(&Shape::of(&[2, 1, 3]), &Shape::of(&[2, 5, 3])),
            None
        );
        assert_eq!(matrix_view(&Shape::of(&[2, 5, 3])), (10, 3));
    }

    #[test]
    fn reductions_by_the_axes_they_sum() {
        let d = Shape::of(&[3, 3]);
        assert_eq!(Reduction::of(&d, &[0]), Some(Reduction::Columns));
        assert_eq!(Reduction::of(&d, &[1]), Some(Reduction::Rows));
        assert_eq!(Reduction::of(&d, &[0, 1]), Some(Reduction::All));
        let d3 = Shape::of(&[2, 5, 3]);
        assert_eq!(Reduction::of(&d3, &[0, 1]), Some(Reduction::Columns));
        assert_eq!(
            Reduction::of(&d3, &[1]),
            None,
            "the middle axis alone is none of the three"
        );
        assert_eq!(
            Reduction::of(&Shape::of(&[4, 1]), &[0]),
            Some(Reduction::All)
        );
        assert_eq!(Reduction::summed_axes(&d3, &Shape::of(&[3])), vec![0, 1]);
        assert_eq!(Reduction::summed_axes(&d3, &Shape::of(&[2, 1, 3])), vec![1]);
    }
}
