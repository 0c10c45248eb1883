//! The dynamic front end: spawns, handles as arguments, recursion, failure,
//! `.await`, recording as IR.

use dagger_runtime::{spawn, RunError, Runtime};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let a = spawn(fib, (n - 1,));
    let b = spawn(fib, (n - 2,));
    a.wait().unwrap() + b.wait().unwrap()
}

#[test]
fn handles_flow_into_later_spawns() {
    let rt = Runtime::builder().threads(3).build();
    let a = rt.spawn(|| 20u64, ());
    let b = rt.spawn(add, (a, 1u64));
    let c = rt.spawn(add, (b.clone(), b));
    assert_eq!(c.wait().unwrap(), 42);
}

#[test]
fn tasks_spawn_and_wait_for_subtasks() {
    let rt = Runtime::builder().threads(2).build();
    assert_eq!(rt.spawn(fib, (20u64,)).wait().unwrap(), 6765);
    // The free function outside any task uses the global runtime.
    assert_eq!(spawn(fib, (15u64,)).wait().unwrap(), 610);
}

#[test]
fn a_single_consumer_receives_the_value_without_a_copy() {
    let rt = Runtime::builder().threads(2).build();
    let v = rt.spawn(|| vec![1u8; 1 << 20], ());
    let addr = rt.spawn(|v: Vec<u8>| v.as_ptr() as usize, (v.clone(),));
    let first = addr.wait().unwrap();
    // `v` was still held by a handle, so that consumer got a copy...
    let moved = rt
        .spawn(|v: Vec<u8>| v.as_ptr() as usize, (v,))
        .wait()
        .unwrap();
    assert_ne!(first, moved);
    // ...while a value whose only reader is one task is moved to it.
    let w = rt.spawn(|| vec![2u8; 1 << 20], ());
    let ptr_inside = rt
        .spawn(|w: Vec<u8>| (w.as_ptr() as usize, w), (w,))
        .wait()
        .unwrap();
    assert_eq!(ptr_inside.0, ptr_inside.1.as_ptr() as usize);
}

#[test]
fn a_panicking_task_fails_its_dependents_and_the_runtime_goes_on() {
    let rt = Runtime::builder().threads(2).build();
    let ran = Arc::new(AtomicUsize::new(0));
    let bad = rt.spawn(|| -> u64 { panic!("boom") }, ());
    let r = ran.clone();
    let dependent = rt.spawn(
        move |x: u64| {
            r.fetch_add(1, Ordering::SeqCst);
            x
        },
        (bad,),
    );
    match dependent.wait() {
        Err(RunError::TaskFailed { task, message }) => {
            assert!(
                task.contains("spawn::"),
                "task name names the closure: {task}"
            );
            assert!(message.contains("boom"), "{message}");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a cancelled task must not run"
    );
    assert_eq!(rt.spawn(add, (1u64, 2u64)).wait().unwrap(), 3);
}

#[test]
fn try_spawn_turns_err_into_task_failed() {
    let rt = Runtime::builder().threads(2).build();
    let parse = |s: String| s.parse::<u64>();
    assert_eq!(rt.try_spawn(parse, ("42".to_string(),)).wait().unwrap(), 42);
    let err = rt.try_spawn(parse, ("x".to_string(),)).wait().unwrap_err();
    assert!(
        matches!(err, RunError::TaskFailed { ref message, .. } if message.contains("invalid digit")),
        "{err}"
    );
}

struct ThreadWaker(std::thread::Thread);
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn handles_can_be_awaited() {
    let rt = Runtime::builder().threads(2).build();
    let slow = rt.spawn(
        || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            7u32
        },
        (),
    );
    let sum = block_on(async move { slow.await.unwrap() + 1 });
    assert_eq!(sum, 8);
}

#[test]
fn recording_turns_spawns_into_ir() {
    let rt = Runtime::builder().threads(2).build();
    rt.start_recording();
    let a = rt.spawn(add, (1u64, 2u64));
    let b = rt.spawn(add, (a.clone(), 10u64));
    let g = rt.stop_recording(&[&b]);
    assert_eq!(b.wait().unwrap(), 13);
    dagger_ir::verify(&g).unwrap();
    let text = dagger_ir::to_text(&g);
    assert_eq!(text.matches("call @spawn::add").count(), 2, "{text}");
    assert_eq!(
        g.edge_count(),
        4,
        "two constants and one handle per call: {text}"
    );
}

#[test]
fn traces_record_each_task() {
    let rt = Runtime::builder().threads(2).build();
    rt.start_trace();
    let x = rt.spawn(add, (1u64, 1u64));
    rt.spawn(add, (x, 1u64)).wait().unwrap();
    let trace = rt.stop_trace();
    assert_eq!(trace.events.len(), 2);
    assert!(trace
        .events
        .iter()
        .all(|e| e.name.as_str() == "spawn::add" && e.end_ns >= e.start_ns));
}

#[test]
fn dropping_the_runtime_finishes_queued_work() {
    let rt = Runtime::builder().threads(1).build();
    let slow = rt.spawn(
        || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            1u64
        },
        (),
    );
    let after = rt.spawn(add, (slow, 41u64));
    drop(rt);
    assert_eq!(after.wait().unwrap(), 42);
}

fn countdown(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    1 + spawn(countdown, (n - 1,)).wait().unwrap()
}

#[test]
fn deep_chains_of_waiting_tasks_fit_on_a_worker_stack() {
    let rt = Runtime::builder().threads(1).build();
    assert_eq!(rt.spawn(countdown, (1_000u64,)).wait().unwrap(), 1_000);
}
