//! Helpers shared by the integration tests.

#![allow(dead_code)] // each test binary uses some of them

use dagger::cuda::GpuDevice;
use dagger::nn::NamedParams;

/// GPU 0 (with a copy stream), or `None` and why, printed.
pub fn gpu() -> Option<GpuDevice> {
    match GpuDevice::open(0, 2) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("skipping: {e}");
            None
        }
    }
}

/// UCX is needed for the data plane; true (and why, printed) without it.
pub fn ucx_missing() -> bool {
    match dagger::net::ucx_available() {
        Ok(()) => false,
        Err(why) => {
            println!("skipping: {why}");
            true
        }
    }
}

/// The largest relative difference between `got` and `reference`, tensor
/// by tensor (max |a - b| / max |b|); every reference tensor must be in
/// `got`, under its name.
pub fn max_relative_difference(got: &NamedParams, reference: &NamedParams) -> f32 {
    let mut worst = 0.0f32;
    for (name, want) in reference {
        let (_, have) = got
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("`{name}` is missing"));
        assert_eq!(have.len(), want.len(), "{name}");
        let diff = have
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let scale = want.iter().map(|b| b.abs()).fold(0.0, f32::max).max(1e-12);
        worst = worst.max(diff / scale);
    }
    worst
}

/// The arguments that run this test binary's `rank_main` alone: an ignored
/// test (a child's entry point is not a passing test), output shown.
pub const RANK_MAIN: [&str; 5] = [
    "rank_main",
    "--exact",
    "--ignored",
    "--nocapture",
    "--test-threads=1",
];

/// Runs this test binary's `rank_main` test on `ranks` processes with
/// `dagger run`, in `scenario` (`DAGGER_TEST_SCENARIO`); returns whether
/// they all succeeded and what they printed (each line prefixed `[rank r]`
/// by the launcher). The launcher is the `dagger` binary cargo built, or
/// `DAGGER_BIN` where set (a test binary copied to another machine, as
/// `.ci/gpu-checks` does).
pub fn launch_rank_main(ranks: u32, scenario: &str) -> (bool, String) {
    let me = std::env::current_exe().unwrap();
    let launcher = std::env::var_os("DAGGER_BIN").unwrap_or(env!("CARGO_BIN_EXE_dagger").into());
    let child = std::process::Command::new(launcher)
        .args(["run", "-n", &ranks.to_string(), "--"])
        .arg(me)
        .args(RANK_MAIN)
        .env("DAGGER_TEST_SCENARIO", scenario)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (status, all) = wait_or_dump_stacks(child, RUN_LIMIT);
    (status.is_some_and(|s| s.success()), all)
}

/// The longest a cluster run of the tests may take before the watchdog of
/// [`wait_or_dump_stacks`] ends it (every scenario takes seconds).
pub const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits for `child` (its output piped) at most `limit`; past it, appends
/// the stacks of every thread of the child and of its descendants (gdb,
/// where installed; else each thread's state and wait channel) to what they
/// printed, kills them all and returns no status, so that a hung cluster
/// test fails, saying where each process was, instead of hanging the suite.
pub fn wait_or_dump_stacks(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> (Option<std::process::ExitStatus>, String) {
    use std::io::Read;
    let mut pipes: Vec<Box<dyn Read + Send>> = Vec::new();
    pipes.extend(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    pipes.extend(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let readers: Vec<_> = pipes
        .into_iter()
        .map(|mut pipe| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let mut status = None;
    let mut dump = String::new();
    while status.is_none() {
        status = child.try_wait().unwrap();
        if status.is_none() && started.elapsed() > limit {
            let mut family = vec![child.id()];
            family.extend(descendants(child.id()));
            dump = format!("\n--- still running after {limit:?}: stacks ---\n");
            for &pid in &family {
                dump += &stacks_of(pid);
            }
            for &pid in family.iter().rev() {
                // SAFETY: sends a signal to a process of this test.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = child.wait();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut all: Vec<String> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    all.push(dump);
    (status, all.join("\n"))
}

/// Every process below `pid`, read from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let parent_of = |p: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        // `pid (comm) state ppid ...`: the comm may hold spaces.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![pid];
    let mut k = 0;
    while k < found.len() {
        let p = found[k];
        found.extend(all.iter().filter(|&&c| parent_of(c) == Some(p)));
        k += 1;
    }
    found.remove(0);
    found
}

/// The stacks of every thread of `pid`, for a hang report.
fn stacks_of(pid: u32) -> String {
    let command = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .replace('\0', " ");
    let gdb = std::process::Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt 20",
        ])
        .output();
    let stacks = match gdb {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            // No gdb: each thread's state and what it waits in.
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
            tasks
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| {
                            let t = e.path();
                            let read =
                                |f: &str| std::fs::read_to_string(t.join(f)).unwrap_or_default();
                            format!(
                                "thread {:?}: {} wchan {}\n",
                                e.file_name(),
                                read("stat").trim(),
                                read("wchan")
                            )
                        })
                        .collect::<String>()
                })
                .unwrap_or_default()
        }
    };
    format!("=== pid {pid}: {command}\n{stacks}\n")
}

/// [`launch_rank_main`] in the default scenario, checking that every rank
/// succeeded.
pub fn run_rank_main(ranks: u32) -> String {
    let (ok, all) = launch_rank_main(ranks, "");
    assert!(ok, "{all}");
    all
}

/// Whether a line the launcher forwarded from `rank` contains `what`.
pub fn rank_said(output: &str, rank: u32, what: &str) -> bool {
    let prefix = format!("[rank {rank}] ");
    output
        .lines()
        .any(|l| l.starts_with(&prefix) && l.contains(what))
}

/// Runs `rank_main` on 2 and then 3 processes and checks that every rank
/// said `what`; skips (saying why) without UCX.
pub fn every_rank_says_on_2_and_3_processes(what: &str) {
    if ucx_missing() {
        return;
    }
    for n in [2, 3] {
        let all = run_rank_main(n);
        for rank in 0..n {
            assert!(rank_said(&all, rank, what), "rank {rank} of {n}: {all}");
        }
    }
}

/// One device's training, to compare parallel runs with: the loss of each
/// step and the parameters after the last.
pub struct OneDevice {
    /// The loss of each step.
    pub losses: Vec<f32>,
    /// The parameters after the last step.
    pub params: NamedParams,
}

impl OneDevice {
    /// Runs one step of `trainer` per reference loss with `step` (given
    /// the step number, returns its loss) and checks each loss, then
    /// `params(trainer)` after the last, against one device's within 1e-5
    /// relative; `what` names the run in the failure message.
    pub fn assert_matched_by<T>(
        &self,
        what: &str,
        trainer: &mut T,
        step: impl Fn(&mut T, usize) -> f32,
        params: impl Fn(&T) -> NamedParams,
    ) {
        for (k, want) in self.losses.iter().enumerate() {
            let loss = step(trainer, k);
            assert!(
                (loss - want).abs() <= 1e-5 * want.abs(),
                "{what}, step {k}: loss {loss} vs {want}"
            );
        }
        let d = max_relative_difference(&params(trainer), &self.params);
        assert!(d <= 1e-5, "{what}: parameters differ by {d} (relative)");
    }
}
