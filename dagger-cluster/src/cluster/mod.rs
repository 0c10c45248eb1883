//! Several processes of one program working as one: the cluster.
//!
//! Every process runs the same binary (SPMD). [`Cluster::from_env`] reads its
//! place (see [`ClusterEnv`]: `dagger run -n N`, Slurm or Open MPI) and joins:
//! the control plane is TCP (tokio) to rank 0, which authenticates every
//! rank with the cluster token (HMAC challenge-response), checks that it
//! runs the same tasks, and hands out every rank's transport address; the
//! data plane is the [`Transport`] (UCX), connected to every other rank
//! from those addresses. Heartbeats then tell each side when the other is
//! gone ([`Cluster::dead_ranks`]).
//!
//! ```no_run
//! use dagger_cluster::Cluster;
//! let cluster = Cluster::from_env().expect("joined").expect("started by `dagger run`");
//! if cluster.rank() == 0 {
//!     for r in 1..cluster.size() {
//!         cluster.send(r, 1, b"hello".to_vec()).wait().unwrap();
//!     }
//! } else {
//!     let msg = cluster.recv(1, u64::MAX).wait().unwrap();
//!     assert_eq!(msg.data, b"hello");
//! }
//! ```

mod auth;
mod bootstrap;
mod env;
mod link;
mod remote;
mod wire;

pub use auth::new_token;
pub use bootstrap::{report_gone, HEARTBEAT, SILENCE};
pub use env::ClusterEnv;
pub use remote::{RemoteArg, RemoteError, RemoteFetch, RemoteValue};

use crate::net::{Completion, Message, NetError, PeerId, Transport, UcxTransport};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;

/// Why a process could not join or stay in its cluster.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClusterError {
    /// The environment does not describe a usable cluster.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// Rank 0 refused this rank (or rank 0 refused someone), and why.
    #[error("refused: {0}")]
    Refused(String),
    /// A peer broke the bootstrap protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Someone did not show up in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A socket failed.
    #[error("network: {0}")]
    Io(String),
    /// The data plane failed.
    #[error(transparent)]
    Net(#[from] NetError),
}

impl From<std::io::Error> for ClusterError {
    fn from(e: std::io::Error) -> Self {
        ClusterError::Io(e.to_string())
    }
}

/// Who is alive, as heartbeats tell.
#[derive(Default)]
pub(crate) struct Membership {
    state: Mutex<MembershipState>,
    changed: Condvar,
    /// On rank 0: a channel to each member's connection, to pass deaths on.
    notices: Mutex<Vec<tokio::sync::mpsc::UnboundedSender<wire::Control>>>,
}

#[derive(Default)]
struct MembershipState {
    dead: Vec<(u32, String)>,
    shut_down: bool,
}

impl MembershipState {
    /// For a serving rank: over once shut down or once rank 0 is gone.
    fn outcome(&self) -> Option<Result<(), ClusterError>> {
        if self.shut_down {
            return Some(Ok(()));
        }
        self.dead
            .iter()
            .find(|(r, _)| *r == 0)
            .map(|(_, why)| Err(ClusterError::Io(format!("rank 0 is gone: {why}"))))
    }
}

impl Membership {
    pub(crate) fn mark_dead(&self, rank: u32, reason: String) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !s.dead.iter().any(|(r, _)| *r == rank) {
            eprintln!("dagger: rank {rank} is gone ({reason})");
            let notices = self.notices.lock().unwrap_or_else(|p| p.into_inner());
            for n in notices.iter() {
                let _ = n.send(wire::Control::Dead {
                    rank,
                    why: reason.clone(),
                });
            }
            s.dead.push((rank, reason));
        }
        self.changed.notify_all();
    }

    /// Rank 0: passes the deaths declared so far and every later one on
    /// through `notice` (under the state's lock, as [`mark_dead`](Self::mark_dead)
    /// sends, so that none is missed: a member subscribed just after a death
    /// would otherwise wait forever on a rank it thinks alive).
    pub(crate) fn subscribe(&self, notice: tokio::sync::mpsc::UnboundedSender<wire::Control>) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (rank, why) in &s.dead {
            let _ = notice.send(wire::Control::Dead {
                rank: *rank,
                why: why.clone(),
            });
        }
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(notice);
    }

    pub(crate) fn mark_shut_down(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shut_down = true;
        self.changed.notify_all();
    }
}

/// How long ranks wait for each other to join (`DAGGER_JOIN_TIMEOUT` seconds, default 30).
fn join_timeout() -> Duration {
    let secs = std::env::var("DAGGER_JOIN_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30.0);
    Duration::from_secs_f64(secs)
}

/// A fingerprint of the tasks this binary registers (names and
/// signatures), so that ranks running different binaries are refused.
pub fn task_fingerprint() -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64; // FNV-1a
    for def in dagger_runtime::task::registered() {
        let (params, output) = (def.signature)();
        let text = format!("{}({})->{};", def.name, params.join(","), output);
        for b in text.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// This process's membership of a cluster: its rank, the others' endpoints
/// and their liveness.
pub struct Cluster {
    rank: u32,
    size: u32,
    transport: Arc<dyn Transport>,
    peers: Vec<Option<PeerId>>,
    membership: Arc<Membership>,
    shutdown: watch::Sender<bool>,
    control: Option<JoinHandle<()>>,
    store: remote::Store,
    link: std::sync::OnceLock<dagger_ir::model::Link>,
    workers: Vec<u32>,
}

impl Cluster {
    /// Joins the cluster the environment describes over UCX, or returns
    /// `Ok(None)` when this process was not started as part of one.
    pub fn from_env() -> Result<Option<Cluster>, ClusterError> {
        let Some(env) = ClusterEnv::from_env()? else {
            return Ok(None);
        };
        let transport = Arc::new(UcxTransport::new()?);
        Cluster::join(env, transport).map(Some)
    }

    /// Joins the cluster of `env`, moving data over `transport`. Blocks
    /// until every rank has joined (or refuses, or times out).
    pub fn join(env: ClusterEnv, transport: Arc<dyn Transport>) -> Result<Cluster, ClusterError> {
        let membership = Arc::new(Membership::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (rank, size) = (env.rank, env.size);
        let own = wire::Member {
            address: transport.address(),
            workers: env.workers,
        };
        let fingerprint = task_fingerprint();
        let limit = join_timeout();
        let m = membership.clone();
        let control = std::thread::Builder::new()
            .name(format!("dagger-cluster-{rank}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the control plane");
                let joining = bootstrap::Joining {
                    env,
                    own,
                    fingerprint,
                    join_timeout: limit,
                    membership: m,
                    ready: ready_tx,
                };
                rt.block_on(async move {
                    if joining.env.rank == 0 {
                        bootstrap::coordinate(joining, shutdown_rx).await
                    } else {
                        bootstrap::join(joining).await
                    }
                })
            })?;
        let members = ready_rx
            .recv()
            .map_err(|_| ClusterError::Protocol("the control thread stopped".into()))??;
        let mut peers = Vec::with_capacity(size as usize);
        for (r, member) in members.iter().enumerate() {
            // No address: the rank was gone before the cluster formed.
            peers.push(if r as u32 == rank || member.address.is_empty() {
                None
            } else {
                Some(transport.connect(&member.address)?)
            });
        }
        let workers = members.iter().map(|m| m.workers).collect();
        Ok(Cluster {
            rank,
            size,
            transport,
            peers,
            membership,
            shutdown,
            control: Some(control),
            store: remote::Store::default(),
            link: std::sync::OnceLock::new(),
            workers,
        })
    }

    /// How many worker threads each rank runs tasks on, by rank.
    pub fn workers(&self) -> &[u32] {
        &self.workers
    }

    /// This process's rank.
    pub fn rank(&self) -> u32 {
        self.rank
    }

    /// Number of processes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Sends `data` to rank `to` with `tag`.
    pub fn send(&self, to: u32, tag: u64, data: Vec<u8>) -> Completion<()> {
        match self.peer(to) {
            Ok(peer) => self.transport.send(peer, tag, data),
            Err(e) => failed(e),
        }
    }

    /// As [`send`](Self::send), handing the buffer back once sent (see
    /// [`Transport::send_reusing`]).
    pub fn send_reusing(&self, to: u32, tag: u64, data: Vec<u8>) -> Completion<Vec<u8>> {
        match self.peer(to) {
            Ok(peer) => self.transport.send_reusing(peer, tag, data),
            Err(e) => failed(e),
        }
    }

    /// The transport's peer of rank `to`.
    fn peer(&self, to: u32) -> Result<PeerId, NetError> {
        self.peers
            .get(to as usize)
            .copied()
            .flatten()
            .ok_or_else(|| {
                NetError::BadAddress(if to < self.size && to != self.rank {
                    format!("rank {to} has no address: it was gone before the cluster formed")
                } else {
                    format!(
                        "rank {to} is not another rank of this {}-rank cluster",
                        self.size
                    )
                })
            })
    }

    /// Receives the first message from any rank whose tag matches `tag` on the bits of `mask`.
    pub fn recv(&self, tag: u64, mask: u64) -> Completion<Message> {
        self.transport.recv(tag, mask)
    }

    /// As [`recv`](Self::recv), into `buffer`'s memory when large enough.
    pub fn recv_into(&self, tag: u64, mask: u64, buffer: Vec<u8>) -> Completion<Message> {
        self.transport.recv_into(tag, mask, buffer)
    }

    /// The ranks known to be gone, with why.
    pub fn dead_ranks(&self) -> Vec<(u32, String)> {
        let s = self
            .membership
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.dead.clone()
    }

    /// On a serving rank: blocks until rank 0 shuts the cluster down
    /// (`Ok`) or is lost (`Err` with why).
    pub fn wait_for_shutdown(&self) -> Result<(), ClusterError> {
        let mut s = self
            .membership
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(outcome) = s.outcome() {
                return outcome;
            }
            s = self
                .membership
                .changed
                .wait(s)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// `Some` once this serving rank's part is over: shut down, or rank 0 lost.
    pub(crate) fn finished(&self) -> Option<Result<(), ClusterError>> {
        let s = self
            .membership
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.outcome()
    }
}

impl Drop for Cluster {
    /// Rank 0 tells every member to shut down; every rank stops its control thread.
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.control.take() {
            if self.rank == 0 {
                let _ = t.join();
            }
        }
    }
}

/// A completion that has already failed with `e`.
fn failed<T>(e: NetError) -> Completion<T> {
    let (c, done) = crate::net::completion_pair();
    done.complete(Err(e));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_subscribed_after_a_death_still_hears_of_it() {
        let membership = Membership::default();
        membership.mark_dead(2, "killed".into());
        let (notice, mut notices) = tokio::sync::mpsc::unbounded_channel();
        membership.subscribe(notice);
        membership.mark_dead(3, "silent".into());
        membership.mark_dead(2, "again".into());
        let mut heard = Vec::new();
        while let Ok(wire::Control::Dead { rank, why }) = notices.try_recv() {
            heard.push((rank, why));
        }
        assert_eq!(heard, [(2, "killed".into()), (3, "silent".into())]);
    }
}
