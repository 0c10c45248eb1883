use dagger::prelude::*;

#[task]
async fn fetch(n: u64) -> u64 {
    n
}

fn main() {}
