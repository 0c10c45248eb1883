//! One entry point for programs that run the same alone or as a cluster.
//!
//! [`Session::start`] is the first line of `main` in an SPMD program: alone
//! (no `dagger run`, Slurm or Open MPI around it) it is a local
//! [`Runtime`]; started by `dagger run -n N`, it joins the cluster, and on
//! every rank but 0 it serves remote tasks until rank 0 is done and then
//! exits the process, so only rank 0 goes on past it. [`Session::run`] then
//! runs a graph on every local core, or across every rank (placed by HEFT,
//! surviving the loss of ranks; see [`dagger_cluster::distributed`]).
//!
//! ```no_run
//! use dagger::Session;
//! let session = Session::start().expect("joined");
//! println!("running on {} rank(s)", session.ranks());
//! ```

use dagger_cluster::cluster::{Cluster, ClusterError};
use dagger_cluster::distributed::ClusterReport;
use dagger_runtime::{Dag, Inputs, RunError, Runtime};
use std::sync::Arc;

/// What this program runs on, in one line (said once, at start).
fn hardware_line(runtime: &Runtime, ranks: u32) -> String {
    let gpus = crate::platform::gpus_seen();
    let ranks = match ranks {
        1 => "a single process".to_string(),
        n => format!("{n} ranks"),
    };
    format!("dagger: {} CPU workers; {gpus}; {ranks}", runtime.threads())
}

/// This process's runtime, and its cluster when it has one.
pub struct Session {
    runtime: Runtime,
    cluster: Option<Arc<Cluster>>,
}

impl Session {
    /// Starts the local runtime and, when this process is a rank of a
    /// cluster, joins it. Serving ranks never return: they serve until rank
    /// 0 shuts the cluster down, then exit (status 1, saying why, if rank 0
    /// was lost instead).
    pub fn start() -> Result<Session, ClusterError> {
        let runtime = Runtime::new();
        let Some(cluster) = Cluster::from_env()? else {
            eprintln!("{}", hardware_line(&runtime, 1));
            return Ok(Session {
                runtime,
                cluster: None,
            });
        };
        let cluster = Arc::new(cluster);
        if cluster.rank() != 0 {
            let code = match cluster.serve(&runtime) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("dagger: rank {} stops: {e}", cluster.rank());
                    1
                }
            };
            drop(cluster);
            std::process::exit(code);
        }
        eprintln!("{}", hardware_line(&runtime, cluster.size()));
        Ok(Session {
            runtime,
            cluster: Some(cluster),
        })
    }

    /// The local runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The cluster, when this process is rank 0 of one.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_deref()
    }

    /// Number of processes working on this program (1 alone).
    pub fn ranks(&self) -> u32 {
        self.cluster.as_ref().map_or(1, |c| c.size())
    }

    /// Runs `dag`: on the local runtime alone, across every rank in a
    /// cluster (with what the cluster run did; `DAGGER_CLUSTER_TRACE=file`
    /// also writes its tasks and transfers there as Chrome trace JSON).
    pub fn run<I: Inputs, O>(
        &self,
        dag: &Dag<I, O>,
        inputs: I,
    ) -> Result<(O, Option<ClusterReport>), RunError> {
        match &self.cluster {
            None => Ok((self.runtime.run(dag, inputs)?, None)),
            Some(c) => {
                let (out, report) =
                    c.run(&self.runtime, dag, inputs, &dagger_ir::sched::HeftScheduler)?;
                if let Some(path) = std::env::var_os("DAGGER_CLUSTER_TRACE") {
                    match std::fs::write(&path, report.to_chrome_json()) {
                        Ok(()) => eprintln!(
                            "dagger: cluster trace written to {}",
                            std::path::Path::new(&path).display()
                        ),
                        Err(e) => eprintln!("dagger: cannot write the cluster trace: {e}"),
                    }
                }
                Ok((out, Some(report)))
            }
        }
    }
}
