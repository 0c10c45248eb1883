//! How a pipeline stage talks to its neighbours: activations to the next
//! stage, gradients to the previous one, in the order the schedule makes
//! them. [`channel_links`] connects the stage threads of one process;
//! [`ClusterLinks`] connects the ranks of a cluster (UCX), rank `s`
//! running stage `s`.

use crate::cluster::Cluster;
use crate::net::Completion;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

/// A stage's connections (see the [module docs](self)). Sends do not wait
/// for the receiver.
pub(crate) trait StageLinks: Send {
    /// Whether there is a previous stage.
    fn has_prev(&self) -> bool;
    /// Whether there is a next stage.
    fn has_next(&self) -> bool;
    /// Sends an activation (or, at the end of a step, the loss) onward.
    fn send_next(&mut self, data: Vec<f32>) -> Result<(), String>;
    /// The previous stage's next activation.
    fn recv_prev(&mut self) -> Result<Vec<f32>, String>;
    /// Sends a gradient (or the loss) back.
    fn send_prev(&mut self, data: Vec<f32>) -> Result<(), String>;
    /// The next stage's next gradient (or the loss).
    fn recv_next(&mut self) -> Result<Vec<f32>, String>;
    /// Waits until everything sent has left.
    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Channels between the stage threads of one process.
pub(crate) struct ChannelLinks {
    from_prev: Option<Receiver<Vec<f32>>>,
    to_next: Option<Sender<Vec<f32>>>,
    from_next: Option<Receiver<Vec<f32>>>,
    to_prev: Option<Sender<Vec<f32>>>,
}

/// The links of `k` stages on threads, stage by stage.
pub(crate) fn channel_links(k: usize) -> Vec<ChannelLinks> {
    let mut links: Vec<ChannelLinks> = (0..k)
        .map(|_| ChannelLinks {
            from_prev: None,
            to_next: None,
            from_next: None,
            to_prev: None,
        })
        .collect();
    for s in 0..k.saturating_sub(1) {
        let (tx, rx) = channel();
        links[s].to_next = Some(tx);
        links[s + 1].from_prev = Some(rx);
        let (tx, rx) = channel();
        links[s + 1].to_prev = Some(tx);
        links[s].from_next = Some(rx);
    }
    links
}

const GONE: &str = "the neighbouring stage is gone";

fn send(to: &Option<Sender<Vec<f32>>>, data: Vec<f32>) -> Result<(), String> {
    to.as_ref()
        .ok_or("no such neighbour")?
        .send(data)
        .map_err(|_| GONE.to_string())
}

fn recv(from: &Option<Receiver<Vec<f32>>>) -> Result<Vec<f32>, String> {
    from.as_ref()
        .ok_or("no such neighbour")?
        .recv()
        .map_err(|_| GONE.to_string())
}

impl StageLinks for ChannelLinks {
    fn has_prev(&self) -> bool {
        self.from_prev.is_some()
    }
    fn has_next(&self) -> bool {
        self.to_next.is_some()
    }
    fn send_next(&mut self, data: Vec<f32>) -> Result<(), String> {
        send(&self.to_next, data)
    }
    fn recv_prev(&mut self) -> Result<Vec<f32>, String> {
        recv(&self.from_prev)
    }
    fn send_prev(&mut self, data: Vec<f32>) -> Result<(), String> {
        send(&self.to_prev, data)
    }
    fn recv_next(&mut self) -> Result<Vec<f32>, String> {
        recv(&self.from_next)
    }
}

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
