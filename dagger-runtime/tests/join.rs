//! `join`: fork-join on the runtime's workers.

use dagger_runtime::{join, Runtime};
use std::sync::atomic::{AtomicUsize, Ordering};

fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = join(|| fib(n - 1), || fib(n - 2));
    a + b
}

#[test]
fn join_computes_both_sides_inside_tasks_and_from_outside() {
    assert_eq!(fib(22), 17711, "from a plain thread (global runtime)");
    for threads in [1, 2, 4] {
        let rt = Runtime::builder().threads(threads).build();
        assert_eq!(rt.spawn(fib, (22u64,)).wait().unwrap(), 17711);
    }
}

#[test]
fn join_borrows_from_the_callers_stack() {
    let rt = Runtime::builder().threads(2).build();
    let sum = rt
        .spawn(
            || {
                let data: Vec<u64> = (1..=100_000).collect();
                let (left, right) = data.split_at(50_000);
                let (a, b) = join(|| left.iter().sum::<u64>(), || right.iter().sum::<u64>());
                a + b
            },
            (),
        )
        .wait()
        .unwrap();
    assert_eq!(sum, 5_000_050_000);
}

#[test]
fn a_panic_in_either_side_reaches_the_caller_after_both_finished() {
    let rt = Runtime::builder().threads(2).build();
    let finished = std::sync::Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let err = rt
        .spawn(
            move || {
                join(
                    || panic!("left side failed"),
                    || {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        f.fetch_add(1, Ordering::SeqCst);
                    },
                );
            },
            (),
        )
        .wait()
        .unwrap_err();
    assert!(err.to_string().contains("left side failed"), "{err}");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the right side ran to the end"
    );
    assert_eq!(
        rt.spawn(fib, (10u64,)).wait().unwrap(),
        55,
        "the runtime goes on"
    );
}
