use dagger::prelude::*;

#[task]
fn scale(n: u64, factor: u64) -> u64 {
    n * factor
}

fn main() {
    let _g = dag! {
        input n: u64;
        let s = scale(n);
        s
    };
}
