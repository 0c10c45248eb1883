//! Tests of the Gantt charts, read back with an XML parser.

use super::*;
use crate::sched::{HeftScheduler, Scheduler};

/// A chart of tasks `(processor, start, finish, label)`.
fn chart(title: &str, processors: usize, tasks: &[(usize, f64, f64, &str)]) -> Chart {
    Chart {
        title: title.into(),
        processors,
        labels: tasks.iter().map(|t| t.3.to_string()).collect(),
        schedule: Schedule {
            placement: tasks.iter().map(|t| (t.0, t.1, t.2)).collect(),
        },
    }
}

/// Every element named `tag` with attribute `class="class"`.
fn with_class<'a>(
    doc: &'a roxmltree::Document,
    tag: &str,
    class: &str,
) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.has_tag_name(tag) && n.attribute("class") == Some(class))
        .collect()
}

fn text_of<'a>(node: roxmltree::Node<'a, 'a>, tag: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.has_tag_name(tag))
        .and_then(|c| c.text())
}

#[test]
fn several_charts_make_one_document_on_one_time_scale() {
    let a = chart("GPipe", 2, &[(0, 0.0, 1.0, "F0"), (1, 1.0, 2.0, "F0")]);
    let b = chart("1F1B", 3, &[(2, 0.0, 4.0, "B0")]);
    let svg = draw(&[a, b], TimeUnit::Seconds);
    let doc = roxmltree::Document::parse(&svg).expect("one well-formed document");
    assert!(doc.root_element().has_tag_name("svg"));
    let svgs = doc.descendants().filter(|n| n.has_tag_name("svg")).count();
    assert_eq!(svgs, 1, "a single root <svg>, nothing nested");
    let rects: Vec<f64> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect"))
        .map(|n| n.attribute("width").unwrap().parse().unwrap())
        .collect();
    // One scale: 1 s is a quarter of the 4 s axis in both bands.
    assert_eq!(rects, vec![200.0, 200.0, 800.0]);
    assert!(svg.contains("GPipe: makespan 2 s, 2 tasks"), "{svg}");
    assert!(svg.contains("1F1B: makespan 4 s, 1 task"), "{svg}");
    let rows = doc
        .descendants()
        .filter(|n| n.has_tag_name("text") && n.text().is_some_and(|t| t.starts_with('P')))
        .count();
    assert_eq!(rows, 5, "each band its own processors: 2 + 3 rows");
}

#[test]
fn the_axis_has_nice_ticks_with_a_unit_chosen_by_the_horizon() {
    for (horizon, unit, step) in [
        (0.026614863487999997, "ms", 5.0),
        (2.5, "s", 0.5),
        (3.3e-5, "us", 5.0),
        (80e-9, "ns", 10.0),
    ] {
        let svg = draw(
            &[chart("run", 1, &[(0, 0.0, horizon, "t")])],
            TimeUnit::Seconds,
        );
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let ticks: Vec<&str> = with_class(&doc, "text", "tick")
            .iter()
            .map(|n| n.text().unwrap())
            .collect();
        assert!(ticks.len() >= 4 && ticks.len() <= 11, "{ticks:?}");
        let values: Vec<f64> = ticks
            .iter()
            .map(|t| {
                let (value, u) = t.split_once(' ').expect("a value and a unit");
                assert_eq!(u, unit, "{horizon}: {ticks:?}");
                value.parse().unwrap()
            })
            .collect();
        assert_eq!(values[0], 0.0);
        for pair in values.windows(2) {
            assert!((pair[1] - pair[0] - step).abs() < 1e-9, "{ticks:?}");
        }
    }
    let abstract_time = to_svg(
        &Problem::from_json(crate::sched::tests::PAPER).unwrap(),
        &[(
            "heft",
            &HeftScheduler.schedule(&Problem::from_json(crate::sched::tests::PAPER).unwrap()),
        )],
    );
    assert!(abstract_time.contains(">70</text>") && abstract_time.contains("time units"));
}

#[test]
fn labels_that_do_not_fit_are_cut_short_or_left_out() {
    let tasks = [
        (0, 0.0, 1.0, "a_long_task_name_that_cannot_fit"),
        (0, 1.0, 1.02, "tiny"),
        (0, 1.02, 5.0, "roomy"),
        (1, 0.0, 0.3, "medium_name"),
    ];
    let svg = draw(&[chart("labels", 2, &tasks)], TimeUnit::Seconds);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let mut shown = Vec::new();
    for g in with_class(&doc, "g", "task") {
        let rect = g.children().find(|c| c.has_tag_name("rect")).unwrap();
        let width: f64 = rect.attribute("width").unwrap().parse().unwrap();
        if let Some(text) = text_of(g, "text") {
            let estimate = 0.6 * 11.0 * text.chars().count() as f64;
            assert!(estimate + 2.0 <= width, "`{text}` in a {width} px box");
            shown.push(text.to_string());
        }
        assert!(
            text_of(g, "title").is_some(),
            "the tooltip names every task"
        );
    }
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown.contains(&"roomy".to_string()));
    assert!(shown
        .iter()
        .any(|s| s.ends_with('…') && s.starts_with("a_long")));
    assert!(shown.contains(&"mediu…".to_string()), "{shown:?}");
    assert!(!shown.iter().any(|s| s.contains("tiny")), "{shown:?}");
}

#[test]
fn headings_round_to_three_significant_digits_with_the_unit() {
    let svg = draw(
        &[chart("measured", 1, &[(0, 0.0, 0.026614863487999997, "t")])],
        TimeUnit::Seconds,
    );
    assert!(svg.contains("measured: makespan 0.0266 s, 1 task"), "{svg}");
    assert!(!svg.contains("0.026614"));
    assert_eq!(format_time(2.66148e-5, TimeUnit::Seconds), "26.6 us");
    assert_eq!(format_time(3.2e-9, TimeUnit::Seconds), "3.2 ns");
    assert_eq!(format_time(33.0, TimeUnit::Abstract), "33 time units");
    assert_eq!(significant(12345.0), "12300");
    assert_eq!(significant(9.996), "10");
    assert_eq!(significant(0.5), "0.5");
    let p = Problem::from_json(crate::sched::tests::PAPER).unwrap();
    let s = HeftScheduler.schedule(&p);
    let svg = to_svg(&p, &[("heft", &s), ("again", &s)]);
    assert_eq!(svg.matches("<rect").count(), 20, "one box per task");
    assert!(
        svg.contains("heft: makespan 80 time units, 10 tasks"),
        "{svg}"
    );
}

#[test]
fn the_legend_names_the_colours_of_the_boxes() {
    let tasks = [
        (0, 0.0, 1.0, "F0"),
        (0, 1.0, 3.0, "B0"),
        (1, 1.0, 2.0, "F1"),
        (1, 3.0, 5.0, "B1"),
    ];
    let svg = draw(&[chart("pipe", 2, &tasks)], TimeUnit::Seconds);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let fill_of = |label: &str| {
        with_class(&doc, "g", "task")
            .into_iter()
            .find(|g| text_of(*g, "text") == Some(label))
            .and_then(|g| g.children().find(|c| c.has_tag_name("rect")))
            .and_then(|r| r.attribute("fill"))
            .unwrap()
    };
    assert_eq!(fill_of("F0"), fill_of("F1"), "one family, one colour");
    assert_ne!(fill_of("F0"), fill_of("B0"));
    let swatches: Vec<(&str, &str)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("path"))
        .map(|p| {
            let text = p.next_sibling_element().and_then(|t| t.text()).unwrap();
            (p.attribute("fill").unwrap(), text)
        })
        .collect();
    assert_eq!(swatches, vec![(fill_of("B0"), "B"), (fill_of("F0"), "F")]);
}

#[test]
fn a_trace_of_1200_tasks_stays_small_and_says_what_it_merged() {
    // 1200 tasks on 4 workers: 1100 of a microsecond, 100 of a millisecond.
    let mut tasks = Vec::new();
    let mut clock = [0.0f64; 4];
    for i in 0..1200 {
        let w = i % 4;
        let d = if i % 12 == 0 { 1e-3 } else { 1e-6 };
        tasks.push((w, clock[w], clock[w] + d));
        clock[w] += d;
    }
    let labels: Vec<String> = (0..1200).map(|i| format!("task_{i}")).collect();
    let c = Chart {
        title: "measured".into(),
        processors: 4,
        labels,
        schedule: Schedule { placement: tasks },
    };
    let svg = draw(&[c], TimeUnit::Seconds);
    assert!(svg.len() < 100_000, "{} bytes", svg.len());
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let drawn = with_class(&doc, "g", "task").len();
    let merged: usize = with_class(&doc, "g", "merged")
        .iter()
        .map(|g| {
            let title = text_of(*g, "title").unwrap();
            title.split(' ').next().unwrap().parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(drawn + merged, 1200, "every task drawn or merged");
    assert!(merged > 1000, "{merged}");
    assert!(
        svg.contains(&format!("; {merged} under 1 px wide merged into")),
        "{svg}"
    );
    assert!(
        svg.contains("tasks under 1 px, merged"),
        "the legend says so"
    );

    // 1200 tasks of equal length: each keeps its own box, the file its bound.
    let even = Chart {
        title: "even".into(),
        processors: 4,
        labels: (0..1200).map(|i| format!("task_{i}")).collect(),
        schedule: Schedule {
            placement: (0..1200)
                .map(|i| (i % 4, (i / 4) as f64 * 1e-4, (i / 4 + 1) as f64 * 1e-4))
                .collect(),
        },
    };
    let svg = draw(&[even], TimeUnit::Seconds);
    assert!(svg.len() < 300_000, "{} bytes", svg.len());
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert_eq!(with_class(&doc, "g", "task").len(), 1200);
}
