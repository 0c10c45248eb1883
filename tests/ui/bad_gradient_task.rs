use dagger::nn::Array;
use dagger::prelude::*;

// The gradient of a one-operand task takes the operand and the result's
// gradient, and returns the operand's gradient: this one forgets the latter.
#[task]
fn square_grad(x: Array) -> Array {
    x
}

#[task(grad = square_grad)]
fn square(x: Array) -> Array {
    x
}

fn main() {
    let _ = square(Array::scalar(1.0));
}
