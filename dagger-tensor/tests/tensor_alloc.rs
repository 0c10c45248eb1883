//! A compiled program allocates nothing after its first run: its buffers
//! are planned and allocated once, and its matrix products (faer, split
//! between workers by the runtime's allocation-free `join`) allocate
//! nothing either.

use dagger_tensor::{CompileOptions, Program, TensorGraph, Unary};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// The counters are global: the tests take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

// SAFETY: forwards to the system allocator, counting calls on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `program` five times counting allocations; returns (allocations,
/// bytes still live at the end).
fn count_runs(program: &mut Program) -> (usize, usize) {
    ALLOCATIONS.store(0, Ordering::SeqCst);
    LIVE_BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        program.run().unwrap();
    }
    COUNTING.store(false, Ordering::SeqCst);
    (
        ALLOCATIONS.load(Ordering::SeqCst),
        LIVE_BYTES.load(Ordering::SeqCst),
    )
}

#[test]
fn a_training_step_allocates_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap();
    // A two-layer MLP step with every kind of node a training step has:
    // products, fused kernels, reductions, softmax cross-entropy, updates.
    let mut g = TensorGraph::new();
    let x = g.input("x", [16, 20]);
    let t = g.input("t", [16, 5]);
    let w1 = g.param("w1", [20, 30]);
    let b1 = g.param("b1", [30]);
    let w2 = g.param("w2", [30, 5]);
    let h = g.matmul(x, w1).unwrap();
    let h = g.add(h, b1).unwrap();
    let h = g.unary(Unary::Tanh, h).unwrap();
    let z = g.matmul(h, w2).unwrap();
    let loss = g.cross_entropy(z, t).unwrap();
    let (mut step, grads) = g.grad(loss, &[w1, b1, w2]).unwrap();
    for (p, gr) in [w1, b1, w2].into_iter().zip(grads) {
        let d = step.scale(gr, 0.1).unwrap();
        let new = step.sub(p, d).unwrap();
        step.add_update(p, new).unwrap();
    }
    let mut program = Program::compile(&step, CompileOptions::default()).unwrap();
    for (name, n) in [("x", 320), ("t", 80), ("w1", 600), ("b1", 30), ("w2", 150)] {
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
            .collect();
        program.set(name, &data).unwrap();
    }
    program.run().unwrap();
    let first = program.output(0)[0];
    assert_eq!(
        count_runs(&mut program),
        (0, 0),
        "allocations and bytes left by 5 runs"
    );
    assert!(program.output(0)[0] < first, "the updates were applied");
}

#[test]
fn a_program_without_products_allocates_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap();
    // Fused kernels, an unfused broadcast, reductions, softmax, losses,
    // data movement, and their gradients.
    let mut g = TensorGraph::new();
    let x = g.param("x", [6, 8]);
    let c = g.param("c", [6, 1, 8]);
    let t = g.input("t", [6, 8]);
    let y = g.unary(Unary::Gelu, x).unwrap();
    let y = g.transpose(y, &[1, 0]).unwrap();
    let y = g.reshape(y, [6, 1, 8]).unwrap();
    let wide = g.broadcast_to(y, [6, 3, 8]).unwrap();
    let wide = g.mul(wide, c).unwrap();
    let y = g.sum(wide, &[1], false).unwrap();
    let s = g.slice(y, 1, 0, 4).unwrap();
    let y = g.concat(&[s, s], 1).unwrap();
    let loss = g.cross_entropy(y, t).unwrap();
    let (train, _) = g.grad(loss, &[x, c]).unwrap();
    let mut program = Program::compile(&train, CompileOptions::default()).unwrap();
    for (name, n) in [("x", 48), ("c", 48), ("t", 48)] {
        let data: Vec<f32> = (0..n).map(|i| ((i * 31) % 7) as f32 / 7.0).collect();
        program.set(name, &data).unwrap();
    }
    program.run().unwrap();
    assert_eq!(count_runs(&mut program), (0, 0));
}

#[test]
fn a_step_with_products_split_between_workers_allocates_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap();
    // 256 x 512 x 512: above the size at which products are split.
    let mut g = TensorGraph::new();
    let x = g.input("x", [256, 512]);
    let t = g.input("t", [256, 512]);
    let w = g.param("w", [512, 512]);
    let h = g.matmul(x, w).unwrap();
    let loss = g.mse(h, t).unwrap();
    let (mut step, grads) = g.grad(loss, &[w]).unwrap();
    let d = step.scale(grads[0], 0.01).unwrap();
    let new = step.sub(w, d).unwrap();
    step.add_update(w, new).unwrap();
    let mut program = Program::compile(&step, CompileOptions::default()).unwrap();
    for (name, n) in [("x", 256 * 512), ("t", 256 * 512), ("w", 512 * 512)] {
        let data: Vec<f32> = (0..n).map(|i| ((i * 7) % 11) as f32 / 11.0).collect();
        program.set(name, &data).unwrap();
    }
    program.run().unwrap();
    program.run().unwrap();
    let first = program.output(0)[0];
    assert_eq!(
        count_runs(&mut program),
        (0, 0),
        "allocations and bytes left by 5 runs"
    );
    assert!(program.output(0)[0] < first);
}
