//! Tasks on other ranks: calls by registered name, values that stay home.
//!
//! Rank 0 asks rank `r` to run a task by its registered name
//! ([`Cluster::call`]); each argument travels either as bytes (the
//! parameter's [codec](dagger_runtime::wire)) or as a reference to a value already
//! living on some rank. The result stays on `r` (its *home*); the caller gets
//! a [`RemoteValue`] naming it, passes it to later calls (on `r` itself no
//! bytes move; another rank fetches it straight from `r`), fetches the
//! bytes only when it needs the value itself ([`Cluster::fetch`]), and
//! lets `r` forget it when done ([`Cluster::release`]).
//!
//! Serving ranks run [`Cluster::serve`]: every request is decoded on a
//! handler thread and its task runs on the rank's runtime. A task name the
//! rank's binary does not register, a type without a codec, or bytes that do
//! not decode come back as a [`RemoteError`] naming the culprit; the server
//! carries on.

use super::Cluster;
use crate::net::{Completion, Message, NetError};
use dagger_runtime::datum::Datum;
use dagger_runtime::runtime::Runtime;
use dagger_runtime::task::{lookup, TaskDef};
use dagger_runtime::wire::Codec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tags: the top byte says what a message is; replies carry the call id.
const KIND_MASK: u64 = 0xff << 56;
const REQUEST: u64 = 1 << 56;
const REPLY: u64 = 2 << 56;

/// How often a waiting side checks whether its peer is still alive.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// A value living on a rank, made by a remote call.
#[derive(Clone, Copy, Debug)]
pub struct RemoteValue {
    /// The rank it lives on.
    pub rank: u32,
    /// Its id in that rank's store.
    pub id: u64,
    /// Its encoded size in bytes.
    pub bytes: u64,
    /// How to decode it.
    pub codec: Codec,
}

/// An argument of a remote call.
#[derive(Clone, Debug)]
pub enum RemoteArg {
    /// A value of this process, sent as bytes.
    Local(Datum),
    /// A value living on some rank.
    Remote(RemoteValue),
}

/// Why a remote call or fetch failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    /// The task or the value's rank is gone.
    #[error("rank {rank} is gone: {why}")]
    RankLost {
        /// The rank.
        rank: u32,
        /// What the heartbeats said.
        why: String,
    },
    /// The remote side refused or failed the request.
    #[error("on rank {rank}: {message}")]
    Failed {
        /// Where it failed.
        rank: u32,
        /// Why.
        message: String,
    },
    /// This side could not prepare or read a message.
    #[error("{0}")]
    Local(String),
    /// The transport failed.
    #[error(transparent)]
    Net(#[from] NetError),
}

#[derive(Serialize, Deserialize)]
enum Arg {
    Bytes(#[serde(with = "as_bytes")] Vec<u8>),
    Stored { rank: u32, id: u64 },
}

/// Byte buffers as one serde byte string (one copy), not as a sequence
/// of numbers (one call per byte).
mod as_bytes {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

#[derive(Serialize, Deserialize)]
enum Request {
    Call {
        call: u64,
        from: u32,
        task: String,
        args: Vec<Arg>,
    },
    Fetch {
        call: u64,
        from: u32,
        id: u64,
    },
    /// Send these bytes back (to measure the link).
    Echo {
        call: u64,
        from: u32,
        #[serde(with = "as_bytes")]
        payload: Vec<u8>,
    },
    /// Forget these stored values (no reply).
    Release {
        ids: Vec<u64>,
    },
}

/// A value a serving rank fetched from another rank to run a call, timed
/// on the serving rank.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoteFetch {
    /// The rank the value came from.
    pub from: u32,
    /// Its size on the wire.
    pub bytes: u64,
    /// When the fetch started, from the moment the call arrived.
    pub start: Duration,
    /// How long it took.
    pub took: Duration,
}

#[derive(Serialize, Deserialize)]
enum Reply {
    Stored {
        id: u64,
        bytes: u64,
        /// The arguments fetched from other ranks to run the call.
        fetched: Vec<RemoteFetch>,
    },
    Value(#[serde(with = "as_bytes")] Vec<u8>),
    Failed(String),
    /// The request needed a value on a rank that is gone.
    Lost {
        rank: u32,
        why: String,
    },
}

/// Threads answering requests, kept between requests; they end when the
/// `Handlers` (the sending side of their queue) is dropped.
struct Handlers {
    queue: std::sync::mpsc::Sender<Message>,
    /// The handlers' side of the queue, and how many of them are idle.
    shared: Arc<(Mutex<std::sync::mpsc::Receiver<Message>>, AtomicU64)>,
}

impl Default for Handlers {
    fn default() -> Self {
        let (queue, rx) = std::sync::mpsc::channel();
        Handlers {
            queue,
            shared: Arc::new((Mutex::new(rx), AtomicU64::new(0))),
        }
    }
}

impl Handlers {
    /// Hands `message` to an idle handler, starting one if none is idle.
    fn run(&self, cluster: &Arc<Cluster>, rt: &Runtime, message: Message) {
        let idle = &self.shared.1;
        let claimed = idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if !claimed {
            let (cluster, rt, shared) = (cluster.clone(), rt.clone(), self.shared.clone());
            std::thread::spawn(move || loop {
                let next = shared.0.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok(message) = next else { return };
                cluster.handle(message, &rt);
                shared.1.fetch_add(1, Ordering::AcqRel);
            });
        }
        let _ = self.queue.send(message);
    }
}

/// What a rank keeps for remote callers.
#[derive(Default)]
pub(crate) struct Store {
    values: Mutex<HashMap<u64, (Datum, Codec)>>,
    next_id: AtomicU64,
    next_call: AtomicU64,
}

impl Cluster {
    /// Runs `task` on rank `rank` with `args` (in parameter order) and
    /// returns a reference to its result, which stays on `rank`.
    pub fn call(
        &self,
        rank: u32,
        task: &TaskDef,
        args: Vec<RemoteArg>,
    ) -> Result<RemoteValue, RemoteError> {
        self.call_traced(rank, task, args).map(|(value, _)| value)
    }

    /// As [`call`](Self::call), also returning the transfers `rank` made
    /// to run it: the arguments it fetched from third ranks.
    pub fn call_traced(
        &self,
        rank: u32,
        task: &TaskDef,
        args: Vec<RemoteArg>,
    ) -> Result<(RemoteValue, Vec<RemoteFetch>), RemoteError> {
        let wire = (task.wire)();
        let output = wire.output.ok_or_else(|| {
            RemoteError::Local(format!(
                "the result of `{}` cannot cross processes (its type has no serde support)",
                task.name
            ))
        })?;
        let mut encoded = Vec::with_capacity(args.len());
        for (port, arg) in args.into_iter().enumerate() {
            encoded.push(match arg {
                RemoteArg::Remote(v) => Arg::Stored {
                    rank: v.rank,
                    id: v.id,
                },
                RemoteArg::Local(d) => {
                    let codec = wire.params.get(port).copied().flatten().ok_or_else(|| {
                        RemoteError::Local(format!(
                            "argument {port} of `{}` cannot cross processes (its type has no serde support)",
                            task.name
                        ))
                    })?;
                    Arg::Bytes((codec.encode)(&d).map_err(RemoteError::Local)?)
                }
            });
        }
        let call = self.store.next_call.fetch_add(1, Ordering::Relaxed);
        let request = Request::Call {
            call,
            from: self.rank,
            task: task.name.to_string(),
            args: encoded,
        };
        match self.request(rank, call, &request)? {
            Reply::Stored { id, bytes, fetched } => Ok((
                RemoteValue {
                    rank,
                    id,
                    bytes,
                    codec: output,
                },
                fetched,
            )),
            Reply::Failed(message) => Err(RemoteError::Failed { rank, message }),
            Reply::Lost { rank, why } => Err(RemoteError::RankLost { rank, why }),
            Reply::Value(_) => Err(RemoteError::Local("a call answered with a value".into())),
        }
    }

    /// Brings a remote value here.
    pub fn fetch(&self, value: &RemoteValue) -> Result<Datum, RemoteError> {
        self.fetch_counted(value).map(|(datum, _)| datum)
    }

    /// Brings a remote value here; also its size on the wire (0 when it
    /// is already here).
    fn fetch_counted(&self, value: &RemoteValue) -> Result<(Datum, u64), RemoteError> {
        if value.rank == self.rank {
            return Ok((self.stored(value.id).map_err(RemoteError::Local)?, 0));
        }
        let call = self.store.next_call.fetch_add(1, Ordering::Relaxed);
        let request = Request::Fetch {
            call,
            from: self.rank,
            id: value.id,
        };
        match self.request(value.rank, call, &request)? {
            Reply::Value(bytes) => (value.codec.decode)(&bytes)
                .map(|datum| (datum, bytes.len() as u64))
                .map_err(RemoteError::Local),
            Reply::Failed(message) => Err(RemoteError::Failed {
                rank: value.rank,
                message,
            }),
            Reply::Lost { rank, why } => Err(RemoteError::RankLost { rank, why }),
            Reply::Stored { .. } => Err(RemoteError::Local(
                "a fetch answered with a reference".into(),
            )),
        }
    }

    /// Tells the homes of `values` to forget them (they must not be used
    /// afterwards). Does not wait for the messages to arrive.
    pub fn release(&self, values: &[RemoteValue]) {
        let mut by_rank: HashMap<u32, Vec<u64>> = HashMap::new();
        for v in values {
            by_rank.entry(v.rank).or_default().push(v.id);
        }
        for (rank, ids) in by_rank {
            if rank == self.rank {
                let mut store = self.store.values.lock().unwrap_or_else(|p| p.into_inner());
                for id in ids {
                    store.remove(&id);
                }
            } else if let Ok(bytes) = postcard::to_stdvec(&Request::Release { ids }) {
                drop(self.send(rank, REQUEST, bytes));
            }
        }
    }

    /// Number of values this rank keeps for remote callers.
    pub fn stored_values(&self) -> usize {
        self.store
            .values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Has `rank` send `payload` back (a round trip of its size each way).
    pub(super) fn echo(&self, rank: u32, payload: Vec<u8>) -> Result<Vec<u8>, RemoteError> {
        let call = self.store.next_call.fetch_add(1, Ordering::Relaxed);
        let request = Request::Echo {
            call,
            from: self.rank,
            payload,
        };
        match self.request(rank, call, &request)? {
            Reply::Value(bytes) => Ok(bytes),
            _ => Err(RemoteError::Local("an echo answered something else".into())),
        }
    }

    /// Sends `request` to `rank` and waits for its reply, giving up if the
    /// rank is declared dead meanwhile.
    fn request(&self, rank: u32, call: u64, request: &Request) -> Result<Reply, RemoteError> {
        let bytes = postcard::to_stdvec(request).map_err(|e| RemoteError::Local(e.to_string()))?;
        let reply = self.recv(REPLY | call, u64::MAX);
        self.while_alive(rank, self.send(rank, REQUEST, bytes))?;
        let message = self.while_alive(rank, reply)?;
        postcard::from_bytes(&message.data)
            .map_err(|e| RemoteError::Local(format!("bad reply: {e}")))
    }

    /// Waits for `pending`, giving up with [`RemoteError::RankLost`] once
    /// `rank` is declared dead (a message to or from a dead rank may never
    /// complete).
    pub fn while_alive<T>(&self, rank: u32, mut pending: Completion<T>) -> Result<T, RemoteError> {
        loop {
            match pending.wait_timeout(CHECK_EVERY) {
                Ok(v) => return Ok(v),
                Err(NetError::TimedOut(_)) => {
                    if let Some(why) = self.death_of(rank) {
                        return Err(RemoteError::RankLost { rank, why });
                    }
                }
                Err(e) => return Err(self.lost_or(rank, e.into())),
            }
        }
    }

    /// What a transport error towards `rank` means: that `rank` is lost
    /// when it is declared dead (UCX fails sends to a dead peer in many
    /// ways, e.g. `UCS_ERR_SHMEM_SEGMENT`), waiting for the heartbeats'
    /// verdict up to [`SILENCE`](super::SILENCE) and a heartbeat; else `e`.
    fn lost_or(&self, rank: u32, e: RemoteError) -> RemoteError {
        let deadline = Instant::now() + super::SILENCE + super::HEARTBEAT;
        loop {
            if let Some(why) = self.death_of(rank) {
                return RemoteError::RankLost { rank, why };
            }
            if Instant::now() >= deadline {
                return e;
            }
            std::thread::sleep(CHECK_EVERY / 5);
        }
    }

    /// Why `rank` is dead, if it is.
    pub(crate) fn death_of(&self, rank: u32) -> Option<String> {
        self.dead_ranks()
            .into_iter()
            .find(|(r, _)| *r == rank)
            .map(|(_, why)| why)
    }

    fn stored(&self, id: u64) -> Result<Datum, String> {
        let values = self.store.values.lock().unwrap_or_else(|p| p.into_inner());
        values
            .get(&id)
            .map(|(d, _)| d.clone())
            .ok_or_else(|| format!("no value {id} on rank {}", self.rank))
    }

    /// Serves remote calls and fetches on `rt` until rank 0 shuts the
    /// cluster down (`Ok`) or is lost (`Err`).
    ///
    /// Each request is answered on a handler thread (a request may wait for
    /// a value from a third rank, so none is answered on the loop itself);
    /// handler threads are kept for the next requests, and a new one starts
    /// only when all are busy.
    pub fn serve(self: &Arc<Self>, rt: &Runtime) -> Result<(), super::ClusterError> {
        let handlers = Handlers::default();
        let mut next = self.recv(REQUEST, KIND_MASK);
        loop {
            match next.wait_timeout(CHECK_EVERY) {
                Ok(message) => {
                    next = self.recv(REQUEST, KIND_MASK);
                    handlers.run(self, rt, message);
                }
                Err(NetError::TimedOut(_)) => {
                    if let Some(outcome) = self.finished() {
                        return outcome;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Answers one request.
    fn handle(&self, message: Message, rt: &Runtime) {
        let Ok(request) = postcard::from_bytes::<Request>(&message.data) else {
            eprintln!("dagger: rank {} ignored an undecodable request", self.rank);
            return;
        };
        let (call, from, reply) = match request {
            Request::Release { ids } => {
                let mut values = self.store.values.lock().unwrap_or_else(|p| p.into_inner());
                for id in ids {
                    values.remove(&id);
                }
                return;
            }
            Request::Call {
                call,
                from,
                task,
                args,
            } => (call, from, self.run_call(&task, args, rt)),
            Request::Fetch { call, from, id } => (
                call,
                from,
                self.encode_stored(id).map_err(RemoteError::Local),
            ),
            Request::Echo {
                call,
                from,
                payload,
            } => (call, from, Ok(Reply::Value(payload))),
        };
        let reply = reply.unwrap_or_else(|e| match e {
            RemoteError::RankLost { rank, why } => Reply::Lost { rank, why },
            other => Reply::Failed(other.to_string()),
        });
        if let Ok(bytes) = postcard::to_stdvec(&reply) {
            let _ = self.while_alive(from, self.send(from, REPLY | call, bytes));
        }
    }

    fn encode_stored(&self, id: u64) -> Result<Reply, String> {
        let values = self.store.values.lock().unwrap_or_else(|p| p.into_inner());
        let (datum, codec) = values
            .get(&id)
            .ok_or_else(|| format!("no value {id} on rank {}", self.rank))?;
        (codec.encode)(datum).map(Reply::Value)
    }

    fn run_call(&self, task: &str, args: Vec<Arg>, rt: &Runtime) -> Result<Reply, RemoteError> {
        let failed = RemoteError::Local;
        let def = lookup(task).ok_or_else(|| {
            failed(format!(
                "unknown task `{task}`: this rank's binary registers no task of that name"
            ))
        })?;
        let wire = (def.wire)();
        let output = wire
            .output
            .ok_or_else(|| failed(format!("the result of `{task}` cannot cross processes")))?;
        let arrived = Instant::now();
        let mut fetched = Vec::new();
        let mut values = Vec::with_capacity(args.len());
        for (port, arg) in args.into_iter().enumerate() {
            let codec = wire.params.get(port).copied().flatten();
            let no_codec = || failed(format!("argument {port} of `{task}` has no codec"));
            values.push(Some(match arg {
                Arg::Stored { rank, id } if rank == self.rank => self.stored(id).map_err(failed)?,
                Arg::Stored { rank, id } => {
                    let start = arrived.elapsed();
                    let (datum, bytes) = self.fetch_counted(&RemoteValue {
                        rank,
                        id,
                        bytes: 0,
                        codec: codec.ok_or_else(no_codec)?,
                    })?;
                    let took = arrived.elapsed() - start;
                    fetched.push(RemoteFetch {
                        from: rank,
                        bytes,
                        start,
                        took,
                    });
                    datum
                }
                Arg::Bytes(bytes) => {
                    (codec.ok_or_else(no_codec)?.decode)(&bytes).map_err(failed)?
                }
            }));
        }
        let invoke = def.invoke;
        let result = rt
            .try_spawn(move || invoke(&mut values), ())
            .wait()
            .map_err(|e| failed(e.to_string()))?;
        let bytes = (output.encode)(&result).map_err(failed)?.len() as u64;
        let id = self.store.next_id.fetch_add(1, Ordering::Relaxed);
        self.store
            .values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (result, output));
        Ok(Reply::Stored { id, bytes, fetched })
    }
}
