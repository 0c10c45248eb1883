//! A training step lowered to tasks on GPUs (`lower_step_on` with
//! `CudaSegments`) trains as the compiled `Program` does on the cores: on
//! one GPU, with micro-batches pipelined over two devices, and as a 1 x 2
//! tensor-parallel grid of Megatron blocks. The two places of the last two
//! are GPUs 0 and 1, or both GPU 0 on a machine with one. The steps are
//! those of `tests/task_step.rs` (`tests/common/lowered.rs`). Each test
//! prints why it skips and passes on a machine without a GPU.

mod common;
#[path = "common/lowered.rs"]
mod lowered;
use dagger::cuda::segments::CudaSegments;
use dagger::tensor::task_step::{lower_step_on, LowerOptions, StepPlacement, TaskStep};
use dagger::Runtime;
use lowered::*;

/// What the GPU and the cores may differ by (absolute, and relative to
/// losses above 1), as `tests/gpu_program.rs` allows.
const TOLERANCE: f32 = 1e-4;

/// GPU segments for `places` places (`ordinals`: slot `s` on GPU `s` where
/// the machine has it, else GPU 0), or `None` and why, printed.
fn gpus(places: usize) -> Option<(CudaSegments, Vec<usize>)> {
    common::gpu()?;
    let count = dagger::cuda::gpus().unwrap().len();
    let ordinals: Vec<usize> = (0..places).map(|s| if s < count { s } else { 0 }).collect();
    Some((CudaSegments::open(&ordinals).unwrap(), ordinals))
}

/// Worker 0's segments (the ones `segments` reports) each on GPU
/// `ordinals[device]`: worker 0's place of a device is slot `device`.
fn assert_on_gpus(lowered: &TaskStep, ordinals: &[usize]) {
    for s in lowered.segments() {
        assert_eq!(
            s.backend,
            format!("cuda:{}", ordinals[s.device]),
            "{}",
            s.name
        );
    }
}

#[test]
fn a_step_lowered_on_a_gpu_trains_as_the_program_on_the_cores() {
    let step = step();
    let want = reference(&step);
    let Some((gpu, ordinals)) = gpus(1) else {
        return;
    };
    let rt = Runtime::builder().threads(2).build();
    for max_nodes in [usize::MAX, 5] {
        let options = LowerOptions {
            max_nodes,
            ..LowerOptions::default()
        };
        let mut lowered = lower_step_on(&step, &StepPlacement::OneDevice, options, &gpu).unwrap();
        assert_on_gpus(&lowered, &ordinals);
        let got = lowered_training(&step, &mut lowered, |l, inputs| l.run(&rt, inputs).unwrap());
        assert_close(
            &format!("{max_nodes} nodes a task on the GPU"),
            &got,
            &want,
            TOLERANCE,
        );
    }
}

#[test]
fn micro_batches_pipelined_over_two_gpu_places_train_as_the_whole_batch() {
    let want = reference(&step());
    let micro = 4;
    let (net, loss) = model(BATCH / micro).unwrap();
    let (whole, total) = net.micro_batched(loss, micro).unwrap();
    let step = whole.train_step(total, &[], &OPTIMIZER).unwrap();
    let Some((gpus, ordinals)) = gpus(2) else {
        return;
    };
    let options = LowerOptions {
        max_nodes: 8,
        ..LowerOptions::default()
    };
    let mut lowered = lowered_on_two_devices_by(&step, options, &gpus);
    assert_on_gpus(&lowered, &ordinals);
    let rt = Runtime::builder().threads(2).build();
    let got = lowered_training(&step, &mut lowered, |l, inputs| l.run(&rt, inputs).unwrap());
    assert_close(
        &format!("4 micro-batches on GPUs {ordinals:?}"),
        &got,
        &want,
        TOLERANCE,
    );
}

#[test]
fn tensor_parallel_shards_on_two_gpu_places_train_as_one_device() {
    let want = megatron::one_device();
    let tensor = 2;
    let (net, loss) = megatron::model().net(BATCH, tensor).unwrap();
    let step = net.train_step(loss, &[], &OPTIMIZER).unwrap();
    let Some((gpus, ordinals)) = gpus(tensor) else {
        return;
    };
    let options = LowerOptions {
        tensor,
        max_nodes: 6,
        ..LowerOptions::default()
    };
    let mut lowered = lower_step_on(&step, &StepPlacement::OneDevice, options, &gpus).unwrap();
    assert_on_gpus(&lowered, &ordinals);
    let full = megatron::set_shards(&mut lowered, &step, 1, tensor);
    let rt = Runtime::builder().threads(2).build();
    let mut losses = Vec::new();
    for _ in 0..STEPS {
        let (x, y) = batch();
        losses.push(lowered.run(&rt, &[("x", &x), ("y", &y)]).unwrap()[0][0]);
    }
    let got = (losses, megatron::joined(&lowered, &full, tensor));
    assert_close(
        &format!("1 x 2 shards on GPUs {ordinals:?}"),
        &got,
        &want,
        TOLERANCE,
    );
}
