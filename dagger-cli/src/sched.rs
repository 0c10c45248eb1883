//! `dagger sched` (the schedulers on a problem file) and `dagger bench
//! sched` (the schedulers compared on suites of graphs).

use dagger_ir::model::Platform;
use dagger_ir::sched;
use std::path::Path;

/// The most tasks (or pipeline slots) a `--gantt` chart draws: above it an
/// SVG with a box per task runs to hundreds of megabytes.
pub(crate) const GANTT_MAX_TASKS: usize = 5_000;

/// The error of a `--gantt` chart of `tasks` boxes, with what to use instead.
pub(crate) fn gantt_too_large(tasks: usize) -> String {
    format!(
        "--gantt draws at most {GANTT_MAX_TASKS} tasks and this has {tasks}; \
         use --trace out.json instead and open it in Perfetto (ui.perfetto.dev) or chrome://tracing"
    )
}

/// `dagger sched`: runs the chosen static schedulers on a problem file.
pub(crate) fn schedule(
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
            let platform =
                Platform::from_json(&read(p)?).map_err(|e| format!("{}: {e}", p.display()))?;
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

/// `dagger bench sched`: every static scheduler on `graphs` random graphs
/// and on the structured families, as a table (or CSV).
pub(crate) fn bench(graphs: usize, csv: bool) -> Result<(), String> {
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
        println!("{title}; better/equal/worse: makespan against HEFT's on the same graph\n");
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
