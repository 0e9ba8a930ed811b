//! The admission side of a server connection: it asks for the device when
//! a call needs it (or on `acquire`), waits for it on a spare thread while
//! its reader goes on serving shared commands and built-ins, leaves the
//! queue when every waiting call was cancelled, and gives the device back
//! on `release`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{Conn, Incoming};
use crate::admission::{Admission, ReleaseReason, Who};
use crate::error::ErrorCode;
use crate::frame::{Header, Kind};
use crate::WhenFull;

/// A connection's seat: who it is, and its wait for the device.
pub(crate) struct Seat {
    pub who: Arc<Who>,
    wait: Mutex<Wait>,
}

#[derive(Default)]
struct Wait {
    /// A spare thread waits in the admission queue for this connection.
    waiting: bool,
    /// Its queue ticket (for the `queue` built-in).
    ticket: Option<u64>,
    /// `acquire` calls to answer when the wait ends.
    acquires: Vec<(u16, u32)>,
    /// Every waiting call was cancelled: stop waiting.
    abandoned: bool,
}

impl Seat {
    pub fn new(conn_id: u64, addr: Option<std::net::SocketAddr>) -> Self {
        Self {
            who: Who::new(conn_id, addr),
            wait: Mutex::new(Wait::default()),
        }
    }
}

/// What a call that needs the device may do now.
pub(crate) enum Need {
    /// Run it (when its turn comes in the inbox).
    Go,
    /// The answer was sent (BUSY); drop the call.
    Refused,
}

impl Conn {
    fn admission(&self) -> Option<&Arc<Admission>> {
        self.services.admission.as_ref()
    }

    /// Whether command `cmd` needs the device (every application command
    /// of a server with admission, unless registered as shared).
    pub(super) fn needs_device(&self, cmd: u16) -> bool {
        self.admission().is_some()
            && self
                .services
                .router
                .as_ref()
                .is_some_and(|r| !r.is_shared(cmd))
    }

    /// A call that needs the device has arrived: under `Refuse` it takes a
    /// free slot now or is answered BUSY; under `Queue` the connection
    /// starts waiting (if it does not already hold the device or wait).
    pub(super) fn device_for_call(&self, h: Header) -> Need {
        let Some(adm) = self.admission() else {
            return Need::Go;
        };
        if self.seat.who.holding() {
            return Need::Go;
        }
        match adm.policy() {
            WhenFull::Refuse => match adm.try_acquire(&self.seat.who) {
                Ok(()) => Need::Go,
                Err(r) => {
                    if h.kind == Kind::Call {
                        self.send_error(h.cmd, h.id, ErrorCode::BUSY, &r.message);
                        self.call_done(h.id);
                    }
                    Need::Refused
                }
            },
            WhenFull::Queue { max_wait } => {
                self.start_wait(adm, max_wait, None);
                Need::Go
            }
        }
    }

    /// The `acquire` built-in: answered once the device is held, or BUSY
    /// when the wait (at most `wait_ms`; none under `Refuse`) runs out.
    pub(super) fn acquire(&self, h: Header, payload: &[u8]) {
        let Ok(ms) = <[u8; 4]>::try_from(payload) else {
            let msg = format!(
                "acquire takes a u32 (the longest wait in milliseconds), got {} bytes",
                payload.len()
            );
            self.send_error(h.cmd, h.id, ErrorCode::BAD_PAYLOAD, &msg);
            return;
        };
        let Some(adm) = self.admission() else {
            let _ = self.send_with(Kind::Reply, h.cmd, h.id, |_| {});
            return;
        };
        if self.seat.who.holding() {
            self.seat.who.touch(); // renews the hold
            let _ = self.send_with(Kind::Reply, h.cmd, h.id, |_| {});
            return;
        }
        let wait = match adm.policy() {
            WhenFull::Refuse => Duration::ZERO,
            WhenFull::Queue { .. } => Duration::from_millis(u64::from(u32::from_le_bytes(ms))),
        };
        self.calls.insert(h.id);
        self.start_wait(adm, wait, Some((h.cmd, h.id)));
    }

    /// Joins the queue (unless already holding or waiting) and has a spare
    /// thread wait; an `acquire` call waits along.
    fn start_wait(&self, adm: &Arc<Admission>, max_wait: Duration, acquire: Option<(u16, u32)>) {
        let mut w = self.seat.wait.lock();
        if w.waiting {
            w.acquires.extend(acquire);
            return;
        }
        let who = &self.seat.who;
        // Served at once when the device is free and nobody waits.
        match adm.try_acquire(who) {
            Ok(()) => {
                drop(w);
                self.admitted(acquire.into_iter().collect());
                return;
            }
            Err(r) if max_wait.is_zero() => {
                drop(w);
                if let Some((cmd, id)) = acquire {
                    self.send_error(cmd, id, ErrorCode::BUSY, &r.message);
                    self.call_done(id);
                }
                self.refuse_waiting(&r.message, false);
                return;
            }
            Err(_) => {}
        }
        let ticket = adm.enter(who);
        w.waiting = true;
        w.ticket = Some(ticket.id());
        w.abandoned = false;
        w.acquires.extend(acquire);
        drop(w);
        let (Some(h), Some(me)) = (&self.services.helpers, self.me.upgrade()) else {
            return;
        };
        let adm = Arc::clone(adm);
        self.inbox.guest(true);
        let spawned = h.pool.run(move || {
            let result = adm.wait(ticket, max_wait, &|| {
                me.is_closed() || me.seat.wait.lock().abandoned
            });
            let (acquires, abandoned) = {
                let mut w = me.seat.wait.lock();
                w.waiting = false;
                w.ticket = None;
                (std::mem::take(&mut w.acquires), w.abandoned)
            };
            match result {
                Ok(()) => {
                    me.admitted(acquires);
                    crate::worker::spare(me);
                }
                Err(refusal) => {
                    for (cmd, id) in acquires {
                        if !me.calls.is_cancelled(id) {
                            me.send_error(cmd, id, ErrorCode::BUSY, &refusal.message);
                        }
                        me.call_done(id);
                    }
                    me.refuse_waiting(&refusal.message, abandoned);
                    me.inbox.guest(false);
                }
            }
        });
        if !spawned {
            self.inbox.guest(false);
            self.close();
        }
    }

    /// The device is held: answer the `acquire` calls; waiting calls may
    /// run (the caller runs them or has them run).
    fn admitted(&self, acquires: Vec<(u16, u32)>) {
        for (cmd, id) in acquires {
            let _ = self.send_with(Kind::Reply, cmd, id, |_| {});
            self.call_done(id);
        }
        self.inbox.wake();
    }

    /// The wait ended without the device: calls that needed it are answered
    /// BUSY (or dropped, when their callers gave up), shared calls behind
    /// them go on.
    fn refuse_waiting(&self, message: &str, silently: bool) {
        for inc in self.inbox.take_waiting() {
            let h = inc.header;
            if h.kind == Kind::Call {
                if !silently && !self.calls.is_cancelled(h.id) {
                    self.send_error(h.cmd, h.id, ErrorCode::BUSY, message);
                }
                self.call_done(h.id);
            }
        }
    }

    /// After a CANCEL: a connection whose waiting calls were all cancelled
    /// leaves the queue at once.
    pub(super) fn cancelled(&self, id: u32) {
        let mut w = self.seat.wait.lock();
        if !w.waiting {
            return;
        }
        w.acquires.retain(|(_, a)| *a != id);
        let calls = &self.calls;
        let wanted = !w.acquires.is_empty()
            || self.inbox.any_waiting(|inc: &Incoming| {
                inc.header.kind == Kind::Notify || !calls.is_cancelled(inc.header.id)
            });
        if !wanted {
            w.abandoned = true;
            drop(w);
            if let Some(a) = self.admission() {
                a.wake_all();
            }
        }
    }

    /// The `release` built-in, in order after the calls before it: the
    /// device goes back now (`on_release` runs, the next waiter is
    /// admitted); without a hold nothing happens.
    pub(crate) fn release_device(&self, reason: ReleaseReason) {
        if let Some(adm) = self.admission() {
            adm.release(&self.seat.who, reason);
        }
    }

    /// Whether `release` can be answered at once: nothing of this
    /// connection runs or waits to run that it must follow.
    pub(super) fn release_now(&self) -> bool {
        !self.seat.who.holding() || self.inbox.is_quiet()
    }

    /// The `identify` built-in.
    pub(super) fn identify(&self, h: Header, payload: &[u8]) {
        match self.seat.who.set_label(payload) {
            Ok(()) => {
                let _ = self.send_with(Kind::Reply, h.cmd, h.id, |_| {});
            }
            Err(why) => self.send_error(h.cmd, h.id, ErrorCode::BAD_PAYLOAD, &why),
        }
    }

    /// The `queue` built-in's text.
    pub(super) fn queue_text(&self) -> String {
        let Some(adm) = self.admission() else {
            return "no admission limit".into();
        };
        let ticket = self.seat.wait.lock().ticket;
        adm.describe(&self.seat.who, ticket)
    }

    /// A call that needed the device has ended: a forced release waiting
    /// for it happens now.
    pub(crate) fn device_call_done(&self) {
        if self.seat.who.end_use() {
            self.release_device(ReleaseReason::Forced);
        }
    }

    /// On a quiet read tick: holds that lapsed end (also while nobody waits,
    /// so `on_release` puts the device in a safe state).
    pub(super) fn check_lapse(&self) {
        if let Some(adm) = self.admission() {
            if adm.hold_idle().is_some() && self.seat.who.holding() {
                adm.lapse_idle();
            }
        }
    }

    /// At the connection's end: the hold goes back, a wait stops.
    pub(crate) fn leave_seat(&self) {
        self.seat.wait.lock().abandoned = true;
        if let Some(adm) = self.admission() {
            adm.wake_all();
            adm.release(&self.seat.who, ReleaseReason::Closed);
        }
    }
}
