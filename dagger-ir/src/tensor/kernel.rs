//! Fused elementwise kernels: a small expression program per output element.
//!
//! The [fusion pass](mod@super::fuse) turns a tree of elementwise nodes into one
//! [`TensorOp::Fused`](super::TensorOp::Fused) node whose [`Kernel`] lists
//! the work for one element in SSA order: load operand `i` (broadcast to the
//! node's shape), a constant, or a unary/binary op of earlier steps. The
//! last step is the result. Back ends compile the program (Cranelift on CPU,
//! NVRTC on GPU); [`Kernel::eval`] is the reference they are tested against.

use super::op::{Binary, Unary};
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

/// An elementwise program computing one element of a fused node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    /// The steps in order; the last is the result.
    pub steps: Vec<KernelStep>,
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
}
