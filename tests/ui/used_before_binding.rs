use dagger::prelude::*;

#[task]
fn double(n: u64) -> u64 {
    n * 2
}

fn main() {
    let _g = dag! {
        let a = double(b);
        let b = double(1);
        a
    };
}
