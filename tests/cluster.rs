//! Clusters of real processes on loopback: `dagger run -n 3`, a wrong
//! token, a malformed message, a rank that dies.
//!
//! The processes are this test binary itself, started again with one test
//! selected (`rank_main`), which acts as a rank when `DAGGER_RANK` is set
//! and does nothing otherwise. `DAGGER_TEST_SCENARIO` tells it what to do.
//! Every test skips, saying why, where UCX is not installed.

#[path = "common/cluster.rs"]
mod cluster_common;
mod common;

use cluster_common::{
    free_port, join_or_exit, run_sum_graph, serve_or_exit, sum_graph, text, RankEnv,
};
use common::{launch_rank_main, rank_said, ucx_missing};
use dagger::cluster::{Cluster, ClusterEnv, RemoteArg, RemoteError};
use dagger::prelude::*;
use dagger::SpanKind;
use dagger::Task;
use std::sync::Arc;
use std::time::Duration;

/// Runs `scenario` on `ranks` ranks with `dagger run` and returns
/// everything they printed, after checking that they all succeeded;
/// `None` (skipped) without UCX.
fn run_ok(ranks: u32, scenario: &str) -> Option<String> {
    if ucx_missing() {
        return None;
    }
    let (ok, all) = launch_rank_main(ranks, scenario);
    assert!(ok, "{all}");
    Some(all)
}

/// Multiplies every element by `k`.
#[task]
fn scale(v: Vec<u64>, k: u64) -> Vec<u64> {
    v.into_iter().map(|x| x * k).collect()
}

/// Sum of the elements and the rank that computed it.
#[task]
fn sum_where(v: Vec<u64>) -> (u64, u32) {
    let rank = std::env::var("DAGGER_RANK").unwrap().parse().unwrap();
    (v.iter().sum(), rank)
}

/// A type that cannot cross processes.
#[derive(Clone)]
pub struct Local(u64);

#[task]
fn unwrap_local(l: Local) -> u64 {
    l.0
}

/// A task this binary does not register (for the unknown-name error).
fn missing() -> dagger::TaskDef {
    let scale = scale::def();
    dagger::TaskDef {
        name: "cluster::not_registered",
        signature: scale.signature,
        cost: dagger::__private::CostHint::Unknown,
        device: scale.device,
        pure: false,
        grad: None,
        invoke: scale.invoke,
        device_body: None,
        wire: scale.wire,
    }
}

/// Rank 0's side of the remote-call scenario.
fn remote_calls(cluster: &Cluster) {
    let data: Vec<u64> = (1..=1000).collect();
    // Scale on rank 1; the result stays there.
    let scaled = cluster
        .call(
            1,
            scale::def(),
            vec![
                RemoteArg::Local(dagger::Datum::new(data.clone())),
                RemoteArg::Local(dagger::Datum::new(3u64)),
            ],
        )
        .unwrap();
    assert_eq!((scaled.rank, scaled.bytes > 1000), (1, true));
    // Sum on rank 2, which fetches the scaled vector from rank 1 itself,
    // and says so.
    let (sum, fetched) = cluster
        .call_traced(2, sum_where::def(), vec![RemoteArg::Remote(scaled)])
        .unwrap();
    assert_eq!(fetched.len(), 1, "one argument fetched: {fetched:?}");
    assert_eq!(fetched[0].from, 1);
    assert!(fetched[0].bytes >= 8000, "{fetched:?}");
    let got = cluster.fetch(&sum).unwrap();
    assert_eq!(got.downcast_ref::<(u64, u32)>(), Some(&(3 * 500_500, 2)));
    // The scaled vector itself, fetched from its home.
    let back = cluster.fetch(&scaled).unwrap();
    assert_eq!(back.downcast_ref::<Vec<u64>>().unwrap()[999], 3000);
    // Errors name their culprit.
    let err = cluster.call(1, &missing(), vec![]).unwrap_err();
    assert!(
        matches!(&err, RemoteError::Failed { rank: 1, message } if message.contains("unknown task `cluster::not_registered`")),
        "{err}"
    );
    let err = cluster
        .call(
            1,
            unwrap_local::def(),
            vec![RemoteArg::Local(dagger::Datum::new(Local(1)))],
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("argument 0 of `cluster::unwrap_local` cannot cross processes"),
        "{err}"
    );
    let link = cluster.measure_link(2).unwrap();
    assert!(link.latency > 0.0 && link.latency < 0.1, "{link:?}");
    assert!(link.bandwidth > 1e6, "{link:?}");
    assert_eq!(cluster.link(), cluster.link(), "measured once, kept");
    println!("rank 0: remote calls, rank-to-rank fetch and errors all right; link {link:?}");
}

/// Sums a chunk slowly (so that a run lasts long enough to lose a rank in
/// it); on rank 2 in the `graph-die` scenario the process dies at its
/// fourth call, as a crashed node would, with results of its first calls
/// still needed (and so recomputed elsewhere from their lineage).
#[task]
fn slow_sum(v: Vec<u64>) -> u64 {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dying = std::env::var("DAGGER_TEST_SCENARIO").as_deref() == Ok("graph-die")
        && std::env::var("DAGGER_RANK").as_deref() == Ok("2");
    if dying && CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 3 {
        std::process::exit(9);
    }
    std::thread::sleep(Duration::from_millis(30));
    v.iter().sum()
}

/// 24 slow chunk sums and a tree of additions, and its expected total.
fn slow_sum_graph() -> (dagger::Dag<(), u64>, u64) {
    sum_graph(24, 1000, |b, chunk| slow_sum::on(b).node(chunk))
}

/// Rank 0's side of the graph scenarios.
fn run_graph(cluster: &Cluster) {
    assert_eq!(cluster.workers().len(), 3, "every rank told its workers");
    assert!(cluster.workers().iter().all(|&w| w >= 1));
    let rt = Runtime::new();
    let (dag, expected) = slow_sum_graph();
    let single = rt.run(&dag, ()).unwrap();
    assert_eq!(single, expected, "the single-process run's result");
    let report = run_sum_graph(&rt, cluster, &dag, expected);
    let busy = report.tasks_per_rank.iter().filter(|&&n| n > 0).count();
    assert_eq!(busy, 3, "every rank ran tasks: {:?}", report.tasks_per_rank);
    let task_spans = report
        .spans
        .iter()
        .filter(|s| matches!(s.kind, SpanKind::Task { .. }))
        .count();
    assert_eq!(task_spans, report.tasks_per_rank.iter().sum::<usize>());
    assert!(report.spans.iter().all(|s| s.start <= s.end));
    assert!(
        report.spans.iter().all(|s| match s.kind {
            SpanKind::Transfer { from, to } => from != to && from < 3 && to < 3,
            SpanKind::Task { rank } => rank < 3,
        }),
        "spans name real ranks: {:?}",
        report.spans
    );
    let between_servers = report
        .spans
        .iter()
        .filter(|s| matches!(s.kind, SpanKind::Transfer { to, .. } if to != 0))
        .count();
    let trace: serde_json::Value = serde_json::from_str(&report.to_chrome_json()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    assert_eq!(
        events.iter().filter(|e| e["ph"] == "X").count(),
        report.spans.len(),
        "one trace event per span"
    );
    println!(
        "rank 0: cluster result = single-process result; {between_servers} transfers between serving ranks"
    );
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
    let cluster = join_or_exit();
    let (rank, size) = (cluster.rank(), cluster.size());
    match (scenario.as_str(), rank) {
        ("echo", 0) => {
            for r in 1..size {
                let payload: Vec<u8> = (0..100_000u32).map(|i| (i * r) as u8).collect();
                cluster.send(r, 10, payload).wait().unwrap();
            }
            let mut answered = 0;
            for _ in 1..size {
                let m = cluster.recv(20, u64::MAX).wait().unwrap();
                let from = u32::from_le_bytes(m.data[..4].try_into().unwrap());
                let sum = u64::from_le_bytes(m.data[4..12].try_into().unwrap());
                let expected: u64 = (0..100_000u32).map(|i| (i * from) as u8 as u64).sum();
                assert_eq!(sum, expected, "rank {from} summed what it got");
                answered += 1;
            }
            println!("rank 0: all {answered} ranks answered correctly");
        }
        ("echo", _) => {
            let m = cluster.recv(10, u64::MAX).wait().unwrap();
            let sum: u64 = m.data.iter().map(|&b| b as u64).sum();
            let mut reply = rank.to_le_bytes().to_vec();
            reply.extend(sum.to_le_bytes());
            cluster.send(0, 20, reply).wait().unwrap();
            cluster
                .wait_for_shutdown()
                .expect("rank 0 shuts down cleanly");
            println!("rank {rank}: shut down by rank 0");
        }
        ("die", 0) => {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while cluster.dead_ranks().is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let dead = cluster.dead_ranks();
            assert_eq!(dead.len(), 1, "{dead:?}");
            println!("rank 0: noticed rank {} died ({})", dead[0].0, dead[0].1);
        }
        ("remote", 0) => remote_calls(&cluster),
        ("graph" | "graph-die", 0) => run_graph(&cluster),
        ("remote" | "graph" | "graph-die", _) => serve_or_exit(cluster),
        ("die", 2) => std::process::exit(3),
        ("die", _) => {
            cluster
                .wait_for_shutdown()
                .expect("rank 0 shuts down cleanly");
        }
        (other, _) => panic!("unknown scenario {other:?}"),
    }
}

#[test]
fn three_ranks_exchange_data_over_ucx_and_shut_down() {
    let Some(all) = run_ok(3, "echo") else {
        return;
    };
    assert!(
        rank_said(&all, 0, "rank 0: all 2 ranks answered correctly"),
        "{all}"
    );
    assert!(rank_said(&all, 1, "rank 1: shut down by rank 0"), "{all}");
    assert!(rank_said(&all, 2, "rank 2: shut down by rank 0"), "{all}");
}

#[test]
fn tasks_run_on_other_ranks_by_name_and_their_results_stay_home() {
    let Some(all) = run_ok(3, "remote") else {
        return;
    };
    assert!(
        rank_said(
            &all,
            0,
            "remote calls, rank-to-rank fetch and errors all right"
        ),
        "{all}"
    );
    assert!(rank_said(&all, 1, "served until shutdown"), "{all}");
    assert!(rank_said(&all, 2, "served until shutdown"), "{all}");
}

#[test]
fn a_graph_runs_across_three_ranks_with_the_single_process_result() {
    let Some(all) = run_ok(3, "graph") else {
        return;
    };
    assert!(rank_said(&all, 0, "= single-process result"), "{all}");
    assert!(rank_said(&all, 0, "lost []; redone 0"), "{all}");
}

#[test]
fn a_rank_killed_mid_run_is_recomputed_elsewhere_and_the_result_is_right() {
    let Some(all) = run_ok(3, "graph-die") else {
        return;
    };
    assert!(rank_said(&all, 0, "= single-process result"), "{all}");
    assert!(rank_said(&all, 0, "lost [2]"), "{all}");
    assert!(all.contains("rank 2 ended early"), "{all}");
}

#[test]
fn rank_zero_notices_a_rank_that_dies() {
    let Some(all) = run_ok(3, "die") else {
        return;
    };
    assert!(rank_said(&all, 0, "rank 0: noticed rank 2 died"), "{all}");
    assert!(all.contains("rank 2 ended early"), "{all}");
}

/// Two ranks in the echo scenario, started directly with `token`.
fn echo_pair(token: &str) -> RankEnv {
    RankEnv::on_loopback(2, token, "3", "echo")
}

#[test]
fn a_rank_with_the_wrong_token_is_refused_and_the_refusal_is_logged() {
    if ucx_missing() {
        return;
    }
    let ranks = echo_pair("right-token");
    let zero = ranks.start(0);
    let one = ranks.with_token("wrong-token").start(1);
    let (zero, one) = (
        zero.wait_with_output().unwrap(),
        one.wait_with_output().unwrap(),
    );
    let (zero_text, one_text) = (text(&zero), text(&one));
    assert!(!one.status.success(), "{one_text}");
    assert!(
        one_text.contains("refused: rank 1: wrong cluster token"),
        "{one_text}"
    );
    assert!(
        !zero.status.success(),
        "rank 0 gives up waiting: {zero_text}"
    );
    assert!(
        zero_text.contains("refused a join from 127.0.0.1"),
        "{zero_text}"
    );
    assert!(zero_text.contains("wrong cluster token"), "{zero_text}");
    assert!(zero_text.contains("rank(s) 1 did not join"), "{zero_text}");
}

#[test]
fn a_malformed_message_is_refused_without_taking_rank_zero_down() {
    use std::io::{Read, Write};
    if ucx_missing() {
        return;
    }
    let ranks = echo_pair("tok");
    let coordinator = ranks.coordinator.clone();
    let zero = ranks.start(0);
    // Connect first, with garbage instead of a Join.
    let mut stream = loop {
        match std::net::TcpStream::connect(&coordinator) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut challenge = [0u8; 64];
    let _ = stream.read(&mut challenge).unwrap();
    stream
        .write_all(&[5, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb])
        .unwrap();
    drop(stream);
    // Then the real rank 1 joins and the exchange completes.
    let one = ranks.start(1);
    let (zero, one) = (
        zero.wait_with_output().unwrap(),
        one.wait_with_output().unwrap(),
    );
    let zero_text = text(&zero);
    assert!(zero.status.success(), "{zero_text}");
    assert!(one.status.success(), "{}", text(&one));
    assert!(zero_text.contains("undecodable frame"), "{zero_text}");
    assert!(
        zero_text.contains("all 1 ranks answered correctly"),
        "{zero_text}"
    );
}

#[test]
fn an_environment_without_a_rank_is_not_a_cluster() {
    let env = ClusterEnv::from_vars(|_| None).unwrap();
    assert_eq!(env, None);
}

#[test]
fn an_in_process_cluster_runs_a_graph_and_its_ranks_forget_the_values_after() {
    use dagger::net::InProcessTransport;
    let coordinator: std::net::SocketAddr = free_port().parse().unwrap();
    let env = move |rank| ClusterEnv {
        rank,
        size: 2,
        coordinator,
        token: b"in-process".to_vec(),
        workers: 1,
    };
    // Rank 1 joins and serves on its own thread, with its own transport.
    let (tx, rx) = std::sync::mpsc::channel();
    let serving = std::thread::spawn(move || {
        let one = Arc::new(Cluster::join(env(1), Arc::new(InProcessTransport::new())).unwrap());
        tx.send(one.clone()).unwrap();
        one.serve(&Runtime::builder().threads(1).build())
    });
    let zero = Cluster::join(env(0), Arc::new(InProcessTransport::new())).unwrap();
    let one = rx.recv().unwrap();
    let (dag, expected) = slow_sum_graph();
    let rt = Runtime::builder().threads(1).build();
    let (total, report) = zero
        .run(&rt, &dag, (), &dagger::ir::sched::HeftScheduler)
        .unwrap();
    assert_eq!(total, expected);
    assert!(report.tasks_per_rank[1] > 0, "{:?}", report.tasks_per_rank);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while one.stored_values() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        one.stored_values(),
        0,
        "rank 1 forgot what it kept for the run"
    );
    drop(zero);
    serving
        .join()
        .unwrap()
        .expect("rank 1 served until shutdown");
}

#[test]
fn the_watchdog_ends_a_hung_run_and_says_where_each_process_was() {
    use std::process::{Command, Stdio};
    // A shell and the sleep it waits for: a "run" that never ends.
    let child = Command::new("sh")
        // (`fin""ished` prints as `finished` but is not in the command line the dump shows.)
        .args(["-c", "echo started; sleep 60; echo fin\"\"ished"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let (status, said) = common::wait_or_dump_stacks(child, Duration::from_millis(300));
    assert_eq!(status, None, "{said}");
    assert!(started.elapsed() < Duration::from_secs(30), "{said}");
    assert!(
        said.contains("started") && !said.contains("finished"),
        "{said}"
    );
    assert!(said.contains("still running after 300ms"), "{said}");
    assert!(
        said.contains("=== pid") && said.contains("sleep 60"),
        "{said}"
    );
}
