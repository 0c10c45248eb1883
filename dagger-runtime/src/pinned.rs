//! A worker's own queue of jobs placed on it, served in priority order.
//!
//! Static schedules (HEFT, CPOP, PEFT, lookahead) fix both the worker of
//! every task and the order in which each worker runs its tasks; the dynamic
//! policies that pick a worker (round-robin, random, dmda, dmdas) fix a
//! worker and, for dmdas, a priority. A [`PinnedQueue`] holds the ready jobs
//! of one worker and hands out the one with the lowest priority key first
//! (ties in arrival order), so a worker with several ready tasks runs them
//! in the order the policy meant, not in the order they became ready.
//!
//! Only its own worker takes from a pinned queue; any thread may push.
//! The queue holds any item (the pool's jobs), so that it needs nothing
//! of the pool.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// An item with its priority key (lower runs first) and arrival number.
struct Entry<T> {
    key: u64,
    seq: u64,
    job: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.seq) == (other.key, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.key, self.seq).cmp(&(other.key, other.seq))
    }
}

/// The ready jobs placed on one worker, lowest priority key first.
pub(crate) struct PinnedQueue<T> {
    heap: Mutex<(BinaryHeap<Reverse<Entry<T>>>, u64)>,
    /// Number of queued jobs, readable without the lock.
    len: AtomicUsize,
}

impl<T> Default for PinnedQueue<T> {
    fn default() -> Self {
        PinnedQueue {
            heap: Mutex::new((BinaryHeap::new(), 0)),
            len: AtomicUsize::new(0),
        }
    }
}

impl<T> PinnedQueue<T> {
    /// Queues `job` with priority `key` (lower runs first; equal keys run in
    /// arrival order).
    pub(crate) fn push(&self, job: T, key: u64) {
        let mut guard = self.heap.lock().unwrap_or_else(|p| p.into_inner());
        let (heap, next_seq) = &mut *guard;
        heap.push(Reverse(Entry {
            key,
            seq: *next_seq,
            job,
        }));
        *next_seq += 1;
        self.len.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes the job with the lowest key, if any.
    pub(crate) fn pop(&self) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        let mut guard = self.heap.lock().unwrap_or_else(|p| p.into_inner());
        let entry = guard.0.pop()?;
        self.len.fetch_sub(1, Ordering::SeqCst);
        Some(entry.0.job)
    }

    /// Whether no job is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::SeqCst) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_key_first_then_arrival_order() {
        let q = PinnedQueue::default();
        assert!(q.is_empty());
        q.push(1, 30);
        q.push(2, 10);
        q.push(3, 20);
        q.push(4, 10);
        let order: Vec<usize> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![2, 4, 3, 1]);
        assert!(q.is_empty());
    }
}
