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
        ("hold", 0) => {
            println!("rank 0: joined");
            std::thread::sleep(Duration::from_secs(60));
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
fn start_rank(
    rank: u32,
    coordinator: &str,
    token: &str,
    join_timeout: &str,
    scenario: &str,
) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["rank_main", "--exact", "--nocapture", "--test-threads=1"])
        .env("DAGGER_RANK", rank.to_string())
        .env("DAGGER_SIZE", "2")
        .env("DAGGER_COORDINATOR", coordinator)
        .env("DAGGER_CLUSTER_TOKEN", token)
        .env("DAGGER_JOIN_TIMEOUT", join_timeout)
        .env("DAGGER_TEST_SCENARIO", scenario)
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
    let zero = start_rank(0, &coordinator, "right-token", "120", "serve");
    for attempt in 0..40 {
        let one = start_rank(1, &coordinator, "wrong-token", "120", "serve")
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

#[test]
fn rank_zero_alone_times_out_naming_dagger_join_timeout() {
    if ucx_missing() {
        return;
    }
    let zero = start_rank(0, &free_port(), "tok", "1", "serve")
        .wait_with_output()
        .unwrap();
    let said = text(&zero);
    assert_eq!(zero.status.code(), Some(2), "{said}");
    assert!(said.contains("rank(s) 1 did not join within 1s"), "{said}");
    assert!(said.contains("DAGGER_JOIN_TIMEOUT=1 (seconds)"), "{said}");
}

/// Runs `scenario` on 3 ranks with `dagger run`, checks that rank 0
/// succeeded within `within`, and returns what the ranks printed.
fn run_three(scenario: &str, within: Duration) -> Option<String> {
    if ucx_missing() {
        return None;
    }
    let start = Instant::now();
    let (ok, all) = launch_rank_main(3, scenario);
    let took = start.elapsed();
    assert!(ok, "{all}");
    assert!(took < within, "took {took:?}: {all}");
    assert!(rank_said(&all, 0, "rank 0: result right"), "{all}");
    Some(all)
}

#[test]
fn a_rank_dead_before_joining_is_not_waited_for_and_the_run_goes_on_without_it() {
    // The join timeout is 30 s: rank 0 must hear of the death from `dagger run`.
    let Some(all) = run_three("die-before-join", Duration::from_secs(15)) else {
        return;
    };
    assert!(
        rank_said(&all, 0, "rank 2 is gone before the cluster formed"),
        "{all}"
    );
    assert!(rank_said(&all, 0, ", 0]; lost [2]"), "{all}");
    assert!(rank_said(&all, 1, "served until shutdown"), "{all}");
}

#[test]
fn a_rank_dead_between_the_join_and_the_run_is_lost_not_the_run() {
    // Rank 0 runs at once: rank 2 may be known dead at the start, or only
    // once a message to it fails; either way the run succeeds.
    let Some(all) = run_three("die-after-join", Duration::from_secs(20)) else {
        return;
    };
    assert!(rank_said(&all, 0, "lost [2]"), "{all}");
    // Rank 0 waits until the death is known: the run starts without rank 2.
    let Some(all) = run_three("die-after-join-noticed", Duration::from_secs(20)) else {
        return;
    };
    assert!(rank_said(&all, 0, ", 0]; lost [2]"), "{all}");
}

#[test]
fn a_serving_rank_whose_rank_zero_stops_answering_exits_with_why() {
    use std::io::BufRead;
    if ucx_missing() {
        return;
    }
    let coordinator = free_port();
    let mut zero = start_rank(0, &coordinator, "tok", "10", "hold");
    let one = start_rank(1, &coordinator, "tok", "10", "hold");
    let mut lines = std::io::BufReader::new(zero.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("rank 0: joined"))),
        "rank 0 joined"
    );
    let stopped = Command::new("kill")
        .args(["-STOP", &zero.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let start = Instant::now();
    let one = one.wait_with_output().unwrap();
    let took = start.elapsed();
    kill(zero);
    let said = text(&one);
    assert_eq!(one.status.code(), Some(5), "{said}");
    assert!(
        said.contains("rank 0 is gone: rank 0 silent for 2s"),
        "{said}"
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
}
