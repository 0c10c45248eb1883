//! Merge sort with dynamic, recursive spawns.
//!
//! `msort` splits its input, spawns itself on both halves and merges the two
//! sorted halves; below a cut-off it sorts sequentially. The merge of two
//! long runs is itself split: a co-ranking binary search finds where the
//! first half of the output ends in each run, and the two halves are merged
//! by two tasks writing to disjoint parts of one output buffer.
//!
//! ```text
//! cargo run --release --example mergesort -- [N]      (default 10 000 000 u64)
//! cargo run --release --example mergesort -- --bench  (table vs rayon and std at 10M and 100M)
//! ```

use dagger::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// Inputs shorter than this are sorted sequentially.
const SORT_CUTOFF: usize = 1 << 15;
/// Merges shorter than this run sequentially.
const MERGE_CUTOFF: usize = 1 << 16;

/// Sorts `v`, spawning the two halves as tasks.
pub fn msort(mut v: Vec<u64>) -> Vec<u64> {
    if v.len() <= SORT_CUTOFF {
        v.sort_unstable();
        return v;
    }
    let right = v.split_off(v.len() / 2);
    let left = dagger::spawn(msort, (v,));
    let right = dagger::spawn(msort, (right,));
    let (left, right) = (wait(left), wait(right));
    merge(Arc::new(left), Arc::new(right))
}

fn wait(h: Handle<Vec<u64>>) -> Vec<u64> {
    match h.wait() {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// A pointer to an output buffer that tasks fill in disjoint ranges.
#[derive(Clone, Copy)]
struct Out(*mut u64);
// SAFETY: each task writes only its own range and the owner waits for all of them.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// Merges two sorted runs into a new vector, in parallel when they are long.
fn merge(a: Arc<Vec<u64>>, b: Arc<Vec<u64>>) -> Vec<u64> {
    let n = a.len() + b.len();
    let mut out: Vec<u64> = Vec::with_capacity(n);
    let (ra, rb) = (0..a.len(), 0..b.len());
    merge_into(a, ra, b, rb, Out(out.as_mut_ptr()));
    // SAFETY: merge_into has written all n elements before returning.
    unsafe { out.set_len(n) };
    out
}

/// Merges `a[ra]` and `b[rb]` into `out[0..ra.len() + rb.len()]`.
fn merge_into(
    a: Arc<Vec<u64>>,
    ra: std::ops::Range<usize>,
    b: Arc<Vec<u64>>,
    rb: std::ops::Range<usize>,
    out: Out,
) {
    let n = ra.len() + rb.len();
    if n <= MERGE_CUTOFF {
        // SAFETY: `out` points to at least n writable elements owned by this call.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.0, n) };
        merge_seq(&a[ra], &b[rb], dst);
        return;
    }
    let (i, j) = co_rank(&a[ra.clone()], &b[rb.clone()], n / 2);
    let (ra2, rb2) = (ra.start + i..ra.end, rb.start + j..rb.end);
    // SAFETY: the second half starts n / 2 elements in, inside the buffer.
    let out2 = Out(unsafe { out.0.add(n / 2) });
    let second = dagger::spawn(
        move |a, b| merge_into(a, ra2, b, rb2, out2),
        (a.clone(), b.clone()),
    );
    merge_into(a, ra.start..ra.start + i, b, rb.start..rb.start + j, out);
    if let Err(e) = second.wait() {
        panic!("{e}");
    }
}

/// How many elements of `a` and of `b` make up the first `k` of their merge.
fn co_rank(a: &[u64], b: &[u64], k: usize) -> (usize, usize) {
    let (mut lo, mut hi) = (k.saturating_sub(b.len()), k.min(a.len()));
    while lo < hi {
        let i = (lo + hi) / 2;
        let j = k - i;
        if j > 0 && i < a.len() && b[j - 1] > a[i] {
            lo = i + 1;
        } else {
            hi = i;
        }
    }
    (lo, k - lo)
}

fn merge_seq(a: &[u64], b: &[u64], out: &mut [u64]) {
    let (mut i, mut j) = (0, 0);
    for slot in out.iter_mut() {
        let take_a = j >= b.len() || (i < a.len() && a[i] <= b[j]);
        *slot = if take_a { a[i] } else { b[j] };
        if take_a {
            i += 1;
        } else {
            j += 1;
        }
    }
}

/// `n` pseudo-random u64 from a seeded xorshift generator.
pub fn random_u64(n: usize, seed: u64) -> Vec<u64> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        })
        .collect()
}

/// Times this sort, rayon's `par_sort_unstable` and std's `sort_unstable` on
/// the same data and prints a table (best of 3 for 10M, one run above).
fn bench(rt: &Runtime, sizes: &[usize]) -> Result<(), RunError> {
    use rayon::slice::ParallelSliceMut;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(rt.threads())
        .build()
        .expect("rayon pool");
    println!("| n | dagger msort ms | rayon par_sort_unstable ms | std sort_unstable ms | dagger/rayon speed | dagger/std speed |");
    println!("|---|---|---|---|---|---|");
    for &n in sizes {
        let data = random_u64(n, 7);
        let reps = if n <= 10_000_000 { 3 } else { 1 };
        let time = |f: &mut dyn FnMut(Vec<u64>) -> Vec<u64>| -> f64 {
            (0..reps)
                .map(|_| {
                    let input = data.clone();
                    let t = Instant::now();
                    let out = f(input);
                    let s = t.elapsed().as_secs_f64();
                    assert!(out.windows(2).all(|w| w[0] <= w[1]));
                    s
                })
                .fold(f64::INFINITY, f64::min)
        };
        let ours = time(&mut |v| rt.spawn(msort, (v,)).wait().expect("sort runs"));
        let rayon = time(&mut |mut v| {
            pool.install(|| v.par_sort_unstable());
            v
        });
        let std = time(&mut |mut v| {
            v.sort_unstable();
            v
        });
        println!(
            "| {n} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.2}x |",
            ours * 1e3,
            rayon * 1e3,
            std * 1e3,
            rayon / ours,
            std / ours
        );
    }
    Ok(())
}

fn main() -> Result<(), RunError> {
    let rt = Runtime::new();
    if std::env::args().any(|a| a == "--bench") {
        println!(
            "merge sort of random u64, {} threads for dagger and rayon\n",
            rt.threads()
        );
        return bench(&rt, &[10_000_000, 100_000_000]);
    }
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let data = random_u64(n, 7);
    let checksum: u128 = data.iter().map(|&x| x as u128).sum();
    println!("mergesort: {n} u64 on {} workers", rt.threads());

    let t = Instant::now();
    let sorted = rt.spawn(msort, (data,)).wait()?;
    let took = t.elapsed();

    assert_eq!(sorted.len(), n, "length changed");
    assert!(
        sorted.windows(2).all(|w| w[0] <= w[1]),
        "output is not sorted"
    );
    assert_eq!(
        sorted.iter().map(|&x| x as u128).sum::<u128>(),
        checksum,
        "elements changed"
    );
    println!(
        "sorted in {:.1} ms ({:.1} M elements/s); sortedness and checksum verified",
        took.as_secs_f64() * 1e3,
        n as f64 / took.as_secs_f64() / 1e6
    );
    Ok(())
}
