//! The UCX worker's side of the transport: its endpoints, the sends and
//! receives in flight and the callbacks UCX completes them with. Everything
//! here runs under the transport's worker lock (`Shared::worker`).

use super::{check, lib};
use crate::net::completion::Completer;
use crate::net::{Message, NetError, PeerId, WaitingRecv};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::ptr;
use ucx_sys as sys;

/// The context and worker, before the progress thread takes them.
pub(super) struct Endpoint {
    pub(super) context: sys::ucp_context_h,
    pub(super) worker: sys::ucp_worker_h,
}
// SAFETY: used only under the worker's lock (UCS_THREAD_MODE_SERIALIZED).
unsafe impl Send for Endpoint {}

/// A send in flight: the buffer UCX reads and who to tell.
struct SendOp {
    data: Vec<u8>,
    done: SendDone,
}

/// Who a finished send tells: a plain send, or one that hands its buffer
/// back for the next message.
pub(super) enum SendDone {
    Unit(Completer<()>),
    Buffer(Completer<Vec<u8>>),
}

impl SendOp {
    fn complete(self, result: Result<(), NetError>) {
        match self.done {
            SendDone::Unit(done) => done.complete(result),
            SendDone::Buffer(done) => done.complete(result.map(|()| self.data)),
        }
    }
}

/// A receive in flight: the buffer UCX fills and who to tell.
struct RecvOp {
    tag: u64,
    length: usize,
    data: Vec<u8>,
    done: Completer<Message>,
}

/// Request parameters with a completion callback (set by the caller) and
/// `user` handed to it.
fn with_callback(user: *mut c_void) -> sys::ucp_request_param_t {
    // SAFETY: the all-zero parameter block is UCX's "no fields set".
    let mut param: sys::ucp_request_param_t = unsafe { std::mem::zeroed() };
    param.op_attr_mask = sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_CALLBACK
        | sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_USER_DATA;
    param.user_data = user;
    param
}

/// UCX calls this when a send completes (on the progress thread).
unsafe extern "C" fn send_done(request: *mut c_void, status: sys::ucs_status_t, user: *mut c_void) {
    // SAFETY: `user` is the SendOp boxed for this request; this is its only completion.
    let op = unsafe { Box::from_raw(user as *mut SendOp) };
    op.complete(check("ucp_tag_send_nbx", status));
    if let Ok(lib) = lib() {
        // SAFETY: a completed request is freed exactly once, here.
        unsafe { lib.ucp_request_free(request) };
    }
}

/// UCX calls this when a receive completes (on the progress thread).
unsafe extern "C" fn recv_done(
    request: *mut c_void,
    status: sys::ucs_status_t,
    _info: *const sys::ucp_tag_recv_info_t,
    user: *mut c_void,
) {
    // SAFETY: `user` is the RecvOp boxed for this request; this is its only completion.
    let op = unsafe { Box::from_raw(user as *mut RecvOp) };
    finish_recv(*op, status);
    if let Ok(lib) = lib() {
        // SAFETY: a completed request is freed exactly once, here.
        unsafe { lib.ucp_request_free(request) };
    }
}

fn finish_recv(op: RecvOp, status: sys::ucs_status_t) {
    let RecvOp {
        tag,
        length,
        mut data,
        done,
    } = op;
    let result = check("ucp_tag_msg_recv_nbx", status).map(|()| {
        // SAFETY: the receive succeeded: UCX wrote all `length` bytes,
        // which `receive` reserved.
        unsafe { data.set_len(length) };
        Message { tag, data }
    });
    done.complete(result);
}

/// The worker's state: the worker, its endpoints, waiting receives. Used
/// only under [`Shared::worker`]'s lock.
pub(super) struct Progress {
    lib: &'static sys::UcpLib,
    endpoint: Endpoint,
    peers: Vec<sys::ucp_ep_h>,
    pub(super) receives: VecDeque<WaitingRecv>,
    efd: i32,
    /// Set when an operation was left in flight (UCX returned a request):
    /// the background thread must be awake to finish it.
    pub(super) left_pending: bool,
    /// The background thread sleeps (or is about to) on the event fd.
    pub(super) polling: bool,
    /// The worker is destroyed: nothing may call UCX any more.
    closed: bool,
}

// SAFETY: the endpoints, like the worker, are used only under the worker's
// lock (UCS_THREAD_MODE_SERIALIZED).
unsafe impl Send for Progress {}

impl Progress {
    pub(super) fn new(lib: &'static sys::UcpLib, endpoint: Endpoint) -> Self {
        let mut efd = -1;
        // SAFETY: the worker was created with UCP_FEATURE_WAKEUP.
        let status = unsafe { lib.ucp_worker_get_efd(endpoint.worker, &mut efd) };
        if status != sys::ucs_status_t_UCS_OK {
            efd = -1; // Without an event fd the thread polls with short sleeps.
        }
        Progress {
            lib,
            endpoint,
            peers: Vec::new(),
            receives: VecDeque::new(),
            efd,
            left_pending: false,
            polling: false,
            closed: false,
        }
    }

    /// Makes progress: UCX's (at most [`PROGRESS_ROUNDS`] rounds), then the
    /// receives whose messages have arrived. Whether anything happened.
    pub(super) fn progress(&mut self) -> bool {
        if self.closed {
            // A completion outliving its transport may still try to drive it.
            return false;
        }
        let (lib, worker) = (self.lib, self.endpoint.worker);
        // SAFETY: called holding the worker's lock, on a live worker.
        let busy = progress_rounds(|| unsafe { lib.ucp_worker_progress(worker) } != 0);
        busy | self.match_receives()
    }

    /// Arms the worker's event fd for a sleep; `None` when events are
    /// already pending (progress again instead). Without an event fd,
    /// `Some(-1)`: the sleep is a short nap.
    pub(super) fn arm(&mut self) -> Option<i32> {
        if self.efd < 0 {
            return Some(-1);
        }
        // SAFETY: called holding the worker's lock.
        let armed = unsafe { self.lib.ucp_worker_arm(self.endpoint.worker) };
        (armed == sys::ucs_status_t_UCS_OK).then_some(self.efd)
    }

    pub(super) fn connect(&mut self, address: &[u8]) -> Result<PeerId, NetError> {
        if address.is_empty() {
            return Err(NetError::BadAddress("empty UCX worker address".into()));
        }
        // SAFETY: the params point at `address`, alive during the call; UCX
        // copies what it needs.
        unsafe {
            let mut params: sys::ucp_ep_params_t = std::mem::zeroed();
            params.field_mask = sys::ucp_ep_params_field_UCP_EP_PARAM_FIELD_REMOTE_ADDRESS as u64;
            params.address = address.as_ptr() as *const sys::ucp_address_t;
            let mut ep = ptr::null_mut();
            check(
                "ucp_ep_create",
                self.lib
                    .ucp_ep_create(self.endpoint.worker, &params, &mut ep),
            )?;
            self.peers.push(ep);
        }
        Ok(PeerId(self.peers.len() - 1))
    }

    pub(super) fn send(&mut self, peer: PeerId, tag: u64, data: Vec<u8>, done: SendDone) {
        let Some(&ep) = self.peers.get(peer.0) else {
            return SendOp { data, done }.complete(Err(NetError::UnknownPeer(peer)));
        };
        let (buffer, length) = (data.as_ptr(), data.len());
        let op = Box::into_raw(Box::new(SendOp { data, done }));
        // SAFETY: the buffer lives in `op` until UCX reports completion
        // (callback) or the call completes at once (reclaimed below).
        unsafe {
            let mut param = with_callback(op as *mut c_void);
            param.cb.send = Some(send_done);
            let status =
                self.lib
                    .ucp_tag_send_nbx(ep, buffer as *const c_void, length, tag, &param);
            self.left_pending |= sys::ucs_ptr_is_ptr(status);
            if !sys::ucs_ptr_is_ptr(status) {
                Box::from_raw(op).complete(check("ucp_tag_send_nbx", sys::ucs_ptr_status(status)));
            }
        }
    }

    /// Starts receiving every waiting receive whose message has arrived.
    fn match_receives(&mut self) -> bool {
        let mut started = false;
        let mut k = 0;
        while k < self.receives.len() {
            let (tag, mask) = (self.receives[k].0, self.receives[k].1);
            let mut info = sys::ucp_tag_recv_info_t {
                sender_tag: 0,
                length: 0,
            };
            // SAFETY: the worker is this thread's; `info` is a valid out-pointer.
            let message = unsafe {
                self.lib
                    .ucp_tag_probe_nb(self.endpoint.worker, tag, mask, 1, &mut info)
            };
            if message.is_null() {
                k += 1;
                continue;
            }
            let (_, _, buffer, done) = self.receives.remove(k).expect("k is in range");
            self.receive(message, info, buffer, done);
            started = true;
        }
        started
    }

    fn receive(
        &mut self,
        message: sys::ucp_tag_message_h,
        info: sys::ucp_tag_recv_info_t,
        mut data: Vec<u8>,
        done: Completer<Message>,
    ) {
        // UCX writes every byte of the message; the length is set on success.
        data.clear();
        data.reserve_exact(info.length);
        let buffer = data.as_mut_ptr();
        let op = Box::into_raw(Box::new(RecvOp {
            tag: info.sender_tag,
            length: info.length,
            data,
            done,
        }));
        // SAFETY: the buffer lives in `op` until completion, as for sends.
        unsafe {
            let mut param = with_callback(op as *mut c_void);
            param.cb.recv = Some(recv_done);
            let status = self.lib.ucp_tag_msg_recv_nbx(
                self.endpoint.worker,
                buffer as *mut c_void,
                info.length,
                message,
                &param,
            );
            self.left_pending |= sys::ucs_ptr_is_ptr(status);
            if !sys::ucs_ptr_is_ptr(status) {
                finish_recv(*Box::from_raw(op), sys::ucs_ptr_status(status));
            }
        }
    }

    /// Whether the worker is destroyed (nothing may call UCX on it).
    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Closes the endpoints and the worker; waiting receives report Closed.
    /// Called once, by the background thread, holding the worker's lock.
    pub(super) fn close(&mut self) {
        self.closed = true;
        self.receives.clear();
        let lib = self.lib;
        for ep in std::mem::take(&mut self.peers) {
            // SAFETY: each endpoint is closed once; progress until done.
            unsafe {
                let mut param: sys::ucp_request_param_t = std::mem::zeroed();
                param.op_attr_mask = sys::ucp_op_attr_t_UCP_OP_ATTR_FIELD_FLAGS;
                param.flags = sys::ucp_ep_close_flags_t_UCP_EP_CLOSE_FLAG_FORCE;
                let request = lib.ucp_ep_close_nbx(ep, &param);
                if sys::ucs_ptr_is_ptr(request) {
                    while lib.ucp_request_check_status(request) == sys::ucs_status_t_UCS_INPROGRESS
                    {
                        lib.ucp_worker_progress(self.endpoint.worker);
                    }
                    lib.ucp_request_free(request);
                }
            }
        }
        // SAFETY: nothing uses the worker or context after this.
        unsafe {
            lib.ucp_worker_destroy(self.endpoint.worker);
            lib.ucp_cleanup(self.endpoint.context);
        }
    }
}

/// The most rounds of `ucp_worker_progress` one [`Progress::progress`]
/// makes before it matches the waiting receives and lets go of the lock.
const PROGRESS_ROUNDS: usize = 64;

/// Calls `round` until it reports no progress, at most [`PROGRESS_ROUNDS`]
/// times; whether any round made progress.
///
/// Bounded because UCX may report progress at every call for as long as
/// something keeps it busy (an endpoint to a dead peer, say): an unbounded
/// loop then holds the worker's lock forever and never reaches
/// `match_receives`, so no reply is delivered and every waiter hangs.
fn progress_rounds(mut round: impl FnMut() -> bool) -> bool {
    let mut busy = false;
    for _ in 0..PROGRESS_ROUNDS {
        if !round() {
            break;
        }
        busy = true;
    }
    busy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_ends_even_when_ucx_always_reports_some() {
        let mut calls = 0;
        assert!(progress_rounds(|| {
            calls += 1;
            true
        }));
        assert_eq!(calls, PROGRESS_ROUNDS);
        let mut calls = 0;
        assert!(progress_rounds(|| {
            calls += 1;
            calls < 3
        }));
        assert_eq!(calls, 3, "stops at the first round without progress");
        assert!(!progress_rounds(|| false));
    }
}
