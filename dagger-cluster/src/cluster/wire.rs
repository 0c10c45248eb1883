//! The bootstrap protocol's messages and their framing on a TCP stream:
//! a little-endian `u32` length, then the message in postcard. Frames over
//! [`MAX_FRAME`] bytes and bytes that do not decode are errors that close
//! that one connection, never the node.

use super::ClusterError;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest control frame accepted (control messages are small).
pub const MAX_FRAME: u32 = 16 << 20;

/// What a rank tells the others about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its transport (UCX worker) address.
    pub address: Vec<u8>,
    /// How many worker threads it runs tasks on.
    pub workers: u32,
}

/// A bootstrap message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Coordinator to a joining rank: prove you know the token.
    Challenge {
        /// Random bytes to sign.
        nonce: [u8; 32],
    },
    /// A rank asks to join.
    Join {
        /// Its rank.
        rank: u32,
        /// HMAC-SHA256 of the nonce and rank under the cluster token.
        proof: [u8; 32],
        /// Fingerprint of its binary's task registry.
        fingerprint: u64,
        /// Its address and workers.
        member: Member,
    },
    /// The coordinator refuses a rank, saying why.
    Refused {
        /// Why.
        reason: String,
    },
    /// Everyone has joined: every rank's address and workers, by rank.
    Welcome {
        /// Members by rank.
        members: Vec<Member>,
    },
    /// I am alive.
    Heartbeat,
    /// Rank 0 to members: a rank is gone (so that nobody waits on it).
    Dead {
        /// The rank.
        rank: u32,
        /// Why rank 0 thinks so.
        why: String,
    },
    /// The run is over; serving ranks exit.
    Shutdown,
    /// The launcher to rank 0, answering a challenge: the process of rank
    /// `rank` has ended.
    Gone {
        /// The rank.
        rank: u32,
        /// HMAC-SHA256 of the nonce and rank under the cluster token.
        proof: [u8; 32],
        /// How it ended, as the launcher saw it.
        why: String,
    },
}

/// Writes one frame.
pub async fn write<W: AsyncWriteExt + Unpin>(w: &mut W, msg: &Control) -> Result<(), ClusterError> {
    let bytes = postcard::to_stdvec(msg).map_err(|e| ClusterError::Protocol(e.to_string()))?;
    w.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame.
pub async fn read<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Control, ClusterError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(ClusterError::Protocol(format!(
            "frame of {len} bytes (limit {MAX_FRAME})"
        )));
    }
    let mut bytes = vec![0u8; len as usize];
    r.read_exact(&mut bytes).await?;
    postcard::from_bytes(&bytes)
        .map_err(|e| ClusterError::Protocol(format!("undecodable frame: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let msg = Control::Join {
                rank: 2,
                proof: [7; 32],
                fingerprint: 99,
                member: Member {
                    address: vec![1, 2, 3],
                    workers: 4,
                },
            };
            let mut buf = Vec::new();
            write(&mut buf, &msg).await.unwrap();
            assert_eq!(read(&mut buf.as_slice()).await.unwrap(), msg);
            let huge = (MAX_FRAME + 1).to_le_bytes();
            let err = read(&mut &huge[..]).await.unwrap_err().to_string();
            assert!(err.contains("limit"), "{err}");
            let garbage = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
            let err = read(&mut &garbage[..]).await.unwrap_err().to_string();
            assert!(err.contains("undecodable"), "{err}");
        });
    }
}
