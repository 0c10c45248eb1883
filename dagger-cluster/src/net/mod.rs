//! Moving bytes between processes: the data plane of a cluster.
//!
//! A [`Transport`] connects to peers by address and moves tagged byte
//! messages: `send(peer, tag, bytes)` and `recv(tag, mask)`, which takes the
//! first message whose tag matches `tag` on the bits of `mask` (MPI-style
//! tag matching, as UCX's tag API does it). Both return a [`Completion`] to
//! wait for or `.await`. Messages between two endpoints arrive in the order
//! they were sent.
//!
//! Two transports implement it:
//! - [`UcxTransport`]: UCX (`ucp` tag matching) through the in-tree
//!   `ucx-sys` bindings, loaded at run time; shared memory and CMA between
//!   processes of one machine, TCP or RDMA between machines, as UCX picks.
//!   One progress thread per transport owns the UCX worker.
//! - [`InProcessTransport`]: endpoints in one process, for tests of the
//!   layers above without UCX.
//!
//! Addresses are opaque bytes: a UCX worker address, or an in-process
//! mailbox number. The cluster bootstrap exchanges them.

mod completion;
mod inproc;
mod ucx;

pub(crate) use completion::completion as completion_pair;
pub use completion::Completion;
pub use inproc::InProcessTransport;
pub use ucx::UcxTransport;

use std::time::Duration;

/// A connected peer of a transport (an index in its connections).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerId(pub usize);

/// A received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The tag it was sent with.
    pub tag: u64,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Why a network operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NetError {
    /// The transport cannot be used on this machine (e.g. UCX is missing).
    #[error("{0}")]
    Unavailable(String),
    /// A UCX call failed.
    #[error("{call} failed: {status}")]
    Ucx {
        /// The call.
        call: &'static str,
        /// UCX's status name.
        status: &'static str,
    },
    /// No connected peer has this id.
    #[error("no peer {0:?}")]
    UnknownPeer(PeerId),
    /// An address is not one this transport can connect to.
    #[error("bad address: {0}")]
    BadAddress(String),
    /// The transport shut down before the operation completed.
    #[error("the transport was closed")]
    Closed,
    /// Waited longer than the limit.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

/// Tagged byte messages between processes.
pub trait Transport: Send + Sync {
    /// This endpoint's address, to give to peers.
    fn address(&self) -> Vec<u8>;
    /// Connects to the peer at `address`.
    fn connect(&self, address: &[u8]) -> Result<PeerId, NetError>;
    /// Sends `data` to `peer` with `tag`; the buffer is sent without a copy
    /// and dropped when the send completes.
    fn send(&self, peer: PeerId, tag: u64, data: Vec<u8>) -> Completion<()>;
    /// As [`send`](Self::send), handing the buffer back when the send
    /// completes, to fill with the next message: a stream of large
    /// messages then allocates (and page-faults) nothing. A transport that
    /// gives the buffer itself to the receiver hands back an empty one.
    fn send_reusing(&self, peer: PeerId, tag: u64, data: Vec<u8>) -> Completion<Vec<u8>>;
    /// Receives the first message whose tag equals `tag` on the bits set in
    /// `mask` (`mask = 0` takes any message).
    fn recv(&self, tag: u64, mask: u64) -> Completion<Message> {
        self.recv_into(tag, mask, Vec::new())
    }
    /// As [`recv`](Self::recv), receiving into `buffer`'s memory when it is
    /// large enough (hand back the last message's buffer to receive many
    /// large messages without allocating).
    fn recv_into(&self, tag: u64, mask: u64, buffer: Vec<u8>) -> Completion<Message>;
}

/// Whether UCX can be loaded here; the error says how to install it.
pub fn ucx_available() -> Result<(), NetError> {
    ucx_sys::ucp()
        .map(|_| ())
        .map_err(|why| NetError::Unavailable(why.to_string()))
}

/// A receive waiting for a message: wanted tag, mask, buffer to reuse, who to tell.
pub(crate) type WaitingRecv = (u64, u64, Vec<u8>, completion::Completer<Message>);

/// Whether `tag` matches the wanted tag on the bits of `mask`.
pub(crate) fn tag_matches(tag: u64, wanted: u64, mask: u64) -> bool {
    (tag ^ wanted) & mask == 0
}
