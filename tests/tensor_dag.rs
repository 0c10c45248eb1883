//! Tensor ops written in `dag!{}`: run eagerly as tasks, then lowered to a
//! tensor graph whose compiled forward pass gives the same numbers and whose
//! gradients train.

use dagger::ir::tensor::Shape;
use dagger::nn::ops::{add, cross_entropy, matmul, relu};
use dagger::nn::{lower, Array, CompileOptions, LowerError, Program};
use dagger::prelude::*;

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
        Err(LowerError::Input { .. })
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
