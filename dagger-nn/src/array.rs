//! [`Array`]: a dense `f32` tensor as a task value, and the tensor ops as
//! tasks, so that models can be written in `dag!{}`.
//!
//! Each op is a `#[task]` named `dagger_nn::ops::<op>`: in a task graph it
//! runs eagerly on the CPU kernels (each op shape compiled once per thread
//! and cached), and [`lower`](super::lower()) turns a graph of these tasks
//! into a [`TensorGraph`] for autodiff, fusion and compiled training.
//!
//! ```
//! use dagger_macros::dag;
//! use dagger_nn::ops::{matmul, relu};
//! use dagger_nn::Array;
//! use dagger_runtime::Runtime;
//!
//! // Through the facade: `use dagger::prelude::*;`, `dagger::nn::...` and
//! // `dag! { ... }` without `crate = ...`.
//! let g = dag! { crate = dagger_runtime; input x: Array; input w: Array; let h = matmul(x, w); let y = relu(h); y };
//! let x = Array::new([1, 2], vec![1.0, -2.0]);
//! let w = Array::new([2, 2], vec![1.0, 0.0, 0.0, 1.0]);
//! let y = Runtime::new().run(&g, (x, w)).unwrap();
//! assert_eq!(y.data, [1.0, 0.0]);
//! ```

pub use dagger_tensor::Array;
use dagger_tensor::{CompileOptions, Program, Shape, TensorGraph, TensorOp};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// Programs of one op on given shapes, compiled once per thread.
    static COMPILED: RefCell<HashMap<String, Program>> = RefCell::new(HashMap::new());
}

/// Applies `op` to `args` on this thread's CPU kernels; panics (failing the
/// task, with the message) on shapes the op does not take.
pub(crate) fn eager(op: TensorOp, args: &[&Array]) -> Array {
    let shapes: Vec<Shape> = args.iter().map(|a| Shape(a.shape.clone())).collect();
    let key = format!("{op} {shapes:?}");
    COMPILED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(&key) {
            let mut g = TensorGraph::new();
            let inputs: Vec<_> = shapes
                .iter()
                .enumerate()
                .map(|(k, s)| g.input(&format!("a{k}"), s.clone()))
                .collect();
            let out = g.apply(op, &inputs, None).unwrap_or_else(|e| panic!("{e}"));
            g.set_outputs(vec![out]).expect("in graph");
            let program =
                Program::compile(&g, CompileOptions::default()).unwrap_or_else(|e| panic!("{e}"));
            cache.insert(key.clone(), program);
        }
        let program = cache.get_mut(&key).expect("compiled");
        for (k, a) in args.iter().enumerate() {
            program
                .set(&format!("a{k}"), &a.data)
                .expect("shapes checked");
        }
        program.run().expect("every input fed");
        let out = program.graph().outputs()[0];
        Array {
            shape: program.graph().shape(out).0.clone(),
            data: program.output(0).to_vec(),
        }
    })
}
