use dagger::prelude::*;

#[task]
fn double(n: u64) -> u64 {
    n * 2
}

fn main() {
    let _g = dag! {
        input x: u64;
        let x = double(x);
        x
    };
}
