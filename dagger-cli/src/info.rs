//! What this binary and this machine know: `dagger tasks` (the registered
//! tasks), `dagger perfmodel` (the measured task times) and `dagger
//! platform` (the probed workers and GPUs).

use dagger_ir::model::HistoryModel;
use std::path::PathBuf;

/// `dagger tasks`: the tasks registered in this binary (`#[task]`s of the
/// crates it links).
pub(crate) fn tasks() {
    let defs = dagger_runtime::task::registered();
    println!(
        "{} tasks registered in this binary (a program registers its own with #[task])",
        defs.len()
    );
    for def in defs {
        let sig = def.sig();
        println!("{}({}) -> {}", sig.name, sig.params.join(", "), sig.output);
    }
}

/// `dagger perfmodel [--dir D]`: the history model's entries, as a table.
pub(crate) fn perfmodel(dir: Option<PathBuf>) -> Result<(), String> {
    let dir = dir.unwrap_or_else(HistoryModel::default_dir);
    let model = HistoryModel::load(&dir).map_err(|e| e.to_string())?;
    println!("performance model in {}", dir.display());
    if model.is_empty() {
        println!("(empty: run a program with DAGGER_CALIBRATE=1 to measure its tasks)");
    }
    println!(
        "{:<40} {:<7} {:>6} {:>8} {:>14} {:>14} {:>14}",
        "task", "kind", "size", "runs", "mean (s)", "stddev (s)", "result (B)"
    );
    for (task, kind, bucket, stats) in model.entries() {
        let size = if bucket == 0 {
            "-".to_string()
        } else {
            format!("<2^{bucket}")
        };
        let result = match stats.output_count {
            0 => "-".to_string(),
            _ => format!("{:.0}", stats.output_bytes),
        };
        println!(
            "{task:<40} {kind:<7} {size:>6} {:>8} {:>14.3e} {:>14.3e} {result:>14}",
            stats.count,
            stats.mean,
            stats.stddev()
        );
    }
    Ok(())
}

/// `dagger platform`: this machine's platform as JSON.
pub(crate) fn platform() -> Result<(), String> {
    if !cfg!(feature = "cuda") {
        eprintln!("dagger: built without the `cuda` feature: the platform has no GPU");
    }
    let platform = crate::platform::local_platform(&dagger_runtime::Runtime::new());
    let json = serde_json::to_string_pretty(&platform).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(())
}
