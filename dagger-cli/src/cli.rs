//! The command line: clap's definitions of `dagger` and its subcommands.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Dagger for Rust: inspect and run task graphs.
#[derive(Parser)]
#[command(name = "dagger", version, about, long_about = None)]
pub(crate) struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands of `dagger`.
#[derive(Subcommand)]
pub(crate) enum Command {
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

/// The subcommands of `dagger bench`.
#[derive(Subcommand)]
pub(crate) enum Bench {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_program_after_the_double_dash() {
        let cli = Cli::try_parse_from(["dagger", "run", "-n", "3", "--", "prog", "-x"]).unwrap();
        let Command::Run {
            ranks,
            hosts,
            command,
        } = cli.command
        else {
            panic!("`dagger run` parsed as another subcommand");
        };
        assert_eq!(ranks, Some(3));
        assert!(hosts.is_empty());
        assert_eq!(command, ["prog", "-x"]);
        assert!(
            Cli::try_parse_from(["dagger", "run", "-n", "3"]).is_err(),
            "no program"
        );
    }
}
