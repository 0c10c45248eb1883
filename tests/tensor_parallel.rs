//! Tensor-parallel (Megatron-style) training equals single-device training
//! for 2 and 3 workers, alone, with data parallelism, and with data and
//! pipeline parallelism at once; the graph holds one all-reduce per block
//! each way.

mod common;
use common::{every_rank_says_on_2_and_3_processes, max_relative_difference, OneDevice};
use dagger::ir::sched::pipeline::PipelineKind;
use dagger::nn::{
    Activation, BlockStack, CompileOptions, Momentum, Pipeline, PipelineOptions, Program,
    SeededRng, TensorParallel, Workers,
};
use dagger::tensor::{ParallelGroup, TensorOp};

const BATCH: usize = 8;
const STEPS: usize = 5;
const SEED: u64 = 9;
const OPT: Momentum = Momentum { lr: 0.1, mu: 0.9 };

fn model() -> BlockStack {
    BlockStack {
        inputs: 10,
        blocks: vec![(12, 8), (6, 4)],
        activation: Activation::Tanh,
    }
}

fn batch(k: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SeededRng::new(300 + k as u64);
    let x: Vec<f32> = (0..BATCH * 10).map(|_| rng.normal()).collect();
    let mut y = vec![0.0; BATCH * 4];
    for row in 0..BATCH {
        y[row * 4 + rng.below(4)] = 1.0;
    }
    (x, y)
}

fn single_device() -> OneDevice {
    let (net, loss) = model().net(BATCH, 1).unwrap();
    let step = net.train_step(loss, &[], &OPT).unwrap();
    let mut p = Program::compile(&step, CompileOptions::default()).unwrap();
    step.init_params(&mut p, SEED).unwrap();
    let mut losses = Vec::new();
    for k in 0..STEPS {
        let (x, y) = batch(k);
        p.set("x", &x).unwrap();
        p.set("y", &y).unwrap();
        p.run().unwrap();
        losses.push(p.output(0)[0]);
    }
    let params = p
        .params()
        .into_iter()
        .filter(|(n, _, _)| n.starts_with("block"))
        .map(|(n, _, d)| (n.to_string(), d.to_vec()))
        .collect();
    OneDevice { params, losses }
}

#[test]
fn two_and_three_workers_match_one_device() {
    let one = single_device();
    for n in [2, 3] {
        let mut tp = TensorParallel::new(&model(), Workers::Threads(n), BATCH, SEED, &OPT).unwrap();
        one.assert_matched_by(
            &format!("{n} workers"),
            &mut tp,
            |t, k| {
                let (x, y) = batch(k);
                t.step(&x, &y).unwrap()
            },
            |t| t.params().unwrap(),
        );
    }
}

#[test]
fn each_block_all_reduces_once_forward_and_once_backward() {
    let (net, loss) = model().net(BATCH, 2).unwrap();
    let step = net.train_step(loss, &[], &OPT).unwrap();
    let sums = step
        .nodes()
        .iter()
        .filter(|n| {
            matches!(
                n.op,
                TensorOp::AllReduce {
                    group: ParallelGroup::Tensor,
                    ..
                }
            )
        })
        .count();
    // Two blocks: two forward sums; backward, the second block's input
    // gradient (the first block's input is data, which needs none).
    assert_eq!(sums, 3);
    let err = TensorParallel::new(&model(), Workers::Threads(4), BATCH, SEED, &OPT)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "1 x 4 x 1: block 1's hidden width 6 does not split 4 ways"
    );
}

#[test]
fn processes_match_one_device() {
    every_rank_says_on_2_and_3_processes("shards match one device");
}

/// A rank of `processes_match_one_device`; ignored in a plain run (the
/// launcher runs it with `--ignored`), it does nothing outside a cluster.
#[test]
#[ignore = "a rank's entry point, run in each rank process by the tests that launch ranks"]
fn rank_main() {
    let Some(cluster) = dagger::cluster::Cluster::from_env().unwrap() else {
        return;
    };
    let (rank, size) = (cluster.rank() as usize, cluster.size());
    let OneDevice {
        params: reference,
        losses,
    } = single_device();
    let mut tp = TensorParallel::new(
        &model(),
        Workers::Cluster(std::sync::Arc::new(cluster)),
        BATCH,
        SEED,
        &OPT,
    )
    .unwrap();
    for (k, want) in losses.iter().enumerate() {
        let (x, y) = batch(k);
        let loss = tp.step(&x, &y).unwrap();
        assert!(
            (loss - want).abs() <= 1e-5 * want.abs(),
            "rank {rank}, step {k}: {loss} vs {want}"
        );
    }
    assert!(tp.params().is_err(), "a rank cannot join the shards alone");
    let d = max_relative_difference(&tp.local_shards().unwrap(), &tp.shard_of(&reference, rank));
    assert!(
        d <= 1e-5,
        "rank {rank} of {size}: shards differ by {d} (relative)"
    );
    println!("rank {rank} of {size}: shards match one device (max relative difference {d:e})");
}

#[test]
fn data_times_tensor_parallelism_matches_one_device() {
    // 2 replicas x 2 shards on 4 threads; each replica trains on half the
    // batch, shards sum their partials, replicas average their gradients.
    let one = single_device();
    for (dp, tp) in [(2, 2), (2, 3)] {
        let mut mixed =
            TensorParallel::with_data_parallel(&model(), (dp, tp), BATCH, SEED, &OPT, 64).unwrap();
        one.assert_matched_by(
            &format!("{dp}x{tp}"),
            &mut mixed,
            |t, k| {
                let (x, y) = batch(k);
                t.step(&x, &y).unwrap()
            },
            |t| t.params().unwrap(),
        );
    }
}

#[test]
fn data_pipeline_and_tensor_parallelism_at_once_match_one_device() {
    // dp copies of a pipeline whose stages (one block each) are split over
    // tp shards: dp x tp x 2 threads.
    let one = single_device();
    let configs = [
        (2, 2, 2, PipelineKind::OneFOneB),
        (2, 3, 2, PipelineKind::GPipe),
        (1, 3, 4, PipelineKind::OneFOneB),
    ];
    for (dp, tp, micro_batches, kind) in configs {
        let options = PipelineOptions {
            stages: 2,
            micro_batches,
            batch: BATCH,
            kind,
            seed: SEED,
        };
        let mut p = Pipeline::megatron(model(), options, &OPT, (dp, tp)).unwrap();
        assert_eq!(p.layers, vec![0..1, 1..2]);
        one.assert_matched_by(
            &format!("{dp}x{tp}x2"),
            &mut p,
            |t, k| {
                let (x, y) = batch(k);
                t.step(&x, &y).unwrap()
            },
            |t| t.params().unwrap(),
        );
    }
    let options = PipelineOptions {
        stages: 2,
        micro_batches: 2,
        batch: BATCH,
        kind: PipelineKind::GPipe,
        seed: SEED,
    };
    let err = Pipeline::megatron(model(), options, &OPT, (1, 5))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "a hidden width of 12 does not split over 5 tensor-parallel shards"
    );
}
