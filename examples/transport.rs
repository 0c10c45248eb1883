//! Transport benchmark: latency and bandwidth between two ranks through this
//! project's UCX layer, next to a plain `std::net::TcpStream` and UCX's own
//! `ucx_perftest` measured in the same run, then the overhead of an empty
//! task on another rank.
//!
//! ```text
//! cargo build --release --example transport --bin dagger
//! target/release/dagger run -n 2 -- target/release/examples/transport
//! ```
//!
//! `ucx_perftest` comes with Debian's `ucx-utils`; without it its rows say so.

use dagger::cluster::{Cluster, RemoteArg};
use dagger::prelude::*;
use dagger::Task;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const PING: u64 = 1;
const PONG: u64 = 2;
/// Bytes in a MiB: bandwidths are MiB/s, the unit `ucx_perftest` prints (as "MB/s").
const MIB: f64 = (1u64 << 20) as f64;
const DATA: u64 = 3;
const ACK: u64 = 4;
const TCP_PORT: u64 = 5;
const ROUND_TRIPS: usize = 20_000;
const SIZES: [(usize, usize); 2] = [(1 << 20, 200), (64 << 20, 10)];

/// An empty task, for the per-remote-task overhead.
#[task]
fn nothing(x: u64) -> u64 {
    x
}

/// The benchmark takes no options: `--help` says what it does and how to
/// start it, anything else is refused.
#[derive(clap::Parser)]
#[command(
    name = "transport",
    about = "UCX latency and bandwidth between two ranks against std TcpStream and \
             ucx_perftest, then the cost of an empty task on another rank",
    after_help = "Run as two ranks: dagger run -n 2 -- target/release/examples/transport"
)]
struct Cli {}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    dagger::pipe::end_quietly_on_closed_pipe();
    <Cli as clap::Parser>::parse();
    let Some(cluster) = Cluster::from_env()? else {
        eprintln!(
            "run me as two ranks: dagger run -n 2 -- {}",
            std::env::args().next().unwrap_or_default()
        );
        std::process::exit(2);
    };
    let cluster = Arc::new(cluster);
    if cluster.rank() == 0 {
        measure(&cluster)?;
    } else if cluster.rank() == 1 {
        echo(&cluster)?;
        cluster.serve(&Runtime::new())?;
    }
    Ok(())
}

/// Rank 1: answers pings, acknowledges data, mirrors the TCP side.
fn echo(c: &Cluster) -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..ROUND_TRIPS {
        let m = c.recv(PING, u64::MAX).wait()?;
        c.send(0, PONG, m.data).wait()?;
    }
    for (size, count) in SIZES {
        // Receive into the previous message's buffer, as a streaming
        // consumer would (ucx_perftest reuses its buffers too). The first
        // message is the warm-up (acknowledged on its own), as in
        // ucx_perftest, whose buffers are touched by its warm-up
        // iterations before it measures.
        let mut buffer = Vec::new();
        for i in 0..=count {
            let m = c.recv_into(DATA, u64::MAX, buffer).wait()?;
            assert_eq!(m.data.len(), size);
            buffer = m.data;
            if i == 0 || i == count {
                c.send(0, ACK, vec![1]).wait()?;
            }
        }
    }
    let port = c.recv(TCP_PORT, u64::MAX).wait()?;
    let port = u16::from_le_bytes(port.data[..2].try_into()?);
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    let mut small = [0u8; 8];
    for _ in 0..ROUND_TRIPS {
        s.read_exact(&mut small)?;
        s.write_all(&small)?;
    }
    for (size, count) in SIZES {
        let mut buf = vec![0u8; size];
        for _ in 0..count {
            s.read_exact(&mut buf)?;
        }
        s.write_all(&[1])?;
    }
    Ok(())
}

/// Rank 0: measures and prints the table.
fn measure(c: &Cluster) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "| measure | dagger UCX layer | std TcpStream | ucx_perftest | dagger / ucx_perftest |"
    );
    println!("|---|---|---|---|---|");
    // Latency.
    let t = Instant::now();
    for _ in 0..ROUND_TRIPS {
        let pong = c.recv(PONG, u64::MAX);
        c.send(1, PING, vec![7u8; 8]).wait()?;
        pong.wait()?;
    }
    let ours_lat = t.elapsed().as_secs_f64() / ROUND_TRIPS as f64 / 2.0 * 1e6;
    // Bandwidth.
    let mut ours_bw = Vec::new();
    for (size, count) in SIZES {
        // Every message's bytes exist (and are paged in) before the clock
        // starts, as ucx_perftest's buffer does.
        let payloads: Vec<Vec<u8>> = (0..count).map(|_| vec![3u8; size]).collect();
        let warm_up = c.recv(ACK, u64::MAX);
        c.send(1, DATA, vec![3u8; size]).wait()?;
        warm_up.wait()?;
        let ack = c.recv(ACK, u64::MAX);
        let t = Instant::now();
        let sends: Vec<_> = payloads
            .into_iter()
            .map(|payload| c.send(1, DATA, payload))
            .collect();
        for s in sends {
            s.wait()?;
        }
        ack.wait()?;
        ours_bw.push((size * count) as f64 / t.elapsed().as_secs_f64() / MIB);
    }
    // TCP.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    c.send(1, TCP_PORT, port.to_le_bytes().to_vec()).wait()?;
    let (mut s, _) = listener.accept()?;
    s.set_nodelay(true)?;
    let mut small = [7u8; 8];
    let t = Instant::now();
    for _ in 0..ROUND_TRIPS {
        s.write_all(&small)?;
        s.read_exact(&mut small)?;
    }
    let tcp_lat = t.elapsed().as_secs_f64() / ROUND_TRIPS as f64 / 2.0 * 1e6;
    let mut tcp_bw = Vec::new();
    for (size, count) in SIZES {
        let payload = vec![3u8; size];
        let t = Instant::now();
        for _ in 0..count {
            s.write_all(&payload)?;
        }
        s.read_exact(&mut [0u8; 1])?;
        tcp_bw.push((size * count) as f64 / t.elapsed().as_secs_f64() / MIB);
    }
    // ucx_perftest, in the same run.
    let perf_lat = perftest("tag_lat", 8, ROUND_TRIPS).map(|(lat, _)| lat);
    let perf_bw: Vec<Option<f64>> = SIZES
        .iter()
        .map(|&(size, count)| perftest("tag_bw", size, count).map(|(_, bw)| bw))
        .collect();
    let cell =
        |v: Option<f64>, unit: &str| v.map_or("not installed".into(), |v| format!("{v:.2} {unit}"));
    let ratio = |ours: f64, theirs: Option<f64>, lower_is_better: bool| {
        theirs.map_or("-".into(), |t| {
            format!("{:.2}x", if lower_is_better { t / ours } else { ours / t })
        })
    };
    println!(
        "| one-way latency, 8 B (half a round trip) | {ours_lat:.2} us | {tcp_lat:.2} us | {} | {} |",
        cell(perf_lat, "us"),
        ratio(ours_lat, perf_lat, true)
    );
    for (k, (size, _)) in SIZES.iter().enumerate() {
        println!(
            "| bandwidth, {} MiB messages | {:.0} MiB/s | {:.0} MiB/s | {} | {} |",
            size >> 20,
            ours_bw[k],
            tcp_bw[k],
            cell(perf_bw[k], "MiB/s"),
            ratio(ours_bw[k], perf_bw[k], false)
        );
    }
    // An empty task on rank 1, one after another.
    let calls = 2000;
    let t = Instant::now();
    for i in 0..calls {
        let v = c.call(
            1,
            nothing::def(),
            vec![RemoteArg::Local(dagger::Datum::new(i as u64))],
        )?;
        assert_eq!(v.rank, 1);
    }
    println!(
        "\nempty task on another rank (call, run, result kept there): {:.1} us per task ({calls} calls in sequence)",
        t.elapsed().as_secs_f64() / calls as f64 * 1e6
    );
    let link = c.measure_link(1)?;
    println!(
        "link the cost model uses (echoes through the task server): latency {:.1} us, bandwidth {:.0} MiB/s",
        link.latency * 1e6,
        link.bandwidth / MIB
    );
    Ok(())
}

/// Runs `ucx_perftest` (server and client on loopback) and returns its
/// one-way latency in us and bandwidth in MiB/s (what it prints as "MB/s":
/// bytes / 2^20 per second), or None if it is missing.
fn perftest(test: &str, size: usize, iterations: usize) -> Option<(f64, f64)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port()
        .to_string();
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        a.extend(
            [
                "-t",
                test,
                "-s",
                &size.to_string(),
                "-n",
                &iterations.to_string(),
                "-p",
                &port,
            ]
            .map(String::from),
        );
        a
    };
    let mut server = Command::new("ucx_perftest")
        .args(args(&[]))
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let client = Command::new("ucx_perftest")
        .args(args(&["127.0.0.1"]))
        .output()
        .ok();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&client?.stdout).to_string();
    let last = text.lines().find(|l| l.starts_with("Final:"))?;
    let fields: Vec<f64> = last
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // iterations, 50%ile, average, overall (latency, us), average, overall
    // (bandwidth, MiB/s: ucx_perftest divides bytes by 2^20), rates.
    Some((*fields.get(2)?, *fields.get(5)?))
}
