//! The `dagger` command-line tool: `dagger_cli::main`, linked with the
//! facade so that `dagger tasks` lists the tasks of its crates.

// The facade links `dagger-nn` (and the rest), whose `#[task]`s `dagger tasks` lists.
use dagger as _;

fn main() -> std::process::ExitCode {
    dagger_cli::main()
}
