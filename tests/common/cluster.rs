//! Rank processes for the cluster tests, and the graph their runs compute.
//!
//! A cluster test binary has a `rank_main` test that acts as a rank when
//! `DAGGER_RANK` is set (and does nothing otherwise); [`RankEnv`] starts
//! this binary again as one rank of a cluster, directly (no launcher) or
//! through a wrapper such as `ip netns exec NS`. [`join_or_exit`] and
//! [`serve_or_exit`] are a rank's two halves: join, then (on a serving
//! rank) serve until shutdown, exiting with a status that says what went
//! wrong. Rank 0 runs [`sum_graph`] with [`run_sum_graph`], which checks
//! the result and prints a line the tests look for:
//! `rank 0: result right; tasks per rank [..]; lost [..]; redone N [..]`.
//!
//! Included by `#[path = "common/cluster.rs"] mod cluster_common;` in the
//! tests that start ranks, so that only their binaries register its tasks.

#![allow(dead_code)] // each test binary uses some of it

use dagger::cluster::Cluster;
use dagger::prelude::*;
use dagger::{ClusterReport, GraphBuilder, Value};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

/// Adds two numbers (the tree that sums the chunks).
#[task]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// `chunks` chunks of `chunk_len` consecutive numbers, each summed by
/// `sum` (the test's own task), added up by a tree of additions; and the
/// total expected.
pub fn sum_graph(
    chunks: u64,
    chunk_len: u64,
    sum: impl Fn(&GraphBuilder, Value<Vec<u64>>) -> Value<u64>,
) -> (dagger::Dag<(), u64>, u64) {
    let b = GraphBuilder::new();
    let mut expected = 0;
    let sums: Vec<_> = (0..chunks)
        .map(|k| {
            let chunk: Vec<u64> = (k * chunk_len..(k + 1) * chunk_len).collect();
            expected += chunk.iter().sum::<u64>();
            sum(&b, b.constant(chunk))
        })
        .collect();
    let total = b.reduce_tree(sums, |x, y| add::on(&b).node(x, y));
    (b.finish(total), expected)
}

/// Rank 0: runs `dag` on `rt` across `cluster` (HEFT), checks that it
/// gives `expected`, prints what the run did (the line the tests read)
/// and returns its report.
pub fn run_sum_graph(
    rt: &Runtime,
    cluster: &Cluster,
    dag: &dagger::Dag<(), u64>,
    expected: u64,
) -> ClusterReport {
    let (total, report) = cluster
        .run(rt, dag, (), &dagger::ir::sched::HeftScheduler)
        .unwrap_or_else(|e| panic!("the run failed: {e}"));
    assert_eq!(total, expected, "the cluster run's result");
    println!(
        "rank 0: result right; tasks per rank {:?}; lost {:?}; redone {} {:?}",
        report.tasks_per_rank,
        report.lost,
        report.redone.len(),
        report.redone
    );
    report
}

/// Joins the cluster this process was started in, or exits with status 2
/// saying why it cannot (`rank cannot join: ..`).
pub fn join_or_exit() -> Cluster {
    match Cluster::from_env() {
        Ok(c) => c.expect("started as a rank"),
        Err(e) => {
            eprintln!("rank cannot join: {e}");
            std::process::exit(2);
        }
    }
}

/// A serving rank: serves until rank 0 shuts the cluster down (then says
/// `rank r: served until shutdown`), or exits with status 5 saying why it
/// stopped (`rank r stops: ..`); lets go of the cluster first.
pub fn serve_or_exit(cluster: Cluster) {
    let rank = cluster.rank();
    let cluster = Arc::new(cluster);
    let outcome = cluster.serve(&Runtime::new());
    // As `dagger::Session` does: the cluster (its transport) closes first.
    drop(cluster);
    match outcome {
        Ok(()) => println!("rank {rank}: served until shutdown"),
        Err(e) => {
            eprintln!("rank {rank} stops: {e}");
            std::process::exit(5);
        }
    }
}

/// The environment of every rank of a cluster started without a launcher.
pub struct RankEnv {
    /// Number of ranks (`DAGGER_SIZE`).
    pub size: u32,
    /// Rank 0's bootstrap address, host:port (`DAGGER_COORDINATOR`).
    pub coordinator: String,
    /// `DAGGER_CLUSTER_TOKEN`.
    pub token: String,
    /// `DAGGER_JOIN_TIMEOUT`, in seconds.
    pub join_timeout: String,
    /// `DAGGER_TEST_SCENARIO`: what `rank_main` does.
    pub scenario: String,
}

impl RankEnv {
    /// A cluster of `size` ranks in `scenario`, rank 0 on a free loopback
    /// port, with `token`.
    pub fn on_loopback(size: u32, token: &str, join_timeout: &str, scenario: &str) -> RankEnv {
        RankEnv {
            size,
            coordinator: free_port(),
            token: token.into(),
            join_timeout: join_timeout.into(),
            scenario: scenario.into(),
        }
    }

    /// The command that runs this test binary's `rank_main` as `rank`, with
    /// its output piped; started through `wrapper` (a program and its
    /// arguments, e.g. `ip netns exec NS`) unless it is empty.
    pub fn command(&self, rank: u32, wrapper: &[&str]) -> Command {
        let me = std::env::current_exe().unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(me);
                c
            }
            None => Command::new(me),
        };
        command
            .args(crate::common::RANK_MAIN)
            .env("DAGGER_RANK", rank.to_string())
            .env("DAGGER_SIZE", self.size.to_string())
            .env("DAGGER_COORDINATOR", &self.coordinator)
            .env("DAGGER_CLUSTER_TOKEN", &self.token)
            .env("DAGGER_JOIN_TIMEOUT", &self.join_timeout)
            .env("DAGGER_TEST_SCENARIO", &self.scenario)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Starts `rank` directly.
    pub fn start(&self, rank: u32) -> Child {
        self.command(rank, &[]).spawn().unwrap()
    }

    /// This environment with another token (a rank that is refused).
    pub fn with_token(&self, token: &str) -> RankEnv {
        RankEnv {
            token: token.into(),
            coordinator: self.coordinator.clone(),
            join_timeout: self.join_timeout.clone(),
            scenario: self.scenario.clone(),
            size: self.size,
        }
    }
}

/// What a process printed: its stdout, then its stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A loopback host:port nobody listens on (just now).
pub fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Kills a rank this test started, and reaps it.
pub fn kill(mut child: Child) -> Output {
    let _ = child.kill();
    child.wait_with_output().unwrap()
}
