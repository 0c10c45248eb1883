use dagger::prelude::*;

#[task(crate = 3)]
fn a(n: u64) -> u64 {
    n
}

#[task(pure, crate = "not a path")]
fn b(n: u64) -> u64 {
    n
}

#[task(crate)]
fn c(n: u64) -> u64 {
    n
}

fn main() {
    // The functions are kept: only the attribute is an error.
    let _ = a(1) + b(2) + c(3);
    let _g = dag!(crate = 3; let x = a(1); x);
    let _h = dag!(crate = dagger let x = a(1); x);
}
