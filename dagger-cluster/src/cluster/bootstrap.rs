//! Forming a cluster over TCP: join, authenticate, exchange addresses,
//! then watch each other with heartbeats.
//!
//! Rank 0 listens on the coordinator address. Each other rank connects
//! (retrying while rank 0 starts), receives a random challenge, and answers
//! with its rank, an HMAC of the challenge under the cluster token, the
//! fingerprint of its task registry and its transport address. A wrong
//! proof, a rank out of range or already taken, or a different binary is
//! refused with a reason (sent to the rank and logged by rank 0); the
//! cluster goes on waiting for the right ranks. Once every rank has joined,
//! rank 0 sends everyone the table of addresses.
//!
//! Afterwards every member and rank 0 send each other a heartbeat every
//! [`HEARTBEAT`]; rank 0 declares a member dead when its connection closes
//! or stays silent for [`SILENCE`], tells the other members (`Dead`), and
//! members treat rank 0 the same way: a member whose rank 0 is gone or
//! silent for [`SILENCE`] stops serving. When rank 0 shuts the cluster
//! down it sends `Shutdown` to everyone.
//!
//! `dagger run` also tells rank 0 of a rank whose process ended: it answers
//! the challenge with `Gone` (proved with the token like a join). A rank
//! gone before it joined is not waited for: the cluster forms without it
//! (its address left empty, known dead from the start); one gone after the
//! cluster formed is declared dead at once. Without such a report, rank 0
//! waits up to the join timeout (`DAGGER_JOIN_TIMEOUT` seconds).

use super::wire::{self, Control, Member};
use super::{auth, ClusterEnv, ClusterError, Membership};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, timeout, Instant};

/// How often members say they are alive.
pub const HEARTBEAT: Duration = Duration::from_millis(200);
/// Silence after which a member counts as dead.
pub const SILENCE: Duration = Duration::from_secs(2);
/// How long a connection may take to answer the challenge.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// A member that passed the handshake.
struct Joined {
    rank: u32,
    member: Member,
    stream: TcpStream,
}

/// What an authenticated connection to rank 0 brought.
enum Arrival {
    /// A rank joins.
    Joined(Joined),
    /// The launcher reports that a rank's process ended.
    Gone { rank: u32, why: String },
}

/// What the join timeout's errors add: the variable that sets it.
fn timeout_hint(limit: Duration) -> String {
    format!(
        "{limit:?}; DAGGER_JOIN_TIMEOUT={} (seconds) sets how long ranks wait for each other",
        limit.as_secs_f64()
    )
}

/// What a rank brings to the bootstrap, and where it reports the outcome.
pub(super) struct Joining {
    /// Its place in the cluster.
    pub env: ClusterEnv,
    /// Its address and workers.
    pub own: Member,
    /// Its task registry's fingerprint.
    pub fingerprint: u64,
    /// How long to wait for everyone.
    pub join_timeout: Duration,
    /// Liveness, filled by the heartbeats.
    pub membership: Arc<Membership>,
    /// Receives every rank's member record (or why there are none) once.
    pub ready: std::sync::mpsc::Sender<Result<Vec<Member>, ClusterError>>,
}

/// Rank 0: accepts the other ranks, then watches them until shutdown.
/// Sends the address table through `ready` once everyone has joined.
pub(super) async fn coordinate(joining: Joining, shutdown: watch::Receiver<bool>) {
    let Joining {
        env,
        own,
        fingerprint,
        join_timeout,
        membership,
        ready,
    } = joining;
    let listener = match TcpListener::bind(env.coordinator).await {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(ClusterError::Io(format!(
                "cannot listen on {}: {e}",
                env.coordinator
            ))));
            return;
        }
    };
    let (joined_tx, mut joined_rx) = mpsc::channel::<Arrival>(64);
    let mut members: Vec<Option<Joined>> = (0..env.size).map(|_| None).collect();
    let mut gone: Vec<Option<String>> = vec![None; env.size as usize];
    let deadline = Instant::now() + join_timeout;
    let env = Arc::new(env);
    let awaited = |members: &[Option<Joined>], gone: &[Option<String>]| {
        (1..members.len()).any(|r| members[r].is_none() && gone[r].is_none())
    };
    while awaited(&members, &gone) {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, peer)) = accepted {
                    let (env, tx) = (env.clone(), joined_tx.clone());
                    tokio::spawn(async move {
                        match handshake(stream, &env, fingerprint).await {
                            Ok(arrival) => { let _ = tx.send(arrival).await; }
                            Err(e) => eprintln!("dagger: refused a join from {peer}: {e}"),
                        }
                    });
                }
            }
            Some(arrival) = joined_rx.recv() => match arrival {
                Arrival::Joined(mut j) => {
                    let slot = &mut members[j.rank as usize];
                    let refusal = if slot.is_some() {
                        Some(format!("rank {} has already joined", j.rank))
                    } else if gone[j.rank as usize].is_some() {
                        Some(format!("rank {} was reported gone", j.rank))
                    } else {
                        None
                    };
                    match refusal {
                        Some(reason) => {
                            eprintln!("dagger: refused a second rank {}: {reason}", j.rank);
                            let _ = wire::write(&mut j.stream, &Control::Refused { reason }).await;
                        }
                        None => *slot = Some(j),
                    }
                }
                Arrival::Gone { rank, why } => {
                    eprintln!("dagger: rank {rank} is gone before the cluster formed ({why}); going on without it");
                    members[rank as usize] = None;
                    gone[rank as usize] = Some(why);
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let missing: Vec<String> = (1..env.size)
                    .filter(|&r| members[r as usize].is_none() && gone[r as usize].is_none())
                    .map(|r| r.to_string())
                    .collect();
                let _ = ready.send(Err(ClusterError::Timeout(format!(
                    "rank(s) {} did not join within {}",
                    missing.join(", "),
                    timeout_hint(join_timeout)
                ))));
                return;
            }
        }
    }
    // A rank gone before it joined has no address: nobody connects to it.
    let absent = Member {
        address: Vec::new(),
        workers: 0,
    };
    let mut roster = vec![own];
    roster.extend(members.iter().skip(1).map(|j| match j {
        Some(j) => j.member.clone(),
        None => absent.clone(),
    }));
    let welcome = Control::Welcome {
        members: roster.clone(),
    };
    let mut watchers = Vec::new();
    for j in members.into_iter().flatten() {
        let (read, mut write) = j.stream.into_split();
        if let Err(e) = wire::write(&mut write, &welcome).await {
            membership.mark_dead(j.rank, format!("lost while welcomed: {e}"));
            continue;
        }
        let (notice, notices) = mpsc::unbounded_channel();
        membership.subscribe(notice);
        let (membership, shutdown) = (membership.clone(), shutdown.clone());
        watchers.push(tokio::spawn(watch_member(
            j.rank, read, write, membership, shutdown, notices,
        )));
    }
    for (rank, why) in gone.into_iter().enumerate() {
        if let Some(why) = why {
            membership.mark_dead(
                rank as u32,
                format!("gone before the cluster formed: {why}"),
            );
        }
    }
    let _ = ready.send(Ok(roster));
    let late = tokio::spawn(accept_late(listener, env, fingerprint, membership));
    for w in watchers {
        let _ = w.await;
    }
    late.abort();
}

/// Rank 0 after the cluster formed: takes the launcher's reports of ranks
/// gone (declared dead at once) and refuses late joins.
async fn accept_late(
    listener: TcpListener,
    env: Arc<ClusterEnv>,
    fingerprint: u64,
    membership: Arc<Membership>,
) {
    while let Ok((stream, peer)) = listener.accept().await {
        let (env, membership) = (env.clone(), membership.clone());
        tokio::spawn(async move {
            match handshake(stream, &env, fingerprint).await {
                Ok(Arrival::Gone { rank, why }) => membership.mark_dead(rank, why),
                Ok(Arrival::Joined(mut j)) => {
                    let reason = format!("rank {}: the cluster has already formed", j.rank);
                    eprintln!("dagger: refused a join from {peer}: {reason}");
                    let _ = wire::write(&mut j.stream, &Control::Refused { reason }).await;
                }
                Err(e) => eprintln!("dagger: refused a join from {peer}: {e}"),
            }
        });
    }
}

/// Tells rank 0 at `coordinator` that the process of `rank` has ended
/// (`why`), proving the cluster `token`; what `dagger run` does when a
/// rank's process ends before rank 0's, so that rank 0 neither waits for
/// it to join nor for its heartbeats to stop. Tries to connect for up to
/// `within` (rank 0 may not listen yet).
pub fn report_gone(
    coordinator: std::net::SocketAddr,
    token: &[u8],
    rank: u32,
    why: &str,
    within: Duration,
) -> Result<(), ClusterError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let deadline = Instant::now() + within;
        let mut stream = loop {
            match timeout(HANDSHAKE, TcpStream::connect(coordinator)).await {
                Ok(Ok(s)) => break s,
                _ if Instant::now() >= deadline => {
                    return Err(ClusterError::Timeout(format!(
                        "rank 0 at {coordinator} did not answer within {within:?}"
                    )))
                }
                _ => sleep(Duration::from_millis(50)).await,
            }
        };
        let nonce = match timeout(HANDSHAKE, wire::read(&mut stream)).await {
            Ok(Ok(Control::Challenge { nonce })) => nonce,
            Ok(Ok(other)) => {
                return Err(ClusterError::Protocol(format!(
                    "expected Challenge, got {other:?}"
                )))
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ClusterError::Timeout("rank 0 sent no challenge".into())),
        };
        let gone = Control::Gone {
            rank,
            proof: auth::proof(token, &nonce, rank),
            why: why.to_string(),
        };
        wire::write(&mut stream, &gone).await
    })
}

/// Checks one joining connection.
async fn handshake(
    mut stream: TcpStream,
    env: &ClusterEnv,
    fingerprint: u64,
) -> Result<Arrival, ClusterError> {
    let nonce = auth::nonce();
    wire::write(&mut stream, &Control::Challenge { nonce }).await?;
    let reply = timeout(HANDSHAKE, wire::read(&mut stream))
        .await
        .map_err(|_| ClusterError::Protocol("no answer to the challenge".into()))??;
    if let Control::Gone { rank, proof, why } = reply {
        if !auth::verify(&env.token, &nonce, rank, &proof) {
            return Err(ClusterError::Refused(format!(
                "a report that rank {rank} is gone: wrong cluster token"
            )));
        }
        if rank == 0 || rank >= env.size {
            return Err(ClusterError::Refused(format!(
                "a report that rank {rank} is gone: not in 1..{}",
                env.size
            )));
        }
        return Ok(Arrival::Gone { rank, why });
    }
    let Control::Join {
        rank,
        proof,
        fingerprint: theirs,
        member,
    } = reply
    else {
        return Err(ClusterError::Protocol(format!(
            "expected Join, got {reply:?}"
        )));
    };
    let refusal = if !auth::verify(&env.token, &nonce, rank, &proof) {
        Some(format!("rank {rank}: wrong cluster token"))
    } else if rank == 0 || rank >= env.size {
        Some(format!("rank {rank} is not in 1..{}", env.size))
    } else if theirs != fingerprint {
        Some(format!(
            "rank {rank} runs a different binary (task registry {theirs:016x}, rank 0 has {fingerprint:016x})"
        ))
    } else {
        None
    };
    if let Some(reason) = refusal {
        let _ = wire::write(
            &mut stream,
            &Control::Refused {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(ClusterError::Refused(reason));
    }
    Ok(Arrival::Joined(Joined {
        rank,
        member,
        stream,
    }))
}

/// Rank 0's watch over one member: heartbeats in, heartbeats, deaths and
/// `Shutdown` out; the member is declared dead when its connection fails
/// or it is silent for [`SILENCE`].
///
/// Hearing and speaking are two loops: a read raced against the heartbeat
/// timer would start again (its silence clock reset) at every beat, so a
/// member cut off, whose heartbeats stop while rank 0's still fit in the
/// socket's buffer, would never be found silent.
async fn watch_member(
    rank: u32,
    mut read: OwnedReadHalf,
    write: OwnedWriteHalf,
    membership: Arc<Membership>,
    shutdown: watch::Receiver<bool>,
    notices: mpsc::UnboundedReceiver<Control>,
) {
    let mut speaking = tokio::spawn(speak_to_member(write, shutdown, notices));
    tokio::select! {
        why = hear_member(&mut read) => {
            speaking.abort();
            membership.mark_dead(rank, why);
        }
        spoke = &mut speaking => {
            if let Ok(Err(e)) = spoke {
                membership.mark_dead(rank, format!("connection lost: {e}"));
            }
        }
    }
}

/// Reads a member's heartbeats until it breaks off; why it did.
async fn hear_member(read: &mut OwnedReadHalf) -> String {
    loop {
        match timeout(SILENCE, wire::read(read)).await {
            Ok(Ok(Control::Heartbeat)) => {}
            Ok(Ok(other)) => return format!("sent {other:?} out of turn"),
            Ok(Err(e)) => return format!("connection lost: {e}"),
            Err(_) => return format!("silent for {SILENCE:?}"),
        }
    }
}

/// Sends a member a heartbeat every [`HEARTBEAT`] and the deaths of
/// others as they come, until the cluster shuts down (then `Shutdown`).
async fn speak_to_member(
    mut write: OwnedWriteHalf,
    mut shutdown: watch::Receiver<bool>,
    mut notices: mpsc::UnboundedReceiver<Control>,
) -> Result<(), ClusterError> {
    let mut beat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = beat.tick() => wire::write(&mut write, &Control::Heartbeat).await?,
            Some(notice) = notices.recv() => wire::write(&mut write, &notice).await?,
            _ = shutdown.changed() => return wire::write(&mut write, &Control::Shutdown).await,
        }
    }
}

/// A member: joins rank 0, then heartbeats until shutdown or rank 0's loss.
pub(super) async fn join(joining: Joining) {
    let (mut read, mut write) = match member_handshake(&joining).await {
        Ok((members, stream)) => {
            let _ = joining.ready.send(Ok(members));
            stream.into_split()
        }
        Err(e) => {
            let _ = joining.ready.send(Err(e));
            return;
        }
    };
    let membership = joining.membership;
    let beat = tokio::spawn(async move {
        while wire::write(&mut write, &Control::Heartbeat).await.is_ok() {
            sleep(HEARTBEAT).await;
        }
    });
    let reason = loop {
        match timeout(SILENCE, wire::read(&mut read)).await {
            Ok(Ok(Control::Shutdown)) => break None,
            Ok(Ok(Control::Heartbeat)) => {}
            Ok(Ok(Control::Dead { rank, why })) => membership.mark_dead(rank, why),
            Ok(Ok(other)) => break Some(format!("rank 0 sent {other:?} out of turn")),
            Ok(Err(e)) => break Some(format!("connection to rank 0 lost: {e}")),
            Err(_) => break Some(format!("rank 0 silent for {SILENCE:?}")),
        }
    };
    beat.abort();
    match reason {
        None => membership.mark_shut_down(),
        Some(r) => membership.mark_dead(0, r),
    }
}

async fn member_handshake(joining: &Joining) -> Result<(Vec<Member>, TcpStream), ClusterError> {
    let (env, join_timeout) = (&joining.env, joining.join_timeout);
    let deadline = Instant::now() + join_timeout;
    let mut stream = loop {
        match TcpStream::connect(env.coordinator).await {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                return Err(ClusterError::Timeout(format!(
                    "rank 0 at {} did not answer within {}: {e}",
                    env.coordinator,
                    timeout_hint(join_timeout)
                )))
            }
            Err(_) => sleep(Duration::from_millis(50)).await,
        }
    };
    let Control::Challenge { nonce } = wire::read(&mut stream).await? else {
        return Err(ClusterError::Protocol(
            "rank 0 did not send a challenge".into(),
        ));
    };
    let join = Control::Join {
        rank: env.rank,
        proof: auth::proof(&env.token, &nonce, env.rank),
        fingerprint: joining.fingerprint,
        member: joining.own.clone(),
    };
    wire::write(&mut stream, &join).await?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(HANDSHAKE);
    let reply = timeout(left, wire::read(&mut stream)).await.map_err(|_| {
        ClusterError::Timeout(format!(
            "the other ranks did not all join within {}",
            timeout_hint(join_timeout)
        ))
    })??;
    match reply {
        Control::Welcome { members } if members.len() == env.size as usize => Ok((members, stream)),
        Control::Refused { reason } => Err(ClusterError::Refused(reason)),
        other => Err(ClusterError::Protocol(format!(
            "expected Welcome, got {other:?}"
        ))),
    }
}
