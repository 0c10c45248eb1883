use dagger::prelude::*;

#[task(fast)]
fn a(n: u64) -> u64 {
    n
}

#[task(device = "tpu")]
fn b(n: u64) -> u64 {
    n
}

fn main() {
    // The functions are kept: only the attribute is an error.
    let _ = a(1) + b(2);
}
