//! Static graphs built with the builder API and run by the executor: values,
//! moves, failures, input checking, traces. (Tasks are defined by hand here;
//! `#[task]` generates the same items, see the facade's tests.)

use dagger_ir::Device;
use dagger_runtime::task::{take_arg, CostHint, TaskRegistration};
use dagger_runtime::{Datum, GraphBuilder, RunError, Runtime, Task, TaskDef};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Defines a task `$name` (struct + registered def) from a closure over owned arguments.
macro_rules! def_task {
    ($name:ident, $def:ident, ($($p:ident : $t:ty),*) -> $out:ty, $body:expr) => {
        struct $name;
        static $def: TaskDef = TaskDef {
            name: concat!("plan::", stringify!($name)),
            signature: || (vec![$(dagger_ir::type_name::<$t>()),*], dagger_ir::type_name::<$out>()),
            cost: CostHint::Unknown,
            device: Device::Any,
            pure: false,
            grad: None,
            invoke: |args| {
                #[allow(unused_mut, unused_variables)]
                let mut it = args.iter_mut().map(Option::take);
                $(let $p: $t = take_arg(it.next().flatten(), stringify!($name), 0)?;)*
                let f: fn($($t),*) -> Result<$out, String> = $body;
                f($($p),*).map(Datum::new)
            },
            device_body: None,
            wire: Default::default,
        };
        inventory::submit!(TaskRegistration(&$def));
        impl Task for $name {
            type Params = ($($t,)*);
            type Output = $out;
            fn def() -> &'static TaskDef {
                &$def
            }
        }
    };
}

static DEPENDENT_RUNS: AtomicUsize = AtomicUsize::new(0);

def_task!(Add, ADD, (a: u64, b: u64) -> u64, |a, b| Ok(a + b));
def_task!(Fill, FILL, (n: usize) -> Vec<u8>, |n| Ok(vec![1; n]));
def_task!(Addr, ADDR, (v: Vec<u8>) -> (usize, Vec<u8>), |v| Ok((v.as_ptr() as usize, v)));
def_task!(Len, LEN, (v: Vec<u8>) -> usize, |v| Ok(v.len()));
def_task!(Boom, BOOM, (a: u64) -> u64, |a| match 100u64.checked_div(a) {
    Some(q) => Ok(q),
    None => panic!("division by zero"),
});
def_task!(Fails, FAILS, (a: u64) -> u64, |a| Err(format!("bad value {a}")));
def_task!(Counted, COUNTED, (a: u64) -> u64, |a| {
    DEPENDENT_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(a)
});

/// `leaves` additions of `x` to itself, summed by a balanced tree of additions.
static LOGGED: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
def_task!(Log, LOG, (a: u64, k: u64) -> u64, |a, k| {
    LOGGED.lock().unwrap().push(k);
    Ok(a + k)
});

fn add_tree(b: &GraphBuilder, x: dagger_ir::NodeId, leaves: usize) -> dagger_runtime::Value<u64> {
    let level: Vec<_> = (0..leaves).map(|_| call::<Add>(b, &[x, x])).collect();
    b.reduce_tree(level, |p, q| call::<Add>(b, &[p.id(), q.id()]))
}

fn call<K: Task>(b: &GraphBuilder, args: &[dagger_ir::NodeId]) -> dagger_runtime::Value<K::Output> {
    b.call::<K>(args)
}

#[test]
fn a_diamond_with_inputs_and_constants_runs() {
    let b = GraphBuilder::new();
    let x = b.input::<u64>("x");
    let one = b.constant(1u64);
    let l = call::<Add>(&b, &[x.id(), one.id()]);
    let r = call::<Add>(&b, &[x.id(), x.id()]);
    let s = call::<Add>(&b, &[l.id(), r.id()]);
    let dag = b.finish::<(u64,), _>((s, l));
    let rt = Runtime::builder().threads(2).build();
    assert_eq!(rt.run(&dag, (5,)).unwrap(), (16, 6));
    assert_eq!(
        rt.run(&dag, (0,)).unwrap(),
        (1, 1),
        "a dag runs again with other inputs"
    );
}

#[test]
fn a_value_with_one_consumer_is_moved_and_a_shared_one_is_cloned() {
    let b = GraphBuilder::new();
    let n = b.constant(1usize << 20);
    let v = call::<Fill>(&b, &[n.id()]);
    let moved = call::<Addr>(&b, &[v.id()]);
    let dag = b.finish::<(), _>(moved);
    let (addr, v) = Runtime::builder().threads(2).build().run(&dag, ()).unwrap();
    assert_eq!(
        addr,
        v.as_ptr() as usize,
        "single consumer must get the producer's buffer"
    );

    let b = GraphBuilder::new();
    let n = b.constant(1000usize);
    let v = call::<Fill>(&b, &[n.id()]);
    let l1 = call::<Len>(&b, &[v.id()]);
    let l2 = call::<Len>(&b, &[v.id()]);
    let dag = b.finish::<(), _>((l1, l2, v));
    let (l1, l2, v) = Runtime::builder().threads(2).build().run(&dag, ()).unwrap();
    assert_eq!((l1, l2, v.len()), (1000, 1000, 1000));
}

#[test]
fn a_panic_fails_the_run_cancels_dependents_and_the_runtime_goes_on() {
    let rt = Runtime::builder().threads(2).build();
    let b = GraphBuilder::new();
    let x = b.input::<u64>("x");
    let q = call::<Boom>(&b, &[x.id()]);
    let c = call::<Counted>(&b, &[q.id()]);
    let dag = b.finish::<(u64,), _>(c);
    let before = DEPENDENT_RUNS.load(Ordering::SeqCst);
    match rt.run(&dag, (0,)) {
        Err(RunError::TaskFailed { task, message }) => {
            assert_eq!(task, "plan::Boom");
            assert!(message.contains("division by zero"), "{message}");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    assert_eq!(
        DEPENDENT_RUNS.load(Ordering::SeqCst),
        before,
        "dependent must be cancelled"
    );
    assert_eq!(rt.run(&dag, (4,)).unwrap(), 25, "the runtime stays usable");
}

#[test]
fn an_err_result_fails_the_run_with_its_message() {
    let b = GraphBuilder::new();
    let x = b.input::<u64>("x");
    let f = call::<Fails>(&b, &[x.id()]);
    let dag = b.finish::<(u64,), _>(f);
    let err = Runtime::builder()
        .threads(1)
        .build()
        .run(&dag, (7,))
        .unwrap_err();
    assert_eq!(
        err,
        RunError::TaskFailed {
            task: "plan::Fails".into(),
            message: "bad value 7".into()
        }
    );
    assert_eq!(err.to_string(), "task `plan::Fails` failed: bad value 7");
}

#[test]
fn wide_graphs_finish_on_one_and_many_threads() {
    for threads in [1, 2, 4] {
        let b = GraphBuilder::new();
        let one = b.constant(1u64);
        let sum = add_tree(&b, one.id(), 1000);
        let dag = b.finish::<(), _>(sum);
        let rt = Runtime::builder().threads(threads).build();
        assert_eq!(rt.run(&dag, ()).unwrap(), 2000);
    }
}

#[test]
fn runs_are_traced() {
    let b = GraphBuilder::new();
    let one = b.constant(1u64);
    let a = call::<Add>(&b, &[one.id(), one.id()]);
    let c = call::<Add>(&b, &[a.id(), one.id()]);
    let dag = b.finish::<(), _>(c);
    let rt = Runtime::builder().threads(2).build();
    rt.start_trace();
    assert_eq!(rt.run(&dag, ()).unwrap(), 3);
    let trace = rt.stop_trace();
    assert_eq!(trace.events.len(), 2);
    assert!(trace.events.iter().all(|e| e.name.as_str() == "plan::Add"));
    assert!(
        trace.events[0].end_ns <= trace.events[1].start_ns,
        "the chain runs in order"
    );
    let (names, measured) = trace.to_schedule();
    assert_eq!(names, ["plan::Add", "plan::Add"]);
    assert_eq!(
        measured.placement[0].1, 0.0,
        "times start at the first task"
    );
    assert!(measured.placement[1].1 >= measured.placement[0].2);
    let svg = trace.to_gantt_svg("chain");
    assert_eq!(svg.matches("<rect").count(), 2);
    assert!(
        svg.contains("chain: makespan "),
        "the heading gives the makespan"
    );
    assert!(svg.contains(", 2 tasks"), "and the task count");
}

#[test]
fn a_graph_calling_an_unregistered_task_is_refused_by_name() {
    let json = r#"{
        "tasks": [{"name": "nowhere::missing", "params": ["u64"], "output": "u64"}],
        "inputs": [{"id": "x", "type": "u64"}],
        "nodes": [{"id": "y", "call": "nowhere::missing", "args": ["x"]}],
        "outputs": ["y"]
    }"#;
    let graph = dagger_ir::from_json(json).unwrap();
    let err = dagger_runtime::Plan::compile(&graph, &[])
        .err()
        .expect("must be refused");
    assert_eq!(
        err.to_string(),
        "unknown task `nowhere::missing`: no #[task] of that name is registered in this binary"
    );
}

#[test]
fn a_graph_disagreeing_with_the_registered_signature_is_refused() {
    let json = r#"{
        "tasks": [{"name": "plan::Add", "params": ["u64", "u32"], "output": "u64"}],
        "inputs": [{"id": "x", "type": "u64"}, {"id": "y", "type": "u32"}],
        "nodes": [{"id": "s", "call": "plan::Add", "args": ["x", "y"]}],
        "outputs": ["s"]
    }"#;
    let graph = dagger_ir::from_json(json).unwrap();
    let err = dagger_runtime::Plan::compile(&graph, &[])
        .err()
        .expect("must be refused");
    assert!(matches!(err, RunError::SignatureMismatch { .. }), "{err}");
    assert!(err.to_string().contains("(u64, u32) -> u64"), "{err}");
}

#[test]
fn a_static_schedule_places_every_task_on_its_worker() {
    use dagger_ir::sched::{HeftScheduler, PeftScheduler, Scheduler};
    let b = GraphBuilder::new();
    let one = b.constant(1u64);
    let sum = add_tree(&b, one.id(), 64);
    let dag = b.finish::<(), _>(sum);
    let rt = Runtime::builder().threads(3).build();
    let model = dagger_ir::model::HistoryModel::new();
    for scheduler in [&HeftScheduler as &dyn Scheduler, &PeftScheduler] {
        rt.start_trace();
        let (sum, schedule) = rt.run_scheduled(&dag, (), scheduler, &model).unwrap();
        let trace = rt.stop_trace();
        assert_eq!(sum, 128);
        let mut planned = [0usize; 3];
        for &(worker, _, _) in &schedule.placement {
            planned[worker] += 1;
        }
        let mut ran = [0usize; 3];
        for e in &trace.events {
            ran[e.worker] += 1;
        }
        assert_eq!(ran, planned, "{}: tasks per worker", scheduler.name());
        assert!(
            planned.iter().filter(|&&n| n > 0).count() > 1,
            "the work is spread"
        );
    }
}

/// Puts every task on worker 0 and starts later tasks earlier.
struct Backwards;

impl dagger_ir::sched::Scheduler for Backwards {
    fn name(&self) -> &'static str {
        "backwards"
    }
    fn schedule(&self, problem: &dagger_ir::sched::Problem) -> dagger_ir::sched::Schedule {
        let n = problem.len();
        dagger_ir::sched::Schedule {
            placement: (0..n)
                .map(|k| (0, (n - k) as f64, (n - k) as f64 + 1.0))
                .collect(),
        }
    }
}

#[test]
fn a_worker_runs_its_ready_tasks_in_the_schedules_order() {
    let b = GraphBuilder::new();
    let one = b.constant(1u64);
    let gate = call::<Add>(&b, &[one.id(), one.id()]);
    let logs: Vec<_> = (0..8u64)
        .map(|k| {
            let k = b.constant(k);
            call::<Log>(&b, &[gate.id(), k.id()])
        })
        .collect();
    let dag = b.finish::<(), _>(logs);
    let rt = Runtime::builder().threads(2).build();
    let model = dagger_ir::model::HistoryModel::new();
    let (out, _) = rt.run_scheduled(&dag, (), &Backwards, &model).unwrap();
    assert_eq!(out, (2..10).collect::<Vec<u64>>());
    // All eight became ready together when the gate finished; worker 0 ran
    // them by scheduled start, the last created first.
    assert_eq!(*LOGGED.lock().unwrap(), (0..8).rev().collect::<Vec<u64>>());
}

#[test]
fn every_dynamic_policy_gives_the_same_result() {
    use dagger_runtime::DynamicPolicy;
    let b = GraphBuilder::new();
    let x = b.input::<u64>("x");
    let sum = add_tree(&b, x.id(), 100);
    let dag = b.finish::<(u64,), _>(sum);
    let rt = Runtime::builder().threads(3).build();
    let model = dagger_ir::model::HistoryModel::new();
    for policy in DynamicPolicy::ALL {
        rt.start_trace();
        assert_eq!(
            rt.run_with_policy(&dag, (2,), policy, &model).unwrap(),
            400,
            "{}",
            policy.name()
        );
        let trace = rt.stop_trace();
        assert_eq!(trace.events.len(), 199, "{}", policy.name());
        if policy == DynamicPolicy::RoundRobin {
            let mut per_worker = [0usize; 3];
            for e in &trace.events {
                per_worker[e.worker] += 1;
            }
            assert!(
                per_worker.iter().all(|&n| n > 0),
                "round robin uses every worker: {per_worker:?}"
            );
        }
    }
}
