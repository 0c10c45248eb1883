//! The `dagger` command-line tool, run as a real process.

use std::process::Command;

fn dagger(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dagger"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the dagger binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ir_prints_a_valid_graph_as_text_and_dot() {
    let (ok, text, err) = dagger(&["ir", "examples/graphs/wordcount.json"]);
    assert!(ok, "{err}");
    assert!(
        text.contains("call @wordcount::merge_counts(%2, %3)"),
        "{text}"
    );
    assert!(
        text.contains("task @wordcount::count_words(String) -> HashMap<String, u64>"),
        "{text}"
    );
    let (ok, dot, err) = dagger(&["ir", "examples/graphs/wordcount.json", "--dot"]);
    assert!(ok, "{err}");
    assert!(dot.starts_with("digraph"), "{dot}");
    assert_eq!(dot.matches("->").count(), 4, "{dot}");
}

#[test]
fn ir_rejects_a_cycle_naming_it() {
    let (ok, _, err) = dagger(&["ir", "examples/graphs/cyclic.json"]);
    assert!(!ok);
    assert!(err.contains("cycle"), "{err}");
    for node in ["a", "b", "c"] {
        assert!(err.contains(node), "the message names {node}: {err}");
    }
}

#[test]
fn ir_rejects_a_type_mismatch_naming_both_types() {
    let (ok, _, err) = dagger(&["ir", "examples/graphs/type_mismatch.json"]);
    assert!(!ok);
    assert!(
        err.contains("u64") && err.contains("String") && err.contains("demo::shout"),
        "{err}"
    );
}

#[test]
fn ir_rejects_malformed_and_missing_files() {
    let dir = std::env::temp_dir().join(format!("dagger-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"tasks\": [,]}").unwrap();
    let (ok, _, err) = dagger(&["ir", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.json") && err.contains("line 1"), "{err}");
    let (ok, _, err) = dagger(&["ir", "no/such/file.json"]);
    assert!(!ok);
    assert!(err.contains("no/such/file.json"), "{err}");
}

#[test]
fn help_lists_the_subcommands() {
    let (ok, out, _) = dagger(&["--help"]);
    assert!(ok);
    assert!(out.contains("ir") && out.contains("tasks"), "{out}");
}
