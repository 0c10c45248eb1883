//! [`ClusterRing`]: the ring all-reduce's link between the ranks of a
//! [`Cluster`], over the cluster's transport (UCX). The collectives
//! themselves (`dagger_tensor::cpu::collective`) are written against
//! the `RingLink` trait; this is the implementation that crosses processes.

use crate::cluster::Cluster;
use crate::net::Completion;
use dagger_tensor::cpu::collective::{CollectiveError, RingLink};
use std::sync::Arc;

/// Tag kind of collective messages (the top byte; remote calls use 1 and 2).
const COLLECTIVE: u64 = 3 << 56;

/// A rank's link in the ring of a [`Cluster`]'s ranks: messages over the
/// cluster's transport (UCX), tagged by sender and sequence number. A dead
/// neighbour ends a collective with an error naming it instead of a hang.
pub struct ClusterRing {
    cluster: Arc<Cluster>,
    sent: u64,
    received: u64,
    /// The last send, until it is known to have left.
    in_flight: Option<Completion<Vec<u8>>>,
    /// The last sent message's memory, filled again for the next (no
    /// allocation, no page faults).
    outbox: Vec<u8>,
    /// The last received message's memory, received into again.
    inbox: Vec<u8>,
}

impl ClusterRing {
    /// This rank's link.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        ClusterRing {
            cluster,
            sent: 0,
            received: 0,
            in_flight: None,
            outbox: Vec::new(),
            inbox: Vec::new(),
        }
    }

    fn tag(from: u32, seq: u64) -> u64 {
        COLLECTIVE | (u64::from(from) << 40) | (seq & ((1 << 40) - 1))
    }

    fn error(&self, detail: String) -> CollectiveError {
        CollectiveError {
            rank: self.rank(),
            detail,
        }
    }

    /// Receives the previous rank's next message of `floats` values into
    /// the reused inbox and returns its bytes.
    fn receive(&mut self, floats: usize) -> Result<&[u8], CollectiveError> {
        let prev = ((self.rank() + self.size() - 1) % self.size()) as u32;
        let tag = Self::tag(prev, self.received);
        self.received += 1;
        let mut buffer = std::mem::take(&mut self.inbox);
        buffer.resize(floats * 4, 0);
        let pending = self.cluster.recv_into(tag, u64::MAX, buffer);
        let message = self
            .cluster
            .while_alive(prev, pending)
            .map_err(|e| self.error(format!("receiving from rank {prev}: {e}")))?;
        if message.data.len() != floats * 4 {
            return Err(self.error(format!(
                "rank {prev} sent {} bytes, expected {}",
                message.data.len(),
                floats * 4
            )));
        }
        self.inbox = message.data;
        Ok(&self.inbox)
    }
}

impl RingLink for ClusterRing {
    fn rank(&self) -> usize {
        self.cluster.rank() as usize
    }
    fn size(&self) -> usize {
        self.cluster.size() as usize
    }
    fn send_next(&mut self, data: &[f32]) -> Result<(), CollectiveError> {
        let next = ((self.rank() + 1) % self.size()) as u32;
        // The previous send's buffer comes back here.
        self.flush()?;
        // SAFETY: any f32 is 4 initialized bytes; this copies them (the
        // wire order is this machine's, the same on every rank of a cluster
        // of one architecture).
        let bytes =
            unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), data.len() * 4) };
        let mut message = std::mem::take(&mut self.outbox);
        message.clear();
        message.extend_from_slice(bytes);
        let tag = Self::tag(self.cluster.rank(), self.sent);
        self.sent += 1;
        // Not waited for here: every worker sends before it receives, and a
        // large send completes only when the next worker receives it.
        self.in_flight = Some(self.cluster.send_reusing(next, tag, message));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), CollectiveError> {
        let Some(pending) = self.in_flight.take() else {
            return Ok(());
        };
        let next = ((self.rank() + 1) % self.size()) as u32;
        self.outbox = self
            .cluster
            .while_alive(next, pending)
            .map_err(|e| self.error(format!("sending to rank {next}: {e}")))?;
        Ok(())
    }
    fn recv_prev(&mut self, into: &mut [f32]) -> Result<(), CollectiveError> {
        let bytes = self.receive(into.len())?;
        // SAFETY: `receive` checked the length; bytes to f32 is a copy.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                into.as_mut_ptr().cast::<u8>(),
                bytes.len(),
            )
        };
        Ok(())
    }
    fn recv_prev_add(
        &mut self,
        into: &mut [f32],
        _scratch: &mut Vec<f32>,
    ) -> Result<(), CollectiveError> {
        let bytes = self.receive(into.len())?;
        for (d, v) in into.iter_mut().zip(bytes.chunks_exact(4)) {
            *d += f32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
        }
        Ok(())
    }
}
