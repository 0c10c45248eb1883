//! Execution traces: which task ran on which worker, from when to when.
//!
//! Recording is switched on with [`Runtime::start_trace`](crate::Runtime::start_trace),
//! or for a whole program with the `DAGGER_TRACE=path.json` (or `.svg`)
//! environment variable: every runtime then records from its start and
//! writes its trace to that file when dropped, as Chrome trace JSON or, for
//! a `.svg` name, as a Gantt chart. `DAGGER_CALIBRATE=1` records the same way
//! and adds every task's time to the history-based performance model
//! (`dagger_ir::model::HistoryModel`, shown by `dagger perfmodel`) when the
//! runtime is dropped. Recording costs two clock reads per task while on,
//! one relaxed atomic load per task while off. A [`Trace`] is written in the Chrome trace event
//! format, which Perfetto (<https://ui.perfetto.dev>) and `chrome://tracing` open.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The name a trace shows for a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskName {
    /// A name known at compile time (registered tasks, spawned functions).
    Static(&'static str),
    /// A name made at run time (fused chains).
    Shared(Arc<str>),
}

impl TaskName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        match self {
            TaskName::Static(s) => s,
            TaskName::Shared(s) => s,
        }
    }
}

/// One task execution.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEvent {
    /// The task.
    pub name: TaskName,
    /// Index of the worker thread that ran it.
    pub worker: usize,
    /// Start, in nanoseconds since the runtime started.
    pub start_ns: u64,
    /// End, in nanoseconds since the runtime started.
    pub end_ns: u64,
    /// Bytes of its inputs (0 when their types do not tell).
    pub bytes: u64,
    /// Bytes of its result (0 when its type does not tell).
    pub output_bytes: u64,
}

/// A recorded trace: every task execution between start and take.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// The events, sorted by start time.
    pub events: Vec<TraceEvent>,
    /// Number of workers of the runtime that recorded it.
    pub workers: usize,
    /// The kind of processor of each worker (CPU cores first, then the
    /// runtime's accelerators); empty means all CPU cores.
    pub kinds: Vec<dagger_ir::model::ProcKind>,
}

impl Trace {
    /// Every event as a measurement for the history model, on the kind
    /// of processor of the worker that ran it.
    pub fn measurements(&self) -> impl Iterator<Item = dagger_ir::model::Measurement> + '_ {
        self.events.iter().map(|e| dagger_ir::model::Measurement {
            task: e.name.as_str().to_string(),
            kind: (self.kinds.get(e.worker).copied()).unwrap_or(dagger_ir::model::ProcKind::Cpu),
            bytes: e.bytes,
            output_bytes: e.output_bytes,
            seconds: e.end_ns.saturating_sub(e.start_ns) as f64 * 1e-9,
        })
    }

    /// The trace as a measured schedule (seconds from the first start, one
    /// processor per worker) with each task's name, to draw or compare with
    /// a scheduler's prediction.
    pub fn to_schedule(&self) -> (Vec<String>, dagger_ir::sched::Schedule) {
        let origin = self.events.iter().map(|e| e.start_ns).min().unwrap_or(0);
        let seconds = |ns: u64| (ns - origin) as f64 * 1e-9;
        let names = self.events.iter().map(|e| e.name.as_str().to_string());
        let placement = self
            .events
            .iter()
            .map(|e| (e.worker, seconds(e.start_ns), seconds(e.end_ns)))
            .collect();
        (names.collect(), dagger_ir::sched::Schedule { placement })
    }

    /// The trace as a standalone SVG Gantt chart, one row per worker, with
    /// a time axis in seconds (see [`dagger_ir::sched::gantt`]).
    pub fn to_gantt_svg(&self, title: &str) -> String {
        let (labels, schedule) = self.to_schedule();
        let chart = dagger_ir::sched::gantt::Chart {
            title: title.to_string(),
            processors: self.workers,
            labels,
            schedule,
        };
        dagger_ir::sched::gantt::draw(&[chart], dagger_ir::sched::gantt::TimeUnit::Seconds)
    }

    /// The trace as Chrome trace event JSON (open it in Perfetto); times
    /// count from the first task's start.
    pub fn to_chrome_json(&self) -> String {
        let (names, schedule) = self.to_schedule();
        dagger_ir::sched::chrome::to_chrome_json(
            self.workers,
            &[("dagger run", &names, &schedule)],
            1e6,
        )
    }

    /// Writes [`to_chrome_json`](Self::to_chrome_json) to `path`.
    pub fn write_chrome_json(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_chrome_json())
    }

    /// Writes the trace to `path`: an SVG Gantt chart if the name ends in
    /// `.svg`, Chrome trace JSON otherwise.
    pub fn write(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        let path = path.as_ref();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
        {
            std::fs::write(path, self.to_gantt_svg("measured"))
        } else {
            self.write_chrome_json(path)
        }
    }
}

/// Per-worker event buffers of a pool.
pub(crate) struct TraceRecorder {
    origin: Instant,
    buffers: Vec<Mutex<Vec<TraceEvent>>>,
    kinds: Vec<dagger_ir::model::ProcKind>,
}

impl TraceRecorder {
    /// A recorder for workers of these kinds.
    pub(crate) fn new(kinds: Vec<dagger_ir::model::ProcKind>) -> Self {
        TraceRecorder {
            origin: Instant::now(),
            buffers: kinds.iter().map(|_| Mutex::new(Vec::new())).collect(),
            kinds,
        }
    }

    /// Nanoseconds since the pool started.
    pub(crate) fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub(crate) fn record(&self, event: TraceEvent) {
        if let Some(buf) = self.buffers.get(event.worker) {
            buf.lock().unwrap_or_else(|p| p.into_inner()).push(event);
        }
    }

    /// Drains every buffer into one trace.
    pub(crate) fn take(&self) -> Trace {
        let mut events = Vec::new();
        for b in &self.buffers {
            events.append(&mut b.lock().unwrap_or_else(|p| p.into_inner()));
        }
        events.sort_by_key(|e| (e.start_ns, e.worker));
        Trace {
            events,
            workers: self.buffers.len(),
            kinds: self.kinds.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chrome_json_is_valid_json_with_one_event_per_task() {
        let t = Trace {
            events: vec![
                TraceEvent {
                    name: TaskName::Static("a::f"),
                    worker: 0,
                    start_ns: 1000,
                    end_ns: 3500,
                    bytes: 0,
                    output_bytes: 0,
                },
                TraceEvent {
                    name: TaskName::Shared("x\"y".into()),
                    worker: 1,
                    start_ns: 2000,
                    end_ns: 2100,
                    bytes: 64,
                    output_bytes: 8,
                },
            ],
            workers: 2,
            kinds: vec![],
        };
        let v: serde_json::Value = serde_json::from_str(&t.to_chrome_json()).unwrap();
        let evs = v["traceEvents"].as_array().unwrap();
        let tasks: Vec<_> = evs.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0]["name"], "a::f");
        assert_eq!(
            tasks[0]["ts"].as_f64().unwrap(),
            0.0,
            "from the first start"
        );
        assert_eq!(tasks[0]["dur"].as_f64().unwrap(), 2.5);
        assert_eq!(tasks[1]["name"], "x\"y");
        assert_eq!(tasks[1]["ts"].as_f64().unwrap(), 1.0);
        assert_eq!(tasks[1]["tid"], 1, "worker 1's row");
        let empty = Trace {
            events: vec![],
            workers: 1,
            kinds: vec![],
        };
        serde_json::from_str::<serde_json::Value>(&empty.to_chrome_json()).unwrap();
    }

    #[test]
    fn a_1200_task_gantt_chart_is_one_small_document_in_seconds() {
        // 1200 tasks on 4 workers, 22.2 us each but for every 12th of 1 ms.
        let mut clock = [0u64; 4];
        let events = (0..1200)
            .map(|i| {
                let worker = i % 4;
                let start_ns = clock[worker];
                clock[worker] += if i % 12 == 0 { 1_000_000 } else { 22_200 };
                TraceEvent {
                    name: TaskName::Static("mlp::layer"),
                    worker,
                    start_ns,
                    end_ns: clock[worker],
                    bytes: 0,
                    output_bytes: 0,
                }
            })
            .collect();
        let t = Trace {
            events,
            workers: 4,
            kinds: vec![],
        };
        let svg = t.to_gantt_svg("measured");
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.len() < 300_000, "{} bytes", svg.len());
        // Worker 0 runs 100 tasks of 1 ms and 200 of 22.2 us: 0.10444 s.
        assert!(
            svg.contains("measured: makespan 0.104 s, 1200 tasks"),
            "{svg}"
        );
        assert!(svg.contains(">100 ms</text>"), "a tick with its unit");
        assert!(svg.contains("mlp::layer</text>"), "the legend names it");
    }
}
