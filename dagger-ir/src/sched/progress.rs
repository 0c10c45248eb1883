//! Progress of a long scheduling run: how many tasks are placed (static
//! schedulers) or finished (the simulator), out of how many.
//!
//! A scheduler given a [`Progress`] calls its callback with `(done, total)`
//! about a thousand times over a run (and always at the end, with
//! `done == total`), so the callback may be slow-ish; [`Scheduler::schedule`]
//! reports to nobody. [`StderrMeter`] is the callback a command-line tool
//! wants: it stays silent for the first two seconds, then rewrites one
//! line of stderr at most twice a second, and ends that line when the run
//! is done.
//!
//! # Examples
//!
//! ```
//! use dagger_ir::sched::generate::{random_dag, DaggenParams};
//! use dagger_ir::sched::progress::{Progress, StderrMeter};
//! use dagger_ir::sched::{HeftScheduler, Scheduler};
//!
//! let problem = random_dag(&DaggenParams { n: 500, ..DaggenParams::default() });
//! let meter = StderrMeter::new("heft");
//! let report = |done, total| meter.report(done, total);
//! let schedule = HeftScheduler.schedule_with_progress(&problem, &Progress::new(&report));
//! assert_eq!(schedule.placement.len(), 500);
//!
//! // Any callback will do, e.g. one that keeps the last report.
//! let last = std::cell::Cell::new((0, 0));
//! let keep = |done, total| last.set((done, total));
//! HeftScheduler.schedule_with_progress(&problem, &Progress::new(&keep));
//! assert_eq!(last.get(), (500, 500));
//! ```
//!
//! [`Scheduler::schedule`]: super::Scheduler::schedule

use std::cell::Cell;
use std::io::Write;
use std::time::{Duration, Instant};

/// Where a scheduler reports `(done, total)`; [`Progress::silent`] reports nowhere.
#[derive(Clone, Copy, Default)]
pub struct Progress<'a> {
    report: Option<&'a dyn Fn(usize, usize)>,
}

impl<'a> Progress<'a> {
    /// Reports to `report(done, total)`.
    pub fn new(report: &'a dyn Fn(usize, usize)) -> Self {
        Progress {
            report: Some(report),
        }
    }

    /// Reports nowhere.
    pub fn silent() -> Self {
        Progress { report: None }
    }

    /// Called by a scheduler after each task: passes on about one call in
    /// a thousand, and the last.
    pub(crate) fn tick(&self, done: usize, total: usize) {
        if let Some(report) = self.report {
            let stride = (total / 1000).max(1);
            if done.is_multiple_of(stride) || done == total {
                report(done, total);
            }
        }
    }
}

/// A progress line on stderr for runs longer than two seconds:
/// `heft: 41% (410000 of 1000000 tasks, 2.3 s)`.
pub struct StderrMeter {
    label: String,
    started: Instant,
    shown: Cell<Option<Instant>>,
}

impl StderrMeter {
    /// Silence before the first line.
    pub const QUIET: Duration = Duration::from_secs(2);
    /// Least time between two lines.
    pub const EVERY: Duration = Duration::from_millis(500);

    /// A meter whose lines start with `label`, timing from now.
    pub fn new(label: &str) -> Self {
        StderrMeter {
            label: label.to_string(),
            started: Instant::now(),
            shown: Cell::new(None),
        }
    }

    /// The line for `(done, total)`, if one is due now.
    pub fn line(&self, done: usize, total: usize) -> Option<String> {
        let now = Instant::now();
        let elapsed = now - self.started;
        let due = match self.shown.get() {
            None => elapsed >= Self::QUIET,
            Some(last) => now - last >= Self::EVERY || done == total,
        };
        if !due {
            return None;
        }
        self.shown.set(Some(now));
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        Some(format!(
            "{}: {percent}% ({done} of {total} tasks, {:.1} s)",
            self.label,
            elapsed.as_secs_f64()
        ))
    }

    /// Writes the line for `(done, total)` to stderr if one is due (see
    /// [`StderrMeter::line`]), ending it when `done == total`.
    pub fn report(&self, done: usize, total: usize) {
        if let Some(line) = self.line(done, total) {
            let end = if done == total { "\n" } else { "" };
            let mut err = std::io::stderr().lock();
            // Progress is a courtesy: a closed stderr must not stop the run.
            let _ = write!(err, "\r{line}{end}");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_thinned_to_about_a_thousand_and_the_last_always_comes() {
        let calls = Cell::new(Vec::new());
        let record = |done, total| {
            let mut v = calls.take();
            v.push((done, total));
            calls.set(v);
        };
        let progress = Progress::new(&record);
        for done in 1..=10_500 {
            progress.tick(done, 10_500);
        }
        let calls = calls.take();
        assert_eq!(calls.len(), 1050);
        assert_eq!(calls.last(), Some(&(10_500, 10_500)));
        Progress::silent().tick(1, 1);
    }

    #[test]
    fn the_meter_is_quiet_at_first_then_speaks_and_ends_its_line() {
        let meter = StderrMeter::new("heft");
        assert_eq!(meter.line(1, 10), None);
        let meter = StderrMeter {
            started: Instant::now() - StderrMeter::QUIET,
            ..StderrMeter::new("heft")
        };
        let line = meter.line(4, 10).expect("due after the quiet time");
        assert!(line.starts_with("heft: 40% (4 of 10 tasks, "), "{line}");
        assert_eq!(meter.line(5, 10), None, "too soon after the last line");
        assert!(meter.line(10, 10).expect("the end").contains("100%"));
    }
}
