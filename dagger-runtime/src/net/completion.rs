//! A one-shot result delivered by another thread: what a send or a receive
//! hands back to its caller. Wait for it (`wait`, `wait_timeout`) or
//! `.await` it. If the side that should deliver it goes away first (the
//! transport shut down), it resolves to [`NetError::Closed`], so nothing
//! waits forever.

use super::NetError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

struct State<T> {
    value: Option<Result<T, NetError>>,
    waker: Option<Waker>,
}

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

/// The pending result of a network operation.
pub struct Completion<T>(Arc<Slot<T>>);

/// The delivering side of a [`Completion`].
pub(crate) struct Completer<T>(Option<Arc<Slot<T>>>);

/// A completion and its completer.
pub(crate) fn completion<T>() -> (Completion<T>, Completer<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            value: None,
            waker: None,
        }),
        ready: Condvar::new(),
    });
    (Completion(slot.clone()), Completer(Some(slot)))
}

impl<T> Completer<T> {
    /// Delivers the result.
    pub(crate) fn complete(mut self, value: Result<T, NetError>) {
        if let Some(slot) = self.0.take() {
            deliver(&slot, value);
        }
    }
}

fn deliver<T>(slot: &Slot<T>, value: Result<T, NetError>) {
    let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
    state.value = Some(value);
    let waker = state.waker.take();
    drop(state);
    slot.ready.notify_all();
    if let Some(w) = waker {
        w.wake();
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            deliver(&slot, Err(NetError::Closed));
        }
    }
}

impl<T> Completion<T> {
    /// Blocks until the result arrives.
    pub fn wait(self) -> Result<T, NetError> {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = state.value.take() {
                return v;
            }
            state = self.0.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Blocks until the result arrives or `timeout` passes
    /// ([`NetError::TimedOut`]; the completion stays pending and can be
    /// waited for again).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<T, NetError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = state.value.take() {
                return v;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NetError::TimedOut(timeout));
            }
            state = self
                .0
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl<T> Future for Completion<T> {
    type Output = Result<T, NetError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_across_threads_and_closes_when_dropped() {
        let (c, done) = completion::<u32>();
        std::thread::spawn(move || done.complete(Ok(7)));
        assert_eq!(c.wait().unwrap(), 7);
        let (c, done) = completion::<u32>();
        drop(done);
        assert!(matches!(c.wait(), Err(NetError::Closed)));
        let (mut c, done) = completion::<u32>();
        assert!(matches!(
            c.wait_timeout(Duration::from_millis(10)),
            Err(NetError::TimedOut(_))
        ));
        done.complete(Ok(3));
        assert_eq!(c.wait_timeout(Duration::from_millis(10)).unwrap(), 3);
    }
}
