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

#[test]
fn sched_reproduces_the_heft_papers_example() {
    let (ok, out, err) = dagger(&[
        "sched",
        "examples/graphs/heft_paper.json",
        "--algo",
        "heft,cpop",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["heft"]["makespan"], 80.0);
    assert_eq!(v["cpop"]["makespan"], 86.0);
    let slots = v["heft"]["schedule"].as_array().unwrap();
    assert_eq!(slots.len(), 10);
    assert_eq!(slots[0]["task"], "n1");
    assert_eq!(slots[0]["proc"], 2);
    assert_eq!(slots[0]["finish"], 9.0);
    assert!(v["heft"]["slr"].as_f64().unwrap() >= 1.0);
}

#[test]
fn sched_reads_a_problem_against_a_platform_file() {
    // A CPU core and a GPU eight times as fast: the chain goes to the GPU.
    let dir = std::env::temp_dir().join(format!("dagger-platform-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let platform = dir.join("platform.json");
    std::fs::write(
        &platform,
        r#"{"processors": [{"kind": "cpu", "speed": 1.0}, {"kind": "gpu", "speed": 8.0}],
            "network": {"latency": 5e-6, "bandwidth": 1e9},
            "host_device": {"latency": 1e-5, "bandwidth": 1e10}}"#,
    )
    .unwrap();
    let problem = dir.join("chain.json");
    std::fs::write(
        &problem,
        r#"{"tasks": [{"id": "a", "cost": [0.008]}, {"id": "b", "cost": [0.016]}],
            "edges": [{"from": "a", "to": "b", "bytes": 1000000}]}"#,
    )
    .unwrap();
    let (p, f) = (platform.to_str().unwrap(), problem.to_str().unwrap());
    let (ok, out, err) = dagger(&["sched", f, "--platform", p, "--algo", "heft", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    let slots = v["heft"]["schedule"].as_array().unwrap();
    assert!(slots.iter().all(|s| s["proc"] == 1), "{out}");
    let makespan = v["heft"]["makespan"].as_f64().unwrap();
    assert!((makespan - 0.003).abs() < 1e-9, "{makespan}");
    // Without the platform, the same file is refused, naming what it lacks.
    let (ok, _, err) = dagger(&["sched", f]);
    assert!(
        !ok && err.contains("\"processors\" must be at least 1"),
        "{err}"
    );
}

#[test]
fn sched_writes_a_gantt_chart_and_a_trace_and_refuses_unknown_algorithms() {
    let svg = std::env::temp_dir().join(format!("dagger-gantt-{}.svg", std::process::id()));
    let trace = std::env::temp_dir().join(format!("dagger-sched-{}.json", std::process::id()));
    let (ok, table, err) = dagger(&[
        "sched",
        "examples/graphs/heft_paper.json",
        "--gantt",
        svg.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        table.contains("heft") && table.contains("80.000"),
        "{table}"
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(
        chart.matches("<rect").count(),
        100,
        "10 tasks x 10 algorithms"
    );
    let _ = std::fs::remove_file(svg);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let tasks = json["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .count();
    assert_eq!(tasks, 100, "10 tasks x 10 algorithms");
    let _ = std::fs::remove_file(trace);
    let (ok, _, err) = dagger(&["sched", "examples/graphs/heft_paper.json", "--algo", "fifo"]);
    assert!(!ok);
    assert!(err.contains("unknown algorithm `fifo`"), "{err}");
}

#[test]
fn bench_sched_compares_every_algorithm_with_heft() {
    let (ok, csv, err) = dagger(&["bench", "sched", "--graphs", "30", "--csv"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "suite,algo,mean_slr,mean_speedup,better_pct,equal_pct,worse_pct"
    );
    assert_eq!(lines.len(), 21, "{csv}");
    assert!(
        lines[1].starts_with("random,heft,") && lines[1].ends_with(",0.0,100.0,0.0"),
        "{csv}"
    );
    assert!(lines[11].starts_with("structured,heft,"), "{csv}");
    for line in &lines[1..] {
        let cols: Vec<f64> = line
            .split(',')
            .skip(2)
            .map(|c| c.parse().unwrap())
            .collect();
        assert!(cols[0] >= 1.0, "SLR is at least 1: {line}");
        assert!((cols[2] + cols[3] + cols[4] - 100.0).abs() < 0.2, "{line}");
    }
}

#[test]
fn calibrated_runs_fill_the_performance_model_that_perfmodel_shows() {
    let dir = std::env::temp_dir().join(format!("dagger-perfmodel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, out, err) = dagger(&["perfmodel", "--dir", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("(empty"), "{out}");
    // A model as calibrated runs write it (dagger-runtime's calibrate_env
    // test checks that side), read by the CLI.
    let mut model = dagger::ir::model::HistoryModel::new();
    for s in [0.5, 1.5] {
        model.record(&dagger::ir::model::Measurement {
            task: "demo::work".into(),
            kind: dagger::ir::model::ProcKind::Cpu,
            bytes: 4096,
            output_bytes: 512,
            seconds: s,
        });
    }
    model.save(&dir).unwrap();
    let (ok, out, err) = dagger(&["perfmodel", "--dir", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("demo::work"))
        .expect("a row for the task");
    assert!(
        row.contains("cpu") && row.contains("<2^13") && row.contains("1.000e0"),
        "{row}"
    );
    assert!(row.ends_with(" 512"), "the measured result size: {row}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ir_passes_fuse_cheap_chains_and_report_them() {
    let dir = std::env::temp_dir().join(format!("dagger-cli-passes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("chain.json");
    std::fs::write(
        &file,
        r#"{"tasks": [{"name": "t::inc", "params": ["u64"], "output": "u64", "cost": {"seconds": 1e-7}, "pure": true}],
            "inputs": [{"id": "x", "type": "u64"}],
            "nodes": [{"id": "a", "call": "t::inc", "args": ["x"]},
                      {"id": "b", "call": "t::inc", "args": ["a"]},
                      {"id": "c", "call": "t::inc", "args": ["b"]},
                      {"id": "unused", "call": "t::inc", "args": ["x"]}],
            "outputs": ["c"]}"#,
    )
    .unwrap();
    let (ok, text, err) = dagger(&["ir", file.to_str().unwrap(), "--passes"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("// dce: 1 changed") && err.contains("// fuse: 2 changed"),
        "{err}"
    );
    assert!(
        text.contains("%1 = fused [@t::inc, @t::inc, @t::inc](%0) : u64  // c"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tasks_lists_the_registered_tasks_of_the_binary() {
    // The CLI defines no task of its own; the library's tensor ops are tasks.
    let (ok, out, err) = dagger(&["tasks"]);
    assert!(ok, "{err}");
    let ops = out
        .lines()
        .filter(|l| l.starts_with("dagger_nn::ops::"))
        .count();
    assert!(
        out.starts_with(&format!("{ops} tasks registered in this binary")),
        "{out}"
    );
    assert!(
        out.contains("dagger_nn::ops::matmul(Array, Array) -> Array"),
        "{out}"
    );
}

#[test]
fn platform_probes_the_workers_and_prints_json_a_runtime_can_load() {
    let (ok, out, err) = dagger(&["platform"]);
    assert!(ok, "{err}");
    let platform = dagger::ir::model::Platform::from_json(&out).expect("valid platform JSON");
    assert!(!platform.processors.is_empty());
    assert!(platform.processors.iter().all(|p| p.speed > 0.0));
}

#[test]
fn pipeline_simulates_both_schedules_and_refuses_bad_settings() {
    let dir = std::env::temp_dir().join(format!("dagger-cli-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("pipeline.svg");
    let (ok, out, err) = dagger(&[
        "pipeline",
        "--stages",
        "4",
        "--micro-batches",
        "8",
        "--gantt",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    // Every quantity has its unit.
    assert!(out.contains("step time (units of --forward)"), "{out}");
    // Equal stages: both schedules leave the formula's bubble, 3/11.
    assert!(
        out.contains("| GPipe | 33.000 | 27.3% | 27.3% | [8, 8, 8, 8] |"),
        "{out}"
    );
    assert!(
        out.contains("| OneFOneB | 33.000 | 27.3% | 27.3% | [4, 3, 2, 1] |"),
        "{out}"
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let (ok, _, err) = dagger(&["pipeline", "--stages", "2", "--forward", "1,2,3"]);
    assert!(!ok);
    assert!(
        err.contains("--forward gives 3 times for 2 stages"),
        "{err}"
    );
    let (ok, _, err) = dagger(&["pipeline", "--stages", "0"]);
    assert!(!ok && err.contains("must be at least 1"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dagger-cli-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `dir/name` and returns the path as a string.
fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn ir_refuses_what_sched_would_naming_the_file_and_the_node() {
    let dir = scratch("ir-verify");
    let graph = |task: &str, constant: &str| {
        format!(
            r#"{{"tasks": [{task}],
                "nodes": [{{"id": "n", "const": {constant}, "type": "u64"}},
                          {{"id": "y", "call": "t::inc", "args": ["n"]}}],
                "outputs": ["y"]}}"#
        )
    };
    let good = r#"{"name": "t::inc", "params": ["u64"], "output": "u64", "cost": {"seconds": 1}}"#;
    let f = write(&dir, "good.json", &graph(good, "3"));
    let (ok, _, err) = dagger(&["ir", &f]);
    assert!(ok, "{err}");
    for (name, task, constant, want) in [
        (
            "negative.json",
            good.replace("1}", "-1}"),
            "3",
            "node `y`: calls `t::inc`, whose cost is -1 seconds",
        ),
        (
            "hello.json",
            good.to_string(),
            r#""hello""#,
            r#"node `n`: the constant "hello" is not a u64"#,
        ),
        (
            "nested.json",
            good.replace(r#"["u64"]"#, r#"["Vec<<u64"]"#),
            "3",
            r#"node `y`: calls `t::inc`, whose parameter 0 has type "Vec<<u64""#,
        ),
        (
            "empty_output.json",
            good.replace(r#""output": "u64""#, r#""output": """#),
            "3",
            "node `y`: calls `t::inc`, whose output has type \"\": a type cannot be empty",
        ),
        (
            "half.json",
            good.replace(r#"{"seconds": 1}"#, "0.5"),
            "3",
            r#"a cost is "unknown", "dynamic" or {"seconds": S}, not 0.5"#,
        ),
    ] {
        let f = write(&dir, name, &graph(&task, constant));
        let (ok, out, err) = dagger(&["ir", &f]);
        assert!(!ok, "{name} was accepted: {out}");
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
    }
}

#[test]
fn empty_graphs_and_problems_are_refused_not_scheduled_to_nan() {
    let dir = scratch("empty");
    let f = write(
        &dir,
        "empty_problem.json",
        r#"{"processors": 2, "tasks": []}"#,
    );
    let (ok, out, err) = dagger(&["sched", &f]);
    assert!(!ok, "{out}");
    assert!(!out.contains("NaN"), "{out}");
    assert!(
        err.contains("empty_problem.json: the problem has no tasks"),
        "{err}"
    );
    let f = write(&dir, "empty_graph.json", r#"{"outputs": []}"#);
    let (ok, out, err) = dagger(&["ir", &f]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("empty_graph.json: the graph has no nodes"),
        "{err}"
    );
}

#[test]
fn a_long_cycle_is_named_by_its_first_nodes_and_its_length() {
    let dir = scratch("cycle");
    let n = 100_000;
    let nodes: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id": "c{i}", "call": "t::inc", "args": ["c{}"]}}"#,
                (i + n - 1) % n
            )
        })
        .collect();
    let f = write(
        &dir,
        "ring.json",
        &format!(
            r#"{{"tasks": [{{"name": "t::inc", "params": ["u64"], "output": "u64"}}],
                "nodes": [{}], "outputs": ["c0"]}}"#,
            nodes.join(",")
        ),
    );
    let (ok, _, err) = dagger(&["ir", &f]);
    assert!(!ok);
    assert!(err.len() < 400, "{} bytes of error", err.len());
    assert!(
        err.contains("graph has a cycle: `c") && err.contains("(100000 nodes, the first 8 shown)"),
        "{err}"
    );
    // The scheduler's problem files say the same (a shorter ring: its cycle
    // walk belongs to the scheduler).
    let m = 2_000;
    let tasks: Vec<String> = (0..m)
        .map(|i| format!(r#"{{"id": "t{i}", "cost": [1]}}"#))
        .collect();
    let edges: Vec<String> = (0..m)
        .map(|i| format!(r#"{{"from": "t{i}", "to": "t{}"}}"#, (i + 1) % m))
        .collect();
    let f = write(
        &dir,
        "ring_problem.json",
        &format!(
            r#"{{"processors": 1, "tasks": [{}], "edges": [{}]}}"#,
            tasks.join(","),
            edges.join(",")
        ),
    );
    let (ok, _, err) = dagger(&["sched", &f]);
    assert!(!ok);
    assert!(
        err.len() < 400 && err.contains("(2000 nodes, the first 8 shown)"),
        "{err}"
    );
}

#[test]
fn sched_help_and_platform_errors_say_what_the_platform_file_holds() {
    let (ok, help, _) = dagger(&["sched", "--help"]);
    assert!(ok);
    assert!(
        help.contains(r#""cost": [x]"#) && help.contains(r#""bytes": n"#),
        "{help}"
    );
    assert!(!help.contains("single cost"), "{help}");
    let dir = scratch("platform-errors");
    let platform = write(
        &dir,
        "slow_platform.json",
        r#"{"processors": [{"kind": "cpu", "speed": 1.0}, {"kind": "gpu", "speed": 8.0}],
            "network": {"latency": 5e-6, "bandwidth": 1e9},
            "host_device": {"latency": 1e-5, "bandwidth": 0}}"#,
    );
    let problem = write(
        &dir,
        "chain.json",
        r#"{"tasks": [{"id": "a", "cost": [1]}, {"id": "b", "cost": [1]}],
            "edges": [{"from": "a", "to": "b", "bytes": 1000}]}"#,
    );
    let (ok, _, err) = dagger(&["sched", &problem, "--platform", &platform]);
    assert!(!ok);
    assert!(
        err.contains("slow_platform.json")
            && err.contains(r#""host_device"."bandwidth" is 0"#)
            && !err.contains("chain.json"),
        "{err}"
    );
}

#[test]
fn output_into_a_pipe_closed_early_ends_quietly() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dagger"))
        .args(["bench", "sched", "--graphs", "20", "--csv"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the dagger binary runs");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("suite,algo"), "{first}"); // the reader is dropped here: `| head -1`
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
}

#[test]
fn pipeline_refuses_more_than_it_can_hold_naming_both_flags_and_the_bound() {
    let (ok, out, err) = dagger(&[
        "pipeline",
        "--stages",
        "100000",
        "--micro-batches",
        "100000",
    ]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("--stages 100000 x --micro-batches 100000")
            && err.contains("above the 250000"),
        "{err}"
    );
    let (ok, _, err) = dagger(&["pipeline", "--stages", "500", "--micro-batches", "500"]);
    assert!(ok, "the bound itself runs: {err}");
}

#[test]
fn gantt_refuses_a_chart_too_large_to_read_and_points_to_the_trace() {
    let dir = scratch("big-gantt");
    let tasks: Vec<String> = (0..6_000)
        .map(|i| format!(r#"{{"id": "t{i}", "cost": [1, 2]}}"#))
        .collect();
    let f = write(
        &dir,
        "wide.json",
        &format!(r#"{{"processors": 2, "tasks": [{}]}}"#, tasks.join(",")),
    );
    let svg = dir.join("wide.svg");
    let (ok, _, err) = dagger(&[
        "sched",
        &f,
        "--algo",
        "heft",
        "--gantt",
        svg.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("--gantt draws at most 5000 tasks and this has 6000")
            && err.contains("--trace"),
        "{err}"
    );
    assert!(!svg.exists(), "no chart is written");
    let (ok, _, err) = dagger(&[
        "pipeline",
        "--stages",
        "50",
        "--micro-batches",
        "100",
        "--gantt",
        svg.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("this has 10000") && err.contains("--trace"),
        "{err}"
    );
}
