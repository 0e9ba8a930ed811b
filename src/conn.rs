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
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
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
    /// Sets how long one read may block (the heartbeat tick, or a caller's
    /// nearer deadline).
    fn set_read_timeout(&mut self, timeout: Duration);
}

/// What a server (or a client with handlers) offers on a connection.
#[derive(Clone, Default)]
pub(crate) struct Services {
    pub router: Option<Arc<Router>>,
    pub admission: Option<Arc<Admission>>,
    pub state: Option<Arc<dyn Any + Send + Sync>>,
    /// Raw TCP: the token the first frame (`auth`) must carry.
    pub token: Option<Arc<[u8]>>,
    /// The reading thread may run a handler itself when nothing else runs
    /// (server connections, whose watchdog hands reading to another thread
    /// when a handler takes long).
    pub inline: bool,
}

/// One incoming CALL or NOTIFY, waiting for the handler thread.
pub(crate) struct Incoming {
    pub header: Header,
    pub payload: Bytes,
}

/// Incoming calls and who runs them: a bounded queue (by count and by
/// bytes, so a flood of pipelined calls holds back the reader, and so the
/// sender, instead of growing memory) plus the count of handlers running.
///
/// On a server a connection's threads share the reader role: the thread
/// that reads a CALL runs it at once when nothing runs or waits (no hand-off
/// to another thread, the common case), otherwise it is queued and the
/// thread that finishes a handler runs the next one. A queued call only
/// waits while a handler runs, so calls still run one at a time in arrival
/// order (up to `Router::concurrency` at once).
pub(crate) struct Inbox {
    q: Mutex<InboxState>,
    cv: Condvar,
    max_items: usize,
    max_bytes: usize,
    max_busy: usize,
}

struct InboxState {
    items: VecDeque<Incoming>,
    bytes: usize,
    closed: bool,
    /// Handlers running now.
    busy: usize,
    /// Admitted: handlers may run (until then calls wait in the queue).
    admitted: bool,
    /// False while the server's `on_connect` hook runs: no call runs
    /// before it returns.
    ready: bool,
    /// A waiting thread should take over reading (a handler runs long, or
    /// calls its peer and needs its reply read).
    takeover: bool,
    /// Calls from this side waiting for the peer's reply: while any wait,
    /// a full queue does not hold the reader back (it must read that
    /// reply), so the queue may grow past its bound for that long.
    peer_waits: usize,
}

impl Inbox {
    fn new(max_items: usize, max_bytes: usize, max_busy: usize, admitted: bool) -> Self {
        Self {
            q: Mutex::new(InboxState {
                items: VecDeque::with_capacity(16),
                bytes: 0,
                closed: false,
                busy: 0,
                admitted,
                ready: true,
                takeover: false,
                peer_waits: 0,
            }),
            cv: Condvar::new(),
            max_items,
            max_bytes,
            max_busy: max_busy.max(1),
        }
    }

    /// Hands a call over: returns it back (counted as running) when the
    /// reading thread should run it now, else queues it, waiting while the
    /// queue is full (an empty queue always takes one, however big).
    fn offer(&self, item: Incoming, run_here: bool) -> Option<Incoming> {
        let mut s = self.q.lock();
        if s.closed {
            return None;
        }
        if run_here && s.admitted && s.ready && s.busy < self.max_busy && s.items.is_empty() {
            s.busy += 1;
            return Some(item);
        }
        while !s.closed
            && s.peer_waits == 0
            && !s.items.is_empty()
            && (s.items.len() >= self.max_items || s.bytes + item.payload.len() > self.max_bytes)
        {
            self.cv.wait(&mut s);
        }
        if s.closed {
            return None;
        }
        s.bytes += item.payload.len();
        s.items.push_back(item);
        self.cv.notify_all();
        None
    }

    /// A queued call to run now (counted as running), if one may run.
    pub fn try_take(&self) -> Option<Incoming> {
        let mut s = self.q.lock();
        if s.closed || !s.admitted || !s.ready || s.busy >= self.max_busy {
            return None;
        }
        let item = s.items.pop_front()?;
        s.bytes -= item.payload.len();
        s.busy += 1;
        self.cv.notify_all();
        Some(item)
    }

    /// A handler finished.
    pub fn done(&self) {
        let mut s = self.q.lock();
        s.busy -= 1;
        if !s.items.is_empty() {
            self.cv.notify_all();
        }
    }

    /// Waits until a queued call may run, a takeover is asked for, or the
    /// connection is closed (then false).
    pub fn wait_for_work(&self) -> bool {
        let mut s = self.q.lock();
        loop {
            if s.closed {
                return false;
            }
            if s.takeover {
                s.takeover = false;
                return true;
            }
            if s.admitted && s.ready && s.busy < self.max_busy && !s.items.is_empty() {
                return true;
            }
            self.cv.wait(&mut s);
        }
    }

    /// A call from this side starts (`true`) or stops (`false`) waiting
    /// for the peer's reply.
    fn peer_wait(&self, start: bool) {
        let mut s = self.q.lock();
        if start {
            s.peer_waits += 1;
            self.cv.notify_all();
        } else {
            s.peer_waits -= 1;
        }
    }

    /// Asks a waiting thread to take over reading.
    pub fn request_takeover(&self) {
        let mut s = self.q.lock();
        if !s.takeover {
            s.takeover = true;
            self.cv.notify_all();
        }
    }

    /// Lets handlers run (admission granted).
    pub fn admit(&self) {
        self.q.lock().admitted = true;
        self.cv.notify_all();
    }

    /// Holds every call back (`false`) until released (`true`): the
    /// `on_connect` hook runs first.
    pub fn set_ready(&self, ready: bool) {
        self.q.lock().ready = ready;
        self.cv.notify_all();
    }

    /// True once admitted.
    pub fn is_admitted(&self) -> bool {
        self.q.lock().admitted
    }

    /// Takes every queued call (to refuse them).
    pub fn drain(&self) -> Vec<Incoming> {
        let mut s = self.q.lock();
        s.bytes = 0;
        s.items.drain(..).collect()
    }

    pub fn close(&self) {
        self.q.lock().closed = true;
        self.cv.notify_all();
    }
}

/// The reader role: the transport's read half and the heartbeat clock.
/// Exactly one thread holds it at a time.
pub(crate) struct Role {
    src: Box<dyn FrameRead>,
    last_life: Instant,
    seen: u64,
    pinged: bool,
}

impl Role {
    pub fn new(src: Box<dyn FrameRead>) -> Self {
        Self {
            seen: src.received(),
            src,
            last_life: Instant::now(),
            pinged: false,
        }
    }
}

/// What one read did.
pub(crate) enum Step {
    /// Keep reading.
    Continue,
    /// Run this call now, on this thread (already counted as running).
    Run(Incoming),
    /// The connection is over.
    End,
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
    /// The admission permit, held for the life of the connection.
    pub permit: Mutex<Option<crate::admission::Permit>>,
    /// The reader role while no thread holds it.
    pub role: Mutex<Option<Role>>,
    /// Signalled when the role comes back with calls waiting, and at the
    /// end (a client's keeper thread waits on it).
    role_cv: Condvar,
    /// When this side last started a call (ns since `EPOCH`).
    last_call: AtomicU64,
    /// Admission refuses rather than queues: the first call that finds a
    /// free slot admits the connection (else the handler thread waits).
    admits_at_once: bool,
    /// Whether the reading thread may run handlers itself (servers: yes,
    /// with a watchdog; clients: no, a handler thread runs them).
    run_inline: bool,
    /// When the handler running now started (ns since `EPOCH`, 0: none).
    running_since: AtomicU64,
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
        let max_busy = services.router.as_ref().map_or(1, |r| r.max_concurrency());
        let admitted = services.admission.is_none();
        let run_inline = services.inline;
        let admits_at_once = services
            .admission
            .as_ref()
            .is_some_and(|a| a.policy() == crate::WhenFull::Refuse);
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
            inbox: Inbox::new(256, inbox_bytes, max_busy, admitted),
            permit: Mutex::new(None),
            role: Mutex::new(None),
            role_cv: Condvar::new(),
            last_call: AtomicU64::new(0),
            run_inline,
            admits_at_once,
            running_since: AtomicU64::new(0),
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
        self.reader_needed();
        let timeout = timeout.unwrap_or(self.default_timeout);
        if self.run_inline {
            self.inbox.peer_wait(true);
        }
        let waited = self.wait_reply(&rx, Instant::now() + timeout);
        if self.run_inline {
            self.inbox.peer_wait(false);
        }
        match waited {
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
                    command: if name.is_empty() {
                        format!("command {cmd:#06x}").into()
                    } else {
                        name.into()
                    },
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

    /// Waits for the reply of one call. On a client connection, a caller
    /// whose connection nobody is reading reads it itself until its reply
    /// is in (routing whatever else arrives): no hand-off between threads
    /// on the common path of one caller at a time.
    fn wait_reply(
        &self,
        rx: &Receiver<Frame>,
        deadline: Instant,
    ) -> Result<Frame, RecvTimeoutError> {
        if self.run_inline {
            return rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        self.last_call.store(now_ns(), Ordering::Relaxed);
        loop {
            match rx.try_recv() {
                Ok(frame) => return Ok(frame),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            let role = self.role.lock().take();
            let Some(mut role) = role else {
                // Someone else reads: it routes the reply here.
                return rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            };
            let tick = self.limits.tick();
            let mut shortened = false;
            let ended = loop {
                if !rx.is_empty() {
                    break false;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break false;
                }
                if left < tick {
                    role.src
                        .set_read_timeout(left.max(Duration::from_millis(1)));
                    shortened = true;
                }
                match self.read_step(&mut role) {
                    Step::Continue | Step::Run(_) => {}
                    Step::End => break true,
                }
            };
            if shortened {
                role.src.set_read_timeout(tick);
            }
            if ended {
                self.finish();
            } else {
                self.release_role(role);
            }
            if Instant::now() >= deadline && rx.is_empty() {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// Puts the reader role back; wakes the keeper if calls still wait.
    pub fn release_role(&self, role: Role) {
        let mut r = self.role.lock();
        *r = Some(role);
        if !self.pending.lock().waiting.is_empty() {
            self.role_cv.notify_all();
        }
    }

    /// Keeper side: the role, once it is free and either calls wait for
    /// replies or no call has started for `idle` (then the keeper watches
    /// an idle connection: heartbeats, the peer's calls, its end). `None`
    /// once the connection is closed.
    fn wait_for_role(&self, idle: Duration) -> Option<Role> {
        let mut r = self.role.lock();
        loop {
            if self.is_closed() {
                return None;
            }
            if r.is_some() {
                let quiet = now_ns().saturating_sub(self.last_call.load(Ordering::Relaxed))
                    >= idle.as_nanos() as u64;
                if quiet || !self.pending.lock().waiting.is_empty() {
                    return r.take();
                }
            }
            self.role_cv.wait_for(&mut r, idle);
        }
    }

    /// Keeper side: whether to hand the role back to callers now.
    fn callers_active(&self, idle: Duration) -> bool {
        now_ns().saturating_sub(self.last_call.load(Ordering::Relaxed)) < idle.as_nanos() as u64
            && self.pending.lock().waiting.is_empty()
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
    pub fn finish(&self) {
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
        let _r = self.role.lock();
        self.role_cv.notify_all();
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

    fn on_frame(&self, frame: Frame) -> Result<Option<Incoming>, Error> {
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
                Ok(None)
            }
            Kind::Cancel => {
                if let Some(c) = self.calls.lock().get_mut(&h.id) {
                    *c = true;
                }
                Ok(None)
            }
            Kind::Call | Kind::Notify => self.on_call(h, frame.payload),
        }
    }

    fn on_call(&self, h: Header, payload: Bytes) -> Result<Option<Incoming>, Error> {
        let answer = h.kind == Kind::Call;
        if !self.authorized.load(Ordering::Relaxed) {
            return self.check_auth(h, &payload).map(|()| None);
        }
        match h.cmd {
            builtin::PING => {
                if answer {
                    self.send_with(Kind::Reply, h.cmd, h.id, |b| b.put_slice(&payload))?;
                }
                return Ok(None);
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
                return Ok(None);
            }
            builtin::LIST => {
                if answer {
                    let router = self.services.router.as_deref();
                    self.send_with(Kind::Reply, h.cmd, h.id, |b| {
                        builtin::encode_list(router, b)
                    })?;
                }
                return Ok(None);
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
                return Ok(None);
            }
            builtin::AUTH => {
                if answer {
                    self.send_with(Kind::Reply, h.cmd, h.id, |_| {})?;
                }
                return Ok(None);
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
            return Ok(None);
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
            return Ok(None);
        }
        if answer {
            self.calls.lock().insert(h.id, false);
        }
        if self.admits_at_once && !self.inbox.is_admitted() && !self.admit_at_once(h) {
            return Ok(None);
        }
        Ok(self
            .inbox
            .offer(Incoming { header: h, payload }, self.run_inline))
    }

    /// Under [`WhenFull::Refuse`](crate::WhenFull::Refuse) a connection is
    /// admitted by its first call that finds a free slot; other calls get
    /// BUSY. False when the call was refused (and answered).
    fn admit_at_once(&self, h: Header) -> bool {
        let Some(adm) = &self.services.admission else {
            return true;
        };
        match adm.try_acquire(self.peer) {
            Ok(p) => {
                self.place.store(p.ticket() + 1, Ordering::Release);
                *self.permit.lock() = Some(p);
                self.inbox.admit();
                true
            }
            Err(r) => {
                if h.kind == Kind::Call {
                    self.send_error(h.cmd, h.id, ErrorCode::BUSY, &r.message);
                    self.call_done(h.id);
                }
                false
            }
        }
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

impl Conn {
    /// Reads one frame (or wakes on the read timeout) and acts on it.
    pub fn read_step(&self, role: &mut Role) -> Step {
        match role.src.read_frame() {
            Ok(Some(frame)) => {
                role.last_life = Instant::now();
                role.seen = role.src.received();
                role.pinged = false;
                match self.on_frame(frame) {
                    Ok(Some(item)) => Step::Run(item),
                    Ok(None) => Step::Continue,
                    Err(_) => Step::End,
                }
            }
            Ok(None) => Step::End,
            Err(e) if is_tick(&e) => {
                if self.is_closed() {
                    return Step::End;
                }
                if role.src.received() != role.seen {
                    role.seen = role.src.received();
                    role.last_life = Instant::now();
                    role.pinged = false;
                }
                let silent = role.last_life.elapsed();
                if self.limits.idle_timeout.is_some_and(|d| silent >= d) {
                    return Step::End;
                }
                if !role.pinged && self.limits.ping_after.is_some_and(|d| silent >= d) {
                    role.pinged = true;
                    self.heartbeat();
                }
                Step::Continue
            }
            Err(e) => {
                if !self.is_closed() && !e.is_disconnect() {
                    self.writer.lock().refuse(&e, role.src.pending_header());
                }
                Step::End
            }
        }
    }

    /// Whether this connection's handler threads read too (servers); a
    /// client's are left to its keeper and its callers.
    pub fn shares_reading(&self) -> bool {
        self.run_inline
    }

    /// Marks the start (or, with `false`, the end) of a handler run, for
    /// the watchdog.
    pub fn mark_running(&self, running: bool) {
        let now = if running { now_ns().max(1) } else { 0 };
        self.running_since.store(now, Ordering::Release);
    }

    /// Called by the server's watchdog: if a handler has run for longer
    /// than `stall` while no thread reads, a waiting thread takes over
    /// reading (so pings, status and replies are served).
    pub fn check_stalled(&self, stall: Duration) {
        let since = self.running_since.load(Ordering::Acquire);
        if since == 0 || now_ns().saturating_sub(since) < stall.as_nanos() as u64 {
            return;
        }
        if self.role.try_lock().is_some_and(|r| r.is_some()) {
            self.inbox.request_takeover();
        }
    }

    /// Before a handler waits on its peer: make sure someone reads.
    fn reader_needed(&self) {
        if self.run_inline && self.role.try_lock().is_some_and(|r| r.is_some()) {
            self.inbox.request_takeover();
        }
    }
}

/// Nanoseconds since the first call (a monotonic clock as a number).
fn now_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A client connection's keeper: it reads while the connection is idle
/// (heartbeats, the server's calls, the end of the connection) and while
/// calls wait whose callers are not reading; a caller of an otherwise quiet
/// connection reads its own reply (see `wait_reply`). Returns when the
/// connection ends.
pub(crate) fn run_reader(conn: &Conn, src: Box<dyn FrameRead>) {
    /// A connection with no call started for this long is the keeper's.
    const IDLE: Duration = Duration::from_millis(20);
    let mut held = Some(Role::new(src));
    loop {
        let mut role = match held.take() {
            Some(r) => r,
            None => match conn.wait_for_role(IDLE) {
                Some(r) => r,
                None => break,
            },
        };
        loop {
            match conn.read_step(&mut role) {
                Step::Continue | Step::Run(_) => {
                    if conn.callers_active(IDLE) {
                        conn.release_role(role);
                        break;
                    }
                }
                Step::End => {
                    conn.finish();
                    return;
                }
            }
        }
    }
    conn.finish();
}

/// How long to wait for in-flight calls at shutdown, by default.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(5);
