//! The IR passes, one per file. Each is a `PassFn`: it rewrites the graph in
//! place and reports how much it changed.
//!
//! - [`verify_pass`]: runs the [verifier](crate::verify()); changes nothing.
//! - [`dce`](mod@dce): drops pure nodes whose values reach no output.
//! - [`cse`](mod@cse): merges calls of the same pure task on the same arguments.
//! - [`fuse`](mod@fuse): merges linear chains of cheap tasks into one node.

pub mod cse;
pub mod dce;
pub mod fuse;

pub use cse::cse;
pub use dce::dce;
pub use fuse::fuse;

use crate::error::Result;
use crate::graph::Graph;
use crate::pass::{PassCtx, PassManager, Report};

/// The verifier as a pass.
pub fn verify_pass(g: &mut Graph, _ctx: &PassCtx) -> Result<Report> {
    crate::verify(g)?;
    Ok(Report::new("verify", 0))
}

impl PassManager {
    /// verify, dce, cse, fuse: the passes of this module, in that order.
    /// (Defined here, beside the passes, so that the pass machinery in
    /// [`crate::pass`] does not depend on the passes it runs.)
    pub fn standard() -> Self {
        Self::new()
            .with_pass("verify", verify_pass)
            .with_pass("dce", dce)
            .with_pass("cse", cse)
            .with_pass("fuse", fuse)
    }
}
