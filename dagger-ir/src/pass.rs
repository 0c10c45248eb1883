//! The pass manager: runs passes in order, with IR dumps on request.
//!
//! A pass is a plain function `fn(&mut Graph, &PassCtx) -> Result<Report>`.
//! [`PassManager::standard`] runs verify, dead-node elimination, common
//! subexpression elimination and chain fusion. Setting
//! `DAGGER_DUMP_IR=fuse` (several names with commas, or `all`) prints the IR
//! text to stderr after those passes, headed `// IR after <pass>`.

use crate::error::Result;
use crate::graph::Graph;
use std::sync::{Arc, Mutex};

/// What a pass reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The pass's name.
    pub pass: &'static str,
    /// How many nodes it removed, merged or rewrote.
    pub changed: usize,
    /// Details worth showing a person.
    pub notes: Vec<String>,
}

impl Report {
    /// A report of `changed` changes.
    pub fn new(pass: &'static str, changed: usize) -> Self {
        Report {
            pass,
            changed,
            notes: Vec::new(),
        }
    }
}

/// A pass.
pub type PassFn = fn(&mut Graph, &PassCtx) -> Result<Report>;

/// Which passes to dump the IR after, and where.
#[derive(Clone, Debug, Default)]
pub struct DumpSpec {
    /// Pass names; `all` dumps after every pass.
    pub passes: Vec<String>,
    /// Where dumps go: stderr when `None`, else appended to this list.
    pub sink: Option<Arc<Mutex<Vec<String>>>>,
}

impl DumpSpec {
    /// From `DAGGER_DUMP_IR` (empty when unset).
    pub fn from_env() -> Self {
        let passes = std::env::var("DAGGER_DUMP_IR")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        DumpSpec { passes, sink: None }
    }

    fn wants(&self, pass: &str) -> bool {
        self.passes.iter().any(|p| p == pass || p == "all")
    }

    fn dump(&self, pass: &str, g: &Graph) {
        let text = format!("// IR after {pass}\n{g}");
        match &self.sink {
            Some(sink) => sink.lock().unwrap_or_else(|p| p.into_inner()).push(text),
            None => eprint!("{text}"),
        }
    }
}

/// Settings the passes read.
#[derive(Clone, Debug)]
pub struct PassCtx {
    /// Tasks estimated to take less than this many seconds are cheap enough
    /// to fuse into chains (default 50 µs: a few times the cost of scheduling a task).
    pub fusion_threshold: f64,
    /// IR dumps.
    pub dump: DumpSpec,
}

impl Default for PassCtx {
    fn default() -> Self {
        PassCtx {
            fusion_threshold: 50e-6,
            dump: DumpSpec::default(),
        }
    }
}

impl PassCtx {
    /// Defaults, with dumps from `DAGGER_DUMP_IR`.
    pub fn from_env() -> Self {
        PassCtx {
            dump: DumpSpec::from_env(),
            ..Self::default()
        }
    }
}

/// An ordered list of passes.
#[derive(Clone, Debug, Default)]
pub struct PassManager {
    passes: Vec<(&'static str, PassFn)>,
}

impl PassManager {
    /// No passes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pass.
    pub fn with_pass(mut self, name: &'static str, pass: PassFn) -> Self {
        self.passes.push((name, pass));
        self
    }

    /// Names of the passes, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.0).collect()
    }

    /// Runs every pass in order; stops at the first error.
    pub fn run(&self, g: &mut Graph, ctx: &PassCtx) -> Result<Vec<Report>> {
        let mut reports = Vec::with_capacity(self.passes.len());
        for &(name, pass) in &self.passes {
            reports.push(pass(g, ctx)?);
            if ctx.dump.wants(name) {
                ctx.dump.dump(name, g);
            }
        }
        Ok(reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_passes_in_order_and_dumps_the_ones_asked_for() {
        let mut g = crate::from_json(
            r#"{"tasks": [{"name": "t::inc", "params": ["u64"], "output": "u64", "cost": {"seconds": 1e-7}, "pure": true}],
                "inputs": [{"id": "x", "type": "u64"}],
                "nodes": [{"id": "a", "call": "t::inc", "args": ["x"]},
                          {"id": "a2", "call": "t::inc", "args": ["x"]},
                          {"id": "b", "call": "t::inc", "args": ["a"]},
                          {"id": "dead", "call": "t::inc", "args": ["b"]}],
                "outputs": ["b", "a2"]}"#,
        )
        .unwrap();
        let sink = Arc::new(Mutex::new(Vec::new()));
        let ctx = PassCtx {
            dump: DumpSpec {
                passes: vec!["cse".into()],
                sink: Some(sink.clone()),
            },
            ..PassCtx::default()
        };
        let pm = PassManager::standard();
        assert_eq!(pm.names(), vec!["verify", "dce", "cse", "fuse"]);
        let reports = pm.run(&mut g, &ctx).unwrap();
        let changed: Vec<usize> = reports.iter().map(|r| r.changed).collect();
        assert_eq!(
            changed,
            vec![0, 1, 1, 0],
            "dce drops `dead`, cse merges a2 into a; a now has two users"
        );
        let dumps = sink.lock().unwrap();
        assert_eq!(dumps.len(), 1);
        assert!(
            dumps[0].starts_with("// IR after cse\ngraph(%0: u64) -> (u64, u64) {"),
            "{}",
            dumps[0]
        );
    }
}
