//! Word count as MapReduce: a graph built in a loop with [`GraphBuilder`].
//!
//! A corpus is generated deterministically (words drawn from a Zipf-like
//! distribution by a seeded generator), cut into chunks; a `count_words`
//! task per chunk counts its words (map), and `merge_counts` tasks combine the
//! partial counts pairwise (tree reduce). The result is checked against a
//! sequential count of the same corpus.
//!
//! ```text
//! cargo run --release --example wordcount -- [MEGABYTES] [CHUNKS]
//! cargo run --release --example wordcount -- [MEGABYTES] [CHUNKS] --policies
//! cargo build --release --example wordcount --bin dagger
//! target/release/dagger run -n 3 -- target/release/examples/wordcount   (three processes)
//! ```
//!
//! The same binary runs alone or as every rank of a cluster: `Session::start`
//! makes the other ranks serve, and rank 0 runs the graph across all of them.
//!
//! With `--policies` the graph also runs under each dynamic placement policy
//! (`Runtime::run_with_policy`) and placed by each static scheduler
//! (`Runtime::run_scheduled`); the table compares the measured time with
//! the makespan the scheduler predicted from the performance model (run once
//! with `DAGGER_CALIBRATE=1` to fill it; without it, cost hints are used).

use clap::builder::RangedU64ValueParser;
use dagger::prelude::*;
use dagger::GraphBuilder;
use std::collections::HashMap;
use std::time::Instant;

/// Word counts.
pub type Counts = HashMap<String, u64>;

/// Counts the words of one chunk of text.
#[task(cost = 1e-8 * chunk.len() as f64)]
pub fn count_words(chunk: String) -> Counts {
    let mut counts = Counts::new();
    for w in chunk.split_ascii_whitespace() {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Adds two partial counts.
#[task(pure)]
pub fn merge_counts(a: Counts, b: Counts) -> Counts {
    let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    for (w, n) in small {
        *big.entry(w).or_insert(0) += n;
    }
    big
}

/// A deterministic corpus of about `bytes` bytes: a 5000-word vocabulary
/// drawn with Zipf-like frequencies by an xorshift generator.
pub fn corpus(bytes: usize, seed: u64) -> String {
    let vocab: Vec<String> = (0..5000).map(|i| format!("w{i:x}")).collect();
    let mut state = seed | 1;
    let mut text = String::with_capacity(bytes + 16);
    while text.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Inverse of a 1/x density on [1, 5000]: frequent words get small ranks.
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        let rank = (5000f64.powf(u) as usize).saturating_sub(1).min(4999);
        text.push_str(&vocab[rank]);
        text.push(if state.is_multiple_of(13) { '\n' } else { ' ' });
    }
    text
}

/// Cuts `text` into `n` chunks at whitespace.
pub fn chunks(text: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut rest = text;
    for k in (1..=n).rev() {
        let mut cut = rest.len() / k;
        while cut < rest.len() && !rest.as_bytes()[cut].is_ascii_whitespace() {
            cut += 1;
        }
        out.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    out
}

/// The MapReduce graph: one map per chunk, then a balanced tree of merges.
pub fn wordcount_graph(parts: Vec<String>) -> Dag<(), Counts> {
    let b = GraphBuilder::new();
    let maps: Vec<Value<Counts>> = parts
        .into_iter()
        .map(|c| {
            let chunk = b.constant(c);
            count_words::on(&b).node(chunk)
        })
        .collect();
    let total = b.reduce_tree(maps, |x, y| merge_counts::on(&b).node(x, y));
    b.finish(total)
}

/// The command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "wordcount",
    about = "Word count as MapReduce: map tasks on chunks of a generated corpus, a tree of merges"
)]
pub struct Cli {
    /// MiB of text in the corpus.
    #[arg(
        default_value_t = 64,
        value_parser = RangedU64ValueParser::<usize>::from(1..=65_536),
        allow_negative_numbers = true
    )]
    pub megabytes: usize,
    /// Chunks of the corpus, one map task each.
    #[arg(
        default_value_t = 64,
        value_parser = RangedU64ValueParser::<usize>::from(1..=1_000_000),
        allow_negative_numbers = true
    )]
    pub chunks: usize,
    /// Also runs the graph under every placement policy, measured against
    /// the schedulers' predictions.
    #[arg(long)]
    pub policies: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    dagger::pipe::end_quietly_on_closed_pipe();
    let cli = <Cli as clap::Parser>::parse();
    let session = dagger::Session::start()?;
    let (megabytes, n_chunks) = (cli.megabytes, cli.chunks);

    let text = corpus(megabytes << 20, 42);
    let rt = session.runtime();
    println!(
        "wordcount: {} MiB corpus, {n_chunks} map tasks, {} rank(s) of {} workers",
        text.len() >> 20,
        session.ranks(),
        rt.threads()
    );

    let t = Instant::now();
    let dag = wordcount_graph(chunks(&text, n_chunks));
    let (counts, report) = session.run(&dag, ())?;
    let parallel = t.elapsed();
    if let Some(r) = report {
        println!("tasks per rank: {:?}", r.tasks_per_rank);
    }

    let t = Instant::now();
    let expected = count_words(text.clone());
    let sequential = t.elapsed();

    assert_eq!(
        counts, expected,
        "MapReduce counts differ from the sequential count"
    );
    let total: u64 = counts.values().sum();
    let mut top: Vec<_> = counts.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("{total} words, {} distinct; most frequent:", counts.len());
    for (w, n) in top.iter().take(5) {
        println!("  {w:>6} {n}");
    }
    println!(
        "graph: {:.1} ms, sequential: {:.1} ms, speed-up {:.2}x; counts verified",
        parallel.as_secs_f64() * 1e3,
        sequential.as_secs_f64() * 1e3,
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );
    if cli.policies {
        compare_policies(rt, &dag, &expected)?;
    }
    Ok(())
}

/// Runs `dag` under every placement policy and prints measured against
/// predicted times.
fn compare_policies(
    rt: &Runtime,
    dag: &Dag<(), Counts>,
    expected: &Counts,
) -> Result<(), RunError> {
    use dagger::ir::model::HistoryModel;
    let model = HistoryModel::load(&HistoryModel::default_dir()).unwrap_or_default();
    println!(
        "\n(performance model: {} entries)\n",
        model.entries().count()
    );
    println!("{}", dagger::PolicyRun::<()>::TABLE_HEADER);
    rt.run_under_every_policy(dag, &(), &model, |run| {
        assert_eq!(&run.output, expected, "{} changed the result", run.policy);
        println!("{}", run.row());
        Ok(())
    })
}
