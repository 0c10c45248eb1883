//! A pipeline stage's links to its neighbours over a cluster's transport
//! (UCX), rank `s` running stage `s` (the `cluster` feature).

use super::stage_link::StageLinks;
use dagger_cluster::cluster::Cluster;
use dagger_cluster::net::Completion;
use std::sync::Arc;

/// Tag kinds of pipeline messages (remote calls use 1 and 2, collectives 3).
const FORWARD: u64 = 6 << 56;
const BACKWARD: u64 = 7 << 56;

/// A rank's links to the ranks before and after it, over the cluster's
/// transport; messages are numbered per direction, and a dead neighbour
/// ends the step with an error naming it.
pub(crate) struct ClusterLinks {
    cluster: Arc<Cluster>,
    /// Messages sent and received, per direction: (forward, backward).
    sent: (u64, u64),
    received: (u64, u64),
    in_flight: Vec<(u32, Completion<()>)>,
}

impl ClusterLinks {
    pub(crate) fn new(cluster: Arc<Cluster>) -> Self {
        ClusterLinks {
            cluster,
            sent: (0, 0),
            received: (0, 0),
            in_flight: Vec::new(),
        }
    }

    fn rank(&self) -> u32 {
        self.cluster.rank()
    }

    fn post(&mut self, to: u32, kind: u64, seq: u64, data: Vec<f32>) {
        // SAFETY: any f32 is 4 initialized bytes; this copies them.
        let bytes =
            unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), data.len() * 4) }
                .to_vec();
        let pending = self.cluster.send(to, kind | seq, bytes);
        self.in_flight.push((to, pending));
    }

    fn take(&mut self, from: u32, kind: u64, seq: u64) -> Result<Vec<f32>, String> {
        let pending = self.cluster.recv(kind | seq, u64::MAX);
        let message = self
            .cluster
            .while_alive(from, pending)
            .map_err(|e| format!("from rank {from}: {e}"))?;
        if message.data.len() % 4 != 0 {
            return Err(format!(
                "rank {from} sent {} bytes, not a whole number of floats",
                message.data.len()
            ));
        }
        let mut out = vec![0.0f32; message.data.len() / 4];
        // SAFETY: lengths match; bytes to f32 is a copy.
        unsafe {
            std::ptr::copy_nonoverlapping(
                message.data.as_ptr(),
                out.as_mut_ptr().cast::<u8>(),
                message.data.len(),
            )
        };
        Ok(out)
    }
}

impl StageLinks for ClusterLinks {
    fn has_prev(&self) -> bool {
        self.rank() > 0
    }
    fn has_next(&self) -> bool {
        self.rank() + 1 < self.cluster.size()
    }
    fn send_next(&mut self, data: Vec<f32>) -> Result<(), String> {
        let seq = self.sent.0;
        self.sent.0 += 1;
        self.post(self.rank() + 1, FORWARD, seq, data);
        Ok(())
    }
    fn recv_prev(&mut self) -> Result<Vec<f32>, String> {
        let seq = self.received.0;
        self.received.0 += 1;
        self.take(self.rank() - 1, FORWARD, seq)
    }
    fn send_prev(&mut self, data: Vec<f32>) -> Result<(), String> {
        let seq = self.sent.1;
        self.sent.1 += 1;
        self.post(self.rank() - 1, BACKWARD, seq, data);
        Ok(())
    }
    fn recv_next(&mut self) -> Result<Vec<f32>, String> {
        let seq = self.received.1;
        self.received.1 += 1;
        self.take(self.rank() + 1, BACKWARD, seq)
    }
    fn flush(&mut self) -> Result<(), String> {
        for (to, pending) in std::mem::take(&mut self.in_flight) {
            self.cluster
                .while_alive(to, pending)
                .map_err(|e| format!("to rank {to}: {e}"))?;
        }
        Ok(())
    }
}
