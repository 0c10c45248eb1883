//! [`Array`]: a dense `f32` tensor as a task value, what `#[task]`s of
//! tensors take and return (`dagger::nn::ops`, and user tasks that a
//! tensor graph calls as [custom ops](crate::TensorOp::Custom)).

use crate::Shape;
use dagger_runtime::size::ByteSize;
use serde::{Deserialize, Serialize};

/// A dense row-major `f32` tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Array {
    /// Extents, outermost first.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<f32>,
}

impl Array {
    /// An array of `shape` holding `data`; panics when the sizes differ.
    pub fn new(shape: impl Into<Shape>, data: Vec<f32>) -> Array {
        let shape = shape.into();
        assert_eq!(
            shape.numel(),
            data.len(),
            "an array of shape {shape} holds {} values",
            shape.numel()
        );
        Array {
            shape: shape.0,
            data,
        }
    }

    /// An array of `shape` full of zeros.
    pub fn zeros(shape: impl Into<Shape>) -> Array {
        let shape = shape.into();
        let n = shape.numel();
        Array::new(shape, vec![0.0; n])
    }

    /// A scalar.
    pub fn scalar(v: f32) -> Array {
        Array {
            shape: Vec::new(),
            data: vec![v],
        }
    }
}

impl ByteSize for Array {
    fn byte_size(&self) -> u64 {
        (self.data.len() * 4 + self.shape.len() * 8) as u64
    }
}
