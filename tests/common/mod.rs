//! Helpers shared by the integration tests.

#![allow(dead_code)] // each test binary uses some of them

use dagger::cuda::program::GpuProgram;
use dagger::cuda::GpuDevice;
use dagger::nn::{NamedParams, Program};

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

/// The CPU's and the GPU's programs, fed and run alike.
pub trait Feed {
    /// Sets an input or parameter.
    fn feed(&mut self, name: &str, data: &[f32]);
    /// Runs one step.
    fn step(&mut self);
}

impl Feed for Program {
    fn feed(&mut self, name: &str, data: &[f32]) {
        self.set(name, data).unwrap();
    }
    fn step(&mut self) {
        self.run().unwrap();
    }
}

impl Feed for GpuProgram {
    fn feed(&mut self, name: &str, data: &[f32]) {
        self.set(name, data).unwrap();
    }
    fn step(&mut self) {
        self.run().unwrap();
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

/// Runs this test binary's `rank_main` test on `ranks` processes with
/// `dagger run`, in `scenario` (`DAGGER_TEST_SCENARIO`); returns whether
/// they all succeeded and what they printed (each line prefixed `[rank r]`
/// by the launcher). The launcher is the `dagger` binary cargo built, or
/// `DAGGER_BIN` where set (a test binary copied to another machine, as
/// `.ci/gpu-checks` does).
pub fn launch_rank_main(ranks: u32, scenario: &str) -> (bool, String) {
    let me = std::env::current_exe().unwrap();
    let launcher = std::env::var_os("DAGGER_BIN").unwrap_or(env!("CARGO_BIN_EXE_dagger").into());
    let out = std::process::Command::new(launcher)
        .args(["run", "-n", &ranks.to_string(), "--"])
        .arg(me)
        .args(["rank_main", "--exact", "--nocapture", "--test-threads=1"])
        .env("DAGGER_TEST_SCENARIO", scenario)
        .output()
        .unwrap();
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), all)
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
