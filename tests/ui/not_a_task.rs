use dagger::prelude::*;

fn helper(n: u64) -> u64 {
    n + 1
}

fn main() {
    let _g = dag! {
        let a = helper(1);
        a
    };
}
