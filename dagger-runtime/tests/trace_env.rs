//! `DAGGER_TRACE=path` makes every runtime trace itself and write the trace
//! when dropped. (One test in this binary: it sets a process-wide variable.)

use dagger_runtime::Runtime;

fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[test]
fn a_runtime_writes_its_trace_where_dagger_trace_says() {
    let path = std::env::temp_dir().join(format!("dagger-trace-env-{}.json", std::process::id()));
    std::env::set_var("DAGGER_TRACE", &path);
    let rt = Runtime::builder().threads(2).build();
    let a = rt.spawn(add, (1u64, 2u64));
    assert_eq!(rt.spawn(add, (a, 3u64)).wait().unwrap(), 6);
    drop(rt);
    std::env::remove_var("DAGGER_TRACE");
    let text = std::fs::read_to_string(&path).expect("the trace was written");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let tasks = json["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X" && e["name"] == "trace_env::add")
        .count();
    assert_eq!(tasks, 2);
    let _ = std::fs::remove_file(path);
}
