//! Gantt charts of schedules as one standalone SVG document: one band per
//! [`Chart`], one row per processor, one box per task, on one time scale
//! shared by every band, with a time axis and a legend of the colours.
//! Simulated schedules come from the schedulers; measured ones from a run's
//! trace (the runtime's `Trace::to_schedule`), so both draw the same way.
//!
//! - The axis has ticks every 1, 2 or 5 x 10^k; in [`TimeUnit::Seconds`] its
//!   labels are in s, ms, us or ns, whichever suits the longest makespan.
//! - A box's colour is its task's family: the label without a trailing
//!   number (`F3` and `F4` are both `F`), the nine busiest families in their
//!   own colours, the others in grey; the legend lists them.
//! - A label that does not fit its box is cut short with an ellipsis, or
//!   left out (the box's tooltip still names the task).
//! - Boxes under a pixel wide are merged with their neighbours on the same
//!   processor into one dark box, and the band's heading says how many, so
//!   a trace of thousands of tasks stays readable and small.
//! - Headings round numbers to three significant digits, with their unit.
//!
//! # Examples
//!
//! ```
//! use dagger_ir::sched::gantt::{draw, Chart, TimeUnit};
//! use dagger_ir::sched::Schedule;
//!
//! let chart = |title: &str, second: f64| Chart {
//!     title: title.into(),
//!     processors: 2,
//!     labels: vec!["F0".into(), "B0".into()],
//!     schedule: Schedule { placement: vec![(0, 0.0, 0.01), (1, 0.01, second)] },
//! };
//! let svg = draw(&[chart("fast", 0.02), chart("slow", 0.0266148)], TimeUnit::Seconds);
//! assert_eq!(svg.matches("<svg").count(), 1, "one document for both charts");
//! assert!(svg.contains("slow: makespan 0.0266 s"));
//! assert!(svg.contains(">25 ms</text>"), "a tick of the shared axis");
//! ```

use super::problem::Problem;
use super::schedule::Schedule;
use std::fmt::Write as _;

/// One band of a chart: a schedule on its own processors.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// The band's heading (its makespan and task count are added).
    pub title: String,
    /// Rows of the band.
    pub processors: usize,
    /// Task `t`'s name, by task index of `schedule`.
    pub labels: Vec<String>,
    /// Where and when each task ran.
    pub schedule: Schedule,
}

/// What a schedule's time values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    /// Seconds: the axis shows s, ms, us or ns.
    Seconds,
    /// The input's own time unit (a problem file's costs): plain numbers,
    /// called "time units".
    Abstract,
}

/// Height of a processor's row, pixels.
const ROW: f64 = 24.0;
/// Width of the left margin (row names), pixels.
const LEFT: f64 = 90.0;
/// Width of the time axis, pixels.
const WIDTH: f64 = 800.0;
/// Width of the right margin (room for the last tick's label), pixels.
const RIGHT: f64 = 40.0;
/// Font size of every text, pixels.
const FONT: f64 = 11.0;
/// Estimated width of one character of the monospace font, pixels.
const CHAR: f64 = 0.6 * FONT;
/// Boxes narrower than this are merged with their neighbours, pixels.
const MIN_BOX: f64 = 1.0;
/// Families with a colour of their own; the others share [`OTHER`].
const PALETTE: [&str; 9] = [
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#dbdb8d", "#9edae5", "#f7b6d2",
    "#c49c94",
];
/// Colour of the families past the palette.
const OTHER: &str = "#d9d9d9";
/// Colour of merged boxes.
const MERGED: &str = "#555555";

/// An SVG Gantt chart of `schedules` (named) of `problem`, on one time scale,
/// in the problem's time units.
pub fn to_svg(problem: &Problem, schedules: &[(&str, &Schedule)]) -> String {
    let charts: Vec<Chart> = schedules
        .iter()
        .map(|(name, schedule)| Chart {
            title: name.to_string(),
            processors: problem.processors,
            labels: problem.ids.clone(),
            schedule: (*schedule).clone(),
        })
        .collect();
    draw(&charts, TimeUnit::Abstract)
}

/// One SVG document with a band per chart, all on one time scale, times
/// in `unit`.
pub fn draw(charts: &[Chart], unit: TimeUnit) -> String {
    let horizon = charts
        .iter()
        .map(|c| c.schedule.makespan())
        .fold(0.0, f64::max);
    let horizon = if horizon > 0.0 {
        horizon
    } else if unit == TimeUnit::Seconds {
        1e-9
    } else {
        1.0
    };
    let scale = WIDTH / horizon;
    let families = Families::of(charts);
    let mut body = String::new();
    let mut y = 4.0;
    for chart in charts {
        y = draw_band(&mut body, chart, y, scale, unit, &families);
    }
    let rows_end = y;
    let mut grid = String::new();
    let ticks = Ticks::new(horizon, unit);
    for (x, _) in ticks.positions(scale) {
        let _ = writeln!(
            grid,
            "<line x1=\"{x:.2}\" y1=\"4\" x2=\"{x:.2}\" y2=\"{rows_end:.2}\" stroke=\"#e6e6e6\"/>"
        );
    }
    let axis_y = rows_end + 4.0;
    draw_axis(&mut body, &ticks, scale, axis_y);
    let merged_any = body.contains("class=\"merged\"");
    let end = draw_legend(&mut body, &families, merged_any, axis_y + 40.0);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{:.0}\" font-family=\"monospace\" font-size=\"{FONT}\">\n{grid}{body}</svg>\n",
        LEFT + WIDTH + RIGHT,
        end + 8.0
    )
}

/// Draws one chart's band from `top` down; returns where the next begins.
fn draw_band(
    svg: &mut String,
    chart: &Chart,
    top: f64,
    scale: f64,
    unit: TimeUnit,
    families: &Families,
) -> f64 {
    let tasks = chart.schedule.placement.len();
    let mut boxes = String::new();
    let (mut merged_tasks, mut merged_boxes) = (0, 0);
    for p in 0..chart.processors {
        let row_y = top + ROW * (p as f64 + 1.0);
        let _ = writeln!(svg, "<text x=\"4\" y=\"{:.2}\">P{p}</text>", row_y + 14.0);
        let mut row: Vec<usize> = (0..tasks)
            .filter(|&t| chart.schedule.placement[t].0 == p)
            .collect();
        row.sort_by(|&a, &b| {
            let (pa, pb) = (chart.schedule.placement[a], chart.schedule.placement[b]);
            pa.1.total_cmp(&pb.1)
        });
        // A run of consecutive boxes under a pixel, drawn as one.
        let mut run: Vec<usize> = Vec::new();
        let mut flush = |run: &mut Vec<usize>, boxes: &mut String| {
            match run.len() {
                0 => {}
                1 => draw_task(boxes, chart, run[0], row_y, scale, unit, families),
                n => {
                    let start = chart.schedule.placement[run[0]].1;
                    let finish = run
                        .iter()
                        .map(|&t| chart.schedule.placement[t].2)
                        .fold(start, f64::max);
                    let (x, w) = (
                        LEFT + start * scale,
                        ((finish - start) * scale).max(MIN_BOX),
                    );
                    let _ = writeln!(
                        boxes,
                        "<g class=\"merged\"><title>{n} tasks on P{p}, {} to {}</title><rect x=\"{x:.2}\" y=\"{row_y:.2}\" width=\"{w:.2}\" height=\"{}\" fill=\"{MERGED}\"/></g>",
                        format_time(start, unit),
                        format_time(finish, unit),
                        ROW - 4.0
                    );
                    merged_tasks += n;
                    merged_boxes += 1;
                }
            }
            run.clear();
        };
        for t in row {
            let (_, start, finish) = chart.schedule.placement[t];
            if (finish - start) * scale >= MIN_BOX {
                flush(&mut run, &mut boxes);
                draw_task(&mut boxes, chart, t, row_y, scale, unit, families);
                continue;
            }
            let run_end = run
                .iter()
                .map(|&r| chart.schedule.placement[r].2)
                .fold(f64::NEG_INFINITY, f64::max);
            if !run.is_empty() && (start - run_end) * scale >= MIN_BOX {
                flush(&mut run, &mut boxes);
            }
            run.push(t);
        }
        flush(&mut run, &mut boxes);
    }
    let mut heading = format!(
        "{}: makespan {}, {tasks} task{}",
        chart.title,
        format_time(chart.schedule.makespan(), unit),
        if tasks == 1 { "" } else { "s" }
    );
    if merged_boxes > 0 {
        let _ = write!(
            heading,
            "; {merged_tasks} under {MIN_BOX} px wide merged into {merged_boxes} dark boxes"
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"4\" y=\"{:.2}\" font-weight=\"bold\">{}</text>",
        top + 14.0,
        escape(&heading)
    );
    svg.push_str(&boxes);
    top + ROW * (chart.processors as f64 + 1.0) + 6.0
}

/// Draws task `t` of `chart` in its row, at least [`MIN_BOX`] wide.
fn draw_task(
    svg: &mut String,
    chart: &Chart,
    t: usize,
    y: f64,
    scale: f64,
    unit: TimeUnit,
    families: &Families,
) {
    let (p, start, finish) = chart.schedule.placement[t];
    let label = chart.labels.get(t).map_or("", String::as_str);
    let (x, w) = (
        LEFT + start * scale,
        ((finish - start) * scale).max(MIN_BOX),
    );
    let stroke = if w >= 3.0 {
        " stroke=\"#333\" stroke-width=\"0.5\""
    } else {
        ""
    };
    let _ = write!(
        svg,
        "<g class=\"task\"><title>{} on P{p}: {} to {} ({})</title><rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{w:.2}\" height=\"{}\" fill=\"{}\"{stroke}/>",
        escape(label),
        format_time(start, unit),
        format_time(finish, unit),
        format_time(finish - start, unit),
        ROW - 4.0,
        families.colour(label)
    );
    if let Some(text) = fit(label, w - 4.0) {
        let _ = write!(
            svg,
            "<text x=\"{:.2}\" y=\"{:.2}\">{}</text>",
            x + 2.0,
            y + 14.0,
            escape(&text)
        );
    }
    svg.push_str("</g>\n");
}

/// `label` as it fits in `room` pixels: whole, cut short with an ellipsis,
/// or not at all.
fn fit(label: &str, room: f64) -> Option<String> {
    let fits = (room / CHAR).floor().max(0.0) as usize;
    let chars = label.chars().count();
    if chars == 0 {
        None
    } else if chars <= fits {
        Some(label.to_string())
    } else if fits >= 2 {
        Some(label.chars().take(fits - 1).chain(['…']).collect())
    } else {
        None
    }
}

/// Draws the time axis at `y`: a line, the ticks and their labels.
fn draw_axis(svg: &mut String, ticks: &Ticks, scale: f64, y: f64) {
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{y:.2}\" x2=\"{}\" y2=\"{y:.2}\" stroke=\"#333\"/>",
        LEFT + WIDTH
    );
    for (x, label) in ticks.positions(scale) {
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.2}\" y1=\"{y:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"#333\"/><text class=\"tick\" x=\"{x:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{label}</text>",
            y + 5.0,
            y + 17.0
        );
    }
    // Seconds: the ticks carry their unit, "time" names the axis at the
    // left; the input's units: said once, under the ticks.
    let (x, dy, caption) = match ticks.unit {
        TimeUnit::Seconds => (4.0, 17.0, "time"),
        TimeUnit::Abstract => (LEFT, 31.0, "time (in the input's time units)"),
    };
    let _ = writeln!(svg, "<text x=\"{x}\" y=\"{:.2}\">{caption}</text>", y + dy);
}

/// Draws the legend of the colours from `y` down; returns where it ends.
fn draw_legend(svg: &mut String, families: &Families, merged: bool, y: f64) -> f64 {
    let _ = writeln!(svg, "<text x=\"4\" y=\"{:.2}\">colours</text>", y + 9.0);
    let mut entries: Vec<(&str, String)> = families
        .names
        .iter()
        .take(PALETTE.len())
        .zip(PALETTE)
        .map(|(name, colour)| (colour, fit(name, 30.0 * CHAR).unwrap_or_default()))
        .collect();
    if families.names.len() > PALETTE.len() {
        let more = families.names.len() - PALETTE.len();
        entries.push((OTHER, format!("{more} other names")));
    }
    if merged {
        entries.push((MERGED, format!("tasks under {MIN_BOX} px, merged")));
    }
    let (mut x, mut y) = (LEFT, y);
    for (colour, text) in entries {
        let width = 14.0 + text.chars().count() as f64 * CHAR + 14.0;
        if x + width > LEFT + WIDTH && x > LEFT {
            x = LEFT;
            y += 16.0;
        }
        let _ = writeln!(
            svg,
            "<path d=\"M{x:.2} {y:.2}h10v10h-10z\" fill=\"{colour}\" stroke=\"#333\" stroke-width=\"0.5\"/><text x=\"{:.2}\" y=\"{:.2}\">{}</text>",
            x + 14.0,
            y + 9.0,
            escape(&text)
        );
        x += width;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"{:.2}\" fill=\"#555\">colour: the task's name without its trailing number</text>",
        y + 27.0
    );
    y + 27.0
}

/// The task families of some charts, busiest first.
struct Families {
    names: Vec<String>,
}

impl Families {
    /// The families of every task of `charts`, by total time, then by first
    /// appearance.
    fn of(charts: &[Chart]) -> Self {
        let mut totals: Vec<(String, f64)> = Vec::new();
        for c in charts {
            for (t, &(_, start, finish)) in c.schedule.placement.iter().enumerate() {
                let f = family(c.labels.get(t).map_or("", String::as_str));
                match totals.iter_mut().find(|(name, _)| name == f) {
                    Some(entry) => entry.1 += finish - start,
                    None => totals.push((f.to_string(), finish - start)),
                }
            }
        }
        totals.sort_by(|a, b| b.1.total_cmp(&a.1));
        Families {
            names: totals.into_iter().map(|(name, _)| name).collect(),
        }
    }

    /// The colour of a task named `label`.
    fn colour(&self, label: &str) -> &'static str {
        let f = family(label);
        let index = self.names.iter().position(|n| n == f);
        index.and_then(|i| PALETTE.get(i)).copied().unwrap_or(OTHER)
    }
}

/// A task's family: its name without a trailing number and separator.
fn family(label: &str) -> &str {
    let stem = label
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches(['_', '-', '.', '#', ':', ' ']);
    if stem.is_empty() {
        label
    } else {
        stem
    }
}

/// The ticks of an axis from 0 to a horizon: every 1, 2 or 5 x 10^k.
struct Ticks {
    step: f64,
    count: usize,
    unit: TimeUnit,
    /// Seconds per displayed unit, and its name.
    display: (f64, &'static str),
}

impl Ticks {
    /// About eight ticks over `horizon` (in `unit`).
    fn new(horizon: f64, unit: TimeUnit) -> Self {
        let raw = horizon / 8.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|&s| s >= raw * (1.0 - 1e-9))
            .unwrap_or(10.0 * magnitude);
        let display = match unit {
            TimeUnit::Abstract => (1.0, ""),
            TimeUnit::Seconds => seconds_unit(horizon),
        };
        Ticks {
            step,
            count: (horizon / step + 1e-9).floor() as usize + 1,
            unit,
            display,
        }
    }

    /// Each tick's x position at `scale` pixels per time unit, and its label.
    fn positions(&self, scale: f64) -> impl Iterator<Item = (f64, String)> + '_ {
        let (per, name) = self.display;
        let shown = self.step / per;
        let decimals = (-(shown.log10() + 1e-9).floor()).max(0.0) as usize;
        (0..self.count).map(move |i| {
            let t = i as f64 * self.step;
            let value = format!("{:.decimals$}", t / per);
            let label = if name.is_empty() {
                value
            } else {
                format!("{value} {name}")
            };
            (LEFT + t * scale, label)
        })
    }
}

/// The unit (seconds per unit, name) that suits times up to `horizon` s.
fn seconds_unit(horizon: f64) -> (f64, &'static str) {
    if horizon >= 1.0 {
        (1.0, "s")
    } else if horizon >= 1e-3 {
        (1e-3, "ms")
    } else if horizon >= 1e-6 {
        (1e-6, "us")
    } else {
        (1e-9, "ns")
    }
}

/// A time with its unit, to three significant digits: seconds from a
/// millisecond up ("0.0266 s"), else us or ns ("26.6 us").
fn format_time(t: f64, unit: TimeUnit) -> String {
    match unit {
        TimeUnit::Abstract => format!("{} time units", significant(t)),
        TimeUnit::Seconds if t == 0.0 || t.abs() >= 1e-3 => format!("{} s", significant(t)),
        TimeUnit::Seconds if t.abs() >= 1e-6 => format!("{} us", significant(t * 1e6)),
        TimeUnit::Seconds => format!("{} ns", significant(t * 1e9)),
    }
}

/// `x` rounded to three significant digits, without trailing zeros.
fn significant(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    if magnitude > 2 {
        let unit = 10f64.powi(magnitude - 2);
        return format!("{}", (x / unit).round() * unit);
    }
    let decimals = (2 - magnitude) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests;
