//! The UCX transport: `ucp` tag matching through the in-tree `ucx-sys`.
//!
//! One [`UcxTransport`] is one UCX context and one worker, created in
//! `UCS_THREAD_MODE_SINGLE` and owned by a progress thread: every UCX call on
//! them is made on that thread. Callers hand it commands through a channel
//! and wake it with `ucp_worker_signal` (the one call UCX allows from any
//! thread); results come back as [`Completion`]s, delivered from UCX's
//! completion callbacks. When nothing is in flight the thread arms the
//! worker and sleeps in `poll` on its event file descriptor, so an idle
//! transport costs no CPU.
//!
//! Sends are zero-copy: the `Vec<u8>` is handed to UCX as it is and dropped
//! when UCX reports the send complete. Receives probe for a matching
//! message first (`ucp_tag_probe_nb`), so the buffer is allocated at the
//! message's exact size, then receive it (`ucp_tag_msg_recv_nbx`).

use super::completion::{completion, Completer};
use super::{Completion, Message, NetError, PeerId, Transport};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::ptr;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use ucx_sys as sys;

/// A request for the progress thread.
enum Command {
    Connect(Vec<u8>, Completer<PeerId>),
    Send(PeerId, u64, Vec<u8>, Completer<()>),
    Recv(u64, u64, Vec<u8>, Completer<Message>),
}

/// A worker pointer that may cross threads for `ucp_worker_signal` only.
#[derive(Clone, Copy)]
struct SignalHandle(sys::ucp_worker_h);
// SAFETY: only `ucp_worker_signal`, which UCX documents as safe from any
// thread, is called through it, and only while the worker lives.
unsafe impl Send for SignalHandle {}
unsafe impl Sync for SignalHandle {}

/// A UCX endpoint of this process: context, worker and progress thread.
pub struct UcxTransport {
    commands: Mutex<Sender<Command>>,
    signal: SignalHandle,
    address: Vec<u8>,
    thread: Option<JoinHandle<()>>,
}

fn check(call: &'static str, status: sys::ucs_status_t) -> Result<(), NetError> {
    if status == sys::ucs_status_t_UCS_OK {
        Ok(())
    } else {
        Err(NetError::Ucx {
            call,
            status: sys::status_name(status),
        })
    }
}

/// The loaded library, or [`NetError::Unavailable`] saying how to get it.
fn lib() -> Result<&'static sys::UcpLib, NetError> {
    sys::ucp().map_err(|why| NetError::Unavailable(why.to_string()))
}

/// The context and worker, before the progress thread takes them.
struct Endpoint {
    context: sys::ucp_context_h,
    worker: sys::ucp_worker_h,
}
// SAFETY: moved once, to the progress thread, which alone uses it.
unsafe impl Send for Endpoint {}

impl UcxTransport {
    /// Creates a UCX context and worker and starts the progress thread.
    /// Fails with [`NetError::Unavailable`] when UCX is not installed.
    pub fn new() -> Result<Self, NetError> {
        let lib = lib()?;
        // SAFETY: plain UCX initialisation; every out-pointer is valid, and
        // what is created is destroyed on the failure paths below.
        let (endpoint, address) = unsafe {
            let mut config = ptr::null_mut();
            check(
                "ucp_config_read",
                lib.ucp_config_read(ptr::null(), ptr::null(), &mut config),
            )?;
            let mut params: sys::ucp_params_t = std::mem::zeroed();
            params.field_mask = sys::ucp_params_field_UCP_PARAM_FIELD_FEATURES as u64;
            params.features =
                (sys::ucp_feature_UCP_FEATURE_TAG | sys::ucp_feature_UCP_FEATURE_WAKEUP) as u64;
            let mut context = ptr::null_mut();
            let status = lib.ucp_init_version(
                sys::UCP_API_MAJOR,
                sys::UCP_API_MINOR,
                &params,
                config,
                &mut context,
            );
            lib.ucp_config_release(config);
            check("ucp_init", status)?;
            let mut wparams: sys::ucp_worker_params_t = std::mem::zeroed();
            wparams.field_mask =
                sys::ucp_worker_params_field_UCP_WORKER_PARAM_FIELD_THREAD_MODE as u64;
            wparams.thread_mode = sys::ucs_thread_mode_t_UCS_THREAD_MODE_SINGLE;
            let mut worker = ptr::null_mut();
            if let Err(e) = check(
                "ucp_worker_create",
                lib.ucp_worker_create(context, &wparams, &mut worker),
            ) {
                lib.ucp_cleanup(context);
                return Err(e);
            }
            let mut addr = ptr::null_mut();
            let mut len = 0usize;
            if let Err(e) = check(
                "ucp_worker_get_address",
                lib.ucp_worker_get_address(worker, &mut addr, &mut len),
            ) {
                lib.ucp_worker_destroy(worker);
                lib.ucp_cleanup(context);
                return Err(e);
            }
            let address = std::slice::from_raw_parts(addr as *const u8, len).to_vec();
            lib.ucp_worker_release_address(worker, addr);
            (Endpoint { context, worker }, address)
        };
        let signal = SignalHandle(endpoint.worker);
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("dagger-ucx-progress".into())
            .spawn(move || Progress::new(lib, endpoint).run(rx))
            .map_err(|e| NetError::Unavailable(format!("cannot start the UCX thread: {e}")))?;
        Ok(UcxTransport {
            commands: Mutex::new(tx),
            signal,
            address,
            thread: Some(thread),
        })
    }

    /// Hands `command` to the progress thread and wakes it.
    fn submit(&self, command: Command) {
        let sent = self
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(command);
        // A failed send drops the command, whose completer reports Closed.
        if sent.is_ok() {
            if let Ok(lib) = lib() {
                // SAFETY: the worker lives until the thread, joined in drop, ends.
                unsafe { lib.ucp_worker_signal(self.signal.0) };
            }
        }
    }
}

impl Drop for UcxTransport {
    fn drop(&mut self) {
        // Closing the channel tells the thread to finish; wake it to see that.
        let (closed, _) = channel();
        drop(std::mem::replace(
            &mut *self.commands.lock().unwrap_or_else(|p| p.into_inner()),
            closed,
        ));
        if let Ok(lib) = lib() {
            // SAFETY: the worker is alive until the thread below returns.
            unsafe { lib.ucp_worker_signal(self.signal.0) };
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Transport for UcxTransport {
    fn address(&self) -> Vec<u8> {
        self.address.clone()
    }

    fn connect(&self, address: &[u8]) -> Result<PeerId, NetError> {
        let (result, done) = completion();
        self.submit(Command::Connect(address.to_vec(), done));
        result.wait()
    }

    fn send(&self, peer: PeerId, tag: u64, data: Vec<u8>) -> Completion<()> {
        let (result, done) = completion();
        self.submit(Command::Send(peer, tag, data, done));
        result
    }

    fn recv_into(&self, tag: u64, mask: u64, buffer: Vec<u8>) -> Completion<Message> {
        let (result, done) = completion();
        self.submit(Command::Recv(tag, mask, buffer, done));
        result
    }
}

/// A send in flight: the buffer UCX reads and who to tell.
struct SendOp {
    _data: Vec<u8>,
    done: Completer<()>,
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
    op.done.complete(check("ucp_tag_send_nbx", status));
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

/// The progress thread's state: the worker, its endpoints, waiting receives.
struct Progress {
    lib: &'static sys::UcpLib,
    endpoint: Endpoint,
    peers: Vec<sys::ucp_ep_h>,
    receives: VecDeque<super::WaitingRecv>,
    efd: i32,
}

impl Progress {
    fn new(lib: &'static sys::UcpLib, endpoint: Endpoint) -> Self {
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
        }
    }

    /// Serves commands until the channel closes, then closes everything.
    /// (Polling a while before sleeping was tried: on a 2-core machine the
    /// spinning threads of two ranks starved each other and round trips got
    /// 3x slower.)
    fn run(mut self, commands: Receiver<Command>) {
        loop {
            let mut busy = false;
            loop {
                match commands.try_recv() {
                    Ok(c) => {
                        self.handle(c);
                        busy = true;
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return self.close(),
                }
            }
            // SAFETY: the worker is owned by this thread.
            while unsafe { self.lib.ucp_worker_progress(self.endpoint.worker) } != 0 {
                busy = true;
            }
            busy |= self.match_receives();
            if !busy {
                self.sleep();
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Connect(address, done) => done.complete(self.connect(&address)),
            Command::Send(peer, tag, data, done) => self.send(peer, tag, data, done),
            Command::Recv(tag, mask, buffer, done) => {
                self.receives.push_back((tag, mask, buffer, done))
            }
        }
    }

    fn connect(&mut self, address: &[u8]) -> Result<PeerId, NetError> {
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

    fn send(&mut self, peer: PeerId, tag: u64, data: Vec<u8>, done: Completer<()>) {
        let Some(&ep) = self.peers.get(peer.0) else {
            return done.complete(Err(NetError::UnknownPeer(peer)));
        };
        let (buffer, length) = (data.as_ptr(), data.len());
        let op = Box::into_raw(Box::new(SendOp { _data: data, done }));
        // SAFETY: the buffer lives in `op` until UCX reports completion
        // (callback) or the call completes at once (reclaimed below).
        unsafe {
            let mut param = with_callback(op as *mut c_void);
            param.cb.send = Some(send_done);
            let status =
                self.lib
                    .ucp_tag_send_nbx(ep, buffer as *const c_void, length, tag, &param);
            if !sys::ucs_ptr_is_ptr(status) {
                let op = Box::from_raw(op);
                op.done
                    .complete(check("ucp_tag_send_nbx", sys::ucs_ptr_status(status)));
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
            if !sys::ucs_ptr_is_ptr(status) {
                finish_recv(*Box::from_raw(op), sys::ucs_ptr_status(status));
            }
        }
    }

    /// Sleeps until UCX or a caller signals the worker (or 100 ms pass).
    fn sleep(&mut self) {
        if self.efd < 0 {
            std::thread::sleep(std::time::Duration::from_micros(50));
            return;
        }
        // SAFETY: the worker is this thread's; UCS_ERR_BUSY means events are
        // pending, so progress again instead of sleeping.
        let armed = unsafe { self.lib.ucp_worker_arm(self.endpoint.worker) };
        if armed == sys::ucs_status_t_UCS_OK {
            let mut fd = libc::pollfd {
                fd: self.efd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut fd, 1, 100) };
        }
    }

    /// Closes the endpoints and the worker; waiting receives report Closed.
    fn close(mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport, or None (and why, printed) where UCX is missing.
    pub(crate) fn transport() -> Option<UcxTransport> {
        match UcxTransport::new() {
            Ok(t) => Some(t),
            Err(NetError::Unavailable(why)) => {
                println!("skipping: {why}");
                None
            }
            Err(e) => panic!("UCX is installed but failed: {e}"),
        }
    }

    #[test]
    fn two_workers_in_one_process_exchange_tagged_messages() {
        let (Some(a), Some(b)) = (transport(), transport()) else {
            return;
        };
        let to_b = a.connect(&b.address()).unwrap();
        let big: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let pending = b.recv(2, u64::MAX);
        a.send(to_b, 1, b"hello".to_vec()).wait().unwrap();
        a.send(to_b, 2, big.clone()).wait().unwrap();
        let got = pending.wait().unwrap();
        assert_eq!((got.tag, got.data.len()), (2, big.len()));
        assert!(got.data == big, "4 MiB arrive intact");
        let hello = b.recv(0, 0).wait().unwrap();
        assert_eq!((hello.tag, hello.data.as_slice()), (1, &b"hello"[..]));
        assert!(matches!(
            a.send(PeerId(9), 0, vec![1]).wait(),
            Err(NetError::UnknownPeer(PeerId(9)))
        ));
        assert!(matches!(a.connect(&[]), Err(NetError::BadAddress(_))));
    }

    #[test]
    fn a_dropped_transport_closes_its_waiting_receives() {
        let Some(a) = transport() else { return };
        let waiting = a.recv(5, u64::MAX);
        drop(a);
        assert!(matches!(waiting.wait(), Err(NetError::Closed)));
    }
}
