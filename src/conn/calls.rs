//! This side's own calls: ids, the table of calls waiting for a reply, the
//! wait itself (a caller may read its own reply), timeouts with CANCEL, and
//! a client connection's keeper thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::{Condvar, Mutex};

use super::{now_ns, reply_payload, Conn, FrameRead, Role, Step};
use crate::codec::{decode_all, Codec};
use crate::error::{Error, Mismatch, Stage, Timeout};
use crate::frame::{Frame, Kind};
use crate::router::builtin;

/// How long a timed-out caller waits for the `queue` answer.
const QUEUE_ASK: Duration = Duration::from_millis(250);

/// A client connection with no call started for this long is its
/// keeper's to read.
const KEEPER_IDLE: Duration = Duration::from_millis(20);

pub(crate) struct Outgoing {
    waiting: Mutex<Waiting>,
    next_id: AtomicU32,
    /// The id of the last heartbeat `ping` (its reply is expected).
    pub heartbeat_id: AtomicU32,
    /// Replies for ids nobody waits for (late replies to timed-out calls).
    pub stray_replies: AtomicU64,
    /// When this side last started a call (ns since `EPOCH`).
    last_call: AtomicU64,
    /// The peer said it has no admission limit, so a timeout need not ask
    /// where this connection stands.
    no_limit_seen: AtomicBool,
    pub default_timeout: Duration,
}

struct Waiting {
    by_id: HashMap<u32, Arc<Slot>>,
    closed: bool,
}

/// Where one call's reply lands: the reader puts it there and wakes the
/// caller (no spinning: on a machine with few cores, callers that spin
/// while they wait take the time the reader needs).
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    cv: Condvar,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Empty,
    Full(Frame),
    /// The connection ended.
    Gone,
}

/// How waiting for a reply ended without one.
enum NoReply {
    Timeout,
    Disconnected,
}

impl Slot {
    fn put(&self, frame: Frame) {
        *self.state.lock() = SlotState::Full(frame);
        self.cv.notify_one();
    }

    fn fail(&self) {
        let mut s = self.state.lock();
        if matches!(*s, SlotState::Empty) {
            *s = SlotState::Gone;
        }
        self.cv.notify_one();
    }

    fn is_empty(&self) -> bool {
        matches!(*self.state.lock(), SlotState::Empty)
    }

    /// The reply, if in; `Err` once the connection ended without it.
    fn try_take(&self) -> Result<Option<Frame>, NoReply> {
        let mut s = self.state.lock();
        match std::mem::take(&mut *s) {
            SlotState::Full(f) => Ok(Some(f)),
            SlotState::Gone => {
                *s = SlotState::Gone;
                Err(NoReply::Disconnected)
            }
            SlotState::Empty => Ok(None),
        }
    }

    fn wait(&self, deadline: Instant) -> Result<Frame, NoReply> {
        let mut s = self.state.lock();
        loop {
            match std::mem::take(&mut *s) {
                SlotState::Full(f) => return Ok(f),
                SlotState::Gone => {
                    *s = SlotState::Gone;
                    return Err(NoReply::Disconnected);
                }
                SlotState::Empty => {}
            }
            if self.cv.wait_until(&mut s, deadline).timed_out() && matches!(*s, SlotState::Empty) {
                return Err(NoReply::Timeout);
            }
        }
    }
}

impl Outgoing {
    pub fn new(default_timeout: Duration) -> Self {
        Self {
            waiting: Mutex::new(Waiting {
                by_id: HashMap::with_capacity(16),
                closed: false,
            }),
            next_id: AtomicU32::new(1),
            heartbeat_id: AtomicU32::new(0),
            stray_replies: AtomicU64::new(0),
            last_call: AtomicU64::new(0),
            no_limit_seen: AtomicBool::new(false),
            default_timeout,
        }
    }

    pub fn take_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Hands a REPLY/ERROR to its caller; counts it if nobody waits.
    pub fn route(&self, frame: Frame) {
        let id = frame.header.id;
        let slot = self.waiting.lock().by_id.remove(&id);
        match slot {
            Some(slot) => slot.put(frame),
            // Call id 0: a connection-level ERROR (why the peer closes).
            None if id == 0 || id == self.heartbeat_id.load(Ordering::Relaxed) => {}
            None => {
                self.stray_replies.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn any_waiting(&self) -> bool {
        !self.waiting.lock().by_id.is_empty()
    }

    /// Fails every waiting call at once with `Disconnected`; later calls
    /// fail at once too.
    pub fn close(&self) {
        let waiting = {
            let mut w = self.waiting.lock();
            w.closed = true;
            std::mem::take(&mut w.by_id)
        };
        for slot in waiting.into_values() {
            slot.fail();
        }
    }
}

impl Conn {
    /// Sends a CALL and waits for its REPLY or ERROR frame.
    pub fn call_frame(
        &self,
        cmd: u16,
        name: &str,
        timeout: Option<Duration>,
        body: impl FnOnce(&mut BytesMut),
    ) -> Result<Frame, Error> {
        self.call_frame_tail(cmd, name, timeout, |b| {
            body(b);
            None
        })
    }

    /// [`Conn::call_frame`] for a payload whose large tail `body` may
    /// return instead of copying it.
    pub fn call_frame_tail(
        &self,
        cmd: u16,
        name: &str,
        timeout: Option<Duration>,
        body: impl FnOnce(&mut BytesMut) -> Option<Bytes>,
    ) -> Result<Frame, Error> {
        let id = self.out.take_id();
        let slot = Arc::new(Slot::default());
        {
            let mut w = self.out.waiting.lock();
            if w.closed {
                return Err(self.gone());
            }
            w.by_id.insert(id, Arc::clone(&slot));
        }
        if let Err(e) = self.send_with_tail(Kind::Call, cmd, id, body) {
            self.out.waiting.lock().by_id.remove(&id);
            return Err(e);
        }
        self.reader_needed();
        let timeout = timeout.unwrap_or(self.out.default_timeout);
        let shares = self.shares_reading();
        if shares {
            self.inbox.peer_wait(true);
        }
        let waited = self.wait_reply(&slot, Instant::now() + timeout);
        if shares {
            self.inbox.peer_wait(false);
        }
        match waited {
            Ok(frame) => Ok(frame),
            Err(NoReply::Disconnected) => Err(self.gone_for(id)),
            Err(NoReply::Timeout) => {
                if self.out.waiting.lock().by_id.remove(&id).is_none() {
                    // The reply won the race with the deadline.
                    if let Ok(Some(frame)) = slot.try_take() {
                        return Ok(frame);
                    }
                    return Err(self.gone_for(id));
                }
                // Where the call stands is asked before the CANCEL: a
                // connection whose waiting calls are all cancelled leaves
                // the admission queue.
                let server = if cmd == builtin::QUEUE {
                    None
                } else {
                    self.queue_state()
                };
                let _ = self.send_with(Kind::Cancel, cmd, id, |_| {});
                let what = if name.is_empty() {
                    format!("command {cmd:#06x}")
                } else {
                    name.to_owned()
                };
                Err(Error::timeout(Timeout {
                    id,
                    server,
                    ..Timeout::new(Stage::Call, what, timeout)
                }))
            }
        }
    }

    /// Waits for the reply of one call. On a client connection, a caller
    /// whose connection nobody is reading reads it itself until its reply
    /// is in (routing whatever else arrives): no hand-off between threads
    /// on the common path of one caller at a time.
    fn wait_reply(&self, slot: &Slot, deadline: Instant) -> Result<Frame, NoReply> {
        if self.shares_reading() {
            return slot.wait(deadline);
        }
        self.out.last_call.store(now_ns(), Ordering::Relaxed);
        loop {
            if let Some(frame) = slot.try_take()? {
                return Ok(frame);
            }
            let role = self.role.lock().take();
            let Some(mut role) = role else {
                // Someone else reads: it routes the reply here.
                return slot.wait(deadline);
            };
            let tick = self.limits.tick();
            let mut shortened = false;
            let ended = loop {
                if !slot.is_empty() {
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
            if Instant::now() >= deadline && slot.is_empty() {
                return Err(NoReply::Timeout);
            }
        }
    }

    /// Puts the reader role back; wakes the keeper if calls still wait.
    fn release_role(&self, role: Role) {
        let mut r = self.role.lock();
        *r = Some(role);
        if self.out.any_waiting() {
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
                let quiet = now_ns().saturating_sub(self.out.last_call.load(Ordering::Relaxed))
                    >= idle.as_nanos() as u64;
                if quiet || self.out.any_waiting() {
                    return r.take();
                }
            }
            self.role_cv.wait_for(&mut r, idle);
        }
    }

    /// Keeper side: whether to hand the role back to callers now.
    fn callers_active(&self, idle: Duration) -> bool {
        now_ns().saturating_sub(self.out.last_call.load(Ordering::Relaxed)) < idle.as_nanos() as u64
            && !self.out.any_waiting()
    }

    /// After a timeout: asks the peer (briefly) where this connection
    /// stands in its admission queue, so the error can name the holder.
    /// Not again once the peer said it has no admission limit (a hold can
    /// end, so "admitted" is asked again each time).
    fn queue_state(&self) -> Option<Box<str>> {
        if self.out.no_limit_seen.load(Ordering::Relaxed) {
            return None;
        }
        let frame = self
            .call_frame(builtin::QUEUE, "queue", Some(QUEUE_ASK), |_| {})
            .ok()?;
        let text = String::from_utf8_lossy(&reply_payload(frame).ok()?).into_owned();
        match text.as_str() {
            "no admission limit" => {
                self.out.no_limit_seen.store(true, Ordering::Relaxed);
                None
            }
            "admitted" => None,
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
        let frame = self.call_frame_tail(cmd, name, timeout, |b| req.encode_tail(value, b))?;
        let payload = reply_payload(frame).map_err(|e| e.for_call(name, cmd))?;
        decode_all(resp, payload).map_err(|e| {
            let detail = format!(
                "the reply does not decode as {}: {e}; the server is built from other specs \
                 (Client::connect_checked compares them at connect)",
                resp.schema_string()
            );
            let mut m = Mismatch::new(name, cmd, detail);
            m.decode = Some(e);
            Error::SchemaMismatch(Box::new(m))
        })
    }
}

/// A client connection's keeper: it reads while the connection is idle
/// (heartbeats, the server's calls, the end of the connection) and while
/// calls wait whose callers are not reading; a caller of an otherwise quiet
/// connection reads its own reply (see `wait_reply`). Returns when the
/// connection ends.
pub(crate) fn run_keeper(conn: &Conn, src: Box<dyn FrameRead>) {
    let mut held = Some(Role::new(src));
    loop {
        let mut role = match held.take() {
            Some(r) => r,
            None => match conn.wait_for_role(KEEPER_IDLE) {
                Some(r) => r,
                None => break,
            },
        };
        loop {
            match conn.read_step(&mut role) {
                Step::Continue | Step::Run(_) => {
                    if conn.callers_active(KEEPER_IDLE) {
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
