//! Clusters of real processes that go wrong: joins refused over and over,
//! ranks that die before they join or between the join and the run, a
//! rank 0 that stops answering, a rank 0 that nobody joins.
//!
//! The processes are this test binary itself, started again with one test
//! selected (`rank_main`), which acts as a rank when `DAGGER_RANK` is set
//! and does nothing otherwise; `DAGGER_TEST_SCENARIO` tells it what to do.
//! Every test skips, saying why, where UCX is not installed.

#[path = "common/cluster.rs"]
mod cluster_common;
mod common;

use cluster_common::{join_or_exit, kill, run_sum_graph, serve_or_exit, sum_graph, text, RankEnv};
use common::{launch_rank_main, rank_said, ucx_missing};
use dagger::cluster::Cluster;
use dagger::prelude::*;
use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Sums a chunk, slowly enough that the run spreads over every rank.
#[task]
fn chunk_sum(v: Vec<u64>) -> u64 {
    std::thread::sleep(Duration::from_millis(10));
    v.iter().sum()
}

/// Rank 0 runs 12 chunk sums across the cluster and says what the run did.
fn run_graph(cluster: &Cluster) {
    let (dag, expected) = sum_graph(12, 100, |b, chunk| chunk_sum::on(b).node(chunk));
    run_sum_graph(&Runtime::new(), cluster, &dag, expected);
}

/// The body of every rank process (ignored in a plain run: the launchers
/// run it with `--ignored`; without a cluster it does nothing).
#[test]
#[ignore = "a rank's entry point, run in each rank process by the tests that launch ranks"]
fn rank_main() {
    if std::env::var_os("DAGGER_RANK").is_none() {
        return;
    }
    let scenario = std::env::var("DAGGER_TEST_SCENARIO").unwrap_or_default();
    let rank = std::env::var("DAGGER_RANK").unwrap();
    if scenario == "die-before-join" && rank == "2" {
        std::process::exit(3);
    }
    let cluster = join_or_exit();
    match (scenario.as_str(), cluster.rank()) {
        ("die-after-join" | "die-after-join-noticed", 2) => std::process::exit(4),
        ("die-after-join-noticed", 0) => {
            wait_for_a_death(&cluster, Duration::from_secs(10));
            run_graph(&cluster);
        }
        ("hold", 0) => {
            println!("rank 0: joined");
            std::thread::sleep(Duration::from_secs(60));
        }
        ("watch", 0) => {
            println!("rank 0: joined");
            match wait_for_a_death(&cluster, Duration::from_secs(20)).first() {
                Some((r, why)) => println!("rank 0: rank {r} declared dead: {why}"),
                None => println!("rank 0: nobody declared dead in 20s"),
            }
        }
        (_, 0) => run_graph(&cluster),
        _ => serve_or_exit(cluster),
    }
}

/// Waits up to `limit` for a rank to be declared dead; the dead ranks.
fn wait_for_a_death(cluster: &Cluster, limit: Duration) -> Vec<(u32, String)> {
    let deadline = Instant::now() + limit;
    while cluster.dead_ranks().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.dead_ranks()
}

/// `child`'s output, line by line as it comes.
fn output_lines(child: &mut Child) -> impl Iterator<Item = String> {
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    stdout.lines().map_while(Result::ok)
}

/// Stops (SIGSTOP) a process this test started: it answers nothing, but
/// its kernel still takes in what is sent to its sockets.
fn freeze(child: &Child) {
    let stopped = Command::new("kill")
        .args(["-STOP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
}

#[test]
fn a_refused_join_exits_with_its_error_every_time_never_with_a_signal() {
    if ucx_missing() {
        return;
    }
    let ranks = RankEnv::on_loopback(2, "right-token", "120", "serve");
    let zero = ranks.start(0);
    let wrong = ranks.with_token("wrong-token");
    for attempt in 0..40 {
        let one = wrong.start(1).wait_with_output().unwrap();
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
    let zero = RankEnv::on_loopback(2, "tok", "1", "serve")
        .start(0)
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

/// Starts 2 ranks in `scenario`, freezes rank `frozen` once rank 0 has
/// joined, and waits for the other rank to end: what it printed, its exit
/// status, and how long after the freeze it ended.
fn freeze_one_of_two(scenario: &str, frozen: usize) -> (String, ExitStatus, Duration) {
    let ranks = RankEnv::on_loopback(2, "tok", "10", scenario);
    let mut pair = [ranks.start(0), ranks.start(1)];
    let mut said_by_zero = output_lines(&mut pair[0]);
    assert!(said_by_zero.any(|l| l.contains("rank 0: joined")));
    freeze(&pair[frozen]);
    let start = Instant::now();
    let rest_by_zero = std::thread::spawn(move || said_by_zero.collect::<Vec<_>>());
    let [zero, one] = pair;
    let (stopped, other) = if frozen == 0 {
        (zero, one)
    } else {
        (one, zero)
    };
    let ended = other.wait_with_output().unwrap();
    let took = start.elapsed();
    kill(stopped);
    let rest_by_zero = rest_by_zero.join().unwrap();
    let said = match frozen {
        0 => text(&ended),
        _ => format!("{}\n{}", rest_by_zero.join("\n"), text(&ended)),
    };
    (said, ended.status, took)
}

#[test]
fn a_serving_rank_whose_rank_zero_stops_answering_exits_with_why() {
    if ucx_missing() {
        return;
    }
    let (said, status, took) = freeze_one_of_two("hold", 0);
    assert_eq!(status.code(), Some(5), "{said}");
    assert!(
        said.contains("rank 0 is gone: rank 0 silent for 2s"),
        "{said}"
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[test]
fn rank_zero_declares_a_serving_rank_that_stops_answering_dead_within_the_silence() {
    // Rank 0's heartbeats still fit in the frozen rank's socket buffer: only
    // its silence tells rank 0 that it is gone.
    if ucx_missing() {
        return;
    }
    let (said, status, took) = freeze_one_of_two("watch", 1);
    assert!(status.success(), "{said}");
    assert!(
        said.contains("rank 0: rank 1 declared dead: silent for 2s"),
        "{said}"
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
}
