//! How a pipeline stage talks to its neighbours: activations to the next
//! stage, gradients to the previous one, in the order the schedule makes
//! them. [`channel_links`] connects the stage threads of one process;
//! with the `cluster` feature, `ClusterLinks` (in `cluster_links.rs`)
//! connects the ranks of a cluster (UCX), rank `s` running stage `s`.

use std::sync::mpsc::{channel, Receiver, Sender};

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
