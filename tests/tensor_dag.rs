//! Tensor ops written in `dag!{}`: run eagerly as tasks, then lowered to a
//! tensor graph whose compiled forward pass gives the same numbers and whose
//! gradients train.

use dagger::nn::ops::{add, cross_entropy, matmul, mse, relu};
use dagger::nn::{lower, Array, CompileOptions, Error, Program};
use dagger::prelude::*;
use dagger::tensor::Shape;

fn model() -> Dag<(Array, Array, Array, Array), Array> {
    dag! {
        input x: Array;
        input w: Array;
        input b: Array;
        input t: Array;
        let h = matmul(x, w);
        let z = add(h, b);
        let a = relu(z);
        let loss = cross_entropy(a, t);
        loss
    }
}

fn data() -> (Array, Array, Array, Array) {
    let x = Array::new([4, 3], (0..12).map(|i| (i as f32 - 5.0) / 4.0).collect());
    let w = Array::new([3, 2], vec![0.5, -0.25, 0.75, 0.1, -0.5, 0.3]);
    let b = Array::new([2], vec![0.1, -0.1]);
    let t = Array::new([4, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    (x, w, b, t)
}

fn shapes() -> Vec<(&'static str, Shape)> {
    vec![
        ("x", Shape::of(&[4, 3])),
        ("w", Shape::of(&[3, 2])),
        ("b", Shape::of(&[2])),
        ("t", Shape::of(&[4, 2])),
    ]
}

#[test]
fn eager_tasks_and_the_lowered_program_agree_and_the_gradient_trains() {
    let g = model();
    let (x, w, b, t) = data();
    let eager = Runtime::builder()
        .threads(2)
        .build()
        .run(&g, (x.clone(), w.clone(), b.clone(), t.clone()))
        .unwrap();
    assert!(eager.shape.is_empty());

    let (tg, outs) = lower(g.graph(), &shapes(), &["w", "b"]).unwrap();
    let params = tg.params();
    assert_eq!(params.len(), 2);
    let (train, _) = tg.grad(outs[0], &params).unwrap();
    let mut p = Program::compile(&train, CompileOptions::default()).unwrap();
    for (name, a) in [("x", &x), ("w", &w), ("b", &b), ("t", &t)] {
        p.set(name, &a.data).unwrap();
    }
    p.run().unwrap();
    assert!(
        (p.output(0)[0] - eager.data[0]).abs() < 1e-6,
        "{} vs {}",
        p.output(0)[0],
        eager.data[0]
    );
    // One gradient step on w lowers the loss.
    let grad_w = p.output(1).to_vec();
    let stepped: Vec<f32> = w
        .data
        .iter()
        .zip(&grad_w)
        .map(|(v, g)| v - 0.5 * g)
        .collect();
    let after = Runtime::new()
        .run(&g, (x, Array::new([3, 2], stepped), b, t))
        .unwrap();
    assert!(
        after.data[0] < eager.data[0],
        "{} -> {}",
        eager.data[0],
        after.data[0]
    );
}

#[test]
fn lowering_names_what_it_cannot_lower() {
    let g = model();
    let err = lower(g.graph(), &shapes()[..3], &[]).unwrap_err();
    assert_eq!(err.to_string(), "dag input `t`: no shape given for it");
    let mut bad = shapes();
    bad[1].1 = Shape::of(&[5, 2]);
    let err = lower(g.graph(), &bad, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "matmul: inner dimensions differ: [4, 3] x [5, 2] (3 vs 5)"
    );
    let not_ops = dag! { input s: String; let n = word_count(s); n };
    assert!(matches!(
        lower(not_ops.graph(), &[], &[]),
        Err(Error::Input { .. })
    ));
}

#[task]
fn word_count(s: String) -> usize {
    s.split_whitespace().count()
}

#[test]
fn a_shape_mistake_fails_the_task_with_the_ops_message() {
    let g = model();
    let (x, _, b, t) = data();
    let wrong = Array::new([2, 2], vec![1.0; 4]);
    let err = Runtime::new()
        .run(&g, (x, wrong, b, t))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("matmul: inner dimensions differ: [4, 3] x [2, 2]"),
        "{err}"
    );
}

/// `log(1 + exp(x))`, a user task with a declared gradient.
#[task(pure, grad = softplus_grad)]
fn softplus(x: Array) -> Array {
    let data = x.data.iter().map(|v| v.exp().ln_1p()).collect();
    Array::new(x.shape, data)
}

/// The gradient of [`softplus`]: `dy * sigmoid(x)`.
#[task(pure)]
fn softplus_grad(x: Array, dy: Array) -> Array {
    let data = x
        .data
        .iter()
        .zip(&dy.data)
        .map(|(v, d)| d / (1.0 + (-v).exp()))
        .collect();
    Array::new(x.shape, data)
}

/// `a * b` of two same-shaped arrays, with one gradient per operand.
#[task(pure, grad = product_grad)]
fn product(a: Array, b: Array) -> Array {
    let data = a.data.iter().zip(&b.data).map(|(x, y)| x * y).collect();
    Array::new(a.shape, data)
}

#[task(pure)]
fn product_grad(a: Array, b: Array, dy: Array) -> (Array, Array) {
    let times = |u: &Array| u.data.iter().zip(&dy.data).map(|(x, d)| x * d).collect();
    (
        Array::new(a.shape.clone(), times(&b)),
        Array::new(a.shape.clone(), times(&a)),
    )
}

/// Sums the rows of a matrix: the result's shape differs from the operand's.
#[task(pure)]
fn row_sums(a: Array) -> Array {
    let cols = a.shape[1];
    Array::new(
        [a.shape[0]],
        a.data.chunks(cols).map(|r| r.iter().sum()).collect(),
    )
}

#[task]
fn broken(a: Array) -> Array {
    if a.data.iter().any(|&v| v != 0.0) {
        panic!("cannot take nonzero values");
    }
    a
}

fn custom_model() -> Dag<(Array, Array, Array, Array), Array> {
    dag! {
        input x: Array;
        input w: Array;
        input v: Array;
        input t: Array;
        let h = matmul(x, w);
        let s = softplus(h);
        let p = product(s, v);
        let loss = mse(p, t);
        loss
    }
}

/// Loss and the gradients of `w` and `v` through the compiled program.
fn custom_loss_and_grads(w: &[f32], v: &[f32]) -> (f32, Vec<f32>, Vec<f32>) {
    let g = custom_model();
    let shapes = [
        ("x", Shape::of(&[4, 3])),
        ("w", Shape::of(&[3, 2])),
        ("v", Shape::of(&[4, 2])),
        ("t", Shape::of(&[4, 2])),
    ];
    let (tg, outs) = lower(g.graph(), &shapes, &["w", "v"]).unwrap();
    let params = tg.params();
    let (train, _) = tg.grad(outs[0], &params).unwrap();
    let mut p = Program::compile(&train, CompileOptions::default()).unwrap();
    let (x, _, _, _) = data();
    p.set("x", &x.data).unwrap();
    p.set("w", w).unwrap();
    p.set("v", v).unwrap();
    p.set("t", &[0.5; 8]).unwrap();
    p.run().unwrap();
    (p.output(0)[0], p.output(1).to_vec(), p.output(2).to_vec())
}

#[test]
fn user_tasks_with_gradient_tasks_lower_run_and_differentiate() {
    let (x, w, _, _) = data();
    let v: Vec<f32> = (0..8).map(|i| 0.3 * i as f32 - 1.0).collect();
    let eager = Runtime::new()
        .run(
            &custom_model(),
            (
                x,
                w.clone(),
                Array::new([4, 2], v.clone()),
                Array::new([4, 2], vec![0.5; 8]),
            ),
        )
        .unwrap();
    let (loss, grad_w, grad_v) = custom_loss_and_grads(&w.data, &v);
    assert!(
        (loss - eager.data[0]).abs() < 1e-6,
        "{loss} vs {}",
        eager.data[0]
    );
    // Central differences of the loss in every parameter.
    let h = 1e-2;
    for (k, analytic) in grad_w.iter().enumerate() {
        let nudged = |d: f32| {
            let mut w2 = w.data.clone();
            w2[k] += d;
            custom_loss_and_grads(&w2, &v).0
        };
        let numeric = (nudged(h) - nudged(-h)) / (2.0 * h);
        assert!(
            (analytic - numeric).abs() < 2e-3,
            "w[{k}]: {analytic} vs {numeric}"
        );
    }
    for (k, analytic) in grad_v.iter().enumerate() {
        let nudged = |d: f32| {
            let mut v2 = v.clone();
            v2[k] += d;
            custom_loss_and_grads(&w.data, &v2).0
        };
        let numeric = (nudged(h) - nudged(-h)) / (2.0 * h);
        assert!(
            (analytic - numeric).abs() < 2e-3,
            "v[{k}]: {analytic} vs {numeric}"
        );
    }
}

#[test]
fn custom_ops_without_a_gradient_or_that_fail_are_named() {
    // The result's shape comes from the task itself.
    let g = dag! { input a: Array; input t: Array; let r = row_sums(a); let l = mse(r, t); l };
    let shapes = [("a", Shape::of(&[3, 4])), ("t", Shape::of(&[3]))];
    let (tg, outs) = lower(g.graph(), &shapes, &["a"]).unwrap();
    assert_eq!(tg.shape(tg.nodes()[2].inputs[0]), &Shape::of(&[3, 4]));
    let err = tg.grad(outs[0], &tg.params()).unwrap_err().to_string();
    assert!(
        err.contains("task `tensor_dag::row_sums` declares no gradient task"),
        "{err}"
    );
    // A task failing at run time fails the run, naming it.
    let g = dag! { input a: Array; let b = broken(a); b };
    let (tg, _) = lower(g.graph(), &[("a", Shape::of(&[2]))], &[]).unwrap();
    let mut p = Program::compile(&tg, CompileOptions::default()).unwrap();
    p.set("a", &[1.0, 2.0]).unwrap();
    let err = p.run().unwrap_err().to_string();
    assert_eq!(
        err,
        "custom op `tensor_dag::broken`: panicked: cannot take nonzero values"
    );
    // A task of other types is not a custom op.
    let not_ops = dag! { input s: String; let n = word_count(s); n };
    assert!(lower(not_ops.graph(), &[], &[]).is_err());
}
