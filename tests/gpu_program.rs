//! Tensor programs on the GPU compute what the CPU's do: every op's kernel,
//! and whole training steps. Each test prints why it skips and passes on a
//! machine without a GPU.

mod common;
use common::{gpu as device, max_relative_difference};
use dagger::cuda::program::GpuProgram;
use dagger::cuda::GpuDevice;
use dagger::nn::{Activation, Adam, CompileOptions, NamedParams, Net, Program, SeededRng};
use dagger::tensor::{Binary, Executable, FuseOptions, Tensor, TensorGraph};

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SeededRng::new(seed);
    (0..n).map(|_| rng.normal()).collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}: element {k}: GPU {g} vs CPU {w}"
        );
    }
}

/// Runs `g` (inputs `x` [4, 6] and `t` [4, 6]) on both and compares every output.
/// The CPU side runs everywhere; the GPU side where there is one.
fn compare(gpu: Option<&GpuDevice>, g: &TensorGraph, options: FuseOptions) {
    let inputs = [("x", values(24, 1)), ("t", values(24, 2))];
    let mut cpu = Program::compile(g, CompileOptions { fuse: options }).unwrap();
    for (name, data) in &inputs {
        cpu.set(name, data).unwrap();
    }
    cpu.run().unwrap();
    let Some(gpu) = gpu else { return };
    let mut dev = GpuProgram::compile(g, gpu, options).unwrap();
    for (name, data) in &inputs {
        dev.set(name, data).unwrap();
    }
    dev.run().unwrap();
    for k in 0..g.outputs().len() {
        assert_close(
            &dev.output(k).unwrap(),
            cpu.output(k),
            &format!("output {k}"),
        );
    }
}

/// One output per op kind: matmuls (every transpose), sums, softmaxes,
/// losses, layout ops and a broadcast no fused kernel can load.
fn every_op() -> TensorGraph {
    let mut g = TensorGraph::new();
    let x = g.input("x", [4, 6]);
    let t = g.input("t", [4, 6]);
    let mut outs: Vec<Tensor> = Vec::new();
    let tt = g.transpose(t, &[1, 0]).unwrap();
    for (b, ta, tb) in [
        (t, false, true),
        (t, true, false),
        (tt, false, false),
        (tt, true, true),
    ] {
        outs.push(g.matmul_t(x, b, ta, tb).unwrap());
    }
    outs.push(g.sum(x, &[0], false).unwrap());
    outs.push(g.sum(x, &[1], true).unwrap());
    outs.push(g.sum(x, &[0, 1], false).unwrap());
    outs.push(g.softmax(x, 1).unwrap());
    outs.push(g.log_softmax(x, 0).unwrap());
    let p = g.softmax(t, 1).unwrap();
    outs.push(g.cross_entropy(x, p).unwrap());
    outs.push(g.mse(x, t).unwrap());
    let s = g.slice(x, 1, 2, 5).unwrap();
    outs.push(s);
    outs.push(g.concat(&[x, s, t], 1).unwrap());
    outs.push(g.concat(&[x, t], 0).unwrap());
    let x3 = g.reshape(x, [2, 2, 6]).unwrap();
    outs.push(g.transpose(x3, &[2, 0, 1]).unwrap());
    let col = g.sum(x, &[1], true).unwrap();
    let row = g.sum(t, &[0], true).unwrap();
    outs.push(g.binary(Binary::Mul, col, row).unwrap());
    outs.push(g.broadcast_to(row, [3, 4, 6]).unwrap());
    let big = g.broadcast_to(x, [2, 4, 6]).unwrap();
    outs.push(g.sum_to(big, [4, 6]).unwrap());
    let e = g.relu(x).unwrap();
    let e = g.mul(e, t).unwrap();
    outs.push(g.add(e, row).unwrap());
    g.set_outputs(outs).unwrap();
    g
}

#[test]
fn every_op_on_the_gpu_matches_the_cpu() {
    let gpu = device();
    let g = every_op();
    compare(gpu.as_ref(), &g, FuseOptions::default());
    compare(gpu.as_ref(), &g, FuseOptions { max_ops: 1 });
}

#[test]
fn a_gradient_through_slices_and_concats_matches_the_cpu() {
    let mut g = TensorGraph::new();
    let x = g.input("x", [4, 6]);
    let t = g.input("t", [4, 6]);
    let w = g.param("w", [6, 6]);
    let h = g.matmul(x, w).unwrap();
    let (a, b) = (g.slice(h, 1, 0, 2).unwrap(), g.slice(h, 1, 2, 6).unwrap());
    let a = g.relu(a).unwrap();
    let h = g.concat(&[b, a], 1).unwrap();
    let loss = g.mse(h, t).unwrap();
    let (train, grads) = g.grad(loss, &[w]).unwrap();
    let mut train = train;
    let outputs = vec![loss, grads[0]];
    train.set_outputs(outputs).unwrap();
    let inputs = [
        ("x", values(24, 1)),
        ("t", values(24, 2)),
        ("w", values(36, 3)),
    ];
    let mut cpu = Program::compile(&train, CompileOptions::default()).unwrap();
    for (name, data) in &inputs {
        cpu.set(name, data).unwrap();
    }
    cpu.run().unwrap();
    let Some(gpu) = device() else { return };
    let mut dev = GpuProgram::compile(&train, &gpu, FuseOptions::default()).unwrap();
    for (name, data) in &inputs {
        dev.set(name, data).unwrap();
    }
    dev.run().unwrap();
    assert_close(&dev.output(0).unwrap(), cpu.output(0), "loss");
    assert_close(&dev.output(1).unwrap(), cpu.output(1), "gradient");
}

#[test]
fn training_steps_on_the_gpu_match_the_cpu() {
    let (batch, features, classes) = (32, 20, 5);
    let mut net = Net::new();
    let x = net.input("x", [batch, features]);
    let y = net.input("y", [batch, classes]);
    let logits = net.mlp(x, &[64, 32, classes], Activation::Relu).unwrap();
    let loss = net.cross_entropy(logits, y).unwrap();
    let step = net.train_step(loss, &[], &Adam::new(1e-2)).unwrap();
    let mut cpu = Program::compile(&step, CompileOptions::default()).unwrap();
    step.init_params(&mut cpu, 7).unwrap();
    let params = |p: &Program| -> NamedParams {
        p.params()
            .into_iter()
            .map(|(n, _, d)| (n.to_string(), d.to_vec()))
            .collect()
    };
    let initial = params(&cpu);
    let mut rng = SeededRng::new(3);
    let batches: Vec<(Vec<f32>, Vec<f32>)> = (0..5)
        .map(|_| {
            let xs: Vec<f32> = (0..batch * features).map(|_| rng.normal()).collect();
            let mut ys = vec![0.0; batch * classes];
            for row in 0..batch {
                ys[row * classes + rng.below(classes)] = 1.0;
            }
            (xs, ys)
        })
        .collect();
    let train = |p: &mut dyn Executable| {
        for (xs, ys) in &batches {
            p.set("x", xs).unwrap();
            p.set("y", ys).unwrap();
            p.run().unwrap();
        }
    };
    train(&mut cpu);
    let on_cpu = params(&cpu);
    assert_ne!(on_cpu, initial, "the steps changed the parameters");
    let Some(gpu) = device() else { return };
    let mut dev = GpuProgram::compile(&step, &gpu, FuseOptions::default()).unwrap();
    for (name, data) in &initial {
        dev.set(name, data).unwrap();
    }
    train(&mut dev);
    let on_gpu: NamedParams = initial
        .iter()
        .map(|(name, _)| (name.clone(), dev.get(name).unwrap()))
        .collect();
    let diff = max_relative_difference(&on_gpu, &on_cpu);
    assert!(
        diff < 1e-4,
        "parameters after 5 Adam steps differ by {diff}"
    );
}
