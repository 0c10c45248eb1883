//! Custom ops: a tensor program calling a user's `#[task]` of [`Array`]s
//! by its registered name.
//!
//! The task runs on the calling thread with copies of its operands, and
//! its result is copied into the node's buffer, so a custom op allocates
//! (the only nodes of a program that do). A panic or an `Err` from the
//! task, a task that is not registered, and a result of the wrong type or
//! shape are errors naming the task.

use super::array::Array;
use crate::{CustomOp, Shape, TensorError};
use dagger_runtime::datum::Datum;
use dagger_runtime::panic_message;
use dagger_runtime::task::lookup;

/// Calls `op`'s task on `args` and returns its result (element
/// `op.output` of it, for a task returning a tuple).
pub fn call_custom(op: &CustomOp, args: Vec<Array>) -> Result<Array, TensorError> {
    let fail = |message: String| TensorError::Task {
        task: op.task.clone(),
        message,
    };
    let def = lookup(&op.task)
        .ok_or_else(|| fail("no task of that name is registered in this binary".into()))?;
    let mut slots: Vec<Option<Datum>> = args.into_iter().map(|a| Some(Datum::new(a))).collect();
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (def.invoke)(&mut slots)))
            .map_err(|panic| fail(panic_message(&*panic)))?
            .map_err(fail)?;
    let type_name = result.type_name();
    pick(result, op.output).ok_or_else(|| {
        fail(format!(
            "returned {type_name}, not {}",
            match op.output {
                None => "an Array".to_string(),
                Some(k) => format!("a tuple of Arrays with an element {k}"),
            }
        ))
    })
}

/// Runs `op` on operands given as slices, writing its result into `out`,
/// which has the node's `shape`.
pub(crate) fn run_custom(
    op: &CustomOp,
    operands: &[(&[f32], &Shape)],
    shape: &Shape,
    out: &mut [f32],
) -> Result<(), TensorError> {
    let args = operands
        .iter()
        .map(|(data, shape)| Array::new((*shape).clone(), data.to_vec()))
        .collect();
    let result = call_custom(op, args)?;
    if result.shape != shape.0 {
        return Err(TensorError::Task {
            task: op.task.clone(),
            message: format!(
                "returned shape {}, but the graph expects {shape}",
                Shape(result.shape)
            ),
        });
    }
    out.copy_from_slice(&result.data);
    Ok(())
}

/// The array in `value`: the value itself, or element `k` of a tuple
/// (taken, not copied, when nothing else holds the value).
fn pick(value: Datum, output: Option<usize>) -> Option<Array> {
    let Some(k) = output else {
        return value.take::<Array>().ok();
    };
    let value = match value.take::<(Array, Array)>() {
        Ok(t) => return <[Array; 2]>::from(t).into_iter().nth(k),
        Err(v) => v,
    };
    let value = match value.take::<(Array, Array, Array)>() {
        Ok(t) => return <[Array; 3]>::from(t).into_iter().nth(k),
        Err(v) => v,
    };
    value
        .take::<(Array, Array, Array, Array)>()
        .ok()
        .and_then(|t| <[Array; 4]>::from(t).into_iter().nth(k))
}
