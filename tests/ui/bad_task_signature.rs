use dagger::prelude::*;

#[task]
fn pattern((a, b): (u64, u64)) -> u64 {
    a + b
}

#[task]
fn borrow(text: &str) -> usize {
    text.len()
}

#[task]
fn opaque(n: u64) -> impl Clone {
    n
}

#[task]
unsafe fn danger(n: u64) -> u64 {
    n
}

fn main() {}
