//! The training steps the lowering tests share (`tests/task_step.rs` on
//! the cores, `tests/task_step_gpu.rs` on GPUs): an MLP and a Megatron block
//! stack, the batch they train on, the compiled `Program`'s training to
//! compare with, and the placement over two devices.

#![allow(dead_code)] // each test binary uses some of them

use dagger::ir::model::Link;
use dagger::nn::{Activation, CompileOptions, Momentum, Net, Program, SeededRng};
use dagger::tensor::task_step::strategy::Strategy;
use dagger::tensor::task_step::{
    lower_step_on, LowerOptions, SegmentBackend, StepPlacement, TaskStep,
};
use dagger::tensor::Tensor;

/// Rows of the batch every step trains on.
pub const BATCH: usize = 16;
/// Features of a row.
pub const FEATURES: usize = 8;
/// Classes of the labels.
pub const CLASSES: usize = 3;
/// Steps each training runs.
pub const STEPS: usize = 4;
/// The seed of the initial parameters.
pub const SEED: u64 = 5;

/// The optimizer of every step.
pub const OPTIMIZER: Momentum = Momentum { lr: 0.2, mu: 0.9 };

/// An MLP on `batch` rows and its mean cross-entropy.
pub fn model(batch: usize) -> dagger::nn::Result<(Net, Tensor)> {
    let mut net = Net::new();
    let x = net.input("x", [batch, FEATURES]);
    let y = net.input("y", [batch, CLASSES]);
    let logits = net.mlp(x, &[12, 10, CLASSES], Activation::Tanh)?;
    let loss = net.cross_entropy(logits, y)?;
    Ok((net, loss))
}

/// Its training step (momentum, so that state other than the weights
/// travels too).
pub fn step() -> Net {
    let (net, loss) = model(BATCH).unwrap();
    net.train_step(loss, &[], &OPTIMIZER).unwrap()
}

/// The batch every step trains on (one batch, so that the loss must fall).
pub fn batch() -> (Vec<f32>, Vec<f32>) {
    let mut rng = SeededRng::new(40);
    let x = (0..BATCH * FEATURES).map(|_| rng.normal()).collect();
    let mut y = vec![0.0; BATCH * CLASSES];
    for row in 0..BATCH {
        y[row * CLASSES + rng.below(CLASSES)] = 1.0;
    }
    (x, y)
}

/// Losses and parameters after `STEPS` steps of the compiled program.
pub fn reference(step: &Net) -> (Vec<f32>, Vec<(String, Vec<f32>)>) {
    let mut p = Program::compile(step, CompileOptions::default()).unwrap();
    step.init_params(&mut p, SEED).unwrap();
    let mut losses = Vec::new();
    for _ in 0..STEPS {
        let (x, y) = batch();
        p.set("x", &x).unwrap();
        p.set("y", &y).unwrap();
        p.run().unwrap();
        losses.push(p.output(0)[0]);
    }
    let params = p
        .params()
        .into_iter()
        .map(|(n, _, d)| (n.to_string(), d.to_vec()))
        .collect();
    (losses, params)
}

/// The same through `lowered`, each step run by `run`.
pub fn lowered_training(
    step: &Net,
    lowered: &mut TaskStep,
    mut run: impl FnMut(&mut TaskStep, &Batch<'_>) -> Vec<Vec<f32>>,
) -> (Vec<f32>, Vec<(String, Vec<f32>)>) {
    for (name, values) in step.initial_params(SEED) {
        lowered.set_param(&name, &values).unwrap();
    }
    let mut losses = Vec::new();
    for _ in 0..STEPS {
        let (x, y) = batch();
        let out = run(lowered, &[("x", &x), ("y", &y)]);
        losses.push(out[0][0]);
    }
    (losses, lowered.params().unwrap())
}

/// A step's inputs by name.
pub type Batch<'a> = [(&'a str, &'a [f32])];

/// Two equal devices joined by a free link (a slow one would keep
/// everything on one).
pub fn two_devices() -> StepPlacement {
    let link = Link {
        latency: 0.0,
        bandwidth: 1e15,
    };
    StepPlacement::equal_devices(2, 1e9, 1 << 30, link)
}

/// `step` lowered by `backend` over [`two_devices`] with `options`; both
/// devices hold tasks.
pub fn lowered_on_two_devices_by(
    step: &Net,
    options: LowerOptions,
    backend: &dyn SegmentBackend,
) -> TaskStep {
    let lowered = lower_step_on(step, &two_devices(), options, backend).unwrap();
    let used: std::collections::BTreeSet<usize> =
        lowered.segments().iter().map(|s| s.device).collect();
    assert_eq!(
        used.len(),
        2,
        "both devices hold tasks: {:?}",
        lowered.segments()
    );
    lowered
}

/// Losses and parameters within `tolerance` (absolute), names in order.
pub fn assert_close(
    what: &str,
    got: &(Vec<f32>, Vec<(String, Vec<f32>)>),
    want: &(Vec<f32>, Vec<(String, Vec<f32>)>),
    tolerance: f32,
) {
    for (a, b) in got.0.iter().zip(&want.0) {
        assert!(
            (a - b).abs() <= tolerance * b.abs().max(1.0),
            "{what}: losses {:?} vs {:?}",
            got.0,
            want.0
        );
    }
    assert_eq!(got.1.len(), want.1.len(), "{what}: parameter count");
    for ((n, a), (m, b)) in got.1.iter().zip(&want.1) {
        assert_eq!(n, m, "{what}: parameter order");
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(diff <= tolerance, "{what}: `{n}` differs by {diff}");
    }
}

/// A Megatron block stack, its one-device training (losses, and the
/// blocks' parameters), and its nets split `tp` ways.
pub mod megatron {
    use super::*;
    use dagger::nn::tensor_parallel::FullShapes;
    use dagger::nn::BlockStack;

    pub fn model() -> BlockStack {
        BlockStack {
            inputs: FEATURES,
            blocks: vec![(12, 6), (8, CLASSES)],
            activation: Activation::Tanh,
        }
    }

    /// `STEPS` steps of the whole model on one device.
    pub fn one_device() -> (Vec<f32>, Vec<(String, Vec<f32>)>) {
        let (net, loss) = model().net(BATCH, 1).unwrap();
        let step = net.train_step(loss, &[], &OPTIMIZER).unwrap();
        let (losses, params) = reference(&step);
        (losses, blocks_only(params))
    }

    /// Sets `lowered`'s parameters (see `BlockStack::init_lowered`).
    pub fn set_shards(
        lowered: &mut TaskStep,
        step: &Net,
        data: usize,
        tensor: usize,
    ) -> FullShapes {
        let s = Strategy {
            data,
            tensor,
            micro: 1,
        };
        model().init_lowered(lowered, step, s, BATCH, SEED).unwrap()
    }

    /// The whole parameters of `full` from workers `0..tensor`'s shards.
    pub fn joined(lowered: &TaskStep, full: &FullShapes, tensor: usize) -> Vec<(String, Vec<f32>)> {
        let shards: Vec<Vec<(String, Vec<f32>)>> = (0..tensor)
            .map(|t| {
                full.iter()
                    .map(|(name, _)| (name.clone(), lowered.worker_param(t, name).unwrap()))
                    .collect()
            })
            .collect();
        BlockStack::whole_params(full, &shards)
    }

    /// The model's parameters (not the optimizer's state).
    pub fn blocks_only(params: Vec<(String, Vec<f32>)>) -> Vec<(String, Vec<f32>)> {
        params
            .into_iter()
            .filter(|(n, _)| n.starts_with("block"))
            .collect()
    }
}
