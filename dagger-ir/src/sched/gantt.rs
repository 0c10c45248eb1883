//! Gantt charts of schedules as standalone SVG: one band per schedule, one
//! row per processor, one labelled box per task. Simulated schedules come
//! from the schedulers; measured ones from a run's trace (the runtime's
//! `Trace::to_schedule`), so both draw the same way.

use super::problem::Problem;
use super::schedule::Schedule;
use std::fmt::Write as _;

const ROW: f64 = 24.0;
const LEFT: f64 = 90.0;
const WIDTH: f64 = 800.0;

/// An SVG Gantt chart of `schedules` (named) of `problem`, on one time scale.
pub fn to_svg(problem: &Problem, schedules: &[(&str, &Schedule)]) -> String {
    draw(problem.processors, &problem.ids, schedules)
}

/// An SVG Gantt chart of `schedules` (named) on `processors` processors,
/// task `t` labelled `labels[t]`, on one time scale.
pub fn draw(processors: usize, labels: &[String], schedules: &[(&str, &Schedule)]) -> String {
    let horizon = schedules
        .iter()
        .map(|(_, s)| s.makespan())
        .fold(1e-9, f64::max);
    let scale = WIDTH / horizon;
    let band = ROW * (processors as f64 + 1.5);
    let height = band * schedules.len() as f64 + 10.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">\n",
        LEFT + WIDTH + 20.0
    );
    for (k, (name, schedule)) in schedules.iter().enumerate() {
        let top = k as f64 * band + 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"4\" y=\"{}\" font-weight=\"bold\">{} (makespan {})</text>",
            top + 12.0,
            escape(name),
            schedule.makespan()
        );
        for p in 0..processors {
            let y = top + ROW * (p as f64 + 1.0);
            let _ = writeln!(svg, "<text x=\"4\" y=\"{}\">P{p}</text>", y + 16.0);
        }
        for (t, &(p, start, finish)) in schedule.placement.iter().enumerate() {
            let (x, y) = (LEFT + start * scale, top + ROW * (p as f64 + 1.0));
            let w = ((finish - start) * scale).max(1.0);
            let hue = (t * 47) % 360;
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{w:.2}\" height=\"{}\" fill=\"hsl({hue},60%,75%)\" stroke=\"#333\"><title>{} on P{p}: {start} to {finish}</title></rect>",
                ROW - 4.0,
                escape(&labels[t])
            );
            let _ = writeln!(
                svg,
                "<text x=\"{:.2}\" y=\"{:.2}\">{}</text>",
                x + 2.0,
                y + 14.0,
                escape(&labels[t])
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::{HeftScheduler, Scheduler};

    #[test]
    fn draws_one_box_per_task_and_one_band_per_schedule() {
        let p = Problem::from_json(crate::sched::tests::PAPER).unwrap();
        let s = HeftScheduler.schedule(&p);
        let svg = to_svg(&p, &[("heft", &s), ("again", &s)]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 20);
        assert!(svg.contains("heft (makespan 80)"));
    }
}
