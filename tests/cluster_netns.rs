//! A cluster whose ranks are on separate (virtual) hosts, and a link cut.
//!
//! Each rank runs in its own network namespace, which the test creates:
//! one veth pair per rank, its inner end the rank's only interface
//! (10.77.0.r+1/24), its outer end on a bridge in a hub namespace. No
//! address is added to the machine's own interfaces. UCX moves the data
//! over TCP on the veth (`UCX_TLS=tcp`, `UCX_NET_DEVICES`), so that taking
//! a rank's link down cuts its data plane as well as its control plane
//! (shared memory between the namespaces would still carry the data).
//!
//! The processes are this test binary itself, started again with one test
//! selected (`rank_main`) through `ip netns exec`. The tests need root (or
//! CAP_NET_ADMIN) to create namespaces, and UCX: without either they skip,
//! saying why.

#[path = "common/cluster.rs"]
mod cluster_common;
mod common;

use cluster_common::{join_or_exit, run_sum_graph, serve_or_exit, sum_graph, RankEnv};
use common::ucx_missing;
use dagger::prelude::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

/// Sums a chunk slowly, so that the run lasts long enough to cut a link in
/// it; rank 2 says when it starts its first chunk (the test's cue).
#[task]
fn slow_sum(v: Vec<u64>) -> u64 {
    static STARTED: std::sync::Once = std::sync::Once::new();
    if std::env::var("DAGGER_RANK").as_deref() == Ok("2") {
        STARTED.call_once(|| println!("rank 2: computing"));
    }
    std::thread::sleep(Duration::from_millis(300));
    v.iter().sum()
}

/// Chunks of the graph: as many sums, and one addition fewer.
const CHUNKS: u64 = 24;

/// The body of every rank process (ignored in a plain run: the launchers
/// run it with `--ignored`; without a cluster it does nothing).
#[test]
#[ignore = "a rank's entry point, run in each rank process by the tests that launch ranks"]
fn rank_main() {
    if std::env::var_os("DAGGER_RANK").is_none() {
        return;
    }
    let cluster = join_or_exit();
    if cluster.rank() == 0 {
        let (dag, expected) = sum_graph(CHUNKS, 1000, |b, chunk| slow_sum::on(b).node(chunk));
        let report = run_sum_graph(&Runtime::new(), &cluster, &dag, expected);
        let runs: usize = report.tasks_per_rank.iter().sum();
        println!("rank 0: {runs} task runs");
    } else {
        serve_or_exit(cluster);
    }
}

/// Runs `ip` with `args`; its error output when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Network namespaces made for one test (names unique to this process),
/// deleted (with their interfaces) when dropped.
struct Hosts {
    /// The hub namespace, holding the bridge.
    hub: String,
    /// One namespace per rank.
    ranks: Vec<String>,
}

impl Hosts {
    /// One namespace per rank, each with interface `v{r}` at 10.77.0.r+1
    /// and bridged to the others; `Err` (why) where namespaces cannot be
    /// made here.
    fn new(size: u32) -> Result<Hosts, String> {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let tag = format!(
            "dagger-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        let mut hosts = Hosts {
            hub: format!("{tag}-hub"),
            ranks: Vec::new(),
        };
        ip(&["netns", "add", &hosts.hub])?;
        ip(&["-n", &hosts.hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hosts.hub, "link", "set", "br0", "up"])?;
        for r in 0..size {
            let ns = format!("{tag}-rank{r}");
            ip(&["netns", "add", &ns])?;
            hosts.ranks.push(ns.clone());
            let (inner, outer) = (format!("v{r}"), format!("h{r}"));
            ip(&[
                "link", "add", &inner, "netns", &ns, "type", "veth", "peer", "name", &outer,
                "netns", &hosts.hub,
            ])?;
            ip(&[
                "-n", &hosts.hub, "link", "set", &outer, "master", "br0", "up",
            ])?;
            let address = format!("10.77.0.{}/24", r + 1);
            ip(&["-n", &ns, "addr", "add", &address, "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    /// Takes rank `r`'s link down: it can reach nobody, nobody reaches it.
    fn cut(&self, r: u32) {
        ip(&[
            "-n",
            &self.ranks[r as usize],
            "link",
            "set",
            &format!("v{r}"),
            "down",
        ])
        .unwrap();
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in self.ranks.iter().chain([&self.hub]) {
            let _ = ip(&["netns", "delete", ns]);
        }
    }
}

/// A rank process, killed if the test ends before it did.
struct Rank {
    child: Child,
    /// Everything it printed, once it has ended (stdout, then stderr).
    said: Option<Receiver<String>>,
}

impl Rank {
    /// Starts `rank` of `env` in its namespace of `hosts`, its data plane
    /// on its veth; its stdout lines go to `lines` as they come.
    fn start(env: &RankEnv, hosts: &Hosts, rank: u32, lines: Sender<(u32, String)>) -> Rank {
        let ns = &hosts.ranks[rank as usize];
        let mut child = env
            .command(rank, &["ip", "netns", "exec", ns])
            .env("UCX_TLS", "tcp")
            .env("UCX_NET_DEVICES", format!("v{rank}"))
            .env("DAGGER_THREADS", "1")
            .spawn()
            .unwrap();
        let (stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let (said_tx, said) = channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send((rank, line.clone()));
                all.push_str(&line);
                all.push('\n');
            }
            let _ = stderr.read_to_string(&mut all);
            let _ = said_tx.send(all);
        });
        Rank {
            child,
            said: Some(said),
        }
    }

    /// Waits up to `limit` for the process to end: its status, or `None`.
    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What it printed; kills it first if it still runs.
    fn said(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let said = self.said.take().expect("read once");
        said.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| "(its output was not closed)".into())
    }
}

impl Drop for Rank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_serving_rank_cut_off_mid_run_exits_with_why_and_rank_zero_recomputes_its_part() {
    if ucx_missing() {
        return;
    }
    let hosts = match Hosts::new(3) {
        Ok(h) => h,
        Err(why) => {
            println!("skipping: cannot make network namespaces here (needs root): {why}");
            return;
        }
    };
    let env = RankEnv {
        size: 3,
        coordinator: "10.77.0.1:47000".into(),
        token: "netns".into(),
        join_timeout: "20".into(),
        scenario: String::new(),
    };
    let (lines, heard) = channel();
    let mut ranks: Vec<Rank> = (0..3)
        .map(|r| Rank::start(&env, &hosts, r, lines.clone()))
        .collect();
    drop(lines);
    let deadline = Instant::now() + Duration::from_secs(60);
    let cued = std::iter::from_fn(|| {
        heard
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    })
    .any(|(rank, line)| rank == 2 && line.contains("rank 2: computing"));
    if !cued {
        let said: Vec<String> = ranks.iter_mut().map(Rank::said).collect();
        panic!("rank 2 never started computing: {said:#?}");
    }
    hosts.cut(2);
    let cut = Instant::now();
    let two = ranks[2].wait_for(Duration::from_secs(15));
    let took = cut.elapsed();
    let zero = ranks[0].wait_for(Duration::from_secs(60));
    let zero_took = cut.elapsed();
    let one = ranks[1].wait_for(Duration::from_secs(10));
    let said: Vec<String> = ranks.iter_mut().map(Rank::said).collect();
    println!(
        "rank 2 exited {took:?} after its link went down, rank 0 {zero_took:?} after; rank 0 said:\n{}",
        said[0].lines().filter(|l| l.contains("rank 0: ") || l.contains("dagger:")).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(
        two.map(|s| s.code()),
        Some(Some(5)),
        "rank 2, {took:?} after the cut: {}",
        said[2]
    );
    assert!(
        said[2].contains("rank 2 stops: network: rank 0 is gone: rank 0 silent for 2s"),
        "{}",
        said[2]
    );
    assert!(zero.is_some_and(|s| s.success()), "rank 0: {}", said[0]);
    assert!(said[0].contains("rank 0: result right"), "{}", said[0]);
    assert!(said[0].contains("lost [2]"), "{}", said[0]);
    // Rank 2's tasks in flight at the cut never came back: run again elsewhere.
    let tasks = 2 * CHUNKS as usize - 1;
    let runs = said[0]
        .lines()
        .find_map(|l| l.strip_prefix("rank 0: ")?.strip_suffix(" task runs"))
        .and_then(|n| n.parse::<usize>().ok());
    assert!(
        runs.is_some_and(|n| n > tasks),
        "rank 2's part was run again: {runs:?} runs of {tasks} tasks: {}",
        said[0]
    );
    assert!(one.is_some_and(|s| s.success()), "rank 1: {}", said[1]);
    assert!(
        said[1].contains("rank 1: served until shutdown"),
        "{}",
        said[1]
    );
}
