//! Schedules as Chrome trace event JSON, which Perfetto
//! (<https://ui.perfetto.dev>) and `chrome://tracing` open: one process per
//! named schedule, one thread per processor, one complete event per task.
//! Simulated schedules (from `dagger sched --trace`) and measured ones (the
//! runtime's traces) are written by this one function.

use super::schedule::Schedule;
use std::fmt::Write as _;

/// Chrome trace JSON of `schedules` (named) on `processors` processors,
/// task `t` of each named `labels[t]` of that schedule; a schedule time `x`
/// becomes `x * micros_per_unit` microseconds.
pub fn to_chrome_json(
    processors: usize,
    schedules: &[(&str, &[String], &Schedule)],
    micros_per_unit: f64,
) -> String {
    let mut events = Vec::new();
    for (pid, (name, labels, schedule)) in schedules.iter().enumerate() {
        events.push(format!(
            "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{pid},\"args\":{{\"name\":{}}}}}",
            serde_json::Value::from(*name)
        ));
        for p in 0..processors {
            events.push(format!(
                "{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{p},\"args\":{{\"name\":\"P{p}\"}}}}"
            ));
        }
        for (t, &(p, start, finish)) in schedule.placement.iter().enumerate() {
            events.push(format!(
                "{{\"name\":{},\"cat\":\"task\",\"ph\":\"X\",\"pid\":{pid},\"tid\":{p},\"ts\":{:.3},\"dur\":{:.3}}}",
                serde_json::Value::from(labels[t].as_str()),
                start * micros_per_unit,
                (finish - start) * micros_per_unit
            ));
        }
    }
    let mut out = String::from("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
    for (i, e) in events.iter().enumerate() {
        let sep = if i + 1 == events.len() { "" } else { "," };
        let _ = writeln!(out, "{e}{sep}");
    }
    out.push_str("]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::{HeftScheduler, Problem, Scheduler};

    #[test]
    fn one_complete_event_per_task_per_schedule() {
        let p = Problem::from_json(crate::sched::tests::PAPER).unwrap();
        let s = HeftScheduler.schedule(&p);
        let text = to_chrome_json(3, &[("heft", &p.ids, &s), ("again", &p.ids, &s)], 1.0);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let events = json["traceEvents"].as_array().unwrap();
        let tasks: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(tasks.len(), 20);
        let end = tasks
            .iter()
            .map(|e| e["ts"].as_f64().unwrap() + e["dur"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(end, 80.0, "HEFT's makespan on the paper's example");
        assert!(events.iter().any(|e| e["args"]["name"] == "heft"));
    }
}
