//! Data-parallel scaling: training samples/s of one MLP for 1, 2 and 3
//! workers, as threads of one process and as processes (`dagger run -n N`,
//! UCX), and the ring all-reduce's bandwidth against the transport's own
//! point-to-point bandwidth, measured in the same run; on a machine with
//! GPUs, samples/s on 1 to all of them (NCCL), against one GPU.
//!
//! ```text
//! cargo bench --bench data_parallel
//! ```
//!
//! The process rows start this binary again under `dagger run`; each rank
//! trains on its share of every global batch and rank 0 prints its figure.

use dagger::cluster::Cluster;
use dagger::nn::{
    Activation, DataParallel, DataParallelOptions, Momentum, Net, SeededRng, Workers,
};
use dagger::ring::ClusterRing;
use dagger::tensor::{ring_all_reduce_mean, Tensor};
use std::sync::Arc;
use std::time::Instant;

const INPUTS: usize = 784;
const CLASSES: usize = 10;
const GLOBAL_BATCH: usize = 192;
const STEPS: usize = 15;
/// All-reduce message: 16 MiB of f32.
const REDUCE_LEN: usize = 4 << 20;

fn build(batch: usize) -> dagger::nn::Result<(Net, Tensor)> {
    let mut net = Net::new();
    let x = net.input("x", [batch, INPUTS]);
    let y = net.input("y", [batch, CLASSES]);
    let logits = net.mlp(x, &[512, 512, CLASSES], Activation::Relu)?;
    let loss = net.cross_entropy(logits, y)?;
    Ok((net, loss))
}

fn samples_per_second(workers: Workers) -> f64 {
    let options = DataParallelOptions {
        global_batch: GLOBAL_BATCH,
        bucket_bytes: 1 << 20,
        seed: 1,
    };
    let mut dp = DataParallel::new(workers, options, &Momentum { lr: 0.01, mu: 0.9 }, build)
        .expect("replicas");
    let mut rng = SeededRng::new(3);
    let x: Vec<f32> = (0..GLOBAL_BATCH * INPUTS).map(|_| rng.unit()).collect();
    let mut y = vec![0.0; GLOBAL_BATCH * CLASSES];
    for row in 0..GLOBAL_BATCH {
        y[row * CLASSES + rng.below(CLASSES)] = 1.0;
    }
    for _ in 0..2 {
        dp.step(&[("x", &x), ("y", &y)]).expect("step");
    }
    let start = Instant::now();
    for _ in 0..STEPS {
        dp.step(&[("x", &x), ("y", &y)]).expect("step");
    }
    (STEPS * GLOBAL_BATCH) as f64 / start.elapsed().as_secs_f64()
}

/// On a rank: the all-reduce's bus bandwidth and the raw one-way bandwidth
/// from rank 0 to rank 1, both in MB/s.
fn bandwidths(cluster: Arc<Cluster>) -> (f64, f64) {
    let n = cluster.size() as f64;
    let mut link = ClusterRing::new(cluster.clone());
    let mut data = vec![1.0f32; REDUCE_LEN];
    let mut scratch = Vec::new();
    ring_all_reduce_mean(&mut link, &mut data, &mut scratch).expect("warm-up");
    let rounds = 5;
    let start = Instant::now();
    for _ in 0..rounds {
        ring_all_reduce_mean(&mut link, &mut data, &mut scratch).expect("all-reduce");
    }
    let per = start.elapsed().as_secs_f64() / rounds as f64;
    // nccl-tests' "bus bandwidth": what each link carries, 2 (n - 1) / n of the data.
    let bus = (REDUCE_LEN * 4) as f64 * 2.0 * (n - 1.0) / n / per / 1e6;
    // Both sides reuse their buffers, as the ring does (round 0 warms up).
    let mut bytes = vec![0u8; REDUCE_LEN * 4];
    let mut inbox = Vec::new();
    let size = bytes.len();
    let mut raw = 0.0;
    for round in 0..=rounds {
        let start = Instant::now();
        let tag = (4 << 56) | round as u64;
        match cluster.rank() {
            0 => bytes = cluster.send_reusing(1, tag, bytes).wait().expect("send"),
            1 => {
                inbox = cluster
                    .recv_into(tag, u64::MAX, inbox)
                    .wait()
                    .expect("recv")
                    .data
            }
            _ => {}
        }
        let ack = (5 << 56) | round as u64;
        match cluster.rank() {
            1 => cluster.send(0, ack, Vec::new()).wait().expect("ack"),
            0 => drop(cluster.recv(ack, u64::MAX).wait().expect("ack")),
            _ => {}
        }
        if round > 0 {
            raw += size as f64 / start.elapsed().as_secs_f64() / 1e6 / rounds as f64;
        }
    }
    (bus, raw)
}

fn rank_main(cluster: Cluster) {
    let cluster = Arc::new(cluster);
    let rate = samples_per_second(Workers::Cluster(cluster.clone()));
    let (bus, raw) = bandwidths(cluster.clone());
    if cluster.rank() == 0 {
        println!("RESULT {rate:.1} {bus:.0} {raw:.0}");
    }
}

/// Samples/s, bus and raw bandwidth on `n` processes, launched by the
/// `dagger` binary cargo built or `DAGGER_BIN` (as `.ci/gpu-checks` sets).
fn processes(n: usize) -> Option<(f64, f64, f64)> {
    let me = std::env::current_exe().ok()?;
    let launcher = std::env::var_os("DAGGER_BIN").unwrap_or(env!("CARGO_BIN_EXE_dagger").into());
    let out = std::process::Command::new(launcher)
        .args(["run", "-n", &n.to_string(), "--"])
        .arg(me)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.split("RESULT ").nth(1))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Some((v[0], v[1], v[2]))
}

fn main() {
    if let Some(cluster) = Cluster::from_env().expect("cluster environment") {
        rank_main(cluster);
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("MLP 784-512-512-10, global batch {GLOBAL_BATCH}, momentum SGD, 1 MiB buckets; {cores} cores\n");
    println!("| workers | threads samples/s | speed-up | processes samples/s | speed-up | all-reduce bus MB/s | transport MB/s | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    let (mut base_threads, mut base_procs) = (0.0, 0.0);
    for n in 1..=3 {
        let threads = samples_per_second(Workers::Threads(n));
        if n == 1 {
            base_threads = threads;
        }
        let procs = if n == 1 || dagger::net::ucx_available().is_err() {
            None
        } else {
            processes(n)
        };
        match procs {
            Some((rate, bus, raw)) => {
                if base_procs == 0.0 {
                    base_procs = base_threads;
                }
                println!(
                    "| {n} | {threads:.0} | {:.2}x | {rate:.0} | {:.2}x | {bus:.0} | {raw:.0} | {:.2}x |",
                    threads / base_threads,
                    rate / base_procs,
                    bus / raw
                );
            }
            None => println!(
                "| {n} | {threads:.0} | {:.2}x | - | - | - | - | - |",
                threads / base_threads
            ),
        }
    }
    gpu_rows();
}

/// Samples/s on 1 to all of this machine's GPUs.
fn gpu_rows() {
    let gpus = match dagger::cuda::gpus() {
        Ok(gpus) if !gpus.is_empty() => gpus,
        Ok(_) => return println!("\nno GPU rows: no GPU found"),
        Err(e) => return println!("\nno GPU rows: {e}"),
    };
    println!(
        "\n{} ({} GPU(s)), NCCL all-reduce\n",
        gpus[0].name,
        gpus.len()
    );
    println!("| GPUs | samples/s | speed-up |");
    println!("|---|---|---|");
    let mut base = 0.0;
    for n in 1..=gpus.len() {
        if !GLOBAL_BATCH.is_multiple_of(n) {
            continue;
        }
        let rate = samples_per_second(Workers::Gpus(n));
        if n == 1 {
            base = rate;
        }
        println!("| {n} | {rate:.0} | {:.2}x |", rate / base);
    }
}
