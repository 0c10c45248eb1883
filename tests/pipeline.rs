//! Pipeline-parallel training equals single-device training: 2 and 3
//! stages, GPipe and 1F1B, several micro-batches.

mod common;
use common::{every_rank_says_on_2_and_3_processes, max_relative_difference, OneDevice};
use dagger::ir::sched::pipeline::{stage_order, PipelineKind};
use dagger::nn::{
    Activation, CompileOptions, MlpSpec, Momentum, NamedParams, Net, Pipeline, PipelineOptions,
    Program, SeededRng,
};

const INPUTS: usize = 10;
const WIDTHS: [usize; 4] = [16, 12, 8, 4];
const BATCH: usize = 24;
const STEPS: usize = 5;
const SEED: u64 = 5;
const OPT: Momentum = Momentum { lr: 0.1, mu: 0.9 };

fn batch(k: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SeededRng::new(200 + k as u64);
    let x: Vec<f32> = (0..BATCH * INPUTS).map(|_| rng.normal()).collect();
    let classes = WIDTHS[3];
    let mut y = vec![0.0; BATCH * classes];
    for row in 0..BATCH {
        y[row * classes + rng.below(classes)] = 1.0;
    }
    (x, y)
}

fn single_device() -> OneDevice {
    let mut net = Net::new();
    let x = net.input("x", [BATCH, INPUTS]);
    let y = net.input("y", [BATCH, WIDTHS[3]]);
    let logits = net.mlp(x, &WIDTHS, Activation::Tanh).unwrap();
    let loss = net.cross_entropy(logits, y).unwrap();
    let step = net.train_step(loss, &[], &OPT).unwrap();
    let mut p = Program::compile(&step, CompileOptions::default()).unwrap();
    step.init_params(&mut p, SEED).unwrap();
    let mut losses = Vec::new();
    for k in 0..STEPS {
        let (xs, ys) = batch(k);
        p.set("x", &xs).unwrap();
        p.set("y", &ys).unwrap();
        p.run().unwrap();
        losses.push(p.output(0)[0]);
    }
    OneDevice {
        params: p
            .params()
            .into_iter()
            .map(|(n, _, d)| (n.to_string(), d.to_vec()))
            .collect(),
        losses,
    }
}

#[test]
fn pipelines_match_one_device() {
    let OneDevice {
        params: reference,
        losses: reference_losses,
    } = single_device();
    let spec = MlpSpec {
        inputs: INPUTS,
        widths: WIDTHS.to_vec(),
        activation: Activation::Tanh,
    };
    for stages in [2, 3] {
        for micro_batches in [1, 4, 6] {
            for kind in [PipelineKind::GPipe, PipelineKind::OneFOneB] {
                let options = PipelineOptions {
                    stages,
                    micro_batches,
                    batch: BATCH,
                    kind,
                    seed: SEED,
                };
                let mut p = Pipeline::new(spec.clone(), options, &OPT).unwrap();
                assert_eq!(p.layers.len(), stages);
                for (k, want) in reference_losses.iter().enumerate() {
                    let (x, y) = batch(k);
                    let loss = p.step(&x, &y).unwrap();
                    assert!((loss - want).abs() <= 1e-5 * want.abs(), "{stages} stages, M={micro_batches}, {kind:?}, step {k}: loss {loss} vs {want}");
                }
                // The measured schedule: every pass once, each stage's in
                // the schedule's order, never two at once on one stage.
                let measured = p.last_schedule().unwrap();
                assert_eq!(measured.ops.len(), 2 * stages * micro_batches);
                for st in 0..stages {
                    let mine: Vec<_> = measured.ops.iter().filter(|o| o.stage == st).collect();
                    let order: Vec<_> = mine.iter().map(|o| (o.pass, o.micro)).collect();
                    assert_eq!(order, stage_order(kind, stages, micro_batches, st));
                    assert!(mine
                        .windows(2)
                        .all(|w| w[0].finish <= w[1].start && w[0].start <= w[0].finish));
                }
                let bubble = measured.bubble_fraction();
                assert!((0.0..1.0).contains(&bubble), "bubble {bubble}");
                let d = max_relative_difference(&p.params().unwrap(), &reference);
                assert!(d <= 1e-5, "{stages} stages, M={micro_batches}, {kind:?}: parameters differ by {d} (relative)");
            }
        }
    }
}

#[test]
fn data_parallel_pipelines_match_one_device() {
    // 2 copies x 2 stages (and 3 x 2) on threads: each copy trains on its
    // share of the batch; each stage averages its gradients across copies.
    let one = single_device();
    let spec = MlpSpec {
        inputs: INPUTS,
        widths: WIDTHS.to_vec(),
        activation: Activation::Tanh,
    };
    for (replicas, kind) in [(2, PipelineKind::OneFOneB), (3, PipelineKind::GPipe)] {
        let options = PipelineOptions {
            stages: 2,
            micro_batches: 2,
            batch: BATCH,
            kind,
            seed: SEED,
        };
        let mut p = Pipeline::with_data_parallel(spec.clone(), options, &OPT, replicas).unwrap();
        one.assert_matched_by(
            &format!("{replicas} copies"),
            &mut p,
            |t, k| {
                let (x, y) = batch(k);
                t.step(&x, &y).unwrap()
            },
            |t| t.params().unwrap(),
        );
    }
}

#[test]
fn settings_that_do_not_fit_are_named() {
    let spec = MlpSpec {
        inputs: INPUTS,
        widths: WIDTHS.to_vec(),
        activation: Activation::Relu,
    };
    let options = PipelineOptions {
        stages: 2,
        micro_batches: 5,
        batch: BATCH,
        kind: PipelineKind::GPipe,
        seed: 1,
    };
    let err = Pipeline::new(spec.clone(), options, &OPT).err().unwrap();
    assert_eq!(
        err.to_string(),
        "a batch of 24 does not split into 5 equal micro-batches"
    );
    let options = PipelineOptions {
        stages: 5,
        micro_batches: 4,
        ..options
    };
    let err = Pipeline::new(spec, options, &OPT).err().unwrap();
    assert_eq!(
        err.to_string(),
        "5 stages for 4 layers: each stage needs at least one layer"
    );
}

#[test]
fn processes_match_one_device() {
    every_rank_says_on_2_and_3_processes("matches one device");
}

/// A rank of `processes_match_one_device`: one stage per rank, 1F1B over
/// 4 micro-batches; ignored in a plain run (the
/// launcher runs it with `--ignored`), it does nothing outside a cluster.
#[test]
#[ignore = "a rank's entry point, run in each rank process by the tests that launch ranks"]
fn rank_main() {
    let Some(cluster) = dagger::cluster::Cluster::from_env().unwrap() else {
        return;
    };
    let (rank, size) = (cluster.rank(), cluster.size() as usize);
    let OneDevice {
        params: reference,
        losses,
    } = single_device();
    let spec = MlpSpec {
        inputs: INPUTS,
        widths: WIDTHS.to_vec(),
        activation: Activation::Tanh,
    };
    let options = PipelineOptions {
        stages: size,
        micro_batches: 4,
        batch: BATCH,
        kind: PipelineKind::OneFOneB,
        seed: SEED,
    };
    let mut p = Pipeline::on_cluster(spec, options, &OPT, std::sync::Arc::new(cluster)).unwrap();
    for (k, want) in losses.iter().enumerate() {
        let (x, y) = batch(k);
        let loss = p.step(&x, &y).unwrap();
        assert!(
            (loss - want).abs() <= 1e-5 * want.abs(),
            "rank {rank}, step {k}: loss {loss} vs {want}"
        );
    }
    let mine = p.params().unwrap();
    let expected: NamedParams = reference
        .into_iter()
        .filter(|(n, _)| mine.iter().any(|(m, _)| m == n))
        .collect();
    assert!(!expected.is_empty());
    let d = max_relative_difference(&mine, &expected);
    assert!(d <= 1e-5, "rank {rank}: stage parameters differ by {d}");
    println!(
        "stage {rank} of {size} matches one device ({} tensors, max relative difference {d:e})",
        expected.len()
    );
}
