//! Clusters of Dagger for Rust: several processes of one program, joined
//! into one machine for task graphs.
//!
//! Built on the executor (`dagger-runtime`), this crate adds what crosses
//! processes:
//!
//! - [`net`]: the transports, tagged messages between peers: UCX
//!   ([`net::UcxTransport`], loaded at run time) and in-process
//!   ([`net::InProcessTransport`], for tests and one-process clusters);
//! - [`cluster`]: a [`Cluster`] of ranks: the bootstrap at rank 0 (the
//!   cluster token's HMAC challenge, the same tasks on every rank, UCX
//!   addresses exchanged), heartbeats both ways and the 2 s silence that
//!   declares a rank gone, remote task calls and values kept where they
//!   were made;
//! - [`distributed`]: a graph run across the ranks ([`Cluster::run`]),
//!   placed by HEFT over every rank's workers, that recomputes what a lost
//!   rank held;
//! - [`ring`]: the ring all-reduce's link between ranks ([`ClusterRing`]),
//!   for data-parallel training.
//!
//! Without UCX on the machine everything else runs; the parts that need
//! it say what is missing. The facade re-exports these modules as
//! `dagger::cluster`, `dagger::net` and `dagger::distributed`.

#![warn(missing_docs)]

pub mod cluster;
pub mod distributed;
pub mod net;
pub mod ring;

pub use cluster::Cluster;
pub use ring::ClusterRing;
