//! `dagger ir`: a JSON graph file verified and printed as IR text or
//! Graphviz dot, after the standard passes if asked.

use dagger_ir::{self as ir, PassCtx, PassManager};
use std::path::Path;

/// `dagger ir FILE [--dot] [--passes]`.
pub(crate) fn show(file: &Path, dot: bool, passes: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut graph = ir::from_json(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    if graph.node_count() == 0 {
        return Err(format!("{}: the graph has no nodes", file.display()));
    }
    if passes {
        for report in PassManager::standard()
            .run(&mut graph, &PassCtx::default())
            .map_err(|e| e.to_string())?
        {
            eprintln!("// {}: {} changed", report.pass, report.changed);
        }
    }
    if dot {
        print!("{}", ir::to_dot(&graph));
    } else {
        print!("{}", ir::to_text(&graph));
    }
    Ok(())
}
