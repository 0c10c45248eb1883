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

use crate::pool::Job;
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A job with its priority key (lower runs first) and arrival number.
struct Entry {
    key: u64,
    seq: u64,
    job: Job,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.seq) == (other.key, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.key, self.seq).cmp(&(other.key, other.seq))
    }
}

/// The ready jobs placed on one worker, lowest priority key first.
#[derive(Default)]
pub(crate) struct PinnedQueue {
    heap: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    /// Number of queued jobs, readable without the lock.
    len: AtomicUsize,
}

impl PinnedQueue {
    /// Queues `job` with priority `key` (lower runs first; equal keys run in
    /// arrival order).
    pub(crate) fn push(&self, job: Job, key: u64) {
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
    pub(crate) fn pop(&self) -> Option<Job> {
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
    use crate::pool::StackRef;

    fn job(tag: usize) -> Job {
        unsafe fn never(_: *const (), _: &crate::pool::WorkerCtx) {}
        Job::Stack(StackRef {
            data: tag as *const (),
            run: never,
        })
    }

    fn tag(job: Job) -> usize {
        match job {
            Job::Stack(r) => r.data as usize,
            Job::Shared(..) => unreachable!("only stack jobs are queued here"),
        }
    }

    #[test]
    fn lowest_key_first_then_arrival_order() {
        let q = PinnedQueue::default();
        assert!(q.is_empty());
        q.push(job(1), 30);
        q.push(job(2), 10);
        q.push(job(3), 20);
        q.push(job(4), 10);
        let order: Vec<usize> = std::iter::from_fn(|| q.pop()).map(tag).collect();
        assert_eq!(order, vec![2, 4, 3, 1]);
        assert!(q.is_empty());
    }
}
