//! Measuring the network between ranks, for the cost model's `Link`.
//!
//! [`Cluster::measure_link`] times small and large echoes with a serving
//! rank: the latency is half the best small round trip, the bandwidth twice
//! the bytes of a large echo over its time (the payload crosses both ways).
//! [`Cluster::link`] measures once, against the first rank other than this
//! one that is not known dead, and keeps the result; a cluster with no such
//! rank has no link and gets [`Platform::local`]'s default.

use super::{Cluster, RemoteError};
use dagger_ir::model::{Link, Platform};
use std::time::Instant;

/// Round trips timed for the latency (the best counts).
const SMALL_TRIPS: usize = 50;
/// Bytes of each large echo, and how many are timed (the best counts).
const LARGE_BYTES: usize = 4 << 20;
const LARGE_TRIPS: usize = 4;

impl Cluster {
    /// Measures latency and bandwidth to `rank` (which must be serving).
    pub fn measure_link(&self, rank: u32) -> Result<Link, RemoteError> {
        let best = |bytes: usize, trips: usize| -> Result<f64, RemoteError> {
            let mut best = f64::INFINITY;
            for _ in 0..trips {
                let t = Instant::now();
                let back = self.echo(rank, vec![0u8; bytes])?;
                best = best.min(t.elapsed().as_secs_f64());
                if back.len() != bytes {
                    return Err(RemoteError::Local("an echo came back cut".into()));
                }
            }
            Ok(best)
        };
        let latency = best(8, SMALL_TRIPS)? / 2.0;
        let large = best(LARGE_BYTES, LARGE_TRIPS)?;
        let bandwidth = 2.0 * LARGE_BYTES as f64 / (large - 2.0 * latency).max(1e-9);
        Ok(Link { latency, bandwidth })
    }

    /// The link to the other ranks, measured on first use against the
    /// first other rank not known dead (the default link of
    /// [`Platform::local`] when there is none or it cannot be measured).
    pub fn link(&self) -> Link {
        *self.link.get_or_init(|| {
            let default = Platform::local(1).network;
            let Some(peer) =
                (0..self.size()).find(|&r| r != self.rank() && self.death_of(r).is_none())
            else {
                return default;
            };
            self.measure_link(peer).unwrap_or_else(|e| {
                eprintln!(
                    "dagger: cannot measure the link to rank {peer} ({e}); assuming {default:?}"
                );
                default
            })
        })
    }
}
