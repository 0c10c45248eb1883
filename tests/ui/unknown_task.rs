use dagger::prelude::*;

#[task]
fn tokenize(text: String) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

fn main() {
    let _g = dag! {
        input doc: String;
        let w = tokenz(doc);
        w
    };
}
