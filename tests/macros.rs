//! `#[task]` and `dag!{}` end to end: graphs built in macro syntax run on the
//! runtime, with the values, names, hints and errors the docs promise.

use dagger::prelude::*;
use dagger::{ir, Task};

/// Splits text into words.
#[task(pure, cost = 1e-9 * text.len() as f64)]
fn tokenize(text: String) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

#[task]
fn count(words: Vec<String>) -> usize {
    words.len()
}

#[task(device = "cpu", cost = 2e-6)]
fn scale(n: usize, factor: usize) -> usize {
    n * factor
}

#[task]
fn parse(text: String) -> Result<u64, std::num::ParseIntError> {
    text.trim().parse::<u64>()
}

#[task]
fn plus(a: u64, b: u64) -> u64 {
    a + b
}

/// No parameters: a source of the graph.
#[task(pure, cost = 0)]
fn seed() -> u64 {
    7
}

mod errors {
    /// A `Result` alias with one argument, like `std::io::Result`.
    pub type Result<T> = std::result::Result<T, String>;
}

/// A `Result` alias (recognised by its last segment), and a `'static` borrow.
#[task]
fn label(n: u64) -> errors::Result<&'static str> {
    match n {
        0..=9 => Ok("small"),
        _ => Err(format!("{n} is too big")),
    }
}

mod nested {
    use dagger::prelude::*;

    /// A task in another module, called by path.
    #[task(pure)]
    pub fn shout(s: String) -> String {
        s.to_uppercase()
    }
}

/// Tasks reaching the `dagger` crate under other names (`crate = path`).
mod renamed {
    /// A re-export of the facade, as a crate wrapping `dagger` offers.
    pub mod reexport {
        pub use dagger::*;
    }
    use dagger as dg;

    /// Generated code reaching `dagger` as `dg`, next to other options.
    #[dg::task(pure, crate = dg, device = "cpu")]
    pub fn double(x: u64) -> u64 {
        x * 2
    }

    /// The option's string form, through a re-export.
    #[reexport::task(cost = 1e-6 * *x as f64, crate = "reexport")]
    pub fn inc(x: u64) -> u64 {
        x + 1
    }
}

#[test]
fn a_dag_with_inputs_nested_calls_and_tuple_outputs_runs() {
    let g = dag! {
        input doc: String;
        input factor: usize;
        let w = tokenize(doc);
        let n = scale(count(w), factor);
        (w, n)
    };
    let rt = Runtime::new();
    let (words, n) = rt.run(&g, ("the quick brown fox".to_string(), 10)).unwrap();
    assert_eq!(words, vec!["the", "quick", "brown", "fox"]);
    assert_eq!(n, 40);
    let (_, n) = rt.run(&g, ("a b".to_string(), 3)).unwrap();
    assert_eq!(n, 6, "a dag runs again with new inputs");
}

#[test]
fn constants_come_from_literals_variables_and_blocks() {
    let doc = String::from("one two three");
    let suffix = " four";
    let g = dag! {
        let a = count(tokenize(doc));
        let b = count(tokenize({ format!("x{suffix}") }));
        let s = scale(a, 2);
        let t = nested::shout("hi".to_string());
        (s, b, t)
    };
    assert_eq!(
        Runtime::new().run(&g, ()).unwrap(),
        (6, 2, "HI".to_string())
    );
}

#[test]
fn err_from_a_task_fails_the_run_naming_the_task() {
    let g = dag! {
        input a: String;
        input b: String;
        plus(parse(a), parse(b))
    };
    let rt = Runtime::new();
    assert_eq!(rt.run(&g, ("40".into(), "2".into())).unwrap(), 42);
    match rt.run(&g, ("40".into(), "two".into())) {
        Err(RunError::TaskFailed { task, message }) => {
            assert_eq!(task, "macros::parse");
            assert_eq!(message, "invalid digit found in string");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
}

#[test]
fn tasks_are_registered_with_their_hints_and_stay_callable() {
    assert_eq!(
        count(vec!["a".into(), "b".into()]),
        2,
        "a task is still a plain function"
    );
    let def = dagger_runtime::task::lookup("macros::tokenize").expect("registered by name");
    assert!(def.pure);
    let sig = def.sig();
    assert_eq!(sig.params, vec!["String"]);
    assert_eq!(sig.output, "Vec<String>");
    assert_eq!(sig.cost, ir::Cost::Dynamic);
    match def.cost {
        dagger_runtime::task::CostHint::Dynamic(f) => {
            let args = [dagger::Datum::new("x".repeat(1000))];
            assert!((f(&args) - 1e-6).abs() < 1e-12);
        }
        other => panic!("expected a dynamic cost, got {other:?}"),
    }
    let scale_def = <scale<'static> as Task>::def();
    assert_eq!(scale_def.name, "macros::scale");
    assert_eq!(scale_def.device, ir::Device::Cpu);
    assert_eq!(scale_def.sig().cost, ir::Cost::Seconds(2e-6));
    assert_eq!(
        <parse<'static> as Task>::def().sig().output,
        "u64",
        "Result<T, E> tasks output T"
    );
    assert!(dagger::task_registry()
        .iter()
        .any(|d| d.name == "macros::nested::shout"));
}

#[test]
fn the_ir_names_tasks_and_bindings() {
    let g = dag! {
        input doc: String;
        let words = tokenize(doc);
        let n = count(words);
        n
    };
    assert_eq!(
        g.graph().to_string(),
        "graph(%0: String) -> (usize) {
  task @macros::tokenize(String) -> Vec<String>  cost=dynamic pure
  task @macros::count(Vec<String>) -> usize
  %0 = input 0 : String  // doc
  %1 = call @macros::tokenize(%0) : Vec<String>  // words
  %2 = call @macros::count(%1) : usize  // n
  return %2
}
"
    );
}

#[test]
fn dag_calls_tasks_imported_renamed_or_local_to_a_function() {
    use nested::shout as yell;
    /// A task defined inside the function that builds the dag.
    #[task]
    fn twice(n: u64) -> u64 {
        n * 2
    }
    // A local variable of a task's name does not hide the task.
    let count = 5u64;
    let g = dag! {
        input s: String;
        let a = yell(s);
        let b = twice(count);
        (a, b)
    };
    let (a, b) = Runtime::new().run(&g, ("hi".to_string(),)).unwrap();
    assert_eq!((a.as_str(), b), ("HI", 10));
}

#[test]
fn the_crate_option_roots_the_generated_code_at_another_path() {
    // An import in a block: the generated items and the dag's stand-in see it.
    use dagger as dg2;
    use renamed::{double, inc};
    #[dg2::task(crate = dg2)]
    fn square(x: u64) -> u64 {
        x * x
    }
    let g = dg2::dag!(crate = dg2; input x: u64; let y = inc(double(x)); square(y));
    let rt = Runtime::new();
    assert_eq!(rt.run(&g, (3,)).unwrap(), 49);
    let g = renamed::reexport::dag!(crate = "renamed::reexport"; input x: u64; inc(x));
    assert_eq!(rt.run(&g, (1,)).unwrap(), 2);
    let def = <double<'static> as Task>::def();
    assert_eq!(def.name, "macros::renamed::double");
    assert!(def.pure);
    assert_eq!(def.device, ir::Device::Cpu);
    assert_eq!(<inc<'static> as Task>::def().sig().cost, ir::Cost::Dynamic);
}

#[test]
fn a_spawned_fallible_task_feeds_later_spawns_its_ok_value() {
    let rt = Runtime::new();
    let a = rt.spawn(parse, ("40".to_string(),));
    let b = rt.spawn(parse, ("2".to_string(),));
    // `plus` takes `u64`: each handle of a `Result<u64, _>` gives its `Ok` value.
    assert_eq!(rt.spawn(plus, (a, b)).wait().unwrap(), 42);
    // `try_spawn` gives the `Ok` value itself, as a `dag!` node does.
    assert_eq!(rt.try_spawn(parse, ("7".to_string(),)).wait().unwrap(), 7);
    // Waiting on a `spawn` keeps the `Result`, for a caller who wants it.
    let kept = rt.spawn(parse, ("x".to_string(),)).wait().unwrap();
    assert_eq!(
        kept.unwrap_err().to_string(),
        "invalid digit found in string"
    );
}

#[test]
fn err_from_a_spawned_task_fails_its_dependents_naming_the_task() {
    let rt = Runtime::new();
    let a = rt.spawn(parse, ("40".to_string(),));
    let b = rt.spawn(parse, ("two".to_string(),));
    let sum = rt.spawn(plus, (a, b));
    let later = rt.spawn(plus, (sum, 1u64));
    match later.wait() {
        Err(RunError::TaskFailed { task, message }) => {
            assert_eq!(task, "macros::parse");
            assert_eq!(message, "invalid digit found in string");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    match rt.try_spawn(parse, ("two".to_string(),)).wait() {
        Err(RunError::TaskFailed { task, message }) => {
            assert_eq!(task, "macros::parse");
            assert_eq!(message, "invalid digit found in string");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
}

#[test]
fn spawn_records_the_same_ir_as_dag() {
    let g = dag! {
        let w = tokenize({ "a b c".to_string() });
        let n = count(w);
        n
    };
    let rt = Runtime::new();
    rt.start_recording();
    let w = rt.spawn(tokenize, ("a b c".to_string(),));
    let n = rt.spawn(count, (w,));
    let recorded = rt.stop_recording(&[&n]);
    assert_eq!(n.wait().unwrap(), 3);
    // The same graph, but for the names `dag!` gives its bindings.
    let strip = |s: String| {
        s.lines()
            .map(|l| l.split("  //").next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(recorded.to_string()), strip(g.graph().to_string()));
}

#[test]
fn tasks_without_parameters_result_aliases_and_static_borrows() {
    let g = dag! {
        let s = seed();
        let l = label(s);
        let big = label(plus(s, 10));
        (l, big)
    };
    match Runtime::new().run(&g, ()) {
        Err(RunError::TaskFailed { task, message }) => {
            assert_eq!(task, "macros::label");
            assert_eq!(message, "17 is too big");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    let g = dag! { label(seed()) };
    assert_eq!(Runtime::new().run(&g, ()).unwrap(), "small");
    let def = <seed<'static> as Task>::def();
    assert!(def.sig().params.is_empty());
    assert_eq!(def.sig().cost, ir::Cost::Seconds(0.0));
    assert_eq!(<label<'static> as Task>::def().sig().output, "&str");
}

/// A type without serde support: usable in one process, not across.
#[derive(Clone)]
pub struct Opaque(u64);

#[task]
fn unwrap_opaque(o: Opaque, extra: u64) -> Vec<u64> {
    vec![o.0, extra]
}

#[test]
fn tasks_record_which_values_can_cross_processes() {
    let wire = (unwrap_opaque::def().wire)();
    assert!(wire.params[0].is_none(), "Opaque has no serde support");
    let extra = wire.params[1].expect("u64 crosses");
    let output = wire.output.expect("Vec<u64> crosses");
    let bytes = (output.encode)(&dagger::Datum::new(vec![4u64, 5])).unwrap();
    let back = (output.decode)(&bytes).unwrap();
    assert_eq!(back.downcast_ref::<Vec<u64>>(), Some(&vec![4, 5]));
    assert!(extra.type_name.ends_with("u64"));
    assert_eq!(unwrap_opaque(Opaque(1), 2), vec![1, 2]);
}

/// Sums a vector (its input size is known from its type).
#[task]
fn total(v: Vec<u64>) -> u64 {
    v.iter().sum()
}

#[test]
fn sizes_reach_the_trace_and_pick_the_history_bucket() {
    use dagger::ir::model::{HistoryModel, Measurement, Platform, ProcKind};
    let b = dagger::GraphBuilder::new();
    let v = b.constant(vec![1u64; 1000]);
    let t = total::on(&b).node(v);
    let dag = b.finish::<(), _>(t);
    let plan = dag.plan().unwrap();
    let (input, _) = plan.predicted_bytes(&HistoryModel::new());
    assert!(input.contains(&8000), "8000 bytes predicted: {input:?}");
    let rt = Runtime::builder().threads(1).build();
    rt.start_trace();
    assert_eq!(rt.run(&dag, ()).unwrap(), 1000);
    let trace = rt.stop_trace();
    assert_eq!(trace.events[0].bytes, 8000, "the measured input size");
    let mut model = HistoryModel::new();
    let name = total::def().name.to_string();
    for (bytes, seconds) in [(8000, 0.5), (8, 0.001)] {
        model.record(&Measurement {
            task: name.clone(),
            kind: ProcKind::Cpu,
            bytes,
            output_bytes: 8,
            seconds,
        });
    }
    let (problem, _) = plan.problem(&Platform::local(1), &model);
    assert_eq!(
        problem.cost[0][0], 0.5,
        "the 8000-byte bucket, not the 8-byte one"
    );
}

#[task]
fn widen(v: Vec<u64>) -> Vec<u64> {
    v.iter().flat_map(|&x| [x; 10]).collect()
}

#[test]
fn measured_result_sizes_replace_the_guess_for_later_placements() {
    use dagger::ir::model::HistoryModel;
    let b = dagger::GraphBuilder::new();
    let w = widen::on(&b).node(b.constant(vec![1u64; 1000]));
    let sum = total::on(&b).node(w);
    let dag = b.finish::<(), _>(sum);
    let plan = dag.plan().unwrap();
    // Before any measurement: the result guessed as large as the input.
    let (_, guessed) = plan.predicted_bytes(&HistoryModel::new());
    assert!(
        guessed.contains(&8000) && !guessed.contains(&80000),
        "{guessed:?}"
    );
    // A traced run measures it; the model learns it; the guess is replaced.
    let rt = Runtime::builder().threads(1).build();
    rt.start_trace();
    assert_eq!(rt.run(&dag, ()).unwrap(), 10000);
    let trace = rt.stop_trace();
    let widened = trace
        .events
        .iter()
        .find(|e| e.name.as_str().ends_with("widen"))
        .unwrap();
    assert_eq!((widened.bytes, widened.output_bytes), (8000, 80000));
    let mut model = HistoryModel::new();
    for m in trace.measurements() {
        model.record(&m);
    }
    let (input, output) = plan.predicted_bytes(&model);
    assert!(output.contains(&80000), "{output:?}");
    assert!(input.contains(&80000), "total's input: {input:?}");
}
