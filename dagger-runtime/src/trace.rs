//! Execution traces: which task ran on which worker, from when to when.
//!
//! Recording is switched on with [`Runtime::start_trace`](crate::Runtime::start_trace),
//! or for a whole program with the `DAGGER_TRACE=path.json` environment
//! variable: every runtime then records from its start and writes its trace
//! to that file when dropped. `DAGGER_CALIBRATE=1` records the same way
//! and adds every task's time to the history-based performance model
//! (`dagger_ir::model::HistoryModel`, shown by `dagger perfmodel`) when the
//! runtime is dropped. Recording costs two clock reads per task while on,
//! one relaxed atomic load per task while off. A [`Trace`] is written in the Chrome trace event
//! format, which Perfetto (<https://ui.perfetto.dev>) and `chrome://tracing` open.

use std::fmt::Write as _;
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
}

/// A recorded trace: every task execution between start and take.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// The events, sorted by start time.
    pub events: Vec<TraceEvent>,
    /// Number of workers of the runtime that recorded it.
    pub workers: usize,
}

impl Trace {
    /// The trace as Chrome trace event JSON (open it in Perfetto).
    pub fn to_chrome_json(&self) -> String {
        let mut out = String::from("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
        for w in 0..self.workers {
            let _ = writeln!(
                out,
                "{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":{w},\"args\":{{\"name\":\"worker {w}\"}}}},"
            );
        }
        for (i, e) in self.events.iter().enumerate() {
            let sep = if i + 1 == self.events.len() { "" } else { "," };
            let _ = writeln!(
                out,
                "{{\"name\":{},\"cat\":\"task\",\"ph\":\"X\",\"pid\":1,\"tid\":{},\"ts\":{:.3},\"dur\":{:.3}}}{sep}",
                serde_json::Value::from(e.name.as_str()),
                e.worker,
                e.start_ns as f64 / 1e3,
                e.end_ns.saturating_sub(e.start_ns) as f64 / 1e3,
            );
        }
        if self.events.is_empty() && self.workers > 0 {
            out.truncate(out.len() - 2);
            out.push('\n');
        }
        out.push_str("]}\n");
        out
    }

    /// Writes [`to_chrome_json`](Self::to_chrome_json) to `path`.
    pub fn write_chrome_json(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_chrome_json())
    }
}

/// Per-worker event buffers of a pool.
pub(crate) struct TraceRecorder {
    origin: Instant,
    buffers: Vec<Mutex<Vec<TraceEvent>>>,
}

impl TraceRecorder {
    pub(crate) fn new(workers: usize) -> Self {
        TraceRecorder {
            origin: Instant::now(),
            buffers: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
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
                },
                TraceEvent {
                    name: TaskName::Shared("x\"y".into()),
                    worker: 1,
                    start_ns: 2000,
                    end_ns: 2100,
                },
            ],
            workers: 2,
        };
        let v: serde_json::Value = serde_json::from_str(&t.to_chrome_json()).unwrap();
        let evs = v["traceEvents"].as_array().unwrap();
        let tasks: Vec<_> = evs.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0]["name"], "a::f");
        assert_eq!(tasks[0]["ts"].as_f64().unwrap(), 1.0);
        assert_eq!(tasks[0]["dur"].as_f64().unwrap(), 2.5);
        assert_eq!(tasks[1]["name"], "x\"y");
        let empty = Trace {
            events: vec![],
            workers: 1,
        };
        serde_json::from_str::<serde_json::Value>(&empty.to_chrome_json()).unwrap();
    }
}
