use dagger::prelude::*;

#[task]
fn shout(s: String) -> String {
    s.to_uppercase()
}

fn main() {
    let _g = dag! {
        input n: u32;
        let s = shout(n);
        s
    };
}
