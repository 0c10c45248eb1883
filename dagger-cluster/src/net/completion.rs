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
    /// A thread sleeps on the condition variable (notifying costs a
    /// system call, so it is done only then).
    sleeping: bool,
}

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

/// A transport whose waiters make its progress themselves.
pub(crate) trait Drive: Send + Sync {
    /// A waiter starts driving.
    fn begin(&self);
    /// Makes the progress there is now.
    fn drive(&self);
    /// That waiter stops driving: `done` if its result came, else it is
    /// about to block and the transport must progress without it until
    /// [`unblocked`](Drive::unblocked).
    fn end(&self, done: bool);
    /// A waiter that blocked after driving stopped waiting.
    fn unblocked(&self);
}

/// Makes progress on the operations a completion waits for.
pub(crate) type Driver = Arc<dyn Drive>;

/// The pending result of a network operation.
pub struct Completion<T> {
    slot: Arc<Slot<T>>,
    /// Called while waiting, for up to `drive_for`, before blocking.
    driver: Option<(Driver, Duration)>,
}

/// The delivering side of a [`Completion`].
pub(crate) struct Completer<T>(Option<Arc<Slot<T>>>);

/// A completion and its completer.
pub(crate) fn completion<T>() -> (Completion<T>, Completer<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            value: None,
            waker: None,
            sleeping: false,
        }),
        ready: Condvar::new(),
    });
    (
        Completion {
            slot: slot.clone(),
            driver: None,
        },
        Completer(Some(slot)),
    )
}

/// A completion whose waiter calls `driver` for up to `drive_for` before
/// it blocks (the caller drives the transport instead of waiting for a
/// thread that does).
pub(crate) fn driven_completion<T>(
    driver: Driver,
    drive_for: Duration,
) -> (Completion<T>, Completer<T>) {
    let (mut c, done) = completion();
    c.driver = Some((driver, drive_for));
    (c, done)
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
    let sleeping = state.sleeping;
    drop(state);
    if sleeping {
        slot.ready.notify_all();
    }
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
    /// Drives the transport (if it lets waiters) until the result is there
    /// or the driving time is up. Returns a guard to hold while blocking
    /// if the result is not there yet.
    fn drive(&self) -> Option<Blocked<'_>> {
        let (driver, drive_for) = self.driver.as_ref()?;
        let start = Instant::now();
        driver.begin();
        // The clock is read every few turns: reading it costs as much as a
        // turn of an idle transport.
        'driving: while start.elapsed() < *drive_for {
            for _ in 0..16 {
                if self.is_ready() {
                    break 'driving;
                }
                driver.drive();
            }
        }
        let done = self.is_ready();
        driver.end(done);
        (!done).then_some(Blocked(driver))
    }

    /// Whether the result is there.
    fn is_ready(&self) -> bool {
        let state = self.slot.state.lock().unwrap_or_else(|p| p.into_inner());
        state.value.is_some()
    }

    /// Blocks until the result arrives.
    pub fn wait(self) -> Result<T, NetError> {
        let _blocked = self.drive();
        let mut state = self.slot.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = state.value.take() {
                return v;
            }
            state.sleeping = true;
            state = self
                .slot
                .ready
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Blocks until the result arrives or `timeout` passes
    /// ([`NetError::TimedOut`]; the completion stays pending and can be
    /// waited for again).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<T, NetError> {
        let _blocked = self.drive();
        let deadline = Instant::now() + timeout;
        let mut state = self.slot.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = state.value.take() {
                return v;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NetError::TimedOut(timeout));
            }
            state.sleeping = true;
            state = self
                .slot
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Held while a waiter that drove blocks; tells the driver when it stops.
struct Blocked<'a>(&'a Driver);

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.unblocked();
    }
}

impl<T> Future for Completion<T> {
    type Output = Result<T, NetError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.state.lock().unwrap_or_else(|p| p.into_inner());
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
