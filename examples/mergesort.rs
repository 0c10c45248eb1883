//! Merge sort with dynamic, recursive spawns.
//!
//! `sort_range` splits its range in two, spawns itself on the left half,
//! sorts the right half itself, waits, and merges the two sorted halves;
//! below a cut-off (two leaves per worker) it sorts sequentially: one pass
//! distributes the leaf into a thousand buckets by leading bits and std's
//! pdqsort sorts each bucket in cache ([`sort_leaf`]). Halves are sorted into the
//! *other* of two buffers (the data and one scratch buffer of the same
//! length), so every level of the recursion is one merge pass, with no copy
//! back. A long merge is itself split: a co-ranking binary search finds where
//! the first half of the output ends in each run, and the two halves of the
//! output are merged by two tasks. A sequential merge interleaves three
//! independent pieces of itself, so the core is not idle waiting on one
//! chain of loads ([`merge_seq`]).
//!
//! The recursion is generic over how it forks ([`Fork`]): the example runs
//! it on dagger's `spawn`/`wait`, and `--bench` also runs the very same
//! algorithm on `rayon::join`, so the table separates the runtime's cost from
//! the algorithm's.
//!
//! The tasks share the two buffers through raw pointers to disjoint ranges;
//! every task waits for the tasks it spawned before it returns, so no range
//! is used after its owner has finished (the structured pattern of rayon's `join`).
//!
//! `--policies` also builds merge sort as a static graph (sort tasks on
//! chunks, a balanced tree of merge tasks) and runs it under every placement
//! policy, the static schedulers' predictions beside the measured times.
//!
//! ```text
//! cargo run --release --example mergesort -- [N]         (default 10 000 000 u64)
//! cargo run --release --example mergesort -- --bench     (table vs rayon and std at 10M and 100M)
//! cargo run --release --example mergesort -- --policies  (static graph under every policy)
//! target/release/dagger run -n 3 -- target/release/examples/mergesort  (static graph on 3 ranks)
//! ```

use dagger::prelude::*;
use dagger::GraphBuilder;
use std::time::Instant;

/// Merges shorter than this run sequentially.
const MERGE_CUTOFF: usize = 1 << 16;
/// Leaves of the recursion per worker: enough to balance, few merge levels.
const LEAVES_PER_WORKER: usize = 2;
/// A leaf sorts by first distributing its elements into this many buckets
/// (`2^BUCKET_BITS`) by their leading bits; see [`sort_leaf`].
const BUCKET_BITS: u32 = 10;
/// Leaves shorter than this skip the bucket pass.
const BUCKET_MIN: usize = 1 << 12;

/// How the recursion runs two halves in parallel.
pub trait Fork {
    /// Runs `a` and `b`, possibly in parallel, and returns when both are done.
    fn fork(a: impl FnOnce() + Send + 'static, b: impl FnOnce() + Send);
}

/// Forks with dagger's dynamic spawn: `a` becomes a spawned task, the caller
/// runs `b` and then waits for `a` (helping with other tasks meanwhile).
pub struct DaggerSpawn;

impl Fork for DaggerSpawn {
    fn fork(a: impl FnOnce() + Send + 'static, b: impl FnOnce() + Send) {
        let left = dagger::spawn(a, ());
        b();
        if let Err(e) = left.wait() {
            panic!("{e}");
        }
    }
}

/// Forks with `rayon::join` (for the benchmark's same-algorithm row).
pub struct RayonJoin;

impl Fork for RayonJoin {
    fn fork(a: impl FnOnce() + Send + 'static, b: impl FnOnce() + Send) {
        rayon::join(a, b);
    }
}

/// Sorts `v` with a parallel merge sort on the calling task's runtime.
pub fn msort(v: Vec<u64>) -> Vec<u64> {
    msort_with::<DaggerSpawn>(v)
}

/// Sorts `v` with a parallel merge sort forking with `F`.
///
/// Levels alternate between `v` and a scratch buffer; the top level writes
/// to whichever of the two lets the leaves sort in place, and that buffer is
/// returned.
pub fn msort_with<F: Fork>(mut v: Vec<u64>) -> Vec<u64> {
    let n = v.len();
    let workers = std::thread::available_parallelism().map_or(1, |p| p.get());
    let cutoff = (n / (LEAVES_PER_WORKER * workers)).max(1 << 14);
    let mut levels = 0;
    let mut len = n;
    while len > cutoff {
        len = len.div_ceil(2);
        levels += 1;
    }
    // Leaves sort into the other buffer, and each level above flips it.
    let into_scratch = levels % 2 == 0;
    let mut scratch: Vec<u64> = Vec::with_capacity(n);
    let (data, buf) = (Buf(v.as_mut_ptr()), Buf(scratch.as_mut_ptr()));
    sort_range::<F>(data, buf, 0..n, into_scratch, levels);
    if into_scratch {
        // SAFETY: the sort wrote all n elements of the scratch buffer.
        unsafe { scratch.set_len(n) };
        scratch
    } else {
        v
    }
}

/// A buffer shared by tasks that each touch a disjoint range of it.
#[derive(Clone, Copy)]
struct Buf(*mut u64);
// SAFETY: tasks use disjoint ranges, and each waits for the tasks it spawns.
unsafe impl Send for Buf {}
unsafe impl Sync for Buf {}

impl Buf {
    /// The range `lo..hi` as a slice.
    ///
    /// SAFETY: the caller owns that range for the slice's lifetime.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range(&self, lo: usize, hi: usize) -> &mut [u64] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(lo), hi - lo) }
    }
}

/// Sorts `data[range]`, `levels` halvings above the leaves; the result lands
/// in `buf[range]` if `into_buf`, else in `data[range]`.
///
/// Every leaf is exactly `levels` deep, so the caller picks `into_buf` such
/// that leaves always sort from `data` into `buf`.
fn sort_range<F: Fork>(
    data: Buf,
    buf: Buf,
    range: std::ops::Range<usize>,
    into_buf: bool,
    levels: u32,
) {
    let (lo, hi) = (range.start, range.end);
    if levels == 0 {
        debug_assert!(into_buf, "leaves sort into the scratch side");
        // SAFETY: this task owns lo..hi of both buffers.
        sort_leaf(unsafe { data.range(lo, hi) }, unsafe { buf.range(lo, hi) });
        return;
    }
    let mid = lo + (hi - lo) / 2;
    F::fork(
        move || sort_range::<F>(data, buf, lo..mid, !into_buf, levels - 1),
        || sort_range::<F>(data, buf, mid..hi, !into_buf, levels - 1),
    );
    let (src, dst) = if into_buf { (data, buf) } else { (buf, data) };
    merge::<F>(src, lo..mid, mid..hi, dst, lo);
}

/// Sorts `src` into `dst` (of the same length).
///
/// One pass counts and one distributes the elements into `2^BUCKET_BITS`
/// buckets by their leading bits below the bits all of them share (so
/// that a narrow range of values still spreads over the buckets); then each
/// bucket, small enough to stay in the core's cache, is sorted with std's
/// pattern-defeating quicksort. On 25M random u64 this takes 0.97 s where
/// pdqsort on the whole leaf takes 1.25 s on the benchmark machine. Data
/// with few distinct leading bits falls back to one big bucket, which is
/// pdqsort on the whole leaf plus one pass.
fn sort_leaf(src: &[u64], dst: &mut [u64]) {
    assert_eq!(src.len(), dst.len(), "sort_leaf: output length");
    let (Some(&min), Some(&max)) = (src.iter().min(), src.iter().max()) else {
        return;
    };
    if src.len() < BUCKET_MIN || min == max {
        dst.copy_from_slice(src);
        dst.sort_unstable();
        return;
    }
    let shift = (64 - (max - min).leading_zeros()).saturating_sub(BUCKET_BITS);
    let bucket = |x: u64| ((x - min) >> shift) as usize;
    let mut starts = vec![0usize; (1 << BUCKET_BITS) + 1];
    for &x in src {
        starts[bucket(x) + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    let mut next = starts.clone();
    for &x in src {
        let b = bucket(x);
        dst[next[b]] = x;
        next[b] += 1;
    }
    for bounds in starts.windows(2) {
        dst[bounds[0]..bounds[1]].sort_unstable();
    }
}

/// Merges the sorted runs `src[a]` and `src[b]` into `dst[out..]`, in
/// parallel when they are long.
fn merge<F: Fork>(
    src: Buf,
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
    dst: Buf,
    out: usize,
) {
    let n = a.len() + b.len();
    // SAFETY: this task owns the two source runs and dst[out..out + n].
    let (ra, rb) = unsafe { (&*src.range(a.start, a.end), &*src.range(b.start, b.end)) };
    if n <= MERGE_CUTOFF {
        merge_seq(ra, rb, unsafe { dst.range(out, out + n) });
        return;
    }
    let (i, j) = co_rank(ra, rb, n / 2);
    let (a2, b2) = (a.start + i..a.end, b.start + j..b.end);
    F::fork(
        move || merge::<F>(src, a2, b2, dst, out + n / 2),
        || merge::<F>(src, a.start..a.start + i, b.start..b.start + j, dst, out),
    );
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

/// Independent merges interleaved by [`merge_seq`]: a branch-free merge step
/// is one long dependency chain (load, compare, advance, load again), so one
/// merge keeps the core mostly waiting; three independent pieces of the same
/// merge fill that wait (1.6 ns per element instead of 3.7 on a 25M + 25M
/// merge on the benchmark machine; two lanes gave 2.0, four 1.8).
const MERGE_LANES: usize = 3;

/// Sequential merge of the sorted runs `a` and `b` into `out`.
///
/// Co-ranking cuts the output into [`MERGE_LANES`] pieces, and one loop
/// advances every piece by one element per turn. Each step is branch-free
/// (the comparison picks the element and advances an index arithmetically),
/// since on random data a branch on it is mispredicted half of the time.
fn merge_seq(a: &[u64], b: &[u64], out: &mut [u64]) {
    assert_eq!(a.len() + b.len(), out.len(), "merge: output length");
    let n = out.len();
    let cut = |l: usize| match l {
        0 => (0, 0),
        MERGE_LANES => (a.len(), b.len()),
        _ => co_rank(a, b, n * l / MERGE_LANES),
    };
    let mut lanes: [MergeLane; MERGE_LANES] = std::array::from_fn(|l| {
        let ((i0, j0), (i1, j1)) = (cut(l), cut(l + 1));
        MergeLane {
            a: i0,
            a_end: i1,
            b: j0,
            b_end: j1,
            out: i0 + j0,
        }
    });
    loop {
        // Every lane can take this many steps before one of its runs ends.
        let steps = lanes.iter().map(MergeLane::safe_steps).min().unwrap_or(0);
        if steps == 0 {
            break;
        }
        for _ in 0..steps {
            for lane in &mut lanes {
                // SAFETY: each lane has at least `steps` elements left in
                // both of its runs, and lanes write disjoint output ranges.
                unsafe { lane.step(a, b, out) };
            }
        }
    }
    for lane in &mut lanes {
        lane.finish(a, b, out);
    }
}

/// One piece of a merge: `a[a..a_end]` and `b[b..b_end]` merge into
/// `out[out..]`.
struct MergeLane {
    a: usize,
    a_end: usize,
    b: usize,
    b_end: usize,
    out: usize,
}

impl MergeLane {
    /// Steps this lane can take before one of its runs is used up.
    fn safe_steps(&self) -> usize {
        (self.a_end - self.a).min(self.b_end - self.b)
    }

    /// Moves the smaller head of the two runs to the output.
    ///
    /// SAFETY: both runs are non-empty and `out` has room.
    #[inline(always)]
    unsafe fn step(&mut self, a: &[u64], b: &[u64], out: &mut [u64]) {
        let (x, y) = unsafe { (*a.get_unchecked(self.a), *b.get_unchecked(self.b)) };
        let take_a = x <= y;
        unsafe { *out.get_unchecked_mut(self.out) = std::hint::select_unpredictable(take_a, x, y) };
        self.a += take_a as usize;
        self.b += !take_a as usize;
        self.out += 1;
    }

    /// Merges what is left of this lane (checked) and copies the tail.
    fn finish(&mut self, a: &[u64], b: &[u64], out: &mut [u64]) {
        while self.a < self.a_end && self.b < self.b_end {
            let (x, y) = (a[self.a], b[self.b]);
            let take_a = x <= y;
            out[self.out] = if take_a { x } else { y };
            self.a += take_a as usize;
            self.b += !take_a as usize;
            self.out += 1;
        }
        let rest_a = &a[self.a..self.a_end];
        out[self.out..self.out + rest_a.len()].copy_from_slice(rest_a);
        self.out += rest_a.len();
        let rest_b = &b[self.b..self.b_end];
        out[self.out..self.out + rest_b.len()].copy_from_slice(rest_b);
    }
}

/// Sorts one chunk (a leaf of the static merge sort graph).
#[task]
pub fn sort_chunk(chunk: Vec<u64>) -> Vec<u64> {
    let mut sorted = vec![0; chunk.len()];
    sort_leaf(&chunk, &mut sorted);
    sorted
}

/// Merges two sorted runs (an inner node of the static merge sort graph).
#[task]
pub fn merge_runs(a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    let mut out = vec![0; a.len() + b.len()];
    merge_seq(&a, &b, &mut out);
    out
}

/// Merge sort of `data` as a static graph: `leaves` sort tasks on equal
/// chunks, then a balanced tree of merges.
pub fn msort_graph(data: &[u64], leaves: usize) -> Dag<(), Vec<u64>> {
    let b = GraphBuilder::new();
    let chunk = data.len().div_ceil(leaves.max(1)).max(1);
    let pieces: Vec<&[u64]> = match data.len() {
        0 => vec![data],
        _ => data.chunks(chunk).collect(),
    };
    let sorted: Vec<Value<Vec<u64>>> = pieces
        .into_iter()
        .map(|c| sort_chunk::on(&b).node(b.constant(c.to_vec())))
        .collect();
    let all = b.reduce_tree(sorted, |x, y| merge_runs::on(&b).node(x, y));
    b.finish(all)
}

/// Runs the static merge sort graph under every policy and prints a table.
fn compare_policies(rt: &Runtime, data: &[u64]) -> Result<(), RunError> {
    use dagger::ir::model::HistoryModel;
    let leaves = 8 * rt.threads();
    let dag = msort_graph(data, leaves);
    let model = HistoryModel::load(&HistoryModel::default_dir()).unwrap_or_default();
    println!(
        "\nstatic graph: {leaves} sort tasks, {} merges\n",
        leaves - 1
    );
    println!("{}", dagger::PolicyRun::<()>::TABLE_HEADER);
    rt.run_under_every_policy(&dag, &(), &model, |run| {
        assert!(
            run.output.len() == data.len() && run.output.windows(2).all(|w| w[0] <= w[1]),
            "{}: not sorted",
            run.policy
        );
        println!("{}", run.row());
        Ok(())
    })?;
    if model.is_empty() {
        println!("\n(no performance model yet: run once with DAGGER_CALIBRATE=1 for predictions)");
    }
    Ok(())
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

/// Times this sort, the same algorithm on `rayon::join`, rayon's
/// `par_sort_unstable` and std's `sort_unstable` on the same data, and prints
/// a table.
///
/// Each sorter runs three times, interleaved with the others so that noise
/// from the machine spreads over all of them, and the best time counts.
/// Before timing, as much memory as the sorts will use is touched once: on a
/// virtual machine the first touch of never-used memory can cost several
/// times a normal page fault, which would otherwise fall on whichever sorter
/// happens to run first.
fn bench(rt: &Runtime, sizes: &[usize]) -> Result<(), RunError> {
    use rayon::slice::ParallelSliceMut;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(rt.threads())
        .build()
        .expect("rayon pool");
    type Sorter<'a> = (&'a str, Box<dyn Fn(Vec<u64>) -> Vec<u64> + 'a>);
    let sorters: Vec<Sorter> = vec![
        (
            "dagger msort (spawn)",
            Box::new(|v| rt.spawn(msort, (v,)).wait().expect("sort runs")),
        ),
        (
            "same msort on rayon::join",
            Box::new(|v| pool.install(|| msort_with::<RayonJoin>(v))),
        ),
        (
            "rayon par_sort_unstable",
            Box::new(|mut v| {
                pool.install(|| v.par_sort_unstable());
                v
            }),
        ),
        (
            "std sort_unstable",
            Box::new(|mut v| {
                v.sort_unstable();
                v
            }),
        ),
    ];
    print!("| n |");
    for (name, _) in &sorters {
        print!(" {name} ms |");
    }
    println!(" dagger vs rayon par_sort | dagger vs same on rayon::join |");
    println!("|---|{}---|---|", "---|".repeat(sorters.len()));
    for &n in sizes {
        let data = random_u64(n, 7);
        drop(vec![1u64; 3 * n]);
        let mut best = vec![f64::INFINITY; sorters.len()];
        for _ in 0..3 {
            for ((_, sort), best) in sorters.iter().zip(&mut best) {
                let input = data.clone();
                let t = Instant::now();
                let out = sort(input);
                *best = best.min(t.elapsed().as_secs_f64());
                assert!(out.windows(2).all(|w| w[0] <= w[1]), "not sorted");
            }
        }
        print!("| {n} |");
        for t in &best {
            print!(" {:.1} |", t * 1e3);
        }
        println!(" {:.2}x | {:.2}x |", best[2] / best[0], best[1] / best[0]);
    }
    Ok(())
}

/// The command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "mergesort",
    about = "Merge sort of random u64 with recursive spawns, checked and timed"
)]
pub struct Cli {
    /// Elements to sort.
    #[arg(default_value_t = 10_000_000, allow_negative_numbers = true)]
    pub n: usize,
    /// Prints the table against rayon and std at 10M and 100M elements
    /// instead (N is not used).
    #[arg(long)]
    pub bench: bool,
    /// Also runs merge sort as a static graph under every placement policy.
    #[arg(long)]
    pub policies: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    dagger::pipe::end_quietly_on_closed_pipe();
    let cli = <Cli as clap::Parser>::parse();
    let session = dagger::Session::start()?;
    let rt = session.runtime();
    if cli.bench {
        println!(
            "merge sort of random u64, {} threads for dagger and rayon \
             (msort: bucketed pdqsort leaves, 3-lane merges)\n",
            rt.threads()
        );
        return Ok(bench(rt, &[10_000_000, 100_000_000])?);
    }
    let n = cli.n;
    let data = random_u64(n, 7);
    let checksum: u128 = data.iter().map(|&x| x as u128).sum();
    let t = Instant::now();
    let sorted = if session.ranks() == 1 {
        println!("mergesort: {n} u64 on {} workers", rt.threads());
        rt.spawn(msort, (data,)).wait()?
    } else {
        let leaves = 4 * session.ranks() as usize * rt.threads();
        println!(
            "mergesort: {n} u64 on {} ranks: static graph of {leaves} sorts and their merges",
            session.ranks()
        );
        let (sorted, report) = session.run(&msort_graph(&data, leaves), ())?;
        if let Some(r) = report {
            println!("tasks per rank: {:?}", r.tasks_per_rank);
        }
        sorted
    };
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
    if cli.policies {
        compare_policies(rt, &random_u64(n, 7))?;
    }
    Ok(())
}
