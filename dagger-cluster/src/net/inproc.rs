//! Endpoints in one process: the [`Transport`] for testing what sits above
//! the transport without UCX or other processes.

use super::completion::completion;
use super::{tag_matches, Completion, Message, NetError, PeerId, Transport, WaitingRecv};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Messages waiting for a receive, and receives waiting for a message.
#[derive(Default)]
struct Mailbox {
    state: Mutex<(VecDeque<Message>, Vec<WaitingRecv>)>,
}

impl Mailbox {
    fn deliver(&self, message: Message) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (queued, waiting) = &mut *state;
        if let Some(k) = waiting
            .iter()
            .position(|(tag, mask, _, _)| tag_matches(message.tag, *tag, *mask))
        {
            let (_, _, _, done) = waiting.remove(k);
            drop(state);
            done.complete(Ok(message));
        } else {
            queued.push_back(message);
        }
    }
}

/// Every live mailbox of the process, by number.
fn registry() -> &'static Mutex<HashMap<u64, Weak<Mailbox>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u64, Weak<Mailbox>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// An endpoint reachable from the other in-process endpoints.
pub struct InProcessTransport {
    number: u64,
    mailbox: Arc<Mailbox>,
    peers: Mutex<Vec<Weak<Mailbox>>>,
}

impl InProcessTransport {
    /// A new endpoint with its own address.
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::default());
        registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(number, Arc::downgrade(&mailbox));
        InProcessTransport {
            number,
            mailbox,
            peers: Mutex::new(Vec::new()),
        }
    }

    /// Puts a message in `peer`'s mailbox.
    fn deliver(&self, peer: PeerId, tag: u64, data: Vec<u8>) -> Result<(), NetError> {
        let target = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer.0)
            .cloned();
        match target.map(|w| w.upgrade()) {
            None => Err(NetError::UnknownPeer(peer)),
            Some(None) => Err(NetError::Closed),
            Some(Some(mailbox)) => {
                mailbox.deliver(Message { tag, data });
                Ok(())
            }
        }
    }
}

impl Default for InProcessTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for InProcessTransport {
    fn drop(&mut self) {
        registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.number);
    }
}

impl Transport for InProcessTransport {
    fn address(&self) -> Vec<u8> {
        self.number.to_le_bytes().to_vec()
    }

    fn connect(&self, address: &[u8]) -> Result<PeerId, NetError> {
        let number =
            u64::from_le_bytes(address.try_into().map_err(|_| {
                NetError::BadAddress(format!("{} bytes, expected 8", address.len()))
            })?);
        let mailbox = registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&number)
            .cloned()
            .ok_or_else(|| NetError::BadAddress(format!("no in-process endpoint {number}")))?;
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.push(mailbox);
        Ok(PeerId(peers.len() - 1))
    }

    fn send(&self, peer: PeerId, tag: u64, data: Vec<u8>) -> Completion<()> {
        let (result, done) = completion();
        done.complete(self.deliver(peer, tag, data));
        result
    }

    /// The buffer itself goes to the receiver: an empty one comes back.
    fn send_reusing(&self, peer: PeerId, tag: u64, data: Vec<u8>) -> Completion<Vec<u8>> {
        let (result, done) = completion();
        done.complete(self.deliver(peer, tag, data).map(|()| Vec::new()));
        result
    }

    /// Messages move between in-process endpoints without a copy, so the
    /// buffer is not needed.
    fn recv_into(&self, tag: u64, mask: u64, _buffer: Vec<u8>) -> Completion<Message> {
        let (result, done) = completion();
        let mut state = self.mailbox.state.lock().unwrap_or_else(|p| p.into_inner());
        let (queued, waiting) = &mut *state;
        match queued.iter().position(|m| tag_matches(m.tag, tag, mask)) {
            Some(k) => {
                let message = queued.remove(k).expect("position is in range");
                drop(state);
                done.complete(Ok(message));
            }
            None => waiting.push((tag, mask, Vec::new(), done)),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_by_tag_in_order_whichever_side_comes_first() {
        let a = InProcessTransport::new();
        let b = InProcessTransport::new();
        let to_b = a.connect(&b.address()).unwrap();
        let early = b.recv(7, u64::MAX);
        a.send(to_b, 1, b"one".to_vec()).wait().unwrap();
        a.send(to_b, 7, b"seven".to_vec()).wait().unwrap();
        a.send(to_b, 1, b"uno".to_vec()).wait().unwrap();
        assert_eq!(early.wait().unwrap().data, b"seven");
        assert_eq!(b.recv(1, u64::MAX).wait().unwrap().data, b"one");
        assert_eq!(b.recv(0, 0).wait().unwrap().data, b"uno");
        assert!(matches!(
            a.send(PeerId(5), 0, vec![]).wait(),
            Err(NetError::UnknownPeer(PeerId(5)))
        ));
        assert!(a.connect(&[1, 2]).is_err());
        drop(b);
        assert!(matches!(
            a.send(to_b, 1, vec![]).wait(),
            Err(NetError::Closed)
        ));
    }
}
