//! Shape inference: the result shape of every op from its operands' shapes.
//!
//! [`infer`] is the one place that knows each op's shape rule; the builder
//! calls it for every node it adds, so a graph that exists is well shaped,
//! and a mistake is reported where it is made, naming the op and the shapes.

use super::error::{shape_error, TensorResult};
use super::op::TensorOp;
use super::shape::{broadcast, broadcasts_to, Shape};

/// The shape of `op` applied to operands of shapes `operands`. `requested`
/// is the caller's target shape for ops that take one (const, reshape,
/// broadcast_to, sum_to).
pub fn infer(op: &TensorOp, operands: &[&Shape], requested: Option<&Shape>) -> TensorResult<Shape> {
    let name = op.to_string();
    let arity = arity(op);
    if let Some(n) = arity {
        if operands.len() != n {
            return Err(shape_error(
                &name,
                format!("takes {n} operands, got {}", operands.len()),
            ));
        }
    }
    let target = || {
        requested
            .cloned()
            .ok_or_else(|| shape_error(&name, "needs a target shape"))
    };
    match op {
        TensorOp::Input { .. }
        | TensorOp::Param { .. }
        | TensorOp::Const { .. }
        | TensorOp::Custom(_) => target(),
        TensorOp::Unary(_) | TensorOp::AllReduce { .. } | TensorOp::EnterParallel => {
            Ok(operands[0].clone())
        }
        TensorOp::Binary(_) => broadcast(operands[0], operands[1]).ok_or_else(|| {
            shape_error(
                &name,
                format!(
                    "shapes {} and {} do not broadcast",
                    operands[0], operands[1]
                ),
            )
        }),
        TensorOp::Fused(k) if k.reduce.is_some() => target(),
        TensorOp::Fused(_) => operands.iter().try_fold(Shape::scalar(), |acc, s| {
            broadcast(&acc, s).ok_or_else(|| {
                shape_error(
                    &name,
                    format!("operand shape {s} does not broadcast to {acc}"),
                )
            })
        }),
        TensorOp::MatMul { trans_a, trans_b } => {
            matmul(&name, operands[0], operands[1], *trans_a, *trans_b)
        }
        TensorOp::Sum { axes, keep_dims } => {
            check_axes(&name, operands[0], axes)?;
            Ok(if *keep_dims {
                operands[0].reduced_keep(axes)
            } else {
                operands[0].reduced_drop(axes)
            })
        }
        TensorOp::Softmax { axis } | TensorOp::LogSoftmax { axis } => {
            check_axes(&name, operands[0], &[*axis])?;
            Ok(operands[0].clone())
        }
        TensorOp::CrossEntropy => {
            let (logits, target) = (operands[0], operands[1]);
            if logits != target || logits.rank() == 0 {
                return Err(shape_error(
                    &name,
                    format!("logits {logits} and targets {target} must have one equal shape of rank >= 1"),
                ));
            }
            Ok(Shape::scalar())
        }
        TensorOp::Mse => {
            if operands[0] != operands[1] {
                return Err(shape_error(
                    &name,
                    format!(
                        "prediction {} and target {} differ",
                        operands[0], operands[1]
                    ),
                ));
            }
            Ok(Shape::scalar())
        }
        TensorOp::Reshape => {
            let to = target()?;
            if to.numel() != operands[0].numel() {
                return Err(shape_error(
                    &name,
                    format!(
                        "cannot reshape {} ({} elements) to {to} ({} elements)",
                        operands[0],
                        operands[0].numel(),
                        to.numel()
                    ),
                ));
            }
            Ok(to)
        }
        TensorOp::Transpose { perm } => {
            let mut seen = perm.clone();
            seen.sort_unstable();
            if seen != (0..operands[0].rank()).collect::<Vec<_>>() {
                return Err(shape_error(
                    &name,
                    format!(
                        "{perm:?} is not a permutation of the axes of {}",
                        operands[0]
                    ),
                ));
            }
            Ok(Shape(perm.iter().map(|&a| operands[0].0[a]).collect()))
        }
        TensorOp::Slice { axis, start, end } => {
            check_axes(&name, operands[0], &[*axis])?;
            if start >= end || *end > operands[0].0[*axis] {
                return Err(shape_error(
                    &name,
                    format!(
                        "range {start}..{end} is empty or outside axis {axis} of {}",
                        operands[0]
                    ),
                ));
            }
            let mut dims = operands[0].0.clone();
            dims[*axis] = end - start;
            Ok(Shape(dims))
        }
        TensorOp::Pad {
            axis,
            before,
            after,
        } => {
            check_axes(&name, operands[0], &[*axis])?;
            let mut dims = operands[0].0.clone();
            dims[*axis] += before + after;
            Ok(Shape(dims))
        }
        TensorOp::Concat { axis } => concat(&name, operands, *axis),
        TensorOp::BroadcastTo => {
            let to = target()?;
            if !broadcasts_to(operands[0], &to) {
                return Err(shape_error(
                    &name,
                    format!("{} does not broadcast to {to}", operands[0]),
                ));
            }
            Ok(to)
        }
        TensorOp::SumTo => {
            let to = target()?;
            if !broadcasts_to(&to, operands[0]) {
                return Err(shape_error(
                    &name,
                    format!("{} cannot be summed down to {to}", operands[0]),
                ));
            }
            Ok(to)
        }
    }
}

/// Number of operands an op takes (`None`: any number).
pub fn arity(op: &TensorOp) -> Option<usize> {
    match op {
        TensorOp::Input { .. } | TensorOp::Param { .. } | TensorOp::Const { .. } => Some(0),
        TensorOp::Binary(_) | TensorOp::MatMul { .. } | TensorOp::CrossEntropy | TensorOp::Mse => {
            Some(2)
        }
        TensorOp::Fused(_) | TensorOp::Concat { .. } | TensorOp::Custom(_) => None,
        _ => Some(1),
    }
}

fn matmul(name: &str, a: &Shape, b: &Shape, ta: bool, tb: bool) -> TensorResult<Shape> {
    if a.rank() != 2 || b.rank() != 2 {
        return Err(shape_error(
            name,
            format!("operands must be matrices, got {a} and {b}"),
        ));
    }
    let (m, ka) = if ta {
        (a.0[1], a.0[0])
    } else {
        (a.0[0], a.0[1])
    };
    let (kb, n) = if tb {
        (b.0[1], b.0[0])
    } else {
        (b.0[0], b.0[1])
    };
    if ka != kb {
        return Err(shape_error(
            name,
            format!(
                "inner dimensions differ: {a}{} x {b}{} ({ka} vs {kb})",
                if ta { "ᵀ" } else { "" },
                if tb { "ᵀ" } else { "" }
            ),
        ));
    }
    Ok(Shape(vec![m, n]))
}

fn concat(name: &str, operands: &[&Shape], axis: usize) -> TensorResult<Shape> {
    let Some(first) = operands.first() else {
        return Err(shape_error(name, "needs at least one operand"));
    };
    check_axes(name, first, &[axis])?;
    let mut dims = first.0.clone();
    for s in &operands[1..] {
        let same_elsewhere =
            s.rank() == first.rank() && (0..s.rank()).all(|i| i == axis || s.0[i] == first.0[i]);
        if !same_elsewhere {
            return Err(shape_error(
                name,
                format!("{s} and {first} differ outside axis {axis}"),
            ));
        }
        dims[axis] += s.0[axis];
    }
    Ok(Shape(dims))
}

fn check_axes(name: &str, s: &Shape, axes: &[usize]) -> TensorResult<()> {
    match axes.iter().find(|&&a| a >= s.rank()) {
        Some(a) => Err(shape_error(
            name,
            format!("axis {a} is out of range for {s}"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elementwise::Binary;

    #[test]
    fn errors_name_the_op_and_both_shapes() {
        let a = Shape::of(&[32, 64]);
        let b = Shape::of(&[32, 10]);
        let mm = TensorOp::MatMul {
            trans_a: false,
            trans_b: false,
        };
        let err = infer(&mm, &[&a, &b], None).unwrap_err().to_string();
        assert_eq!(
            err,
            "matmul: inner dimensions differ: [32, 64] x [32, 10] (64 vs 32)"
        );
        let err = infer(&TensorOp::Binary(Binary::Add), &[&a, &b], None)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "add: shapes [32, 64] and [32, 10] do not broadcast");
        let tn = TensorOp::MatMul {
            trans_a: true,
            trans_b: false,
        };
        assert_eq!(infer(&tn, &[&a, &b], None).unwrap(), Shape::of(&[64, 10]));
    }

    #[test]
    fn reductions_reshapes_and_slices() {
        let s = Shape::of(&[2, 3, 4]);
        let sum = TensorOp::Sum {
            axes: vec![0, 2],
            keep_dims: false,
        };
        assert_eq!(infer(&sum, &[&s], None).unwrap(), Shape::of(&[3]));
        let t = TensorOp::Transpose {
            perm: vec![2, 0, 1],
        };
        assert_eq!(infer(&t, &[&s], None).unwrap(), Shape::of(&[4, 2, 3]));
        let bad = infer(&TensorOp::Reshape, &[&s], Some(&Shape::of(&[5, 5]))).unwrap_err();
        assert!(bad.to_string().contains("24 elements"), "{bad}");
        let slice = TensorOp::Slice {
            axis: 1,
            start: 1,
            end: 3,
        };
        assert_eq!(infer(&slice, &[&s], None).unwrap(), Shape::of(&[2, 2, 4]));
        let cat = TensorOp::Concat { axis: 2 };
        assert_eq!(infer(&cat, &[&s, &s], None).unwrap(), Shape::of(&[2, 3, 8]));
    }
}
