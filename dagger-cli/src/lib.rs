//! The `dagger` command-line tool of Dagger for Rust, and the library
//! modules it is made of that programs use too (re-exported by the facade
//! `dagger`): [`pipe`] (ending quietly on a closed pipe), [`platform`]
//! (this machine's workers and GPUs) and, with the `cluster` feature,
//! `launcher` (`dagger run`).
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
//!
//! The binary itself is the facade's (`dagger/src/bin/dagger.rs` calls
//! [`main`]), so that it links the facade's crates and `dagger tasks`
//! lists their tasks.
//!
//! # Features
//!
//! - `cluster` (default): the command-line tool ([`main`]) and `launcher`,
//!   which need `dagger-cluster`. Without it the crate is [`pipe`] and
//!   [`platform`] alone, which the facade always has.
//! - `cuda`: GPUs in [`platform`] (`dagger-cuda`).

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "cluster")]
mod cli;
#[cfg(feature = "cluster")]
mod graph;
#[cfg(feature = "cluster")]
mod info;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod launcher;
pub mod pipe;
#[cfg(feature = "cluster")]
mod pipeline;
pub mod platform;
#[cfg(feature = "cluster")]
mod run;
#[cfg(feature = "cluster")]
mod sched;

/// The `dagger` command-line tool: parses the arguments, runs the
/// subcommand and returns its exit status (errors are printed to stderr).
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    use std::process::ExitCode;
    pipe::end_quietly_on_closed_pipe();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("DAGGER_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli::Cli::parse().command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand: its exit status, or the error to print.
#[cfg(feature = "cluster")]
fn dispatch(command: cli::Command) -> Result<std::process::ExitCode, String> {
    use cli::{Bench, Command};
    match command {
        Command::Run {
            ranks,
            hosts,
            command,
        } => return Ok(run::run(ranks, &hosts, &command)),
        Command::Ir { file, dot, passes } => graph::show(&file, dot, passes)?,
        Command::Tasks => info::tasks(),
        Command::Perfmodel { dir } => info::perfmodel(dir)?,
        Command::Platform => info::platform()?,
        Command::Sched {
            file,
            algo,
            json,
            gantt,
            trace,
            platform,
        } => sched::schedule(
            &file,
            platform.as_deref(),
            &algo,
            json,
            gantt.as_deref(),
            trace.as_deref(),
        )?,
        Command::Bench {
            what: Bench::Sched { graphs, csv },
        } => sched::bench(graphs, csv)?,
        Command::Pipeline {
            stages,
            micro_batches,
            forward,
            backward,
            transfer,
            gantt,
        } => pipeline::pipeline(
            stages,
            micro_batches,
            &forward,
            backward,
            transfer,
            gantt.as_deref(),
        )?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}
