//! The pictures the tools write: each file one SVG document, every
//! schedule of it on one time scale (`dagger pipeline --gantt`,
//! `examples/pipeline`), and the example's options read by clap.

#[allow(dead_code)]
#[path = "../examples/pipeline.rs"]
mod pipeline;

use clap::Parser;
use dagger::ir::sched::pipeline::{simulate, PipelineKind};

/// `svg` is one document: a single `<svg>` root that ends the file.
fn assert_one_document(svg: &str) {
    assert_eq!(svg.matches("<svg").count(), 1, "one root element");
    assert_eq!(svg.matches("</svg>").count(), 1);
    assert!(
        svg.trim_end().ends_with("</svg>"),
        "nothing after the root element"
    );
}

#[test]
fn the_pipeline_example_draws_both_schedules_in_one_document() {
    let (forward, backward) = (vec![1e-3; 4], vec![2e-3; 4]);
    let gpipe = simulate(PipelineKind::GPipe, &forward, &backward, 8, 1e-5);
    let ofob = simulate(PipelineKind::OneFOneB, &forward, &backward, 8, 1e-5);
    let svg = pipeline::gantt_chart(4, &[("GPipe", &gpipe), ("1F1B", &ofob)]);
    assert_one_document(&svg);
    assert!(svg.contains("GPipe: makespan 0.0331 s, 64 tasks"), "{svg}");
    assert!(svg.contains("1F1B: makespan 0.0332 s, 64 tasks"), "{svg}");
    assert!(svg.contains(">30 ms</text>"), "the shared axis, in ms");
}

#[test]
fn the_pipeline_example_reads_its_options_with_clap() {
    let options = pipeline::Options::try_parse_from(["pipeline", "--svg", "x.svg"]).unwrap();
    assert_eq!(options.svg, std::path::PathBuf::from("x.svg"));
    let default = pipeline::Options::try_parse_from(["pipeline"]).unwrap();
    assert_eq!(default.svg, std::path::PathBuf::from("target/pipeline.svg"));
    let help = pipeline::Options::try_parse_from(["pipeline", "--help"]).unwrap_err();
    assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    assert!(help.to_string().contains("--svg"), "{help}");
    let unknown = pipeline::Options::try_parse_from(["pipeline", "--sgv", "x"]).unwrap_err();
    assert_eq!(unknown.kind(), clap::error::ErrorKind::UnknownArgument);
    assert!(unknown.to_string().contains("--sgv"), "{unknown}");
}

#[test]
fn dagger_pipeline_writes_one_chart_document() {
    let svg = std::env::temp_dir().join(format!("dagger-pictures-{}.svg", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dagger"))
        .args([
            "pipeline",
            "--stages",
            "4",
            "--micro-batches",
            "8",
            "--gantt",
        ])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    let _ = std::fs::remove_file(&svg);
    assert_one_document(&chart);
    assert!(
        chart.contains("GPipe: makespan 33 time units, 64 tasks"),
        "{chart}"
    );
    assert!(
        chart.contains("OneFOneB: makespan 33 time units, 64 tasks"),
        "{chart}"
    );
    assert!(chart.contains("time (in the input's time units)"));
}
