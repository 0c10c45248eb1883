//! Scale of the schedulers: seconds to schedule large graphs, each row
//! against its target.
//!
//! ```text
//! cargo bench --bench sched_scale            # every row
//! cargo bench --bench sched_scale -- chain   # rows whose name contains "chain"
//! ```
//!
//! Rows:
//! - HEFT on a 1M-task layered DAG (DAGGEN, about 63 tasks a level, about
//!   3 parents a task) on 4 processors: target 5 s;
//! - every algorithm (`sched::all()`, static and dynamic) on a 100k-task
//!   random DAG (about 100 tasks a level, about 10 parents a task from the
//!   two levels above) on 4 processors: target 20 s for all of them
//!   together (the `total` row; each algorithm's row is its share of that
//!   target's ratio);
//! - HEFT on a 200k-task chain on 4 processors: target 1 s;
//! - every algorithm on 3 tasks and 100000 processors: target 1 s each.
//!
//! Building the graphs is not timed. The makespan column lets two runs
//! (before and after a change) be compared for equal schedules.

use dagger::ir::sched::generate::{random_dag, DaggenParams};
use dagger::ir::sched::{self, HeftScheduler, Problem, Scheduler};
use std::time::Instant;

/// One measured row.
struct Row {
    name: String,
    seconds: f64,
    target: f64,
    makespan: f64,
}

fn time(name: String, scheduler: &dyn Scheduler, problem: &Problem, target: f64) -> Row {
    let started = Instant::now();
    let schedule = scheduler.schedule(problem);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(schedule.placement.len(), problem.len(), "{name}");
    let row = Row {
        name,
        seconds,
        target,
        makespan: schedule.makespan(),
    };
    print_row(&row);
    row
}

fn print_row(row: &Row) {
    println!(
        "{:<44} {:>9.3} {:>8.1} {:>7.3} {:>14.1}",
        row.name,
        row.seconds,
        row.target,
        row.seconds / row.target,
        row.makespan
    );
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f));
    println!(
        "{:<44} {:>9} {:>8} {:>7} {:>14}",
        "row", "seconds", "target", "ratio", "makespan"
    );

    if wanted("heft layered 1M") {
        let layered = random_dag(&DaggenParams {
            n: 1_000_000,
            fat: 0.3,
            density: 0.05,
            regular: 0.8,
            jump: 1,
            processors: 4,
            seed: 11,
            ..DaggenParams::default()
        });
        time(
            "heft layered 1M tasks, 4 procs".into(),
            &HeftScheduler,
            &layered,
            5.0,
        );
    }

    let random_rows: Vec<String> = sched::all()
        .iter()
        .map(|s| format!("{} random 100k tasks, 4 procs", s.name()))
        .collect();
    if random_rows.iter().any(|r| wanted(r)) || wanted("total") {
        let random = random_dag(&DaggenParams {
            n: 100_000,
            fat: 0.4,
            density: 0.05,
            regular: 0.8,
            jump: 2,
            processors: 4,
            seed: 12,
            ..DaggenParams::default()
        });
        let edges: usize = random.succ.iter().map(Vec::len).sum();
        println!("(random 100k: {edges} edges)");
        let mut total = 0.0;
        for (s, name) in sched::all().iter().zip(&random_rows) {
            if wanted(name) || wanted("total") {
                total += time(name.clone(), s.as_ref(), &random, 20.0).seconds;
            }
        }
        print_row(&Row {
            name: "total, random 100k tasks".into(),
            seconds: total,
            target: 20.0,
            makespan: f64::NAN,
        });
    }

    if wanted("heft chain 200k") {
        let chain = random_dag(&DaggenParams {
            n: 200_000,
            fat: 0.0,
            processors: 4,
            seed: 13,
            ..DaggenParams::default()
        });
        time(
            "heft chain 200k tasks, 4 procs".into(),
            &HeftScheduler,
            &chain,
            1.0,
        );
    }

    let many_rows: Vec<String> = sched::all()
        .iter()
        .map(|s| format!("{} 3 tasks, 100000 procs", s.name()))
        .collect();
    if many_rows.iter().any(|r| wanted(r)) {
        let wide = random_dag(&DaggenParams {
            n: 3,
            processors: 100_000,
            seed: 14,
            ..DaggenParams::default()
        });
        for (s, name) in sched::all().iter().zip(&many_rows) {
            if wanted(name) {
                time(name.clone(), s.as_ref(), &wide, 1.0);
            }
        }
    }
}
