//! Quickstart: a small sensor-data pipeline written with `#[task]` and `dag!{}`.
//!
//! Four stations each produce a day of temperature readings; every station's
//! readings are cleaned (dropping sensor glitches) and summarised in
//! parallel, the summaries are merged, and a report is printed. The same
//! graph then runs again through the dynamic front end (`spawn`), the IR is
//! printed, and the trace of the run is written for Perfetto.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use dagger::prelude::*;

/// Summary statistics of a set of readings.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Number of readings.
    pub n: u64,
    /// Sum of the readings.
    pub sum: f64,
    /// Sum of the squared readings.
    pub sum_sq: f64,
    /// Smallest reading.
    pub min: f64,
    /// Largest reading.
    pub max: f64,
}

impl Summary {
    fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }
    fn std_dev(&self) -> f64 {
        (self.sum_sq / self.n as f64 - self.mean().powi(2))
            .max(0.0)
            .sqrt()
    }
}

/// One day of readings (one per second) of station `station`: a daily cycle,
/// noise, and about one glitch (an impossible value) in a thousand.
#[task(cost = 1e-3)]
fn read_station(station: u64) -> Vec<f64> {
    let mut s = 0x2545f4914f6cdd1d ^ (station + 1).wrapping_mul(0x9e3779b97f4a7c15);
    (0..86_400)
        .map(|t| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            if s.is_multiple_of(1000) {
                -999.0
            } else {
                12.0 + station as f64
                    + 6.0 * (t as f64 / 86_400.0 * std::f64::consts::TAU).sin()
                    + noise
            }
        })
        .collect()
}

/// Drops glitches: readings outside -60..60 °C.
#[task(pure, cost = 1e-4)]
fn clean(readings: Vec<f64>) -> Vec<f64> {
    readings
        .into_iter()
        .filter(|r| (-60.0..60.0).contains(r))
        .collect()
}

/// Summarises readings.
#[task(pure, cost = 1e-4)]
fn summarise(readings: Vec<f64>) -> Summary {
    readings.iter().fold(
        Summary {
            n: 0,
            sum: 0.0,
            sum_sq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        },
        |s, &r| Summary {
            n: s.n + 1,
            sum: s.sum + r,
            sum_sq: s.sum_sq + r * r,
            min: s.min.min(r),
            max: s.max.max(r),
        },
    )
}

/// Merges two summaries.
#[task(pure)]
fn merge(a: Summary, b: Summary) -> Summary {
    Summary {
        n: a.n + b.n,
        sum: a.sum + b.sum,
        sum_sq: a.sum_sq + b.sum_sq,
        min: a.min.min(b.min),
        max: a.max.max(b.max),
    }
}

/// The quickstart takes no options: `--help` says what it does, anything
/// else is refused.
#[derive(clap::Parser)]
#[command(
    name = "quickstart",
    about = "A sensor-data pipeline as a task graph on every local core: \
             dag!{}, then the same graph through spawn, its IR and a trace"
)]
pub struct Cli {}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    dagger::pipe::end_quietly_on_closed_pipe();
    <Cli as clap::Parser>::parse();
    run()
}

/// The quickstart itself (what `main` runs once the command line is read).
pub fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Says once what it runs on (cores, GPUs, ranks); alone here.
    let session = dagger::Session::start()?;
    let rt = session.runtime();
    println!(
        "quickstart: {} worker threads (every local core)\n",
        rt.threads()
    );

    let pipeline = dag! {
        input first: u64;
        let a = summarise(clean(read_station(first)));
        let b = summarise(clean(read_station(1)));
        let c = summarise(clean(read_station(2)));
        let d = summarise(clean(read_station(3)));
        let ab = merge(a, b);
        let cd = merge(c, d);
        let all = merge(ab, cd);
        (a, all)
    };
    println!("the graph, as the IR prints it:\n{}", pipeline.graph());

    rt.start_trace();
    let (station0, all) = rt.run(&pipeline, (0,))?;
    let trace = rt.stop_trace();

    println!(
        "station 0: {} readings, mean {:.2} °C",
        station0.n,
        station0.mean()
    );
    println!(
        "all stations: {} readings, mean {:.2} °C, std dev {:.2}, min {:.2}, max {:.2}",
        all.n,
        all.mean(),
        all.std_dev(),
        all.min,
        all.max
    );

    // The same computation through the dynamic front end.
    let parts: Vec<Handle<Summary>> = (0..4)
        .map(|s| {
            let raw = rt.spawn(read_station, (s,));
            let cleaned = rt.spawn(clean, (raw,));
            rt.spawn(summarise, (cleaned,))
        })
        .collect();
    let mut it = parts.into_iter();
    let (p0, p1, p2, p3) = (
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
    );
    let total = rt
        .spawn(
            merge,
            (rt.spawn(merge, (p0, p1)), rt.spawn(merge, (p2, p3))),
        )
        .wait()?;
    assert_eq!(total, all, "dag! and spawn must agree");
    println!("spawned version agrees: {} readings", total.n);

    let path = std::env::temp_dir().join("dagger-quickstart.trace.json");
    trace.write_chrome_json(&path)?;
    println!(
        "\ntrace of the dag! run: {} tasks on {} workers, written to {} (open it in https://ui.perfetto.dev)",
        trace.events.len(),
        trace.workers,
        path.display()
    );
    Ok(())
}
