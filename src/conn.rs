//! One connection, either side: a reader thread that routes frames, an inbox
//! of incoming calls for the handler thread, the table of this side's own
//! pending calls, and the shared writer.
//!
//! The reader never runs handlers: it matches replies to waiting callers,
//! answers `ping`, `status` and `list`, handles CANCEL and heartbeats, and
//! queues calls. So a handler that runs for minutes never makes the
//! connection look dead, and a handler may call back into its peer.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};

use crate::admission::Admission;
use crate::codec::{decode_all, Codec};
use crate::error::{Error, ErrorCode, ProtocolError};
use crate::frame::{error_payload, finish_frame, start_frame, Frame, Header, Kind, Limits};
use crate::router::{builtin, Router};

/// Writes whole frames; implemented by each transport.
pub(crate) trait FrameWrite: Send {
    /// Sends one whole frame (header included) in one write.
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Sends a heartbeat: a `ping` CALL on TCP, a ping frame on WebSocket.
    fn heartbeat(&mut self, ping_frame: &[u8]) -> io::Result<()>;
    /// Best-effort last words before a protocol-error close.
    fn refuse(&mut self, err: &Error, header: Option<[u8; 12]>);
    /// Shuts the connection down both ways; wakes the reader.
    fn shutdown(&mut self);
    /// The peer's address, if the transport has one.
    fn peer_addr(&self) -> Option<SocketAddr>;
}

/// Reads whole frames; implemented by each transport.
pub(crate) trait FrameRead: Send {
    /// The next frame; `Ok(None)` at a clean end; an `Io` error of kind
    /// `WouldBlock`/`TimedOut` is a tick for heartbeat checks.
    fn read_frame(&mut self) -> Result<Option<Frame>, Error>;
    /// Bytes received so far (any byte counts as life).
    fn received(&self) -> u64;
    /// The header of the frame being read, if its 12 bytes are in.
    fn pending_header(&self) -> Option<[u8; 12]>;
}

/// What a server (or a client with handlers) offers on a connection.
#[derive(Clone, Default)]
pub(crate) struct Services {
    pub router: Option<Arc<Router>>,
    pub admission: Option<Arc<Admission>>,
    pub state: Option<Arc<dyn Any + Send + Sync>>,
    /// Raw TCP: the token the first frame (`auth`) must carry.
    pub token: Option<Arc<[u8]>>,
}

/// One incoming CALL or NOTIFY, waiting for the handler thread.
pub(crate) struct Incoming {
    pub header: Header,
    pub payload: Bytes,
}

/// A bounded queue of incoming calls: by count and by bytes, so a flood of
/// pipelined calls holds back the reader (and so the sender) instead of
/// growing memory.
pub(crate) struct Inbox {
    q: Mutex<InboxState>,
    cv: Condvar,
    max_items: usize,
    max_bytes: usize,
}

struct InboxState {
    items: VecDeque<Incoming>,
    bytes: usize,
    closed: bool,
}

impl Inbox {
    fn new(max_items: usize, max_bytes: usize) -> Self {
        Self {
            q: Mutex::new(InboxState {
                items: VecDeque::with_capacity(16),
                bytes: 0,
                closed: false,
            }),
            cv: Condvar::new(),
            max_items,
            max_bytes,
        }
    }

    /// Queues a call, waiting while the inbox is full (an empty inbox
    /// always takes one, however big).
    fn push(&self, item: Incoming) {
        let mut s = self.q.lock();
        while !s.closed
            && !s.items.is_empty()
            && (s.items.len() >= self.max_items || s.bytes + item.payload.len() > self.max_bytes)
        {
            self.cv.wait(&mut s);
        }
        if s.closed {
            return;
        }
        s.bytes += item.payload.len();
        s.items.push_back(item);
        self.cv.notify_all();
    }

    /// The next call, or `None` once closed and drained.
    pub fn pop(&self) -> Option<Incoming> {
        let mut s = self.q.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                s.bytes -= item.payload.len();
                self.cv.notify_all();
                return Some(item);
            }
            if s.closed {
                return None;
            }
            self.cv.wait(&mut s);
        }
    }

    pub fn close(&self) {
        self.q.lock().closed = true;
        self.cv.notify_all();
    }
}

struct Pending {
    waiting: HashMap<u32, Sender<Frame>>,
    closed: bool,
}

/// The shared state of one connection.
pub(crate) struct Conn {
    pub id: u64,
    pub peer: Option<SocketAddr>,
    pub limits: Limits,
    pub services: Services,
    pub default_timeout: Duration,
    writer: Mutex<Box<dyn FrameWrite>>,
    pending: Mutex<Pending>,
    next_id: AtomicU32,
    heartbeat_id: AtomicU32,
    /// Replies for ids nobody waits for (late replies to timed-out calls).
    pub stray_replies: AtomicU64,
    /// Incoming calls queued or running: id -> cancelled.
    calls: Mutex<HashMap<u32, bool>>,
    pub inbox: Inbox,
    authorized: AtomicBool,
    pub shutting_down: AtomicBool,
    closed: AtomicBool,
    /// The admission queue place taken when the connection arrived.
    pub ticket: Mutex<Option<crate::admission::Ticket>>,
    /// The queue place this connection holds or waits with, plus one
    /// (0: none yet), for the `queue` built-in.
    pub place: AtomicU64,
    /// Caller side: the peer said this connection is admitted (or has no
    /// limit), so a timeout need not ask again.
    admitted_seen: AtomicBool,
}

/// How long a timed-out caller waits for the `queue` answer.
const QUEUE_ASK: Duration = Duration::from_millis(250);

thread_local! {
    static CALL_BUF: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::with_capacity(512));
}

/// Keep at most this much encode buffer per thread between calls.
const KEEP_BUF: usize = 1 << 20;

impl Conn {
    pub fn new(
        id: u64,
        peer: Option<SocketAddr>,
        limits: Limits,
        services: Services,
        default_timeout: Duration,
        writer: Box<dyn FrameWrite>,
    ) -> Self {
        let inbox_bytes = (limits.max_frame_len as usize).clamp(1 << 20, 64 << 20);
        let authorized = services.token.is_none();
        Self {
            id,
            peer,
            limits,
            services,
            default_timeout,
            writer: Mutex::new(writer),
            pending: Mutex::new(Pending {
                waiting: HashMap::with_capacity(16),
                closed: false,
            }),
            next_id: AtomicU32::new(1),
            heartbeat_id: AtomicU32::new(0),
            stray_replies: AtomicU64::new(0),
            calls: Mutex::new(HashMap::with_capacity(16)),
            inbox: Inbox::new(256, inbox_bytes),
            authorized: AtomicBool::new(authorized),
            shutting_down: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            ticket: Mutex::new(None),
            place: AtomicU64::new(0),
            admitted_seen: AtomicBool::new(false),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn take_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Writes one whole frame under the writer lock. A failed write closes
    /// the connection (the stream may hold half a frame).
    pub fn send(&self, frame: &[u8]) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Disconnected);
        }
        let r = self.writer.lock().write_frame(frame);
        r.map_err(|e| {
            self.close();
            if crate::error::is_disconnect_io(&e) {
                Error::Disconnected
            } else {
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
        CALL_BUF.with(|b| {
            let mut buf = b.borrow_mut();
            start_frame(&mut buf, kind, cmd, id);
            body(&mut buf);
            let r = finish_frame(&mut buf, &self.limits).and_then(|()| self.send(&buf));
            if buf.capacity() > KEEP_BUF {
                *buf = BytesMut::with_capacity(512);
            }
            r
        })
    }

    pub fn send_error(&self, cmd: u16, id: u32, code: ErrorCode, message: &str) {
        let _ = self.send_with(Kind::Error, cmd, id, |b| error_payload(code.0, message, b));
    }

    /// Sends a CALL and waits for its REPLY or ERROR frame.
    pub fn call_frame(
        &self,
        cmd: u16,
        name: &str,
        timeout: Option<Duration>,
        body: impl FnOnce(&mut BytesMut),
    ) -> Result<Frame, Error> {
        let id = self.take_id();
        let (tx, rx) = bounded(1);
        {
            let mut p = self.pending.lock();
            if p.closed {
                return Err(Error::Disconnected);
            }
            p.waiting.insert(id, tx);
        }
        if let Err(e) = self.send_with(Kind::Call, cmd, id, body) {
            self.pending.lock().waiting.remove(&id);
            return Err(e);
        }
        let timeout = timeout.unwrap_or(self.default_timeout);
        match rx.recv_timeout(timeout) {
            Ok(frame) => Ok(frame),
            Err(RecvTimeoutError::Disconnected) => Err(Error::Disconnected),
            Err(RecvTimeoutError::Timeout) => {
                if self.pending.lock().waiting.remove(&id).is_none() {
                    // The reply won the race with the deadline.
                    if let Ok(frame) = rx.try_recv() {
                        return Ok(frame);
                    }
                    return Err(Error::Disconnected);
                }
                let _ = self.send_with(Kind::Cancel, cmd, id, |_| {});
                Err(Error::Timeout {
                    command: name.into(),
                    id,
                    after: timeout,
                    server: if cmd == builtin::QUEUE {
                        None
                    } else {
                        self.queue_state()
                    },
                })
            }
        }
    }

    /// After a timeout: asks the peer (briefly) where this connection
    /// stands in its admission queue, so the error can name the holder.
    /// Only when the peer has an admission limit and this connection has
    /// never been admitted: the answer is then worth the round trip.
    fn queue_state(&self) -> Option<Box<str>> {
        if self.admitted_seen.load(Ordering::Relaxed) {
            return None;
        }
        let frame = self
            .call_frame(builtin::QUEUE, "queue", Some(QUEUE_ASK), |_| {})
            .ok()?;
        let text = String::from_utf8_lossy(&reply_payload(frame).ok()?).into_owned();
        match text.as_str() {
            "admitted" | "no admission limit" => {
                self.admitted_seen.store(true, Ordering::Relaxed);
                None
            }
            _ => Some(text.into()),
        }
    }

    /// A typed call: encodes with `req`, decodes the reply with `resp`.
    pub fn call<Q: 'static, R: 'static>(
        &self,
        cmd: u16,
        name: &str,
        req: &dyn Codec<Value = Q>,
        resp: &dyn Codec<Value = R>,
        value: &Q,
        timeout: Option<Duration>,
    ) -> Result<R, Error> {
        let frame = self.call_frame(cmd, name, timeout, |b| req.encode(value, b))?;
        Ok(decode_all(resp, reply_payload(frame)?)?)
    }

    /// Whether the peer has cancelled incoming call `id`.
    pub fn is_cancelled(&self, id: u32) -> bool {
        self.calls.lock().get(&id).copied().unwrap_or(false)
    }

    /// Closes the connection: shuts the transport so the reader ends.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.writer.lock().shutdown();
        }
    }

    /// Called by the reader when it ends: fails every pending call at once,
    /// stops the handler thread, wakes admission waiters.
    fn finish(&self) {
        self.closed.store(true, Ordering::Release);
        self.writer.lock().shutdown();
        let waiting = {
            let mut p = self.pending.lock();
            p.closed = true;
            std::mem::take(&mut p.waiting)
        };
        drop(waiting); // dropping the senders wakes callers with Disconnected
        self.inbox.close();
        if let Some(a) = &self.services.admission {
            a.wake_all();
        }
    }

    /// Incoming calls queued or running.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.lock().len()
    }

    /// Called by the handler thread when it has finished incoming call `id`.
    pub fn call_done(&self, id: u32) {
        self.calls.lock().remove(&id);
    }

    /// True if incoming call `id` was cancelled before it started; forgets it.
    pub fn skip_if_cancelled(&self, id: u32) -> bool {
        let mut calls = self.calls.lock();
        if calls.get(&id) == Some(&true) {
            calls.remove(&id);
            return true;
        }
        false
    }

    fn on_frame(&self, frame: Frame) -> Result<(), Error> {
        let h = frame.header;
        match h.kind {
            Kind::Reply | Kind::Error => {
                let tx = self.pending.lock().waiting.remove(&h.id);
                match tx {
                    Some(tx) => {
                        let _ = tx.send(frame);
                    }
                    None if h.id == self.heartbeat_id.load(Ordering::Relaxed) => {}
                    None => {
                        self.stray_replies.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            }
            Kind::Cancel => {
                if let Some(c) = self.calls.lock().get_mut(&h.id) {
                    *c = true;
                }
                Ok(())
            }
            Kind::Call | Kind::Notify => self.on_call(h, frame.payload),
        }
    }

    fn on_call(&self, h: Header, payload: Bytes) -> Result<(), Error> {
        let answer = h.kind == Kind::Call;
        if !self.authorized.load(Ordering::Relaxed) {
            return self.check_auth(h, &payload);
        }
        match h.cmd {
            builtin::PING => {
                if answer {
                    self.send_with(Kind::Reply, h.cmd, h.id, |b| b.put_slice(&payload))?;
                }
                return Ok(());
            }
            builtin::STATUS => {
                if answer {
                    let s = self
                        .services
                        .admission
                        .as_ref()
                        .map(|a| a.status())
                        .unwrap_or_default();
                    self.send_with(Kind::Reply, h.cmd, h.id, |b| {
                        b.put_u32_le(s.active);
                        b.put_u32_le(s.max);
                        b.put_u32_le(s.waiting);
                    })?;
                }
                return Ok(());
            }
            builtin::LIST => {
                if answer {
                    let router = self.services.router.as_deref();
                    self.send_with(Kind::Reply, h.cmd, h.id, |b| {
                        builtin::encode_list(router, b)
                    })?;
                }
                return Ok(());
            }
            builtin::QUEUE => {
                if answer {
                    let text = match (&self.services.admission, self.place.load(Ordering::Acquire))
                    {
                        (None, _) => "no admission limit".to_owned(),
                        (Some(_), 0) => "not queued".to_owned(),
                        (Some(a), place) => a.describe(place - 1),
                    };
                    self.send_with(Kind::Reply, h.cmd, h.id, |b| b.put_slice(text.as_bytes()))?;
                }
                return Ok(());
            }
            builtin::AUTH => {
                if answer {
                    self.send_with(Kind::Reply, h.cmd, h.id, |_| {})?;
                }
                return Ok(());
            }
            _ => {}
        }
        let known = self
            .services
            .router
            .as_ref()
            .is_some_and(|r| r.contains(h.cmd));
        if !known {
            if answer {
                let msg = format!("unknown command {}", h.cmd);
                self.send_error(h.cmd, h.id, ErrorCode::UNKNOWN_COMMAND, &msg);
            }
            return Ok(());
        }
        if self.shutting_down.load(Ordering::Relaxed) {
            if answer {
                self.send_error(
                    h.cmd,
                    h.id,
                    ErrorCode::SHUTTING_DOWN,
                    "server is shutting down",
                );
            }
            return Ok(());
        }
        if answer {
            self.calls.lock().insert(h.id, false);
        }
        self.inbox.push(Incoming { header: h, payload });
        Ok(())
    }

    fn check_auth(&self, h: Header, payload: &Bytes) -> Result<(), Error> {
        let ok = h.cmd == builtin::AUTH
            && h.kind == Kind::Call
            && self
                .services
                .token
                .as_deref()
                .is_some_and(|t| constant_time_eq(t, payload));
        if ok {
            self.authorized.store(true, Ordering::Relaxed);
            self.send_with(Kind::Reply, h.cmd, h.id, |_| {})?;
            return Ok(());
        }
        let msg = if h.cmd == builtin::AUTH {
            "unauthorized: wrong token"
        } else {
            "unauthorized: the first frame must be auth (0xFF00) with the token"
        };
        if h.kind == Kind::Call {
            self.send_error(h.cmd, h.id, ErrorCode::UNAUTHORIZED, msg);
        }
        Err(ProtocolError::Unexpected("unauthorized").into())
    }

    fn heartbeat(&self) {
        let id = self.take_id();
        self.heartbeat_id.store(id, Ordering::Relaxed);
        let frame = crate::frame::encode_frame(Kind::Call, builtin::PING, id, b"");
        let r = self.writer.lock().heartbeat(&frame);
        if r.is_err() {
            self.close();
        }
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

fn is_tick(e: &Error) -> bool {
    matches!(e, Error::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// The reader loop of one connection; returns when the connection ends.
pub(crate) fn run_reader(conn: &Conn, src: &mut dyn FrameRead) {
    let mut last_life = Instant::now();
    let mut seen = src.received();
    let mut pinged = false;
    loop {
        match src.read_frame() {
            Ok(Some(frame)) => {
                last_life = Instant::now();
                seen = src.received();
                pinged = false;
                if conn.on_frame(frame).is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) if is_tick(&e) => {
                if conn.is_closed() {
                    break;
                }
                if src.received() != seen {
                    seen = src.received();
                    last_life = Instant::now();
                    pinged = false;
                }
                let silent = last_life.elapsed();
                if conn.limits.idle_timeout.is_some_and(|d| silent >= d) {
                    break;
                }
                if !pinged && conn.limits.ping_after.is_some_and(|d| silent >= d) {
                    pinged = true;
                    conn.heartbeat();
                }
            }
            Err(e) => {
                if !conn.is_closed() && !e.is_disconnect() {
                    conn.writer.lock().refuse(&e, src.pending_header());
                }
                break;
            }
        }
    }
    conn.finish();
}

/// How long to wait for in-flight calls at shutdown, by default.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(5);
