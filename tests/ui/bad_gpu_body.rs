use dagger::prelude::*;

/// The device the body wants comes first; the parameters must then be the
/// task's: this body takes an `f32` where the task takes a `Vec<f64>`.
fn scale_on_gpu(_device: &u32, x: f32) -> Result<Vec<f64>, String> {
    Ok(vec![x as f64])
}

#[task(gpu = scale_on_gpu)]
fn scale(v: Vec<f64>) -> Vec<f64> {
    v
}

fn main() {
    let _ = scale(vec![1.0]);
    let _ = double(1.0);
}

/// A device body must return a `Result` of the task's output.
fn double_on_gpu(_device: &u32, x: f64) -> f64 {
    x * 2.0
}

#[task(gpu = double_on_gpu)]
fn double(x: f64) -> f64 {
    x * 2.0
}
