//! The `dagger` command-line tool.
//!
//! ```text
//! dagger ir graph.json            verify a graph file and print its IR text
//! dagger ir graph.json --dot      print it as Graphviz dot instead
//! dagger ir graph.json --passes   run the standard passes first
//! dagger tasks                    list the tasks registered in this binary
//! ```
//!
//! Later subcommands (scheduling, perf models, the cluster launcher) join here.

use clap::{Parser, Subcommand};
use dagger::ir::{self, PassCtx, PassManager};
use std::path::PathBuf;
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("DAGGER_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
        Command::Ir { file, dot, passes } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let mut graph = ir::from_json(&text).map_err(|e| format!("{}: {e}", file.display()))?;
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
        Command::Tasks => {
            for def in dagger::task_registry() {
                let sig = def.sig();
                println!("{}({}) -> {}", sig.name, sig.params.join(", "), sig.output);
            }
            Ok(())
        }
    }
}
