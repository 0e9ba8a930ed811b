//! The reader role: one thread at a time reads a connection, routes each
//! frame (replies to their callers, CANCEL to the call table, calls to the
//! inbox or to the reading thread itself), answers the built-ins at once,
//! checks auth, and keeps the heartbeat clock.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{BufMut, Bytes};

use super::seat::Need;
use super::{constant_time_eq, Conn, FrameRead, Incoming};
use crate::admission::ReleaseReason;
use crate::error::{Disconnect, Error, ErrorCode, ProtocolError};
use crate::frame::{Frame, Header, Kind};
use crate::router::builtin;

/// The reader role: the transport's read half and the heartbeat clock.
/// Exactly one thread holds it at a time.
pub(crate) struct Role {
    pub(super) src: Box<dyn FrameRead>,
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

impl Role {
    /// Whether a whole frame is already read and waiting in the buffer (the
    /// next read will not wait on the socket).
    pub fn has_buffered_frame(&self) -> bool {
        self.src.has_buffered_frame()
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

fn is_tick(e: &Error) -> bool {
    matches!(e, Error::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

impl Conn {
    /// Reads one frame (or wakes on the read timeout) and acts on it.
    pub fn read_step(&self, role: &mut Role) -> Step {
        // Replies that wait to go out with the next write go now, before
        // this thread may wait on the socket.
        if self.outbox.has_pending() && !role.src.has_buffered_frame() && self.flush().is_err() {
            return Step::End;
        }
        match role.src.read_frame() {
            Ok(Some(frame)) => {
                role.last_life = Instant::now();
                role.seen = role.src.received();
                role.pinged = false;
                match self.on_frame(frame) {
                    Ok(Some(item)) => Step::Run(item),
                    Ok(None) => Step::Continue,
                    Err(e) => {
                        self.ended_on(&e, None);
                        Step::End
                    }
                }
            }
            Ok(None) => {
                self.set_why(Disconnect::PeerClosed);
                Step::End
            }
            Err(e) if is_tick(&e) => {
                if self.is_closed() {
                    return Step::End;
                }
                if role.src.received() != role.seen {
                    role.seen = role.src.received();
                    role.last_life = Instant::now();
                    role.pinged = false;
                } else {
                    role.src.trim();
                    self.check_lapse();
                }
                let silent = role.last_life.elapsed();
                if self.limits.idle_timeout.is_some_and(|d| silent >= d) {
                    self.set_why(Disconnect::Silent { after: silent });
                    return Step::End;
                }
                if !role.pinged && self.limits.ping_after.is_some_and(|d| silent >= d) {
                    role.pinged = true;
                    self.heartbeat();
                }
                Step::Continue
            }
            Err(e) => {
                self.ended_on(&e, role.src.pending_header());
                if !self.is_closed() && !e.is_disconnect() {
                    let header = role.src.pending_header();
                    self.outbox.with_writer(|w| w.refuse(&e, header));
                }
                Step::End
            }
        }
    }

    fn on_frame(&self, frame: Frame) -> Result<Option<Incoming>, Error> {
        let h = frame.header;
        match h.kind {
            Kind::Reply | Kind::Error => {
                if h.kind == Kind::Error {
                    self.note_error(h.id, &frame.payload);
                }
                self.out.route(frame);
                Ok(None)
            }
            Kind::Cancel => {
                self.calls.cancel(h.id);
                self.cancelled(h.id);
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
        if builtin::answered_by_reader(h.cmd) {
            if answer {
                self.answer_builtin(h, &payload)?;
            } else if h.cmd == builtin::IDENTIFY {
                // One way (how clients name themselves at connect): a bad
                // label is ignored, as every NOTIFY's failure is.
                let _ = self.seat.who.set_label(&payload);
            }
            return Ok(None);
        }
        if h.cmd == builtin::RELEASE && self.release_now() {
            if answer {
                self.answer_builtin(h, &payload)?;
            } else {
                self.release_device(ReleaseReason::Released);
            }
            return Ok(None);
        }
        // `release` after calls that run or wait takes its turn behind them.
        let known = h.cmd == builtin::RELEASE
            || self
                .services
                .router
                .as_ref()
                .is_some_and(|r| r.contains(h.cmd));
        if !known {
            if answer {
                let hint = self.services.unknown_hint.as_deref().unwrap_or("");
                let msg = format!("unknown command {}{hint}", h.cmd);
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
            self.calls.insert(h.id);
        }
        let needs_device = h.cmd != builtin::RELEASE && self.needs_device(h.cmd);
        if needs_device {
            if let Need::Refused = self.device_for_call(h) {
                return Ok(None);
            }
        }
        let item = Incoming {
            header: h,
            payload,
            needs_device,
        };
        let (run, unserved) = self.inbox.offer(item, self.shares_reading());
        if unserved {
            self.spawn_helper();
        }
        Ok(run)
    }

    /// Answers a built-in CALL (`ping`, `status`, `list`, `queue`, and
    /// `auth` once authorized).
    fn answer_builtin(&self, h: Header, payload: &Bytes) -> Result<(), Error> {
        match h.cmd {
            builtin::PING => self.send_with(Kind::Reply, h.cmd, h.id, |b| b.put_slice(payload)),
            builtin::STATUS => {
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
                })
            }
            builtin::LIST => {
                let router = self.services.router.as_deref();
                self.send_with(Kind::Reply, h.cmd, h.id, |b| {
                    builtin::encode_list(router, b)
                })
            }
            builtin::QUEUE => {
                let text = self.queue_text();
                self.send_with(Kind::Reply, h.cmd, h.id, |b| b.put_slice(text.as_bytes()))
            }
            builtin::SHARED => {
                let router = self.services.router.as_deref();
                self.send_with(Kind::Reply, h.cmd, h.id, |b| {
                    builtin::encode_shared(router, b)
                })
            }
            builtin::ACQUIRE => {
                self.acquire(h, payload);
                Ok(())
            }
            builtin::IDENTIFY => {
                self.identify(h, payload);
                Ok(())
            }
            builtin::RELEASE => {
                // In order after this connection's calls; at once when
                // nothing runs or waits.
                self.release_device(ReleaseReason::Released);
                self.send_with(Kind::Reply, h.cmd, h.id, |_| {})
            }
            _ => self.send_with(Kind::Reply, h.cmd, h.id, |_| {}),
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
            "unauthorized: this server needs a token: set it with ClientBuilder::token \
             (Python: token=); on raw TCP the first frame must be auth (0xFF00) carrying it"
        };
        if h.kind == Kind::Call {
            self.send_error(h.cmd, h.id, ErrorCode::UNAUTHORIZED, msg);
        } else {
            // Nothing to answer (a NOTIFY such as `identify`): say why the
            // connection closes with an ERROR for call id 0.
            self.send_error(0, 0, ErrorCode::UNAUTHORIZED, msg);
        }
        Err(ProtocolError::Unexpected("unauthorized").into())
    }

    /// An ERROR that ends the connection (call id 0: the peer says why it
    /// closes; UNAUTHORIZED, TOO_LARGE and PROTOCOL: the peer closes after
    /// them) is remembered as the reason it ended.
    fn note_error(&self, id: u32, payload: &[u8]) {
        if payload.len() < 2 {
            return;
        }
        let code = ErrorCode(u16::from_le_bytes([payload[0], payload[1]]));
        let ends = matches!(
            code,
            ErrorCode::UNAUTHORIZED | ErrorCode::TOO_LARGE | ErrorCode::PROTOCOL
        );
        if id == 0 || ends {
            let message = String::from_utf8_lossy(&payload[2..]);
            self.set_why(Disconnect::Refused {
                code,
                message: message.into(),
            });
        }
    }

    fn heartbeat(&self) {
        let id = self.out.take_id();
        self.out.heartbeat_id.store(id, Ordering::Relaxed);
        let frame = crate::frame::encode_frame(Kind::Call, builtin::PING, id, b"");
        let r = self.outbox.with_writer(|w| w.heartbeat(&frame));
        if r.is_err() {
            self.close();
        }
    }
}
