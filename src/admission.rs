//! Admission: at most N users hold the device at once, the others wait in
//! a FIFO queue (or are refused), and a hook runs whenever a hold ends.
//!
//! A connection becomes a user when it needs the device: at its first call
//! of a command that is not shared, or by `acquire`. It stays one until it
//! sends `release`, its hold lapses (no call needing the device for the
//! server's `hold_idle`), the administrator releases it, or it ends.
//!
//! # Fairness
//!
//! Waiters are admitted in arrival order: each takes a ticket when it
//! starts to wait, and a ticket may take a free slot only if a slot is
//! also left for every older ticket still queued. With one slot that is
//! strict FIFO.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// What happens to a connection that needs the device while the server is
/// full.
///
/// ```
/// use std::time::Duration;
/// use framerpc::{Server, WhenFull};
/// // Wait in line for up to a minute, then get BUSY.
/// let queued = Server::builder().max_users(1).when_full(WhenFull::Queue {
///     max_wait: Duration::from_secs(60),
/// });
/// // Or get BUSY at once (the connection stays open; try again later).
/// let refused = Server::builder().max_users(1).when_full(WhenFull::Refuse);
/// # let _ = (queued, refused);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait in a FIFO queue for at most `max_wait`, then get BUSY.
    Queue {
        /// The longest a connection waits for the device.
        max_wait: Duration,
    },
    /// Answer each call that needs the device with BUSY while the server
    /// is full.
    Refuse,
}

impl Default for WhenFull {
    /// Queue for up to 30 s.
    fn default() -> Self {
        Self::Queue {
            max_wait: Duration::from_secs(30),
        }
    }
}

/// Admission numbers, as the `status` command reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Status {
    /// Users holding the device now.
    pub active: u32,
    /// The user limit.
    pub max: u32,
    /// Connections waiting for the device now.
    pub waiting: u32,
}

/// Why a hold ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseReason {
    /// The connection ended (closed, crashed, went silent).
    Closed,
    /// The holder sent `release`.
    Released,
    /// No call needed the device for the server's `hold_idle`.
    Lapsed,
    /// The administrator released it ([`ServerHandle::release`](crate::ServerHandle::release)).
    Forced,
}

/// What the `on_release` hook is told about a hold that ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Released {
    /// The peer that held the device.
    pub peer: Option<SocketAddr>,
    /// The name it gave (`identify`), if any.
    pub name: Option<String>,
    /// How long it held the device.
    pub held_for: Duration,
    /// Why the hold ended.
    pub reason: ReleaseReason,
}

/// One holder, as [`ServerHandle::holders`](crate::ServerHandle::holders)
/// lists it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Holder {
    /// The connection's number ([`Ctx::conn_id`](crate::Ctx::conn_id)).
    pub conn_id: u64,
    /// `label (address)`, or the address alone.
    pub name: String,
    /// The peer's address.
    pub addr: Option<SocketAddr>,
    /// How long it has held the device.
    pub held_for: Duration,
    /// How long since its last call that needed the device ended (zero
    /// while one runs).
    pub idle_for: Duration,
    /// Connections waiting behind it.
    pub waiting_behind: u32,
}

pub(crate) type ReleaseHook = Arc<dyn Fn(&Released) + Send + Sync>;

/// Longest `identify` label, in bytes.
pub(crate) const MAX_LABEL: usize = 64;

/// A connection as admission sees it: its name, and whether and how it
/// uses the device now. One per connection, shared with the admission
/// state while the connection holds the device or waits for it.
pub(crate) struct Who {
    pub conn_id: u64,
    pub addr: Option<SocketAddr>,
    label: Mutex<Option<Box<str>>>,
    usage: Mutex<Usage>,
}

#[derive(Default)]
struct Usage {
    /// Holding the device (with this ticket).
    ticket: Option<u64>,
    /// Calls needing the device running now.
    running: usize,
    /// When the last call needing the device ended (or the hold began).
    last_used: Option<Instant>,
    /// Why this connection's last hold ended, if not by its own doing:
    /// said in every BUSY or `queue` text until it holds again.
    note: Option<String>,
    /// A forced release asked for while a call ran: done when it ends.
    pending_force: bool,
}

impl Who {
    pub fn new(conn_id: u64, addr: Option<SocketAddr>) -> Arc<Self> {
        Arc::new(Self {
            conn_id,
            addr,
            label: Mutex::new(None),
            usage: Mutex::new(Usage::default()),
        })
    }

    /// `label (address)`, or the address alone.
    pub fn name(&self) -> String {
        let addr = self
            .addr
            .map_or_else(|| "unknown peer".to_owned(), |a| a.to_string());
        match &*self.label.lock() {
            Some(l) => format!("{l} ({addr})"),
            None => addr,
        }
    }

    pub fn label(&self) -> Option<String> {
        self.label.lock().as_deref().map(str::to_owned)
    }

    /// Sets the label (`identify`), or says why it is refused.
    pub fn set_label(&self, raw: &[u8]) -> Result<(), String> {
        let label = check_label(raw)?;
        *self.label.lock() = Some(label.into());
        Ok(())
    }

    pub fn holding(&self) -> bool {
        self.usage.lock().ticket.is_some()
    }

    /// A call that needs the device may start: true (and counted as
    /// running) while this connection holds it.
    pub fn begin_use(&self) -> bool {
        let mut u = self.usage.lock();
        if u.ticket.is_none() {
            return false;
        }
        u.running += 1;
        true
    }

    /// A call that needed the device ended. True when a forced release
    /// waits for it.
    pub fn end_use(&self) -> bool {
        let mut u = self.usage.lock();
        u.running = u.running.saturating_sub(1);
        u.last_used = Some(Instant::now());
        u.running == 0 && std::mem::take(&mut u.pending_force)
    }

    /// Counts as a use without a call (`acquire` while holding renews).
    pub fn touch(&self) {
        self.usage.lock().last_used = Some(Instant::now());
    }

    /// Why the last hold ended, for messages to this connection.
    pub fn note(&self) -> Option<String> {
        self.usage.lock().note.clone()
    }
}

/// A duration in seconds as people write it: `30 s`, `0.5 s`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 || s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// Checks an `identify` label: 1 to 64 bytes of printable UTF-8.
pub(crate) fn check_label(raw: &[u8]) -> Result<&str, String> {
    if raw.is_empty() || raw.len() > MAX_LABEL {
        return Err(format!(
            "a name must be 1 to {MAX_LABEL} bytes of printable UTF-8, got {} bytes",
            raw.len()
        ));
    }
    let s = std::str::from_utf8(raw).map_err(|e| format!("a name must be UTF-8: {e}"))?;
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "a name must be printable: it holds the control character {c:?}"
        ));
    }
    Ok(s)
}

/// Why a connection did not get the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub message: String,
}

/// The server's admission state: holders, the queue, the release hook.
pub(crate) struct Admission {
    max: u32,
    policy: WhenFull,
    hold_idle: Option<Duration>,
    state: Mutex<State>,
    changed: Condvar,
    on_release: Option<ReleaseHook>,
}

#[derive(Default)]
struct State {
    holders: Vec<Holding>,
    queue: VecDeque<u64>,
    next_ticket: u64,
    /// Release hooks running now: their slots are not free yet.
    releasing: u32,
}

struct Holding {
    who: Arc<Who>,
    since: Instant,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("max", &self.max)
            .field("policy", &self.policy)
            .field("status", &self.status())
            .finish()
    }
}

/// A place in the queue; leaving it (drop) lets the next one move up.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    who: Arc<Who>,
    entered: Instant,
    done: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            let mut s = self.admission.state.lock();
            s.queue.retain(|t| *t != self.id);
            self.admission.changed.notify_all();
        }
    }
}

impl Admission {
    pub fn new(
        max: u32,
        policy: WhenFull,
        hold_idle: Option<Duration>,
        on_release: Option<ReleaseHook>,
    ) -> Self {
        Self {
            max: max.max(1),
            policy,
            hold_idle,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            on_release,
        }
    }

    pub fn policy(&self) -> WhenFull {
        self.policy
    }

    pub fn hold_idle(&self) -> Option<Duration> {
        self.hold_idle
    }

    pub fn status(&self) -> Status {
        let s = self.state.lock();
        Status {
            active: (s.holders.len() as u32).saturating_add(s.releasing),
            max: self.max,
            waiting: s.queue.len() as u32,
        }
    }

    fn full(&self, s: &State) -> bool {
        s.holders.len() as u64 + u64::from(s.releasing) >= u64::from(self.max)
    }

    /// Takes a slot now if one is free and nobody waits for it.
    pub fn try_acquire(self: &Arc<Self>, who: &Arc<Who>) -> Result<(), Refusal> {
        let mut s = self.state.lock();
        if self.full(&s) || !s.queue.is_empty() {
            return Err(self.refusal(&s, who, None, None));
        }
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        self.admit(&mut s, ticket, who);
        Ok(())
    }

    /// Joins the queue at the back.
    pub fn enter(self: &Arc<Self>, who: &Arc<Who>) -> Ticket {
        let mut s = self.state.lock();
        let id = s.next_ticket;
        s.next_ticket += 1;
        s.queue.push_back(id);
        Ticket {
            admission: Arc::clone(self),
            id,
            who: Arc::clone(who),
            entered: Instant::now(),
            done: false,
        }
    }

    /// Whether `ticket` may take a slot now: one is free for it and for
    /// every older ticket still queued.
    fn turn_has_come(&self, s: &State, ticket: u64) -> bool {
        let ahead = s.queue.iter().position(|t| *t == ticket).unwrap_or(0);
        let taken = s.holders.len() as u64 + u64::from(s.releasing);
        taken + (ahead as u64) < u64::from(self.max)
    }

    /// Waits (at most `max_wait` from entering) for the ticket's turn.
    /// `abandoned` is asked on every wake-up ([`Admission::wake_all`]).
    /// While it waits, holds that lapsed are ended.
    pub fn wait(
        self: &Arc<Self>,
        mut ticket: Ticket,
        max_wait: Duration,
        abandoned: &dyn Fn() -> bool,
    ) -> Result<(), Refusal> {
        let deadline = ticket.entered + max_wait;
        loop {
            self.lapse_idle();
            let mut s = self.state.lock();
            if self.turn_has_come(&s, ticket.id) {
                s.queue.retain(|t| *t != ticket.id);
                ticket.done = true;
                self.admit(&mut s, ticket.id, &ticket.who);
                // The next in line may also fit (max > 1).
                self.changed.notify_all();
                return Ok(());
            }
            let gone = abandoned();
            if gone || Instant::now() >= deadline {
                let position = s.queue.iter().position(|t| *t == ticket.id);
                let waited = (!gone).then_some(max_wait);
                let refusal = self.refusal(&s, &ticket.who, position, waited);
                s.queue.retain(|t| *t != ticket.id);
                ticket.done = true;
                self.changed.notify_all();
                return Err(refusal);
            }
            let wake = self.next_lapse(&s).map_or(deadline, |at| at.min(deadline));
            self.changed.wait_until(&mut s, wake);
        }
    }

    /// Wakes every waiter so it checks again whether it was abandoned.
    pub fn wake_all(&self) {
        let _s = self.state.lock();
        self.changed.notify_all();
    }

    fn admit(&self, s: &mut State, ticket: u64, who: &Arc<Who>) {
        {
            let mut u = who.usage.lock();
            u.ticket = Some(ticket);
            u.last_used = Some(Instant::now());
            u.note = None;
            u.pending_force = false;
        }
        s.holders.push(Holding {
            who: Arc::clone(who),
            since: Instant::now(),
        });
    }

    /// Ends `who`'s hold, if it has one: the slot stays taken while the
    /// release hook runs, then the next waiter may take it. `note` is what
    /// later messages to that connection say about it.
    pub fn release(&self, who: &Who, reason: ReleaseReason) -> bool {
        let holding = {
            let mut s = self.state.lock();
            let Some(i) = s.holders.iter().position(|h| h.who.conn_id == who.conn_id) else {
                return false;
            };
            let h = s.holders.swap_remove(i);
            {
                let mut u = who.usage.lock();
                u.ticket = None;
                u.note = match reason {
                    ReleaseReason::Lapsed => Some(format!(
                        "this connection's hold lapsed after {} without a call needing the device",
                        seconds(self.hold_idle.unwrap_or_default())
                    )),
                    ReleaseReason::Forced => {
                        Some("the server's administrator released this connection's hold".into())
                    }
                    _ => None,
                };
            }
            if self.on_release.is_some() {
                s.releasing += 1;
            }
            h
        };
        if let Some(hook) = &self.on_release {
            let info = Released {
                peer: holding.who.addr,
                name: holding.who.label(),
                held_for: holding.since.elapsed(),
                reason,
            };
            // The slot stays taken until the hook has run, even if it panics.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&info)));
            self.state.lock().releasing -= 1;
        }
        let _s = self.state.lock();
        self.changed.notify_all();
        true
    }

    /// When the first hold will lapse, if holds lapse.
    fn next_lapse(&self, s: &State) -> Option<Instant> {
        let idle = self.hold_idle?;
        s.holders
            .iter()
            .filter_map(|h| {
                let u = h.who.usage.lock();
                (u.running == 0).then(|| u.last_used.unwrap_or(h.since) + idle)
            })
            .min()
    }

    /// Ends every hold whose connection has made no call needing the
    /// device for `hold_idle` (none runs now).
    pub fn lapse_idle(&self) {
        let Some(idle) = self.hold_idle else {
            return;
        };
        let lapsed: Vec<Arc<Who>> = {
            let s = self.state.lock();
            s.holders
                .iter()
                .filter(|h| {
                    let u = h.who.usage.lock();
                    u.running == 0 && u.last_used.unwrap_or(h.since).elapsed() >= idle
                })
                .map(|h| Arc::clone(&h.who))
                .collect()
        };
        for who in lapsed {
            // Checked again: a call may have started meanwhile.
            let still_idle = {
                let u = who.usage.lock();
                u.running == 0 && u.last_used.is_some_and(|t| t.elapsed() >= idle)
            };
            if still_idle {
                self.release(&who, ReleaseReason::Lapsed);
            }
        }
    }

    /// The administrator ends connection `conn_id`'s hold: now, or when
    /// its call that needs the device ends. False if it holds none.
    pub fn force(&self, conn_id: u64) -> bool {
        let who = {
            let s = self.state.lock();
            match s.holders.iter().find(|h| h.who.conn_id == conn_id) {
                Some(h) => Arc::clone(&h.who),
                None => return false,
            }
        };
        {
            let mut u = who.usage.lock();
            if u.running > 0 {
                u.pending_force = true;
                return true;
            }
        }
        self.release(&who, ReleaseReason::Forced);
        true
    }

    pub fn holders(&self) -> Vec<Holder> {
        let s = self.state.lock();
        let waiting = s.queue.len() as u32;
        s.holders
            .iter()
            .map(|h| {
                let u = h.who.usage.lock();
                let idle_for = if u.running > 0 {
                    Duration::ZERO
                } else {
                    u.last_used.unwrap_or(h.since).elapsed()
                };
                Holder {
                    conn_id: h.who.conn_id,
                    name: h.who.name(),
                    addr: h.who.addr,
                    held_for: h.since.elapsed(),
                    idle_for,
                    waiting_behind: waiting,
                }
            })
            .collect()
    }

    /// Where `who` stands, in words (the `queue` built-in).
    pub fn describe(&self, who: &Who, ticket: Option<u64>) -> String {
        if who.holding() {
            return "admitted".into();
        }
        let s = self.state.lock();
        let position = ticket.and_then(|t| s.queue.iter().position(|q| *q == t));
        let mut text = self.refusal(&s, who, position, None).message;
        if position.is_some() {
            text = text
                .replacen("busy: ", "waiting for the device: ", 1)
                .replace("; was number", "; number");
        } else {
            text = text.replacen("busy: ", "not waiting: ", 1);
        }
        text
    }

    fn refusal(
        &self,
        s: &State,
        who: &Who,
        position: Option<usize>,
        waited: Option<Duration>,
    ) -> Refusal {
        let mut message = format!("busy: {} of {} users active", s.holders.len(), self.max);
        for h in s.holders.iter().take(4) {
            message.push_str(&format!(
                "; held by {} for {:.1}s",
                h.who.name(),
                h.since.elapsed().as_secs_f64()
            ));
        }
        if let Some(w) = waited {
            message.push_str(&format!("; gave up after waiting {:.1}s", w.as_secs_f64()));
        }
        if let Some(p) = position {
            message.push_str(&format!(
                "; was number {} of {} in the queue",
                p + 1,
                s.queue.len()
            ));
        } else if !s.queue.is_empty() {
            message.push_str(&format!("; {} waiting", s.queue.len()));
        }
        if let Some(note) = who.note() {
            message.push_str("; ");
            message.push_str(&note);
        }
        Refusal { message }
    }
}

impl Ticket {
    pub fn id(&self) -> u64 {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(id: u64) -> Arc<Who> {
        Who::new(id, None)
    }

    #[test]
    fn refuse_when_full_and_release() {
        let a = Arc::new(Admission::new(1, WhenFull::Refuse, None, None));
        let (w1, w2) = (who(1), who(2));
        a.try_acquire(&w1).unwrap();
        assert_eq!(
            a.status(),
            Status {
                active: 1,
                max: 1,
                waiting: 0
            }
        );
        assert!(a.try_acquire(&w2).unwrap_err().message.contains("1 of 1"));
        assert!(a.release(&w1, ReleaseReason::Released));
        assert!(!a.release(&w1, ReleaseReason::Released), "released twice");
        assert_eq!(a.status().active, 0);
        assert!(a.try_acquire(&w2).is_ok());
    }

    #[test]
    fn queued_waiter_times_out_with_position() {
        let a = Arc::new(Admission::new(1, WhenFull::default(), None, None));
        a.try_acquire(&who(1)).unwrap();
        let w = who(2);
        let r = a
            .wait(a.enter(&w), Duration::from_millis(20), &|| false)
            .unwrap_err();
        assert!(r.message.contains("number 1 of 1"), "{}", r.message);
        assert_eq!(a.status().waiting, 0);
    }

    #[test]
    fn a_hold_lapses_and_says_so() {
        let a = Arc::new(Admission::new(
            1,
            WhenFull::default(),
            Some(Duration::from_millis(30)),
            None,
        ));
        let (w1, w2) = (who(1), who(2));
        a.try_acquire(&w1).unwrap();
        a.wait(a.enter(&w2), Duration::from_secs(5), &|| false)
            .unwrap();
        assert!(!w1.holding() && w2.holding());
        assert!(w1.note().unwrap().contains("lapsed"), "{:?}", w1.note());
    }

    #[test]
    fn labels_are_checked() {
        let w = who(1);
        assert!(w.set_label(b"scan@bench-3").is_ok());
        assert_eq!(w.name(), "scan@bench-3 (unknown peer)");
        assert!(w.set_label(b"").is_err());
        assert!(w.set_label(&[b'a'; 65]).is_err());
        assert!(w.set_label(b"bad\nname").is_err());
        assert!(w.set_label(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn release_hook_runs_before_next_admission() {
        let seen = Arc::new(Mutex::new(0));
        let s2 = Arc::clone(&seen);
        let hook: ReleaseHook = Arc::new(move |_| *s2.lock() += 1);
        let a = Arc::new(Admission::new(1, WhenFull::Refuse, None, Some(hook)));
        let w = who(1);
        a.try_acquire(&w).unwrap();
        a.release(&w, ReleaseReason::Closed);
        assert_eq!(*seen.lock(), 1);
        assert_eq!(a.status().active, 0);
    }
}
