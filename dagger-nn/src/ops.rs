//! The tensor ops as tasks over [`Array`]s (see [`Array`]'s module docs):
//! use them in `dag!{}`; [`lower`](super::lower()) knows each by name.

use super::array::{eager, Array};
use dagger_macros::task;
use dagger_tensor::{Binary, TensorOp, Unary};

/// Module path under which the op tasks are registered.
pub(crate) const OPS_PATH: &str = "dagger_nn::ops::";

/// The IR op of the op task called `name` (without [`OPS_PATH`]) on
/// operands of ranks `ranks`; `None` for a name that is no op.
pub(crate) fn op_named(name: &str, ranks: &[usize]) -> Option<TensorOp> {
    let last_axis = ranks.first().map_or(0, |r| r.saturating_sub(1));
    Some(match name {
        "matmul" => TensorOp::MatMul {
            trans_a: false,
            trans_b: false,
        },
        "add" => TensorOp::Binary(Binary::Add),
        "sub" => TensorOp::Binary(Binary::Sub),
        "mul" => TensorOp::Binary(Binary::Mul),
        "div" => TensorOp::Binary(Binary::Div),
        "relu" => TensorOp::Unary(Unary::Relu),
        "gelu" => TensorOp::Unary(Unary::Gelu),
        "tanh" => TensorOp::Unary(Unary::Tanh),
        "exp" => TensorOp::Unary(Unary::Exp),
        "softmax" => TensorOp::Softmax { axis: last_axis },
        "cross_entropy" => TensorOp::CrossEntropy,
        "mse" => TensorOp::Mse,
        "transpose" => TensorOp::Transpose { perm: vec![1, 0] },
        _ => return None,
    })
}

/// Runs the op task `name` on `args`.
fn run(name: &str, args: &[&Array]) -> Array {
    let ranks: Vec<usize> = args.iter().map(|a| a.shape.len()).collect();
    eager(
        op_named(name, &ranks).expect("every op task is in the table"),
        args,
    )
}

/// Matrix product.
#[task(pure, crate = dagger_runtime)]
pub fn matmul(a: Array, b: Array) -> Array {
    run("matmul", &[&a, &b])
}

/// `a + b`, broadcast.
#[task(pure, crate = dagger_runtime)]
pub fn add(a: Array, b: Array) -> Array {
    run("add", &[&a, &b])
}

/// `a - b`, broadcast.
#[task(pure, crate = dagger_runtime)]
pub fn sub(a: Array, b: Array) -> Array {
    run("sub", &[&a, &b])
}

/// `a * b`, broadcast.
#[task(pure, crate = dagger_runtime)]
pub fn mul(a: Array, b: Array) -> Array {
    run("mul", &[&a, &b])
}

/// `a / b`, broadcast.
#[task(pure, crate = dagger_runtime)]
pub fn div(a: Array, b: Array) -> Array {
    run("div", &[&a, &b])
}

/// `max(a, 0)`.
#[task(pure, crate = dagger_runtime)]
pub fn relu(a: Array) -> Array {
    run("relu", &[&a])
}

/// GELU (tanh approximation).
#[task(pure, crate = dagger_runtime)]
pub fn gelu(a: Array) -> Array {
    run("gelu", &[&a])
}

/// `tanh(a)`.
#[task(pure, crate = dagger_runtime)]
pub fn tanh(a: Array) -> Array {
    run("tanh", &[&a])
}

/// `exp(a)`.
#[task(pure, crate = dagger_runtime)]
pub fn exp(a: Array) -> Array {
    run("exp", &[&a])
}

/// Softmax along the last axis.
#[task(pure, crate = dagger_runtime)]
pub fn softmax(a: Array) -> Array {
    run("softmax", &[&a])
}

/// Mean cross-entropy of logits against target probabilities (scalar).
#[task(pure, crate = dagger_runtime)]
pub fn cross_entropy(logits: Array, target: Array) -> Array {
    run("cross_entropy", &[&logits, &target])
}

/// Mean squared error (scalar).
#[task(pure, crate = dagger_runtime)]
pub fn mse(prediction: Array, target: Array) -> Array {
    run("mse", &[&prediction, &target])
}

/// Transpose of a matrix.
#[task(pure, crate = dagger_runtime)]
pub fn transpose(a: Array) -> Array {
    run("transpose", &[&a])
}
