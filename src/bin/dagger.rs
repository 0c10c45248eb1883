//! The `dagger` command-line tool.
//!
//! ```text
//! dagger ir graph.json            verify a graph file and print its IR text
//! dagger ir graph.json --dot      print it as Graphviz dot instead
//! dagger ir graph.json --passes   run the standard passes first
//! dagger tasks                    list the tasks registered in this binary
//! dagger sched dag.json --algo heft,cpop|all [--json] [--gantt out.svg] [--trace out.json]
//!                                 static schedules of a cost-annotated DAG
//! dagger perfmodel [--dir D]      the measured task times (DAGGER_CALIBRATE=1)
//! dagger platform                 probe this machine's workers and GPUs, print the platform JSON
//! dagger run -n N [--hosts a,b] -- PROGRAM ARGS
//!                                 start N processes of PROGRAM as one cluster
//! dagger bench sched [--graphs N] [--csv]
//!                                 the static schedulers on random graphs
//! dagger pipeline --stages K --micro-batches M [--gantt p.svg]
//!                                 GPipe and 1F1B simulated: step time, bubbles, peaks
//! ```
//!
//! Every subcommand takes `--help`; errors name the file, node or flag at
//! fault and exit with status 1 (2 for a bad command line).

use clap::{Parser, Subcommand};
use dagger::ir::{self, sched, PassCtx, PassManager};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Dagger for Rust: inspect and run task graphs.
#[derive(Parser)]
#[command(name = "dagger", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a JSON graph file and print its IR (text form, or Graphviz dot).
    Ir {
        /// The graph file (JSON; see `dagger_ir::json` for the format).
        file: PathBuf,
        /// Print Graphviz dot instead of the text form.
        #[arg(long)]
        dot: bool,
        /// Run the standard passes (dce, cse, fuse) before printing.
        #[arg(long)]
        passes: bool,
    },
    /// List the tasks registered in this binary.
    Tasks,
    /// Show the history-based performance model (task times measured with DAGGER_CALIBRATE=1).
    Perfmodel {
        /// The model's directory (default: DAGGER_PERFMODEL_DIR, else the user's cache dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Probe this machine's workers and print the platform as JSON (save it
    /// and point DAGGER_PLATFORM at it to schedule with it instead of probing).
    Platform,
    /// Start N processes of PROGRAM on this machine as one cluster (rank 0
    /// drives, the others serve); exits with rank 0's status.
    Run {
        /// Number of processes (default: one per host with --hosts, else 2).
        #[arg(short = 'n', long = "ranks")]
        ranks: Option<u32>,
        /// Run the ranks on these hosts (comma-separated; through ssh; rank 0
        /// on the first), in turn, instead of on this machine.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// The program and its arguments (after `--`).
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Simulate pipeline-parallel schedules (GPipe and 1F1B) of K stages and
    /// M micro-batches: step time, bubble fraction against (K-1)/(M+K-1),
    /// and the micro-batches' activations each stage holds at most.
    Pipeline {
        /// Stages K.
        #[arg(long, default_value_t = 4)]
        stages: usize,
        /// Micro-batches M per step.
        #[arg(long = "micro-batches", default_value_t = 8)]
        micro_batches: usize,
        /// Forward time of each stage per micro-batch, comma-separated
        /// (default: 1 for every stage).
        #[arg(long, value_delimiter = ',')]
        forward: Vec<f64>,
        /// Backward time as a multiple of forward.
        #[arg(long, default_value_t = 2.0)]
        backward: f64,
        /// Time to pass an activation or a gradient between stages.
        #[arg(long, default_value_t = 0.0)]
        transfer: f64,
        /// Also write an SVG Gantt chart of both schedules here.
        #[arg(long)]
        gantt: Option<PathBuf>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
    /// Schedule a cost-annotated DAG: static list schedulers (HEFT, CPOP, PEFT,
    /// lookahead) and simulated dynamic policies (eager, work stealing, dmda, ...).
    ///
    /// The file: {"processors": P, "tasks": [{"id": "n1", "cost": [c0, c1, ..]}, ..],
    /// "edges": [{"from": "n1", "to": "n2", "comm": c}, ..]}; cost[p] is the task's
    /// time on processor p, comm is paid only between different processors.
    Sched {
        /// The problem file.
        file: PathBuf,
        /// Comma-separated algorithms (heft, cpop, peft, lookahead, eager,
        /// random, round-robin, work-stealing, dmda, dmdas), or `all`.
        #[arg(long, default_value = "all")]
        algo: String,
        /// Print one JSON object keyed by algorithm instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write an SVG Gantt chart of the schedules here.
        #[arg(long)]
        gantt: Option<PathBuf>,
        /// Also write the schedules here as Chrome trace JSON (Perfetto),
        /// one process per algorithm; one time unit of the file is 1 us.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Read the problem against this platform file (what `dagger
        /// platform` prints). Its processors are the problem's; a task may
        /// then give one cost, `"cost": [x]`, its time at speed 1.0, which
        /// each processor divides by its speed; an edge may give `"bytes": n`
        /// instead of `"comm"`, costed over the platform's links
        /// (`latency + n / bandwidth`).
        #[arg(long)]
        platform: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Every static scheduler on a suite of random DAGGEN graphs (CCR 0.1 to
    /// 10, 2 to 16 processors, heterogeneity 0.1 to 2) and on structured
    /// families: mean SLR, mean speedup, and how often each is better than,
    /// equal to, or worse than HEFT.
    Sched {
        /// Number of random graphs.
        #[arg(long, default_value_t = 1000)]
        graphs: usize,
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
}

fn main() -> ExitCode {
    dagger::pipe::end_quietly_on_closed_pipe();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("DAGGER_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::Run {
        ranks,
        hosts,
        command,
    } = &cli.command
    {
        let ranks = ranks.unwrap_or(if hosts.is_empty() {
            2
        } else {
            hosts.len() as u32
        });
        let program = std::path::Path::new(&command[0]);
        return match dagger::launcher::launch(ranks, hosts, program, &command[1..]) {
            Ok(status) if status.success() => ExitCode::SUCCESS,
            Ok(status) => {
                eprintln!("dagger run: rank 0 {status}");
                ExitCode::from(status.code().map_or(1, |c| c.clamp(1, 255) as u8))
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        };
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Run { .. } => unreachable!("handled in main"),
        Command::Ir { file, dot, passes } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let mut graph = ir::from_json(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            if graph.node_count() == 0 {
                return Err(format!("{}: the graph has no nodes", file.display()));
            }
            if passes {
                for report in PassManager::standard()
                    .run(&mut graph, &PassCtx::default())
                    .map_err(|e| e.to_string())?
                {
                    eprintln!("// {}: {} changed", report.pass, report.changed);
                }
            }
            if dot {
                print!("{}", ir::to_dot(&graph));
            } else {
                print!("{}", ir::to_text(&graph));
            }
            Ok(())
        }
        Command::Sched {
            file,
            algo,
            json,
            gantt,
            trace,
            platform,
        } => schedule(
            &file,
            platform.as_deref(),
            &algo,
            json,
            gantt.as_deref(),
            trace.as_deref(),
        ),
        Command::Pipeline {
            stages,
            micro_batches,
            forward,
            backward,
            transfer,
            gantt,
        } => pipeline(
            stages,
            micro_batches,
            &forward,
            backward,
            transfer,
            gantt.as_deref(),
        ),
        Command::Bench {
            what: Bench::Sched { graphs, csv },
        } => {
            let random = sched::compare::random_suite(graphs);
            let structured: Vec<sched::Problem> = sched::families::structured_suite()
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            let suites = [
                (format!("{graphs} random DAGGEN graphs"), random),
                (format!("{} structured graphs (tiled Cholesky, Gaussian elimination, FFT, MapReduce, merge sort)", structured.len()), structured),
            ];
            if csv {
                println!("suite,algo,mean_slr,mean_speedup,better_pct,equal_pct,worse_pct");
            }
            for (k, (title, problems)) in suites.iter().enumerate() {
                let rows = sched::compare::compare(problems, &sched::all());
                if csv {
                    for r in &rows {
                        println!(
                            "{},{},{:.4},{:.4},{:.1},{:.1},{:.1}",
                            ["random", "structured"][k],
                            r.algo,
                            r.mean_slr,
                            r.mean_speedup,
                            r.better,
                            r.equal,
                            r.worse
                        );
                    }
                    continue;
                }
                println!(
                    "{title}; better/equal/worse: makespan against HEFT's on the same graph\n"
                );
                println!("| algo | mean SLR | mean speedup | better | equal | worse |");
                println!("|---|---|---|---|---|---|");
                for r in &rows {
                    println!(
                        "| {} | {:.3} | {:.3} | {:.1}% | {:.1}% | {:.1}% |",
                        r.algo, r.mean_slr, r.mean_speedup, r.better, r.equal, r.worse
                    );
                }
                println!();
            }
            Ok(())
        }
        Command::Platform => {
            if !cfg!(feature = "cuda") {
                eprintln!("dagger: built without the `cuda` feature: the platform has no GPU");
            }
            let platform = dagger::platform::local_platform(&dagger::Runtime::new());
            let json = serde_json::to_string_pretty(&platform).map_err(|e| e.to_string())?;
            println!("{json}");
            Ok(())
        }
        Command::Perfmodel { dir } => {
            let dir = dir.unwrap_or_else(ir::model::HistoryModel::default_dir);
            let model = ir::model::HistoryModel::load(&dir).map_err(|e| e.to_string())?;
            println!("performance model in {}", dir.display());
            if model.is_empty() {
                println!("(empty: run a program with DAGGER_CALIBRATE=1 to measure its tasks)");
            }
            println!(
                "{:<40} {:<7} {:>6} {:>8} {:>14} {:>14} {:>14}",
                "task", "kind", "size", "runs", "mean (s)", "stddev (s)", "result (B)"
            );
            for (task, kind, bucket, stats) in model.entries() {
                let size = if bucket == 0 {
                    "-".to_string()
                } else {
                    format!("<2^{bucket}")
                };
                let result = match stats.output_count {
                    0 => "-".to_string(),
                    _ => format!("{:.0}", stats.output_bytes),
                };
                println!(
                    "{task:<40} {kind:<7} {size:>6} {:>8} {:>14.3e} {:>14.3e} {result:>14}",
                    stats.count,
                    stats.mean,
                    stats.stddev()
                );
            }
            Ok(())
        }
        Command::Tasks => {
            let defs = dagger::task_registry();
            println!(
                "{} tasks registered in this binary (a program registers its own with #[task])",
                defs.len()
            );
            for def in defs {
                let sig = def.sig();
                println!("{}({}) -> {}", sig.name, sig.params.join(", "), sig.output);
            }
            Ok(())
        }
    }
}

/// The most tasks (or pipeline slots) a `--gantt` chart draws: above it an
/// SVG with a box per task runs to hundreds of megabytes.
const GANTT_MAX_TASKS: usize = 5_000;

/// The most stages x micro-batches `dagger pipeline` simulates: its memory
/// grows with the product (about 110 MB at this bound, 400 MB at 1M).
const PIPELINE_MAX_SLOTS: usize = 250_000;

/// The error of a `--gantt` chart of `tasks` boxes, with what to use instead.
fn gantt_too_large(tasks: usize) -> String {
    format!(
        "--gantt draws at most {GANTT_MAX_TASKS} tasks and this has {tasks}; \
         use --trace out.json instead and open it in Perfetto (ui.perfetto.dev) or chrome://tracing"
    )
}

/// `dagger sched`: runs the chosen static schedulers on a problem file.
fn schedule(
    file: &Path,
    platform: Option<&Path>,
    algo: &str,
    json: bool,
    gantt: Option<&Path>,
    trace: Option<&Path>,
) -> Result<(), String> {
    let read = |f: &Path| {
        std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))
    };
    let text = read(file)?;
    let problem = match platform {
        Some(p) => {
            let platform = dagger::ir::model::Platform::from_json(&read(p)?)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            sched::Problem::from_json_on(&text, &platform)
        }
        None => sched::Problem::from_json(&text),
    }
    .map_err(|e| format!("{}: {e}", file.display()))?;
    if problem.is_empty() {
        return Err(format!(
            "{}: the problem has no tasks (nothing to schedule)",
            file.display()
        ));
    }
    if gantt.is_some() && problem.len() > GANTT_MAX_TASKS {
        return Err(gantt_too_large(problem.len()));
    }
    let schedulers = if algo == "all" {
        sched::all()
    } else {
        algo.split(',')
            .map(|name| {
                sched::by_name(name.trim()).ok_or_else(|| {
                    let known: Vec<&str> = sched::all().iter().map(|s| s.name()).collect();
                    format!(
                        "unknown algorithm `{}` (known: {}, or all)",
                        name.trim(),
                        known.join(", ")
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    // A long run says how far it is on stderr (after two quiet seconds).
    let results: Vec<(&str, sched::Schedule)> = schedulers
        .iter()
        .map(|s| {
            let meter = sched::progress::StderrMeter::new(s.name());
            let report = |done, total| meter.report(done, total);
            let schedule = s.schedule_with_progress(&problem, &sched::Progress::new(&report));
            (s.name(), schedule)
        })
        .collect();
    if json {
        let mut out = serde_json::Map::new();
        for (name, s) in &results {
            out.insert(
                name.to_string(),
                serde_json::json!({
                    "makespan": s.makespan(),
                    "slr": sched::slr(&problem, s),
                    "speedup": sched::speedup(&problem, s),
                    "schedule": s.slots(&problem),
                }),
            );
        }
        println!("{}", serde_json::Value::Object(out));
    } else {
        println!(
            "{:<14} {:>12} {:>8} {:>8}",
            "algo", "makespan", "slr", "speedup"
        );
        for (name, s) in &results {
            println!(
                "{name:<14} {:>12.3} {:>8.3} {:>8.3}",
                s.makespan(),
                sched::slr(&problem, s),
                sched::speedup(&problem, s)
            );
        }
    }
    if let Some(path) = gantt {
        let named: Vec<(&str, &sched::Schedule)> = results.iter().map(|(n, s)| (*n, s)).collect();
        std::fs::write(path, sched::gantt::to_svg(&problem, &named))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("Gantt chart written to {}", path.display());
    }
    if let Some(path) = trace {
        let named: Vec<(&str, &[String], &sched::Schedule)> = results
            .iter()
            .map(|(n, s)| (*n, problem.ids.as_slice(), s))
            .collect();
        std::fs::write(
            path,
            sched::chrome::to_chrome_json(problem.processors, &named, 1.0),
        )
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("Chrome trace written to {}", path.display());
    }
    Ok(())
}

/// `dagger pipeline`: both schedules simulated, as a table (and a chart).
fn pipeline(
    stages: usize,
    micro_batches: usize,
    forward: &[f64],
    backward: f64,
    transfer: f64,
    gantt: Option<&std::path::Path>,
) -> Result<(), String> {
    use dagger::ir::sched::pipeline::{bubble_formula, simulate, PipelineKind};
    if stages == 0 || micro_batches == 0 {
        return Err("--stages and --micro-batches must be at least 1".into());
    }
    if stages.saturating_mul(micro_batches) > PIPELINE_MAX_SLOTS {
        return Err(format!(
            "--stages {stages} x --micro-batches {micro_batches} is {} stage-micro-batches, \
             above the {PIPELINE_MAX_SLOTS} this simulation holds in memory",
            stages as u128 * micro_batches as u128
        ));
    }
    if gantt.is_some() && 2 * stages * micro_batches > GANTT_MAX_TASKS {
        return Err(gantt_too_large(2 * stages * micro_batches));
    }
    let forward: Vec<f64> = if forward.is_empty() {
        vec![1.0; stages]
    } else {
        forward.to_vec()
    };
    if forward.len() != stages {
        return Err(format!(
            "--forward gives {} times for {stages} stages",
            forward.len()
        ));
    }
    if forward
        .iter()
        .chain([&backward, &transfer])
        .any(|t| !t.is_finite() || *t < 0.0)
    {
        return Err("times must be finite and not negative".into());
    }
    let back: Vec<f64> = forward.iter().map(|f| f * backward).collect();
    // Times are in the units of --forward (seconds if those are seconds).
    println!(
        "| schedule | step time (units of --forward) | bubble (idle share) | (K-1)/(M+K-1) | peak activations per stage (micro-batches) |"
    );
    println!("|---|---|---|---|---|");
    let mut charts = Vec::new();
    for kind in [PipelineKind::GPipe, PipelineKind::OneFOneB] {
        let s = simulate(kind, &forward, &back, micro_batches, transfer);
        let peaks: Vec<usize> = (0..stages).map(|st| s.peak_activations(st)).collect();
        println!(
            "| {kind:?} | {:.3} | {:.1}% | {:.1}% | {peaks:?} |",
            s.makespan(),
            100.0 * s.bubble_fraction(),
            100.0 * bubble_formula(stages, micro_batches)
        );
        let (schedule, labels) = s.to_schedule();
        charts.push(sched::gantt::Chart {
            title: format!("{kind:?}"),
            processors: stages,
            labels,
            schedule,
        });
    }
    if let Some(path) = gantt {
        std::fs::write(
            path,
            sched::gantt::draw(&charts, sched::gantt::TimeUnit::Abstract),
        )
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("Gantt chart: {}", path.display());
    }
    Ok(())
}
