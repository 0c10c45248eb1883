//! `dagger run -n N [--hosts a,b] -- PROGRAM ARGS`: the launcher started
//! from the command line, with rank 0's status as the exit status.

use std::path::Path;
use std::process::ExitCode;

/// Starts `ranks` processes of `command[0]` (default: one per host with
/// `hosts`, else 2) and exits as rank 0 did.
pub(crate) fn run(ranks: Option<u32>, hosts: &[String], command: &[String]) -> ExitCode {
    let ranks = ranks.unwrap_or(if hosts.is_empty() {
        2
    } else {
        hosts.len() as u32
    });
    let program = Path::new(&command[0]);
    match crate::launcher::launch(ranks, hosts, program, &command[1..]) {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("dagger run: rank 0 {status}");
            ExitCode::from(status.code().map_or(1, |c| c.clamp(1, 255) as u8))
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
