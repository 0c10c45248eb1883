//! Runtime overhead benchmark: a million empty tasks in four graph shapes,
//! against rayon doing the same work in the same process, plus the memory a
//! graph node costs.
//!
//! ```text
//! cargo bench --bench runtime            (N = 1 000 000 tasks per shape)
//! cargo bench --bench runtime -- 200000  (smaller N)
//! ```
//!
//! Shapes (each about N tasks):
//! - wide: one source fanning out to N/2 tasks, then a binary tree of N/2 adds (fan-in);
//!   rayon: a scope spawning N/2 tasks that add into one atomic.
//! - tree: a binary tree of dynamic spawns, each waiting for its two
//!   children (a task and a value per node), and the same recursion with
//!   `dagger::join` (no allocation); rayon: the recursion with `rayon::join`.
//! - chains: 1000 independent chains of 1000 tasks; rayon: a scope in which
//!   each link spawns the next.
//! - layered: random layered DAG (width 1000, 1 to 3 random parents in the
//!   previous layer); rayon: one scope per layer spawning a task per node
//!   (a barrier between layers).

use dagger::prelude::*;
use dagger::GraphBuilder;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// Counts heap bytes allocated minus freed while `COUNTING` is on, to
/// measure the memory of a graph (off during the timings, so that they pay
/// nothing for it).
struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

fn count(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(delta, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(-(l.size() as isize));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new as isize - l.size() as isize);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// An empty task of one argument.
#[task]
fn step(x: u64) -> u64 {
    black_box(x)
}

/// An empty task of two arguments.
#[task]
fn add(a: u64, b: u64) -> u64 {
    black_box(a.wrapping_add(b))
}

/// An empty task of three arguments.
#[task]
fn add3(a: u64, b: u64, c: u64) -> u64 {
    black_box(a.wrapping_add(b).wrapping_add(c))
}

fn reduce_tree(b: &GraphBuilder, level: Vec<Value<u64>>) -> Value<u64> {
    b.reduce_tree(level, |x, y| add::on(b).node(x, y))
}

fn wide(n: usize) -> Dag<(), u64> {
    let b = GraphBuilder::new();
    let src = b.constant(1u64);
    let src = step::on(&b).node(src);
    let leaves = (0..n / 2).map(|_| step::on(&b).node(src)).collect();
    let out = reduce_tree(&b, leaves);
    b.finish(out)
}

fn chains(n_chains: usize, len: usize) -> Dag<(), u64> {
    let b = GraphBuilder::new();
    let ends = (0..n_chains)
        .map(|i| {
            let mut v = b.constant(i as u64);
            for _ in 0..len {
                v = step::on(&b).node(v);
            }
            v
        })
        .collect();
    let out = reduce_tree(&b, ends);
    b.finish(out)
}

/// Parents (1 to 3, in the previous layer) of every node of a random layered DAG.
fn layered_parents(layers: usize, width: usize) -> Vec<Vec<[usize; 3]>> {
    let mut s = 0x9e3779b97f4a7c15u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..layers)
        .map(|_| {
            (0..width)
                .map(|_| {
                    let k = (rnd() % 3) as usize;
                    let mut p = [usize::MAX; 3];
                    for slot in p.iter_mut().take(k + 1) {
                        *slot = (rnd() % width as u64) as usize;
                    }
                    p
                })
                .collect()
        })
        .collect()
}

fn layered(parents: &[Vec<[usize; 3]>], width: usize) -> Dag<(), u64> {
    let b = GraphBuilder::new();
    let mut prev: Vec<Value<u64>> = (0..width).map(|i| b.constant(i as u64)).collect();
    for layer in parents {
        prev = layer
            .iter()
            .map(|p| match *p {
                [a, usize::MAX, _] => step::on(&b).node(prev[a]),
                [a, c, usize::MAX] => add::on(&b).node(prev[a], prev[c]),
                [a, c, d] => add3::on(&b).node(prev[a], prev[c], prev[d]),
            })
            .collect();
    }
    let out = reduce_tree(&b, prev);
    b.finish(out)
}

fn layered_rayon(pool: &rayon::ThreadPool, parents: &[Vec<[usize; 3]>], width: usize) -> u64 {
    let mut prev: Vec<u64> = (0..width as u64).collect();
    for layer in parents {
        let next: Vec<AtomicU64> = (0..width).map(|_| AtomicU64::new(0)).collect();
        pool.scope(|s| {
            for (slot, p) in next.iter().zip(layer) {
                let prev = &prev;
                s.spawn(move |_| {
                    let v = p
                        .iter()
                        .filter(|&&i| i != usize::MAX)
                        .fold(0u64, |acc, &i| black_box(acc.wrapping_add(prev[i])));
                    slot.store(v, Ordering::Relaxed);
                });
            }
        });
        prev = next.into_iter().map(AtomicU64::into_inner).collect();
    }
    prev.iter().copied().fold(0, u64::wrapping_add)
}

fn tree_spawn(depth: u32) -> u64 {
    if depth == 0 {
        return black_box(1);
    }
    let a = dagger::spawn(tree_spawn, (depth - 1,));
    let b = dagger::spawn(tree_spawn, (depth - 1,));
    a.wait().unwrap_or(0) + b.wait().unwrap_or(0)
}

fn tree_join(depth: u32) -> u64 {
    if depth == 0 {
        return black_box(1);
    }
    let (a, b) = dagger::join(|| tree_join(depth - 1), || tree_join(depth - 1));
    a + b
}

fn tree_rayon(depth: u32) -> u64 {
    if depth == 0 {
        return black_box(1);
    }
    let (a, b) = rayon::join(|| tree_rayon(depth - 1), || tree_rayon(depth - 1));
    a + b
}

fn chain_rayon<'s>(s: &rayon::Scope<'s>, left: usize, acc: u64, out: &'s AtomicUsize) {
    if left == 0 {
        out.fetch_add(acc as usize, Ordering::Relaxed);
        return;
    }
    s.spawn(move |s| chain_rayon(s, left - 1, black_box(acc), out));
}

/// Best of `reps` timings of `f`, in seconds.
fn best<R>(reps: usize, mut f: impl FnMut() -> R) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn row(shape: &str, tasks: usize, ours: f64, rayon: f64) {
    let (a, b) = (ours * 1e9 / tasks as f64, rayon * 1e9 / tasks as f64);
    println!(
        "| {shape:<26} | {tasks:>9} | {a:>14.1} | {b:>13.1} | {:>6.2}x |",
        a / b
    );
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rt = Runtime::new();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(rt.threads())
        .build()
        .expect("rayon pool");
    println!(
        "runtime overhead, {} threads (dagger and rayon alike), best of 3\n",
        rt.threads()
    );
    println!(
        "| shape                      |     tasks | dagger ns/task | rayon ns/task |   ratio |"
    );
    println!(
        "|----------------------------|-----------|----------------|---------------|---------|"
    );

    let g = wide(n);
    let tasks = g.plan().expect("compiles").task_count();
    let ours = best(3, || rt.run(&g, ()).expect("wide runs"));
    let theirs = best(3, || {
        let sum = AtomicUsize::new(0);
        pool.scope(|s| {
            for i in 0..n / 2 {
                let sum = &sum;
                s.spawn(move |_| {
                    sum.fetch_add(black_box(i), Ordering::Relaxed);
                });
            }
        });
        sum.into_inner()
    });
    row("wide fan-out/fan-in", tasks, ours, theirs);

    let depth = (n as f64).log2().round() as u32;
    let tasks = (1usize << (depth + 1)) - 1;
    let ours = best(3, || {
        rt.spawn(tree_spawn, (depth,)).wait().expect("tree runs")
    });
    let theirs = best(3, || pool.install(|| tree_rayon(depth)));
    row("binary tree (spawn+wait)", tasks, ours, theirs);
    let ours = best(3, || {
        rt.spawn(tree_join, (depth,)).wait().expect("tree runs")
    });
    row("binary tree (join)", tasks, ours, theirs);

    let len = (n as f64).sqrt() as usize;
    let g = chains(len, len);
    let tasks = g.plan().expect("compiles").task_count();
    let ours = best(3, || rt.run(&g, ()).expect("chains run"));
    let theirs = best(3, || {
        let out = AtomicUsize::new(0);
        pool.scope(|s| {
            for i in 0..len {
                let out = &out;
                s.spawn(move |s| chain_rayon(s, len, i as u64, out));
            }
        });
        out.into_inner()
    });
    row(&format!("chains {len} x {len}"), tasks, ours, theirs);

    let width = 1000;
    let parents = layered_parents(n / width, width);
    let g = layered(&parents, width);
    let tasks = g.plan().expect("compiles").task_count();
    let ours = best(3, || rt.run(&g, ()).expect("layered runs"));
    let theirs = best(3, || layered_rayon(&pool, &parents, width));
    row("random layered (w=1000)", tasks, ours, theirs);

    println!("\nmemory of a graph of N = {n} nodes (a chain of `step` calls):");
    COUNTING.store(true, Ordering::SeqCst);
    let t = Instant::now();
    let g = chains(1, n);
    let build = t.elapsed().as_secs_f64();
    let graph_bytes = LIVE.swap(0, Ordering::SeqCst);
    let t = Instant::now();
    let plan = g.plan().expect("compiles");
    let compile = t.elapsed().as_secs_f64();
    let plan_bytes = LIVE.load(Ordering::SeqCst);
    COUNTING.store(false, Ordering::SeqCst);
    let nodes = g.graph().node_count();
    println!(
        "  IR graph: {:.1} bytes/node (built in {:.0} ns/node); compiled plan: {:.1} bytes/node more (compiled in {:.0} ns/node)",
        graph_bytes as f64 / nodes as f64,
        build * 1e9 / nodes as f64,
        plan_bytes as f64 / nodes as f64,
        compile * 1e9 / nodes as f64,
    );
    drop(plan);
}
