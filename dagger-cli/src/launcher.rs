//! `dagger run -n N [--hosts a,b] -- PROGRAM ARGS`: start a cluster.
//!
//! The launcher makes a fresh cluster token, picks a free loopback port for
//! rank 0's bootstrap listener (with `--hosts`: port [`HOSTS_PORT`] on the
//! first host, where rank 0 runs; rank `r` runs on host `r mod hosts`,
//! started by `ssh -o BatchMode=yes host env VARS PROGRAM ARGS`, so the
//! program must be at the same path on every host), and starts `N` copies of the program with
//! `DAGGER_RANK`, `DAGGER_SIZE`, `DAGGER_COORDINATOR` and
//! `DAGGER_CLUSTER_TOKEN` set (see [`dagger_cluster::cluster::ClusterEnv`]).
//! Each line a rank prints is passed on prefixed with `[rank r]`. The run's
//! result is rank 0's: when rank 0 exits, the others get [`GRACE`] to finish
//! (they see rank 0's shutdown) and are then killed. A serving rank that
//! dies is reported, to the terminal and to rank 0 (so that rank 0 does not
//! wait for it to join, nor for its heartbeats to stop), but does not end
//! the run: rank 0 carries on without it.

use dagger_cluster::cluster::{new_token, report_gone};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the other ranks may take to exit after rank 0 has.
pub const GRACE: Duration = Duration::from_secs(5);

/// How long the launcher tries to tell rank 0 of a failed rank (rank 0 may
/// still be starting).
const REPORT_WITHIN: Duration = Duration::from_secs(60);

/// Rank 0's bootstrap port when the ranks run on several hosts.
pub const HOSTS_PORT: u16 = 29_470;

/// The command that starts `rank`: the program itself, or `ssh` to its host.
pub fn rank_command(
    rank: u32,
    ranks: u32,
    hosts: &[String],
    coordinator: &str,
    token: &str,
    program: &Path,
    args: &[String],
) -> Command {
    let vars = [
        ("DAGGER_RANK", rank.to_string()),
        ("DAGGER_SIZE", ranks.to_string()),
        ("DAGGER_COORDINATOR", coordinator.to_string()),
        ("DAGGER_CLUSTER_TOKEN", token.to_string()),
    ];
    if hosts.is_empty() {
        let mut c = Command::new(program);
        c.args(args).envs(vars);
        return c;
    }
    let mut c = Command::new("ssh");
    c.args([
        "-o",
        "BatchMode=yes",
        &hosts[rank as usize % hosts.len()],
        "env",
    ]);
    c.args(vars.iter().map(|(k, v)| format!("{k}={}", shell_quote(v))));
    c.arg(shell_quote(&program.to_string_lossy()));
    c.args(args.iter().map(|a| shell_quote(a)));
    c
}

/// Quotes `s` for the remote shell `ssh` hands its command to.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Starts `ranks` copies of `program` with `args` as one cluster (on
/// `hosts` if any, else on this machine) and waits for rank 0. Returns rank
/// 0's exit status.
pub fn launch(
    ranks: u32,
    hosts: &[String],
    program: &Path,
    args: &[String],
) -> Result<ExitStatus, String> {
    if ranks == 0 {
        return Err("-n must be at least 1".into());
    }
    let coordinator = match hosts.first() {
        Some(first) => format!("{first}:{HOSTS_PORT}"),
        None => free_loopback_port()?.to_string(),
    };
    let token = new_token();
    let mut children = Vec::new();
    for rank in 0..ranks {
        let mut child = rank_command(rank, ranks, hosts, &coordinator, &token, program, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start rank {rank} ({}): {e}", program.display()))?;
        forward(child.stdout.take(), rank, false);
        forward(child.stderr.take(), rank, true);
        children.push(child);
    }
    wait_for_rank_zero(&mut children, &coordinator, &token)
}

/// A loopback address with a port free right now.
fn free_loopback_port() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Copies a rank's output, line by line, prefixed with its rank.
fn forward(stream: Option<impl Read + Send + 'static>, rank: u32, to_stderr: bool) {
    let Some(stream) = stream else { return };
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if to_stderr {
                let _ = writeln!(std::io::stderr().lock(), "[rank {rank}] {line}");
            } else {
                let _ = writeln!(std::io::stdout().lock(), "[rank {rank}] {line}");
            }
        }
    });
}

/// Tells rank 0 (on its own thread, not to hold up the launcher) that
/// `rank`'s process has failed with `status`.
fn tell_rank_zero(coordinator: &str, token: &str, rank: u32, status: ExitStatus) {
    let Some(address) = std::net::ToSocketAddrs::to_socket_addrs(coordinator)
        .ok()
        .and_then(|mut a| a.next())
    else {
        return;
    };
    let token = token.as_bytes().to_vec();
    std::thread::spawn(move || {
        // Best effort: rank 0 may be ending too; its heartbeats notice anyway.
        let why = format!("dagger run: its process ended ({status})");
        let _ = report_gone(address, &token, rank, &why, REPORT_WITHIN);
    });
}

/// Waits for rank 0, reporting other ranks that end early (to rank 0 at
/// `coordinator` too); then gives the rest [`GRACE`] and kills what is left.
fn wait_for_rank_zero(
    children: &mut [Child],
    coordinator: &str,
    token: &str,
) -> Result<ExitStatus, String> {
    let mut reported = vec![false; children.len()];
    let status = loop {
        let (zero, others) = children.split_first_mut().expect("rank 0 runs");
        for (rank, child) in others.iter_mut().enumerate().map(|(k, c)| (k + 1, c)) {
            if !reported[rank] {
                if let Ok(Some(s)) = child.try_wait() {
                    reported[rank] = true;
                    if !s.success() {
                        eprintln!("dagger run: rank {rank} ended early ({s})");
                        if matches!(zero.try_wait(), Ok(None)) {
                            tell_rank_zero(coordinator, token, rank as u32, s);
                        }
                    }
                }
            }
        }
        match children[0].try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for rank 0: {e}")),
        }
    };
    let deadline = Instant::now() + GRACE;
    for (rank, child) in children.iter_mut().enumerate().skip(1) {
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(child.try_wait(), Ok(None)) {
            eprintln!("dagger run: rank {rank} still running {GRACE:?} after rank 0; killing it");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    // Let the forwarding threads print the last lines.
    std::thread::sleep(Duration::from_millis(50));
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(c: &Command) -> Vec<String> {
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn ranks_start_locally_or_through_ssh_on_their_host() {
        let args = vec!["--size".to_string(), "it's".to_string()];
        let local = rank_command(
            1,
            2,
            &[],
            "127.0.0.1:9",
            "tok",
            Path::new("/bin/prog"),
            &args,
        );
        assert_eq!(words(&local), ["/bin/prog", "--size", "it's"]);
        let envs: Vec<_> = local
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(envs.contains(&"DAGGER_RANK".to_string()), "{envs:?}");
        let hosts = vec!["a".to_string(), "b".to_string()];
        let remote = rank_command(
            3,
            4,
            &hosts,
            "a:29470",
            "tok",
            Path::new("/bin/prog"),
            &args,
        );
        assert_eq!(
            words(&remote),
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "b",
                "env",
                "DAGGER_RANK='3'",
                "DAGGER_SIZE='4'",
                "DAGGER_COORDINATOR='a:29470'",
                "DAGGER_CLUSTER_TOKEN='tok'",
                "'/bin/prog'",
                "'--size'",
                "'it'\\''s'",
            ]
        );
    }
}
