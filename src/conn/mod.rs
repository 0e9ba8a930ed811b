//! One connection, either side: the shared state that its threads, its
//! callers and its handlers use.
//!
//! - [`transport`]: what a connection needs from TCP, WebSocket or TLS.
//! - [`reading`]: the reader role (exactly one thread reads at a time),
//!   routing of each frame, the built-ins answered while reading, auth and
//!   heartbeats.
//! - [`inbox`]: incoming calls: queued, running, cancelled.
//! - [`calls`]: this side's own calls waiting for the peer's replies, and
//!   a client connection's keeper thread.
//!
//! # Threads
//!
//! A server connection has one thread while it is idle: it reads, and it
//! runs each call it reads itself when nothing else runs (no hand-off
//! between threads on the common path). While it runs a call nobody
//! reads; if the call runs past [`STALL`](crate::stall::STALL), or calls
//! its own peer (and so needs the reply read), a spare thread from the
//! server's pool takes over reading until the connection is quiet again.
//! So pings, `status` and replies are served while a handler runs for
//! minutes, and a connection costs a second thread only while it has a
//! long call.
//!
//! A client connection has a keeper thread that reads while the
//! connection is idle; a caller of an otherwise quiet connection reads its
//! own reply. A client with handlers runs them on a thread of their own.

mod calls;
mod inbox;
mod outbox;
mod reading;
mod seat;
mod transport;

use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::{Condvar, Mutex};

use crate::admission::Admission;
use crate::error::{Disconnect, Error, ErrorCode, ProtocolError};
use crate::frame::{error_payload, finish_frame_with_tail, start_frame, Frame, Kind, Limits};
use crate::pool::Pool;
use crate::router::Router;
use crate::stall::Watch;

pub(crate) use calls::run_keeper;
pub(crate) use inbox::Incoming;
use inbox::{CallTable, Inbox};
use outbox::Outbox;
pub(crate) use outbox::When;
pub(crate) use reading::{Role, Step};
pub(crate) use seat::Seat;
pub(crate) use transport::{Closer, FrameRead, FrameWrite};

/// What a server (or a client with handlers) offers on a connection.
#[derive(Clone, Default)]
pub(crate) struct Services {
    pub router: Option<Arc<Router>>,
    pub admission: Option<Arc<Admission>>,
    pub state: Option<Arc<dyn Any + Send + Sync>>,
    /// Raw TCP: the token the first frame (`auth`) must carry.
    pub token: Option<Arc<[u8]>>,
    /// Server connections: the reading thread runs calls itself, and these
    /// find another thread to read when a call runs long.
    pub helpers: Option<Helpers>,
    /// No call runs until [`Conn::started`] (the `on_connect` hook runs).
    pub hooked: bool,
    /// Added to UNKNOWN_COMMAND messages (raw TCP on a port whose commands
    /// are all on WebSocket paths says so).
    pub unknown_hint: Option<Arc<str>>,
}

/// A server's spare threads and watchdog, as its connections see them.
#[derive(Clone)]
pub(crate) struct Helpers {
    pub pool: Arc<Pool>,
    pub watch: Arc<Watch>,
    /// What a spare thread does for a connection: read and run its calls
    /// until it is quiet again.
    pub serve: fn(Arc<Conn>),
}

/// The shared state of one connection.
pub(crate) struct Conn {
    pub id: u64,
    pub peer: Option<SocketAddr>,
    pub limits: Limits,
    pub services: Services,
    me: Weak<Conn>,
    /// The writer, and frames waiting to be written together.
    outbox: Outbox,
    /// This side's calls waiting for replies.
    pub(crate) out: calls::Outgoing,
    /// The peer's calls queued or running, and their cancel flags.
    pub calls: CallTable,
    pub inbox: Inbox,
    /// The reader role while no thread holds it.
    pub role: Mutex<Option<Role>>,
    /// Signalled when the role comes back with calls waiting, and at the
    /// end (a client's keeper thread waits on it).
    role_cv: Condvar,
    /// When the role was put back for a thread to run a call (ns since
    /// `EPOCH`; 0: no call runs unread).
    unread_since: AtomicU64,
    pub seat: Seat,
    authorized: AtomicBool,
    pub shutting_down: AtomicBool,
    closed: AtomicBool,
    /// Why the connection ended (the first reason found wins).
    why: Mutex<Option<Disconnect>>,
    /// The call whose reply was over this side's limit (0: none).
    oversize_reply: AtomicU32,
}

thread_local! {
    static CALL_BUF: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::with_capacity(512));
}

/// Keep at most this much encode buffer per thread between calls.
const KEEP_BUF: usize = 1 << 20;

impl Conn {
    pub fn new(
        id: u64,
        limits: Limits,
        services: Services,
        default_timeout: Duration,
        writer: Box<dyn FrameWrite>,
    ) -> Arc<Self> {
        let inbox_bytes = (limits.max_frame_len as usize).clamp(1 << 20, 64 << 20);
        let max_busy = services.router.as_ref().map_or(1, |r| r.max_concurrency());
        let peer = writer.peer_addr();
        let seat = Seat::new(id, peer);
        if let Some(name) = writer.verified_name() {
            seat.who.set_verified(name);
        }
        let inbox = Inbox::new(
            256,
            inbox_bytes,
            max_busy,
            services.hooked,
            Arc::clone(&seat.who),
        );
        Arc::new_cyclic(|me| Self {
            id,
            peer,
            limits,
            authorized: AtomicBool::new(services.token.is_none()),
            services,
            me: me.clone(),
            outbox: Outbox::new(writer),
            out: calls::Outgoing::new(default_timeout),
            calls: CallTable::default(),
            inbox,
            role: Mutex::new(None),
            role_cv: Condvar::new(),
            unread_since: AtomicU64::new(0),
            seat,
            shutting_down: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            why: Mutex::new(None),
            oversize_reply: AtomicU32::new(0),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Writes one frame under the writer lock: `head`, then the rest of
    /// its payload, `tail` (sent without being copied next to `head`). A
    /// failed write closes the connection (the stream may hold half a
    /// frame).
    pub fn send_parts(&self, head: &[u8], tail: &[u8]) -> Result<(), Error> {
        self.send_when(head, tail, When::Now)
    }

    /// [`Conn::send_parts`], or with the next write when `when` is
    /// [`When::Later`] (see the `outbox` module).
    pub fn send_when(&self, head: &[u8], tail: &[u8], when: When) -> Result<(), Error> {
        if self.is_closed() {
            return Err(self.gone());
        }
        let r = self.outbox.send(head, tail, when);
        self.io_result(r)
    }

    /// Writes the frames that wait to go out with the next write.
    pub fn flush(&self) -> Result<(), Error> {
        if !self.outbox.has_pending() {
            return Ok(());
        }
        let r = self.outbox.flush();
        self.io_result(r)
    }

    fn io_result(&self, r: std::io::Result<()>) -> Result<(), Error> {
        r.map_err(|e| {
            if crate::error::is_disconnect_io(&e) {
                self.set_why(Disconnect::PeerClosed);
                self.close();
                self.gone()
            } else {
                self.set_why(Disconnect::io(&e));
                self.close();
                Error::Io(e)
            }
        })
    }

    /// Builds a frame in this thread's buffer and sends it.
    pub fn send_with(
        &self,
        kind: Kind,
        cmd: u16,
        id: u32,
        body: impl FnOnce(&mut BytesMut),
    ) -> Result<(), Error> {
        self.send_with_tail(kind, cmd, id, |b| {
            body(b);
            None
        })
    }

    /// Builds a frame in this thread's buffer and sends it, followed by
    /// the large tail of its payload that `body` may return (see
    /// [`Codec::encode_tail`](crate::codec::Codec::encode_tail)).
    pub fn send_with_tail(
        &self,
        kind: Kind,
        cmd: u16,
        id: u32,
        body: impl FnOnce(&mut BytesMut) -> Option<Bytes>,
    ) -> Result<(), Error> {
        CALL_BUF.with(|b| {
            let mut buf = b.borrow_mut();
            start_frame(&mut buf, kind, cmd, id);
            let tail = body(&mut buf);
            let tail = tail.as_deref().unwrap_or_default();
            let r = finish_frame_with_tail(&mut buf, tail.len(), &self.limits)
                .and_then(|()| self.send_parts(&buf, tail));
            if buf.capacity() > KEEP_BUF {
                *buf = BytesMut::with_capacity(512);
            }
            r
        })
    }

    pub fn send_error(&self, cmd: u16, id: u32, code: ErrorCode, message: &str) {
        let _ = self.send_with(Kind::Error, cmd, id, |b| error_payload(code.0, message, b));
    }

    /// Whether the peer has cancelled incoming call `id`.
    pub fn is_cancelled(&self, id: u32) -> bool {
        self.calls.is_cancelled(id)
    }

    /// Closes the connection: shuts the transport so the reader ends. Never
    /// waits for a writer: if one is blocked mid-frame, the socket is cut
    /// under it.
    pub fn close(&self) {
        self.set_why(Disconnect::Closed);
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.cut();
    }

    /// Closes the connection after telling the peer why (an ERROR frame
    /// with call id 0), when the writer is free.
    pub fn close_saying(&self, code: ErrorCode, message: &str) {
        if self.is_closed() {
            return;
        }
        let mut b = BytesMut::new();
        error_payload(code.0, message, &mut b);
        self.outbox
            .farewell(&crate::frame::encode_frame(Kind::Error, 0, 0, &b));
        self.close();
    }

    /// Records why the connection ends; the first reason found wins.
    pub fn set_why(&self, why: Disconnect) {
        let mut w = self.why.lock();
        if w.is_none() {
            *w = Some(why);
        }
    }

    /// The error for a call on (or pending on) this closed connection.
    pub fn gone(&self) -> Error {
        Error::disconnected(self.why.lock().clone().unwrap_or(Disconnect::PeerClosed))
    }

    /// The error for call `id`, pending when the connection ended: its
    /// own reply was over this side's limit, or the connection is gone.
    pub fn gone_for(&self, id: u32) -> Error {
        if id != 0 && self.oversize_reply.load(Ordering::Acquire) == id {
            if let Some(Disconnect::TooLarge { len, max }) = *self.why.lock() {
                return Error::TooLarge {
                    len,
                    max,
                    side: crate::error::Side::Local,
                };
            }
        }
        self.gone()
    }

    /// The reader ended on `e`: records why; a reply over this side's
    /// limit is remembered for its caller.
    pub(crate) fn ended_on(&self, e: &Error, header: Option<[u8; 12]>) {
        let why = match e {
            Error::TooLarge { len, max, .. } => {
                if let Some(h) = header {
                    let kind = h[4];
                    if kind == Kind::Reply as u8 || kind == Kind::Error as u8 {
                        let id = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
                        self.oversize_reply.store(id, Ordering::Release);
                    }
                }
                Disconnect::TooLarge {
                    len: *len,
                    max: *max,
                }
            }
            Error::Protocol(p) => Disconnect::Protocol(*p),
            Error::Disconnected(why) => (**why).clone(),
            Error::Io(io) if crate::error::is_disconnect_io(io) => Disconnect::PeerClosed,
            Error::Io(io) => Disconnect::io(io),
            other => Disconnect::Io {
                kind: std::io::ErrorKind::Other,
                message: other.to_string().into(),
            },
        };
        self.set_why(why);
    }

    /// A graceful close when the writer is free, else a hard cut.
    fn cut(&self) {
        self.outbox.cut();
    }

    /// Called by the reader when it ends: fails every pending call at once,
    /// stops the connection's other threads, wakes admission waiters.
    pub fn finish(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.cut();
        }
        self.out.close();
        self.inbox.close();
        if let Some(a) = &self.services.admission {
            a.wake_all();
        }
        let _r = self.role.lock();
        self.role_cv.notify_all();
    }

    /// Incoming calls queued or running.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Called when incoming call `id` has been answered.
    pub fn call_done(&self, id: u32) {
        self.calls.done(id);
    }

    /// Whether this connection's threads read and run calls in turn
    /// (servers); a client's are left to its keeper and its callers.
    pub fn shares_reading(&self) -> bool {
        self.services.helpers.is_some()
    }

    /// Puts the reader role back for another thread while this one runs a
    /// call.
    pub fn put_role(&self, role: Role, running: bool) {
        *self.role.lock() = Some(role);
        if running {
            self.unread_since.store(now_ns().max(1), Ordering::SeqCst);
            if let Some(h) = &self.services.helpers {
                h.watch.started();
            }
        }
    }

    /// Called by the watchdog: if calls have run for longer than `stall`
    /// while nobody reads, another thread takes over reading. True while a
    /// call still runs unread (the watchdog keeps looking).
    pub fn check_stalled(&self, stall: Duration) -> bool {
        let since = self.unread_since.load(Ordering::SeqCst);
        if since == 0 {
            return false;
        }
        let Some(role) = self.role.try_lock() else {
            return true; // looked at again on the next tick
        };
        let free = role.is_some();
        drop(role);
        if !free || self.inbox.busy() == 0 {
            // Someone reads again, or nothing runs.
            self.unread_since.store(0, Ordering::SeqCst);
            return false;
        }
        if now_ns().saturating_sub(since) < stall.as_nanos() as u64 {
            return true;
        }
        self.unread_since.store(0, Ordering::SeqCst);
        self.find_reader();
        false
    }

    /// Before a handler waits on its peer: make sure someone reads.
    fn reader_needed(&self) {
        if self.shares_reading() && self.role.try_lock().is_some_and(|r| r.is_some()) {
            self.unread_since.store(0, Ordering::Release);
            self.find_reader();
        }
    }

    /// The reader role is free while calls run: a waiting thread of this
    /// connection takes it, else a spare thread.
    fn find_reader(&self) {
        if !self.inbox.hand_over() {
            self.spawn_helper();
        }
    }

    /// Has a spare thread serve this connection (read, run queued calls)
    /// until it is quiet. It counts as a guest until it leaves, so the
    /// connection's end waits for it.
    pub fn spawn_helper(&self) {
        let (Some(h), Some(me)) = (&self.services.helpers, self.me.upgrade()) else {
            return;
        };
        let serve = h.serve;
        self.inbox.guest(true);
        if !h.pool.run(move || serve(me)) {
            // No thread to be had: the connection cannot be served safely.
            self.inbox.guest(false);
            self.close();
        }
    }

    /// The `on_connect` hook has returned.
    pub fn started(&self) {
        self.inbox.started();
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

/// The payload of a REPLY, or the error an ERROR frame carries.
pub(crate) fn reply_payload(frame: Frame) -> Result<Bytes, Error> {
    match frame.header.kind {
        Kind::Reply => Ok(frame.payload),
        _ => Err(parse_error(&frame.payload)),
    }
}

/// Decodes an ERROR payload: `u16 code` then a UTF-8 message.
pub(crate) fn parse_error(p: &[u8]) -> Error {
    if p.len() < 2 {
        return Error::Protocol(ProtocolError::ShortErrorPayload);
    }
    let code = ErrorCode(u16::from_le_bytes([p[0], p[1]]));
    Error::remote(code, String::from_utf8_lossy(&p[2..]))
}

/// Nanoseconds since the first call (a monotonic clock as a number).
pub(crate) fn now_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// How long to wait for in-flight calls at shutdown, by default.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(5);
