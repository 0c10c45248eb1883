//! The Cranelift kernels against the reference semantics of every op.

mod common;
use common::values;
use dagger_tensor::{Binary, CompileOptions, Program, TensorGraph, TensorOp, Unary};

fn close(got: f32, want: f32, tol: f32) -> bool {
    (got - want).abs() <= tol * (1.0 + want.abs()) || (got.is_nan() && want.is_nan()) || got == want
}

#[test]
fn every_unary_op_matches_the_reference_in_vector_and_tail_lanes() {
    // 3 rows of 13: one 8-lane iteration and a 5-element tail per row... but
    // a flat kernel sees 39 elements: four vector iterations and a tail of 7.
    for op in Unary::ALL {
        let (lo, hi) = match op {
            Unary::Log | Unary::Sqrt | Unary::Recip => (0.01, 50.0),
            Unary::Exp => (-80.0, 80.0),
            _ => (-6.0, 6.0),
        };
        let mut g = TensorGraph::new();
        let x = g.input("x", [3, 13]);
        let y = g.unary(op, x).unwrap();
        g.set_outputs(vec![y]).unwrap();
        let mut p = Program::compile(&g, CompileOptions::default()).unwrap();
        assert_eq!(p.stats().kernels, 1);
        let data = values(39, lo, hi, 7);
        p.set("x", &data).unwrap();
        p.run().unwrap();
        for (i, (&got, &x)) in p.output(0).iter().zip(&data).enumerate() {
            let want = op.apply(x);
            assert!(
                close(got, want, 2e-6),
                "{}({x}) = {got}, want {want} (element {i})",
                op.name()
            );
        }
    }
}

#[test]
fn log_and_exp_handle_the_edges() {
    let mut g = TensorGraph::new();
    let x = g.input("x", [8]);
    let l = g.unary(Unary::Log, x).unwrap();
    let e = g.unary(Unary::Exp, x).unwrap();
    g.set_outputs(vec![l, e]).unwrap();
    let mut p = Program::compile(&g, CompileOptions::default()).unwrap();
    p.set("x", &[0.0, -1.0, f32::INFINITY, 1.0, 2.0, 1e-30, 1e30, 0.5])
        .unwrap();
    p.run().unwrap();
    let l = p.output(0);
    assert_eq!(l[0], f32::NEG_INFINITY);
    assert!(l[1].is_nan());
    assert_eq!(l[2], f32::INFINITY);
    assert_eq!(l[3], 0.0);
    for k in 4..8 {
        let x = [2.0f32, 1e-30, 1e30, 0.5][k - 4];
        assert!(close(l[k], x.ln(), 1e-6), "log({x}) = {}", l[k]);
    }
    assert!(close(p.output(1)[3], std::f32::consts::E, 1e-6));
}

#[test]
fn broadcast_operands_load_by_row_column_and_scalar() {
    // relu(x * s + bias) - col, over [5, 11]: every load pattern at once.
    let mut g = TensorGraph::new();
    let x = g.input("x", [5, 11]);
    let s = g.input("s", []);
    let bias = g.input("bias", [11]);
    let col = g.input("col", [5, 1]);
    let t = g.mul(x, s).unwrap();
    let t = g.add(t, bias).unwrap();
    let t = g.relu(t).unwrap();
    let y = g.binary(Binary::Sub, t, col).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let mut p = Program::compile(&g, CompileOptions::default()).unwrap();
    assert_eq!((p.stats().kernels, p.stats().fused_ops), (1, 4));
    assert!(matches!(
        p.graph().node(p.graph().outputs()[0]).op,
        TensorOp::Fused(_)
    ));
    let (xs, bs, cs) = (
        values(55, -2.0, 2.0, 1),
        values(11, -1.0, 1.0, 2),
        values(5, -1.0, 1.0, 3),
    );
    p.set("x", &xs).unwrap();
    p.set("s", &[1.5]).unwrap();
    p.set("bias", &bs).unwrap();
    p.set("col", &cs).unwrap();
    p.run().unwrap();
    for r in 0..5 {
        for c in 0..11 {
            let want = (xs[r * 11 + c] * 1.5 + bs[c]).max(0.0) - cs[r];
            let got = p.output(0)[r * 11 + c];
            assert!(close(got, want, 1e-6), "({r}, {c}): {got} vs {want}");
        }
    }
}

#[test]
fn unfused_and_fused_programs_agree() {
    let mut g = TensorGraph::new();
    let x = g.input("x", [4, 9]);
    let mut v = x;
    for op in [
        Unary::Tanh,
        Unary::Square,
        Unary::Exp,
        Unary::Neg,
        Unary::Sigmoid,
    ] {
        v = g.unary(op, v).unwrap();
    }
    g.set_outputs(vec![v]).unwrap();
    let data = values(36, -1.0, 1.0, 9);
    let mut outs = Vec::new();
    for max_ops in [1, usize::MAX] {
        let options = CompileOptions {
            fuse: dagger_tensor::FuseOptions { max_ops },
        };
        let mut p = Program::compile(&g, options).unwrap();
        assert_eq!(p.stats().kernels, if max_ops == 1 { 5 } else { 1 });
        p.set("x", &data).unwrap();
        p.run().unwrap();
        outs.push(p.output(0).to_vec());
    }
    for (a, b) in outs[0].iter().zip(&outs[1]) {
        assert!(close(*a, *b, 1e-6));
    }
}

#[test]
fn feeding_mistakes_are_named() {
    let mut g = TensorGraph::new();
    let x = g.input("x", [2, 3]);
    let y = g.relu(x).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let mut p = Program::compile(&g, CompileOptions::default()).unwrap();
    assert_eq!(
        p.run().unwrap_err().to_string(),
        "input `x` was not fed before the run"
    );
    assert_eq!(
        p.set("x", &[1.0]).unwrap_err().to_string(),
        "`x` needs 6 elements (shape [2, 3]), got 1"
    );
    assert_eq!(
        p.set("z", &[1.0]).unwrap_err().to_string(),
        "the graph has no input or parameter named `z`"
    );
}

#[test]
fn an_operand_broadcast_along_a_middle_axis_runs_unfused() {
    let mut g = TensorGraph::new();
    let a = g.input("a", [2, 1, 3]);
    let b = g.input("b", [2, 4, 3]);
    let s = g.binary(Binary::Mul, a, b).unwrap();
    let y = g.unary(Unary::Neg, s).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let mut p = Program::compile(&g, CompileOptions::default()).unwrap();
    // The product cannot load `a` by a kernel pattern; the negation is a kernel.
    assert_eq!(p.stats().kernels, 1);
    let (xa, xb) = (values(6, -1.0, 1.0, 4), values(24, -1.0, 1.0, 5));
    p.set("a", &xa).unwrap();
    p.set("b", &xb).unwrap();
    p.run().unwrap();
    for i in 0..2 {
        for j in 0..4 {
            for k in 0..3 {
                let want = -(xa[i * 3 + k] * xb[i * 12 + j * 3 + k]);
                assert_eq!(p.output(0)[i * 12 + j * 3 + k], want);
            }
        }
    }
}

#[test]
fn reductions_at_the_end_of_a_kernel_match_plain_sums() {
    // Rows: sum over the last axis of (a - bias)^2; 21 columns exercise the
    // 16-wide, 4-wide and scalar loops.
    let (r, c) = (7, 21);
    let mut g = TensorGraph::new();
    let a = g.input("a", [r, c]);
    let bias = g.input("bias", [c]);
    let col = g.input("col", [r, 1]);
    let d = g.sub(a, bias).unwrap();
    let sq = g.unary(Unary::Square, d).unwrap();
    let rows = g.sum(sq, &[1], false).unwrap();
    // Columns: a bias gradient, sum over rows of relu(a) * col.
    let ra = g.relu(a).unwrap();
    let m = g.mul(ra, col).unwrap();
    let cols = g.sum_to(m, [c]).unwrap();
    // All: the mean of exp(a).
    let e = g.unary(Unary::Exp, a).unwrap();
    let all = g.mean(e, &[0, 1], false).unwrap();
    g.set_outputs(vec![rows, cols, all]).unwrap();
    let mut p = Program::compile(&g, CompileOptions::default()).unwrap();
    assert_eq!(p.stats().kernels, 4, "{}", p.graph()); // 3 reductions and the mean's scale
    let (xa, xb, xc) = (
        values(r * c, -1.0, 1.0, 21),
        values(c, -1.0, 1.0, 22),
        values(r, -1.0, 1.0, 23),
    );
    p.set("a", &xa).unwrap();
    p.set("bias", &xb).unwrap();
    p.set("col", &xc).unwrap();
    for _ in 0..2 {
        // Twice: the accumulating kernels must start from zero every run.
        p.run().unwrap();
        for i in 0..r {
            let want: f32 = (0..c).map(|j| (xa[i * c + j] - xb[j]).powi(2)).sum();
            assert!(
                close(p.output(0)[i], want, 1e-5),
                "row {i}: {} vs {want}",
                p.output(0)[i]
            );
        }
        for j in 0..c {
            let want: f32 = (0..r).map(|i| xa[i * c + j].max(0.0) * xc[i]).sum();
            assert!(
                close(p.output(1)[j], want, 1e-5),
                "column {j}: {} vs {want}",
                p.output(1)[j]
            );
        }
        let want = xa.iter().map(|v| v.exp()).sum::<f32>() / (r * c) as f32;
        assert!(
            close(p.output(2)[0], want, 1e-5),
            "mean {} vs {want}",
            p.output(2)[0]
        );
    }
}

#[test]
fn a_long_fused_tree_matches_its_kernels_reference_evaluation() {
    // Every unary and binary op in one tree over a full, a row and a scalar
    // operand; the compiled kernel against `Kernel::eval` element by element.
    let (r, c) = (3, 37);
    let mut g = TensorGraph::new();
    let x = g.input("x", [r, c]);
    let row = g.input("row", [c]);
    let s = g.input("s", []);
    let mut v = g.binary(Binary::Add, x, row).unwrap();
    for (k, op) in Unary::ALL.iter().enumerate() {
        // Keep the values in every op's domain: squash, then shift positive.
        let squashed = g.unary(Unary::Tanh, v).unwrap();
        let two = g.scalar(2.0);
        let positive = g.binary(Binary::Add, squashed, two).unwrap();
        v = g.unary(*op, positive).unwrap();
        let bin = Binary::ALL[k % Binary::ALL.len()];
        v = g.binary(bin, v, s).unwrap();
    }
    g.set_outputs(vec![v]).unwrap();
    let mut p = Program::compile(&g, CompileOptions::default()).unwrap();
    assert_eq!(p.stats().kernels, 1, "{}", p.graph());
    let (xs, rows) = (values(r * c, -2.0, 2.0, 31), values(c, -1.0, 1.0, 32));
    p.set("x", &xs).unwrap();
    p.set("row", &rows).unwrap();
    p.set("s", &[1.25]).unwrap();
    p.run().unwrap();
    let out = p.graph().outputs()[0];
    let node = p.graph().node(out);
    let TensorOp::Fused(kernel) = &node.op else {
        panic!("not fused")
    };
    let names: Vec<String> = node
        .inputs
        .iter()
        .map(|&t| match &p.graph().node(t).op {
            TensorOp::Input { name } => name.clone(),
            other => panic!("operand {other}"),
        })
        .collect();
    for i in 0..r {
        for j in 0..c {
            let loads: Vec<f32> = names
                .iter()
                .map(|n| match n.as_str() {
                    "x" => xs[i * c + j],
                    "row" => rows[j],
                    _ => 1.25,
                })
                .collect();
            let want = kernel.eval(&loads);
            let got = p.output(0)[i * c + j];
            assert!(close(got, want, 1e-5), "({i}, {j}): {got} vs {want}");
        }
    }
}
