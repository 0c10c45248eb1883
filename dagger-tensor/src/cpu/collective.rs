//! Collectives of data-parallel programs: ring all-reduce and broadcast.
//!
//! The workers form a ring; each only sends to the next and receives from
//! the previous ([`RingLink`]). [`ring_all_reduce_mean`] is the bandwidth-
//! optimal ring algorithm (Patarasuk and Yuan; the one NCCL and Horovod
//! use): a reduce-scatter then an all-gather, `2 (n - 1)` steps that each
//! move `1/n` of the data, so every worker sends about twice the data
//! whatever `n`. Links: [`thread_ring`] for threads of one process,
//! `dagger_cluster::ClusterRing` for the ranks of a cluster (UCX).

use std::sync::mpsc::{channel, Receiver, Sender};

/// Why a collective failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("collective on worker {rank}: {detail}")]
pub struct CollectiveError {
    /// The worker that saw the failure.
    pub rank: usize,
    /// What failed (a dead peer, a wrong message).
    pub detail: String,
}

/// One worker's place in a ring.
pub trait RingLink: Send {
    /// This worker's position, `0..size`.
    fn rank(&self) -> usize;
    /// Number of workers.
    fn size(&self) -> usize;
    /// Sends to the next worker without waiting for it to receive.
    fn send_next(&mut self, data: &[f32]) -> Result<(), CollectiveError>;
    /// Receives the previous worker's next message into `into` (its length
    /// must be the message's).
    fn recv_prev(&mut self, into: &mut [f32]) -> Result<(), CollectiveError>;
    /// Receives the previous worker's next message and adds it into `into`
    /// (a link that holds the message's bytes adds from them directly;
    /// `scratch` serves the others).
    fn recv_prev_add(
        &mut self,
        into: &mut [f32],
        scratch: &mut Vec<f32>,
    ) -> Result<(), CollectiveError> {
        scratch.resize(into.len(), 0.0);
        self.recv_prev(scratch)?;
        for (d, v) in into.iter_mut().zip(scratch.iter()) {
            *d += v;
        }
        Ok(())
    }
    /// Waits until every message sent has left (called at the end of each
    /// collective, so a worker may exit right after its last one).
    fn flush(&mut self) -> Result<(), CollectiveError> {
        Ok(())
    }
}

/// Bounds of chunk `k` of `len` elements cut into `n` chunks.
fn chunk(len: usize, n: usize, k: usize) -> std::ops::Range<usize> {
    (k * len / n)..((k + 1) * len / n)
}

/// Replaces `data` on every worker by the sum over workers of `data`.
/// `scratch` is reused between calls.
pub fn ring_all_reduce_sum(
    link: &mut dyn RingLink,
    data: &mut [f32],
    scratch: &mut Vec<f32>,
) -> Result<(), CollectiveError> {
    let (n, r) = (link.size(), link.rank());
    if n > 1 {
        let len = data.len();
        // Reduce-scatter: after n - 1 steps worker r holds chunk r + 1 summed.
        for s in 0..n - 1 {
            link.send_next(&data[chunk(len, n, (r + n - s) % n)])?;
            let into = chunk(len, n, (r + 2 * n - s - 1) % n);
            link.recv_prev_add(&mut data[into], scratch)?;
        }
        // All-gather: pass the summed chunks around the ring.
        for s in 0..n - 1 {
            link.send_next(&data[chunk(len, n, (r + 1 + n - s) % n)])?;
            let into = chunk(len, n, (r + n - s) % n);
            link.recv_prev(&mut data[into])?;
        }
        link.flush()?;
    }
    Ok(())
}

/// Replaces `data` on every worker by the mean over workers of `data`.
pub fn ring_all_reduce_mean(
    link: &mut dyn RingLink,
    data: &mut [f32],
    scratch: &mut Vec<f32>,
) -> Result<(), CollectiveError> {
    ring_all_reduce_sum(link, data, scratch)?;
    let scale = 1.0 / link.size() as f32;
    data.iter_mut().for_each(|v| *v *= scale);
    Ok(())
}

/// Gives every worker worker 0's `data` (passed along the ring).
pub fn ring_broadcast(link: &mut dyn RingLink, data: &mut [f32]) -> Result<(), CollectiveError> {
    let (n, r) = (link.size(), link.rank());
    if r > 0 {
        link.recv_prev(data)?;
    }
    if r + 1 < n {
        link.send_next(data)?;
    }
    link.flush()
}

/// A worker's link in a ring of threads of one process (channels).
pub struct ThreadLink {
    rank: usize,
    size: usize,
    next: Sender<Vec<f32>>,
    prev: Receiver<Vec<f32>>,
}

/// The `n` links of a ring of threads; give one to each worker thread.
pub fn thread_ring(n: usize) -> Vec<ThreadLink> {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| channel()).unzip();
    // Worker r's inbox is receiver r; it sends into worker r + 1's.
    receivers
        .into_iter()
        .enumerate()
        .map(|(r, prev)| ThreadLink {
            rank: r,
            size: n,
            next: senders[(r + 1) % n].clone(),
            prev,
        })
        .collect()
}

impl RingLink for ThreadLink {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn send_next(&mut self, data: &[f32]) -> Result<(), CollectiveError> {
        self.next
            .send(data.to_vec())
            .map_err(|_| self.error("the next worker is gone"))
    }
    fn recv_prev(&mut self, into: &mut [f32]) -> Result<(), CollectiveError> {
        let got = self
            .prev
            .recv()
            .map_err(|_| self.error("the previous worker is gone"))?;
        if got.len() != into.len() {
            return Err(self.error(&format!(
                "expected {} values, got {}",
                into.len(),
                got.len()
            )));
        }
        into.copy_from_slice(&got);
        Ok(())
    }
}

impl ThreadLink {
    fn error(&self, detail: &str) -> CollectiveError {
        CollectiveError {
            rank: self.rank,
            detail: detail.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_average_and_broadcast_for_every_ring_size() {
        for n in 1..=4 {
            for len in [0, 1, 5, 1000] {
                let handles: Vec<_> = thread_ring(n)
                    .into_iter()
                    .map(|mut link| {
                        std::thread::spawn(move || {
                            let r = link.rank();
                            let mut data: Vec<f32> =
                                (0..len).map(|i| (i * (r + 1)) as f32).collect();
                            ring_all_reduce_mean(&mut link, &mut data, &mut Vec::new()).unwrap();
                            let mut b: Vec<f32> = (0..len)
                                .map(|i| if r == 0 { i as f32 } else { -1.0 })
                                .collect();
                            ring_broadcast(&mut link, &mut b).unwrap();
                            (data, b)
                        })
                    })
                    .collect();
                let mean_factor = (1..=n).sum::<usize>() as f32 / n as f32;
                for h in handles {
                    let (data, b) = h.join().unwrap();
                    for (i, v) in data.iter().enumerate() {
                        assert!(
                            (v - i as f32 * mean_factor).abs() < 1e-3,
                            "n {n}, len {len}, {i}: {v}"
                        );
                    }
                    assert_eq!(b, (0..len).map(|i| i as f32).collect::<Vec<_>>());
                }
            }
        }
    }
}
