//! Elementwise fusion: a chain of 2, 4 and 8 ops on 10M `f32`, run as one
//! Cranelift kernel (fused), as one kernel per op (unfused: what a runtime
//! without fusion does), and as a loop written by hand in Rust (what rustc
//! makes of the fused chain: the peer). One thread each, best of 7.
//!
//! ```text
//! cargo bench --bench fusion            (10M elements)
//! cargo bench --bench fusion -- 1000000
//! ```
//!
//! Targets (issue 6): fused at least 0.8x the hand-written loop's speed,
//! and faster than unfused by at least half the chain length.

use dagger::nn::{CompileOptions, Program};
use dagger::tensor::{Binary, FuseOptions, Tensor, TensorGraph, Unary};
use std::hint::black_box;
use std::time::Instant;

/// The chain's ops, in order: multiply, add, relu, repeated.
#[derive(Clone, Copy)]
enum Step {
    Mul(f32),
    Add(f32),
    Relu,
}

const STEPS: [Step; 8] = [
    Step::Mul(1.0001),
    Step::Add(0.5),
    Step::Relu,
    Step::Mul(0.999),
    Step::Add(-0.25),
    Step::Relu,
    Step::Mul(1.5),
    Step::Add(0.125),
];

fn chain_graph(n: usize, len: usize) -> TensorGraph {
    let mut g = TensorGraph::new();
    let mut v: Tensor = g.input("x", [n]);
    for step in &STEPS[..len] {
        v = match *step {
            Step::Mul(c) => g.scale(v, c),
            Step::Add(c) => {
                let k = g.scalar(c);
                g.binary(Binary::Add, v, k)
            }
            Step::Relu => g.unary(Unary::Relu, v),
        }
        .expect("shapes agree");
    }
    g.set_outputs(vec![v]).expect("in graph");
    g
}

/// The chain written by hand: rustc inlines and vectorizes it.
#[inline(always)]
fn apply<const L: usize>(mut v: f32) -> f32 {
    let mut k = 0;
    while k < L {
        v = match STEPS[k] {
            Step::Mul(c) => v * c,
            Step::Add(c) => v + c,
            Step::Relu => v.max(0.0),
        };
        k += 1;
    }
    v
}

fn hand<const L: usize>(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = apply::<L>(v);
    }
}

fn best_ms(mut f: impl FnMut()) -> f64 {
    f();
    (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let x: Vec<f32> = (0..n)
        .map(|i| ((i % 1000) as f32 - 500.0) / 100.0)
        .collect();
    println!("elementwise chains on {n} f32, one thread, best of 7\n");
    println!("| ops | hand-written Rust ms | dagger fused ms | dagger unfused ms | fused vs hand | fused vs unfused |");
    println!("|---|---|---|---|---|---|");
    for len in [2, 4, 8] {
        let mut out = vec![0.0f32; n];
        let hand_ms = best_ms(|| match len {
            2 => hand::<2>(black_box(&x), &mut out),
            4 => hand::<4>(black_box(&x), &mut out),
            _ => hand::<8>(black_box(&x), &mut out),
        });
        let expected = out.clone();
        let g = chain_graph(n, len);
        let mut times = Vec::new();
        for max_ops in [usize::MAX, 1] {
            let mut p = Program::compile(
                &g,
                CompileOptions {
                    fuse: FuseOptions { max_ops },
                },
            )
            .expect("compiles");
            assert_eq!(p.stats().kernels, if max_ops == 1 { len } else { 1 });
            p.set("x", &x).expect("fed");
            times.push(best_ms(|| p.run().expect("runs")));
            let worst = p
                .output(0)
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= 1e-4,
                "{len} ops: fused result differs from the loop by {worst}"
            );
        }
        let (fused, unfused) = (times[0], times[1]);
        println!(
            "| {len} | {hand_ms:.2} | {fused:.2} | {unfused:.2} | {:.2}x | {:.2}x |",
            hand_ms / fused,
            unfused / fused
        );
    }
}
