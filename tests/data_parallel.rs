//! Data-parallel training equals single-worker training: 2 and 3 workers,
//! as threads of this process and as processes (`dagger run -n N`, UCX);
//! on every GPU of the machine (NCCL); a GPU replica and a CPU replica in
//! one ring. The GPU tests print why they skip on a machine without one.
//!
//! The process tests start this test binary again with one test selected
//! (`rank_main`), which acts as a rank when `DAGGER_RANK` is set.

mod common;
use common::{
    gpu, launch_rank_main, max_relative_difference, rank_said, run_rank_main, ucx_missing,
};
use dagger::cuda::program::GpuProgram;
use dagger::cuda::GpuDevice;
use dagger::nn::{
    Activation, Adam, CompileOptions, DataParallel, DataParallelOptions, Momentum, NamedParams,
    Net, Optimizer, Program, SeededRng, Workers,
};
use dagger::tensor::{thread_ring, Executable, FuseOptions, ParallelGroup, Tensor};
use std::sync::Arc;

const FEATURES: usize = 10;
const CLASSES: usize = 4;
const GLOBAL_BATCH: usize = 24;
const STEPS: usize = 5;
const SEED: u64 = 11;

/// A small MLP and its mean cross-entropy over `batch` samples.
fn build(batch: usize) -> dagger::nn::Result<(Net, Tensor)> {
    let mut net = Net::new();
    let x = net.input("x", [batch, FEATURES]);
    let y = net.input("y", [batch, CLASSES]);
    let logits = net.mlp(x, &[16, 12, CLASSES], Activation::Tanh)?;
    let loss = net.cross_entropy(logits, y)?;
    Ok((net, loss))
}

/// Global batch `k`: inputs and one-hot labels.
fn batch(k: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SeededRng::new(100 + k as u64);
    let x: Vec<f32> = (0..GLOBAL_BATCH * FEATURES).map(|_| rng.normal()).collect();
    let mut y = vec![0.0; GLOBAL_BATCH * CLASSES];
    for row in 0..GLOBAL_BATCH {
        y[row * CLASSES + rng.below(CLASSES)] = 1.0;
    }
    (x, y)
}

/// Runs `STEPS` steps of `program` on its share `(index, parts)` of each
/// global batch.
fn train(program: &mut dyn Executable, (index, parts): (usize, usize)) {
    for k in 0..STEPS {
        let (x, y) = batch(k);
        let share = |v: &[f32]| {
            let len = v.len() / parts;
            v[index * len..(index + 1) * len].to_vec()
        };
        program.set("x", &share(&x)).unwrap();
        program.set("y", &share(&y)).unwrap();
        program.run().unwrap();
    }
}

fn named(p: &Program) -> NamedParams {
    p.params()
        .into_iter()
        .map(|(n, _, d)| (n.to_string(), d.to_vec()))
        .collect()
}

/// Parameters after `STEPS` steps of one worker on the whole batch.
fn single_worker(optimizer: &dyn Optimizer) -> NamedParams {
    let (net, loss) = build(GLOBAL_BATCH).unwrap();
    let step = net.train_step(loss, &[], optimizer).unwrap();
    let mut p = Program::compile(&step, CompileOptions::default()).unwrap();
    step.init_params(&mut p, SEED).unwrap();
    train(&mut p, (0, 1));
    named(&p)
}

/// The same on one GPU.
fn single_worker_on(gpu: &GpuDevice, optimizer: &dyn Optimizer) -> NamedParams {
    let (net, loss) = build(GLOBAL_BATCH).unwrap();
    let step = net.train_step(loss, &[], optimizer).unwrap();
    let mut p = GpuProgram::compile(&step, gpu, FuseOptions::default()).unwrap();
    for (name, values) in step.initial_params(SEED) {
        p.set(&name, &values).unwrap();
    }
    train(&mut p, (0, 1));
    p.params().unwrap()
}

fn data_parallel(workers: Workers, optimizer: &dyn Optimizer) -> NamedParams {
    // Small buckets: several all-reduces per step, overlapping backward.
    let options = DataParallelOptions {
        global_batch: GLOBAL_BATCH,
        bucket_bytes: 256,
        seed: SEED,
    };
    let mut dp = DataParallel::new(workers, options, optimizer, build).unwrap();
    for k in 0..STEPS {
        let (x, y) = batch(k);
        let loss = dp.step(&[("x", &x), ("y", &y)]).unwrap();
        assert!(loss.is_finite());
    }
    dp.params().unwrap()
}

const MOMENTUM: Momentum = Momentum { lr: 0.1, mu: 0.9 };

#[test]
fn threads_match_one_worker() {
    let reference = single_worker(&MOMENTUM);
    for n in [2, 3] {
        let got = data_parallel(Workers::Threads(n), &MOMENTUM);
        let d = max_relative_difference(&got, &reference);
        assert!(
            d <= 1e-5,
            "{n} workers: parameters differ by {d} (relative)"
        );
    }
    let reference = single_worker(&Adam::new(0.01));
    let got = data_parallel(Workers::Threads(3), &Adam::new(0.01));
    let d = max_relative_difference(&got, &reference);
    assert!(
        d <= 1e-5,
        "Adam, 3 workers: parameters differ by {d} (relative)"
    );
}

#[test]
fn every_gpu_of_the_machine_matches_one_worker() {
    let Some(gpu) = gpu() else { return };
    // The most GPUs the global batch splits over.
    let found = dagger::cuda::gpus().unwrap().len();
    let n = (1..=found)
        .filter(|n| GLOBAL_BATCH.is_multiple_of(*n))
        .max()
        .unwrap();
    if n == 1 {
        println!("one GPU: NCCL reduces over a group of one");
    }
    let on_gpu = single_worker_on(&gpu, &MOMENTUM);
    let got = data_parallel(Workers::Gpus(n), &MOMENTUM);
    let d = max_relative_difference(&got, &on_gpu);
    assert!(
        d <= 1e-5,
        "{n} GPUs: parameters differ from one GPU's by {d} (relative)"
    );
    // The GPU's arithmetic is not the CPU's, but close.
    let d = max_relative_difference(&got, &single_worker(&MOMENTUM));
    assert!(
        d <= 1e-4,
        "{n} GPUs: parameters differ from one CPU's by {d}"
    );
}

#[test]
fn a_gpu_and_a_cpu_replica_train_together() {
    let Some(gpu) = gpu() else { return };
    let (net, loss) = build(GLOBAL_BATCH / 2).unwrap();
    let step = net.data_parallel_step(loss, &MOMENTUM, 256).unwrap();
    let mut links = thread_ring(2);
    let cpu_link = links.pop().unwrap();
    let cpu_step = step.clone();
    let cpu = std::thread::spawn(move || {
        let mut p = Program::compile(&cpu_step, CompileOptions::default()).unwrap();
        // Other initial values: the broadcast from the GPU (rank 0) must replace them.
        cpu_step.init_params(&mut p, SEED + 1).unwrap();
        p.set_ring(ParallelGroup::Data, Box::new(cpu_link));
        p.broadcast_params().unwrap();
        train(&mut p, (1, 2));
        named(&p)
    });
    let mut p = GpuProgram::compile(&step, &gpu, FuseOptions::default()).unwrap();
    for (name, values) in step.initial_params(SEED) {
        p.set(&name, &values).unwrap();
    }
    p.set_ring(ParallelGroup::Data, Box::new(links.pop().unwrap()));
    p.broadcast_params().unwrap();
    train(&mut p, (0, 2));
    let on_gpu = p.params().unwrap();
    let on_cpu = cpu.join().unwrap();
    let reference = single_worker(&MOMENTUM);
    for (what, got) in [("GPU", &on_gpu), ("CPU", &on_cpu)] {
        let d = max_relative_difference(got, &reference);
        assert!(
            d <= 1e-4,
            "the {what} replica differs from one worker by {d}"
        );
    }
}

#[test]
fn more_gpu_workers_than_gpus_are_refused_naming_both() {
    let options = DataParallelOptions {
        global_batch: GLOBAL_BATCH,
        bucket_bytes: 256,
        seed: SEED,
    };
    let err = DataParallel::new(Workers::Gpus(24), options, &MOMENTUM, build)
        .err()
        .unwrap()
        .to_string();
    let why = match dagger::cuda::gpus() {
        Ok(found) => format!(
            "24 GPU workers asked for, but this machine has {} GPU(s)",
            found.len()
        ),
        Err(e) => e.to_string(),
    };
    assert_eq!(err, why);
}

#[test]
fn a_batch_that_does_not_split_is_refused() {
    let options = DataParallelOptions {
        global_batch: 25,
        bucket_bytes: 1 << 20,
        seed: 1,
    };
    let err = DataParallel::new(Workers::Threads(2), options, &MOMENTUM, build)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "a global batch of 25 does not split evenly over 2 workers"
    );
}

#[test]
fn processes_match_one_worker() {
    if ucx_missing() {
        return;
    }
    for n in [2, 3] {
        let all = run_rank_main(n);
        let said = format!("data-parallel over {n} processes matches one worker");
        assert!(rank_said(&all, 0, &said), "{all}");
    }
}

#[test]
fn processes_on_gpus_match_one_worker() {
    if ucx_missing() || gpu().is_none() {
        return;
    }
    let (ok, all) = launch_rank_main(2, "gpu");
    assert!(ok, "{all}");
    let said = "data-parallel over 2 processes on GPUs matches one worker";
    assert!(rank_said(&all, 0, said), "{all}");
}

#[test]
fn a_rank_that_dies_fails_the_step_naming_it() {
    if ucx_missing() {
        return;
    }
    // Rank 1 exits in its third step; rank 0's step must fail, naming it,
    // instead of waiting forever for its gradients.
    let (_, all) = launch_rank_main(2, "die");
    assert!(rank_said(&all, 0, "failed: "), "{all}");
    assert!(rank_said(&all, 0, "rank 1"), "{all}");
}

/// A rank of `processes_match_one_worker`; ignored in a plain run (the
/// launcher runs it with `--ignored`), it does nothing outside a cluster.
#[test]
#[ignore = "a rank's entry point, run in each rank process by the tests that launch ranks"]
fn rank_main() {
    let Some(cluster) = dagger::cluster::Cluster::from_env().unwrap() else {
        return;
    };
    let cluster = Arc::new(cluster);
    let (rank, size) = (cluster.rank(), cluster.size());
    if std::env::var("DAGGER_TEST_SCENARIO").as_deref() == Ok("die") {
        let options = DataParallelOptions {
            global_batch: GLOBAL_BATCH,
            bucket_bytes: 256,
            seed: SEED,
        };
        let mut dp =
            DataParallel::new(Workers::Cluster(cluster), options, &MOMENTUM, build).unwrap();
        for k in 0..50 {
            if rank == 1 && k == 2 {
                std::process::exit(3);
            }
            let (x, y) = batch(k % STEPS);
            if let Err(e) = dp.step(&[("x", &x), ("y", &y)]) {
                println!("step {k} failed: {e}");
                return;
            }
        }
        panic!("rank {rank}: 50 steps without noticing that rank 1 died");
    }
    if std::env::var("DAGGER_TEST_SCENARIO").as_deref() == Ok("gpu") {
        let got = data_parallel(Workers::ClusterGpus(cluster), &MOMENTUM);
        if rank == 0 {
            let d = max_relative_difference(&got, &single_worker(&MOMENTUM));
            assert!(
                d <= 1e-4,
                "{size} processes on GPUs: parameters differ by {d}"
            );
            println!("data-parallel over {size} processes on GPUs matches one worker (max relative difference {d:e})");
        }
        return;
    }
    let got = data_parallel(Workers::Cluster(cluster), &MOMENTUM);
    if rank == 0 {
        let d = max_relative_difference(&got, &single_worker(&MOMENTUM));
        assert!(
            d <= 1e-5,
            "{size} processes: parameters differ by {d} (relative)"
        );
        println!("data-parallel over {size} processes matches one worker (max relative difference {d:e})");
    }
}
