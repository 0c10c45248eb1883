//! Clusters of real processes that go wrong: joins refused over and over,
//! ranks that die before they join or between the join and the run, a
//! rank 0 that stops answering, a rank 0 that nobody joins.
//!
//! The processes are this test binary itself, started again with one test
//! selected (`rank_main`), which acts as a rank when `DAGGER_RANK` is set
//! and does nothing otherwise; `DAGGER_TEST_SCENARIO` tells it what to do.
//! Every test skips, saying why, where UCX is not installed.

mod common;
use common::{launch_rank_main, rank_said, ucx_missing};
use dagger::cluster::Cluster;
use dagger::prelude::*;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Adds two numbers (the graph of the run scenarios).
#[task]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Sums a chunk, slowly enough that the run spreads over every rank.
#[task]
fn chunk_sum(v: Vec<u64>) -> u64 {
    std::thread::sleep(Duration::from_millis(10));
    v.iter().sum()
}

/// 12 chunk sums and a tree of additions, and its expected total.
fn sum_graph() -> (dagger::Dag<(), u64>, u64) {
    let b = dagger::GraphBuilder::new();
    let mut expected = 0;
    let sums: Vec<_> = (0..12u64)
        .map(|k| {
            let chunk: Vec<u64> = (k * 100..(k + 1) * 100).collect();
            expected += chunk.iter().sum::<u64>();
            chunk_sum::on(&b).node(b.constant(chunk))
        })
        .collect();
    let total = b.reduce_tree(sums, |x, y| add::on(&b).node(x, y));
    (b.finish(total), expected)
}

/// Rank 0 runs the graph across the cluster and says what the run did.
fn run_graph(cluster: &Cluster) {
    let (dag, expected) = sum_graph();
    let (total, report) = Runtime::new()
        .run_on_cluster(&dag, (), cluster, &dagger::ir::sched::HeftScheduler)
        .unwrap_or_else(|e| panic!("the run failed: {e}"));
    assert_eq!(total, expected);
    println!(
        "rank 0: result right; tasks per rank {:?}; lost {:?}",
        report.tasks_per_rank, report.lost
    );
}

/// The body of every rank process (a no-op when run as a plain test).
#[test]
fn rank_main() {
    if std::env::var_os("DAGGER_RANK").is_none() {
        return;
    }
    let scenario = std::env::var("DAGGER_TEST_SCENARIO").unwrap_or_default();
    let rank = std::env::var("DAGGER_RANK").unwrap();
    if scenario == "die-before-join" && rank == "2" {
        std::process::exit(3);
    }
    let cluster = match Cluster::from_env() {
        Ok(c) => c.expect("started as a rank"),
        Err(e) => {
            eprintln!("rank cannot join: {e}");
            std::process::exit(2);
        }
    };
    match (scenario.as_str(), cluster.rank()) {
        ("die-after-join" | "die-after-join-noticed", 2) => std::process::exit(4),
        ("die-after-join-noticed", 0) => {
            let deadline = Instant::now() + Duration::from_secs(10);
            while cluster.dead_ranks().is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            run_graph(&cluster);
        }
        (_, 0) => run_graph(&cluster),
        (_, r) => {
            let outcome = Arc::new(cluster).serve(&Runtime::new());
            match outcome {
                Ok(()) => println!("rank {r}: served until shutdown"),
                Err(e) => {
                    eprintln!("rank {r} stops: {e}");
                    std::process::exit(5);
                }
            }
        }
    }
}

/// Starts one rank of a `size`-rank cluster directly (no launcher).
fn start_rank(rank: u32, size: u32, coordinator: &str, token: &str, join_timeout: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["rank_main", "--exact", "--nocapture", "--test-threads=1"])
        .env("DAGGER_RANK", rank.to_string())
        .env("DAGGER_SIZE", size.to_string())
        .env("DAGGER_COORDINATOR", coordinator)
        .env("DAGGER_CLUSTER_TOKEN", token)
        .env("DAGGER_JOIN_TIMEOUT", join_timeout)
        .env("DAGGER_TEST_SCENARIO", "serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Kills a rank this test started, and reaps it.
fn kill(mut child: Child) -> Output {
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn a_refused_join_exits_with_its_error_every_time_never_with_a_signal() {
    if ucx_missing() {
        return;
    }
    let coordinator = free_port();
    let zero = start_rank(0, 2, &coordinator, "right-token", "120");
    for attempt in 0..40 {
        let one = start_rank(1, 2, &coordinator, "wrong-token", "120")
            .wait_with_output()
            .unwrap();
        let said = text(&one);
        assert_eq!(
            (one.status.code(), one.status.signal()),
            (Some(2), None),
            "try {attempt}: {said}"
        );
        assert!(
            said.contains("refused: rank 1: wrong cluster token"),
            "try {attempt}: {said}"
        );
    }
    let zero = kill(zero);
    assert!(
        text(&zero).contains("wrong cluster token"),
        "{}",
        text(&zero)
    );
}
