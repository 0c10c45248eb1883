//! Every op's vector-Jacobian product against central finite differences.
//!
//! Each check builds `loss = sum(op(params) * r)` for a fixed random `r`,
//! compiles the autodiff graph and compares every gradient element with
//! `(loss(p + h) - loss(p - h)) / 2h` computed by the forward program.

mod common;
use common::values;
use dagger_tensor::{Binary, CompileOptions, Program, Shape, Tensor, TensorGraph, TensorOp, Unary};

/// Builds `y = build(g, params)` over parameters of `shapes` with values in
/// `lo..hi`, and checks d sum(y * r) / d params against finite differences.
fn check(
    name: &str,
    shapes: &[&[usize]],
    (lo, hi): (f32, f32),
    build: impl Fn(&mut TensorGraph, &[Tensor]) -> Tensor,
) {
    let mut g = TensorGraph::new();
    let params: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| g.param(&format!("p{k}"), Shape::of(s)))
        .collect();
    let y = build(&mut g, &params);
    let r = g.input("r", g.shape(y).clone());
    let weighted = g.mul(y, r).unwrap();
    let axes: Vec<usize> = (0..g.shape(y).rank()).collect();
    let loss = g.sum(weighted, &axes, false).unwrap();
    g.set_outputs(vec![loss]).unwrap();
    let (train, grads) = g.grad(loss, &params).unwrap();

    let r_data = values(g.shape(y).numel(), -1.0, 1.0, 99);
    let data: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| values(s.iter().product(), lo, hi, k as u32 + 1))
        .collect();
    let mut forward = Program::compile(&g, CompileOptions::default()).unwrap();
    let mut backward = Program::compile(&train, CompileOptions::default()).unwrap();
    for (k, d) in data.iter().enumerate() {
        forward.set(&format!("p{k}"), d).unwrap();
        backward.set(&format!("p{k}"), d).unwrap();
    }
    forward.set("r", &r_data).unwrap();
    backward.set("r", &r_data).unwrap();
    backward.run().unwrap();
    assert_eq!(grads.len(), shapes.len());
    let h = 1e-2f32;
    for (k, d) in data.iter().enumerate() {
        let analytic = backward.output(1 + k).to_vec();
        for i in 0..d.len() {
            let mut loss_at = |delta: f32| {
                let mut p = d.clone();
                p[i] += delta;
                forward.set(&format!("p{k}"), &p).unwrap();
                forward.run().unwrap();
                forward.output(0)[0] as f64
            };
            let numeric = ((loss_at(h) - loss_at(-h)) / (2.0 * h as f64)) as f32;
            forward.set(&format!("p{k}"), d).unwrap();
            let tol = 2e-2 * (1.0 + numeric.abs());
            assert!(
                (analytic[i] - numeric).abs() <= tol,
                "{name}: d/dp{k}[{i}] analytic {} vs numeric {numeric}",
                analytic[i]
            );
        }
    }
}

#[test]
fn unary_ops() {
    for op in Unary::ALL {
        let range = match op {
            Unary::Log | Unary::Sqrt | Unary::Recip => (0.5, 3.0),
            Unary::Step | Unary::GeluGrad => continue, // no derivative to check
            _ => (-2.0, 2.0),
        };
        check(op.name(), &[&[3, 5]], range, |g, p| {
            g.unary(op, p[0]).unwrap()
        });
    }
}

#[test]
fn binary_ops_with_broadcasting() {
    for op in Binary::ALL {
        for other in [&[3, 4][..], &[4], &[3, 1], &[]] {
            check(
                &format!("{} by {other:?}", op.name()),
                &[&[3, 4], other],
                (0.5, 2.0),
                |g, p| g.binary(op, p[0], p[1]).unwrap(),
            );
        }
    }
}

#[test]
fn matmul_in_every_transpose() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a: &[usize] = if ta { &[4, 3] } else { &[3, 4] };
        let b: &[usize] = if tb { &[5, 4] } else { &[4, 5] };
        check(
            &format!("matmul {ta} {tb}"),
            &[a, b],
            (-1.0, 1.0),
            |g, p| g.matmul_t(p[0], p[1], ta, tb).unwrap(),
        );
    }
}

#[test]
fn reductions_softmax_and_losses() {
    let r = (-2.0, 2.0);
    check("sum axis 0", &[&[3, 4]], r, |g, p| {
        g.sum(p[0], &[0], false).unwrap()
    });
    check("sum axis 1 keep", &[&[3, 4]], r, |g, p| {
        g.sum(p[0], &[1], true).unwrap()
    });
    check("mean all", &[&[2, 3, 4]], r, |g, p| {
        g.mean(p[0], &[0, 2], false).unwrap()
    });
    check("softmax", &[&[3, 4]], r, |g, p| g.softmax(p[0], 1).unwrap());
    check("softmax axis 0", &[&[3, 4]], r, |g, p| {
        g.softmax(p[0], 0).unwrap()
    });
    check("log_softmax", &[&[3, 4]], r, |g, p| {
        g.log_softmax(p[0], 1).unwrap()
    });
    check("cross_entropy", &[&[3, 4], &[3, 4]], (0.1, 1.0), |g, p| {
        g.cross_entropy(p[0], p[1]).unwrap()
    });
    check("mse", &[&[3, 4], &[3, 4]], r, |g, p| {
        g.mse(p[0], p[1]).unwrap()
    });
}

#[test]
fn data_movement() {
    let r = (-2.0, 2.0);
    check("reshape", &[&[3, 4]], r, |g, p| {
        g.reshape(p[0], [2, 6]).unwrap()
    });
    check("transpose", &[&[2, 3, 4]], r, |g, p| {
        g.transpose(p[0], &[2, 0, 1]).unwrap()
    });
    check("slice", &[&[3, 5]], r, |g, p| {
        g.slice(p[0], 1, 1, 4).unwrap()
    });
    check("concat", &[&[3, 2], &[3, 3]], r, |g, p| {
        g.concat(&[p[0], p[1]], 1).unwrap()
    });
    check("pad", &[&[3, 2]], r, |g, p| {
        g.apply(
            TensorOp::Pad {
                axis: 0,
                before: 1,
                after: 2,
            },
            &[p[0]],
            None,
        )
        .unwrap()
    });
    check("broadcast_to", &[&[4]], r, |g, p| {
        g.broadcast_to(p[0], [3, 4]).unwrap()
    });
    check("sum_to", &[&[3, 4]], r, |g, p| {
        g.sum_to(p[0], [1, 4]).unwrap()
    });
}

#[test]
fn a_two_layer_network() {
    check(
        "mlp",
        &[&[5, 4], &[4, 6], &[6], &[6, 3]],
        (-1.0, 1.0),
        |g, p| {
            let h = g.matmul(p[0], p[1]).unwrap();
            let h = g.add(h, p[2]).unwrap();
            let h = g.unary(Unary::Gelu, h).unwrap();
            let z = g.matmul(h, p[3]).unwrap();
            g.log_softmax(z, 1).unwrap()
        },
    );
}
