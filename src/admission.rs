//! Admission: a counting semaphore over connections, with a FIFO queue or
//! immediate refusal beyond the limit, and a hook that runs whenever a
//! permit comes back.
//!
//! A [`Permit`] is released in `Drop`, so no path (clean close, crash of
//! the peer, panic in a handler, server error) can leak it.
//!
//! # Fairness
//!
//! Waiters are admitted in arrival order: each takes a ticket (at accept
//! time), and a ticket may take a free slot only if a slot is also left for
//! every older ticket still queued. With one slot that is strict FIFO; with
//! room to spare nobody waits for an older connection that has not asked
//! yet (one still in its WebSocket handshake, say).

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// What happens to a connection beyond the user limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait in a FIFO queue for at most `max_wait`, then get BUSY.
    Queue {
        /// The longest a connection waits for a permit.
        max_wait: Duration,
    },
    /// Answer each call with BUSY while the server is full.
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
    /// Users holding a permit now.
    pub active: u32,
    /// The user limit.
    pub max: u32,
    /// Connections waiting in the queue.
    pub waiting: u32,
}

pub(crate) type ReleaseHook = Arc<dyn Fn(&Released) + Send + Sync>;

/// What the `on_release` hook is told about a permit that came back.
#[derive(Clone, Debug)]
pub struct Released {
    /// The peer that held the permit.
    pub peer: Option<SocketAddr>,
    /// How long it held it.
    pub held_for: Duration,
}

struct Holder {
    ticket: u64,
    peer: Option<SocketAddr>,
    since: Instant,
}

#[derive(Default)]
struct State {
    holders: Vec<Holder>,
    queue: VecDeque<u64>,
    next_ticket: u64,
    /// Set while the release hook runs: the slot is not free yet.
    releasing: u32,
}

/// A semaphore of user permits. Shared by every connection of a server.
pub struct Admission {
    max: u32,
    policy: WhenFull,
    state: Mutex<State>,
    changed: Condvar,
    on_release: Option<ReleaseHook>,
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

/// Why a connection was not admitted; its text names the holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The message for the ERROR BUSY frame.
    pub message: String,
}

impl Admission {
    /// At most `max` users at once (`u32::MAX` for no limit).
    pub fn new(max: u32, policy: WhenFull, on_release: Option<ReleaseHook>) -> Self {
        Self {
            max: max.max(1),
            policy,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            on_release,
        }
    }

    /// The policy beyond the limit.
    pub fn policy(&self) -> WhenFull {
        self.policy
    }

    /// Active, max and waiting, right now.
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

    /// Takes a permit if one is free and nobody is queued, else refuses.
    pub fn try_acquire(self: &Arc<Self>, peer: Option<SocketAddr>) -> Result<Permit, Refusal> {
        let mut s = self.state.lock();
        if self.full(&s) || !s.queue.is_empty() {
            return Err(self.refusal(&s, None, None));
        }
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        Ok(self.admit(&mut s, ticket, peer))
    }

    /// Joins the FIFO queue now; [`Admission::wait`] later waits for the
    /// turn. Taking the ticket at accept time makes arrival order the
    /// admission order, whatever the threads do next.
    pub fn enter(self: &Arc<Self>, peer: Option<SocketAddr>) -> Ticket {
        let mut s = self.state.lock();
        let id = s.next_ticket;
        s.next_ticket += 1;
        s.queue.push_back(id);
        Ticket {
            admission: Arc::clone(self),
            id,
            peer,
            entered: Instant::now(),
            done: false,
        }
    }

    /// Waits in the FIFO queue for up to `max_wait`, giving up early when
    /// `abandoned()` turns true (the connection went away; call
    /// [`Admission::wake_all`] to make waiters look).
    pub fn acquire(
        self: &Arc<Self>,
        peer: Option<SocketAddr>,
        max_wait: Duration,
        abandoned: &dyn Fn() -> bool,
    ) -> Result<Permit, Refusal> {
        self.wait(self.enter(peer), max_wait, abandoned)
    }

    /// Waits for `ticket`'s turn, up to `max_wait` from when it was taken.
    pub fn wait(
        self: &Arc<Self>,
        mut ticket: Ticket,
        max_wait: Duration,
        abandoned: &dyn Fn() -> bool,
    ) -> Result<Permit, Refusal> {
        let deadline = ticket.entered + max_wait;
        let mut s = self.state.lock();
        loop {
            // Everyone ahead keeps a slot: a place behind them is served
            // only from what is left (so a connection that took its place
            // but has not asked yet never blocks a server with room).
            let ahead = s.queue.iter().position(|t| *t == ticket.id).unwrap_or(0);
            let taken = s.holders.len() as u64 + u64::from(s.releasing);
            if taken + (ahead as u64) < u64::from(self.max) {
                s.queue.retain(|t| *t != ticket.id);
                ticket.done = true;
                let permit = self.admit(&mut s, ticket.id, ticket.peer);
                // The next in line may also fit (max > 1).
                self.changed.notify_all();
                return Ok(permit);
            }
            let gone = abandoned();
            if gone || Instant::now() >= deadline {
                let position = s.queue.iter().position(|t| *t == ticket.id);
                let refusal = self.refusal(&s, position, (!gone).then_some(max_wait));
                s.queue.retain(|t| *t != ticket.id);
                ticket.done = true;
                self.changed.notify_all();
                return Err(refusal);
            }
            self.changed.wait_until(&mut s, deadline);
        }
    }

    /// Admits `ticket` now if its turn has come and a slot is free;
    /// otherwise gives it back (still queued).
    pub fn try_admit(self: &Arc<Self>, mut ticket: Ticket) -> Result<Permit, Ticket> {
        let mut s = self.state.lock();
        let ahead = s.queue.iter().position(|t| *t == ticket.id).unwrap_or(0);
        let taken = s.holders.len() as u64 + u64::from(s.releasing);
        if taken + (ahead as u64) < u64::from(self.max) {
            s.queue.retain(|t| *t != ticket.id);
            ticket.done = true;
            let permit = self.admit(&mut s, ticket.id, ticket.peer);
            self.changed.notify_all();
            return Ok(permit);
        }
        drop(s);
        Err(ticket)
    }

    /// Wakes every waiter so it re-checks whether its connection is gone.
    pub fn wake_all(&self) {
        let _s = self.state.lock();
        self.changed.notify_all();
    }

    fn admit(self: &Arc<Self>, s: &mut State, ticket: u64, peer: Option<SocketAddr>) -> Permit {
        s.holders.push(Holder {
            ticket,
            peer,
            since: Instant::now(),
        });
        Permit {
            admission: Arc::clone(self),
            ticket,
        }
    }

    /// Where the holder of queue place `ticket` stands, in words: the
    /// holders (peer, for how long) and the place in the queue. What the
    /// `queue` built-in command answers to a waiting connection.
    pub fn describe(&self, ticket: u64) -> String {
        let s = self.state.lock();
        if s.holders.iter().any(|h| h.ticket == ticket) {
            return "admitted".into();
        }
        let position = s.queue.iter().position(|t| *t == ticket);
        let mut text = self.refusal(&s, position, None).message;
        if position.is_some() {
            text = text
                .replacen("busy: ", "waiting for admission: ", 1)
                .replace("; was number", "; number");
        }
        text
    }

    fn refusal(&self, s: &State, position: Option<usize>, waited: Option<Duration>) -> Refusal {
        let mut message = format!("busy: {} of {} users active", s.holders.len(), self.max);
        for h in s.holders.iter().take(4) {
            let who = h
                .peer
                .map_or_else(|| "unknown peer".into(), |p| p.to_string());
            message.push_str(&format!(
                "; held by {who} for {:.1}s",
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
        Refusal { message }
    }

    fn release(&self, ticket: u64) {
        let held = {
            let mut s = self.state.lock();
            let Some(i) = s.holders.iter().position(|h| h.ticket == ticket) else {
                return;
            };
            let h = s.holders.swap_remove(i);
            if self.on_release.is_some() {
                s.releasing += 1;
            }
            h
        };
        if let Some(hook) = &self.on_release {
            let info = Released {
                peer: held.peer,
                held_for: held.since.elapsed(),
            };
            // The slot stays taken until the hook has run, even if it panics.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&info)));
            self.state.lock().releasing -= 1;
        }
        let _s = self.state.lock();
        self.changed.notify_all();
    }
}

/// A place in the admission queue, taken when a connection arrives.
/// Dropping it unused leaves the queue.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    peer: Option<SocketAddr>,
    entered: Instant,
    done: bool,
}

impl Ticket {
    /// The ticket's number (admission order).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket").field("id", &self.id).finish()
    }
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

/// One admitted user. Dropping it gives the slot back (after the
/// `on_release` hook has run).
pub struct Permit {
    admission: Arc<Admission>,
    ticket: u64,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("ticket", &self.ticket)
            .finish()
    }
}

impl Permit {
    /// The number of the queue place this permit was taken with.
    pub fn ticket(&self) -> u64 {
        self.ticket
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuse_when_full_and_release_on_drop() {
        let a = Arc::new(Admission::new(1, WhenFull::Refuse, None));
        let p = a.try_acquire(None).unwrap();
        assert_eq!(
            a.status(),
            Status {
                active: 1,
                max: 1,
                waiting: 0
            }
        );
        assert!(a.try_acquire(None).unwrap_err().message.contains("1 of 1"));
        drop(p);
        assert_eq!(a.status().active, 0);
        assert!(a.try_acquire(None).is_ok());
    }

    #[test]
    fn queued_waiter_times_out_with_position() {
        let a = Arc::new(Admission::new(1, WhenFull::default(), None));
        let _p = a.try_acquire(None).unwrap();
        let r = a
            .acquire(None, Duration::from_millis(20), &|| false)
            .unwrap_err();
        assert!(r.message.contains("number 1 of 1"), "{}", r.message);
        assert_eq!(a.status().waiting, 0);
    }

    #[test]
    fn an_older_place_that_has_not_asked_blocks_only_when_room_is_short() {
        let roomy = Arc::new(Admission::new(2, WhenFull::default(), None));
        let _silent = roomy.enter(None);
        let later = roomy.enter(None);
        assert!(roomy
            .wait(later, Duration::from_millis(10), &|| false)
            .is_ok());

        let tight = Arc::new(Admission::new(1, WhenFull::default(), None));
        let silent = tight.enter(None);
        let later = tight.enter(None);
        assert!(tight
            .wait(later, Duration::from_millis(10), &|| false)
            .is_err());
        drop(silent);
        let later = tight.enter(None);
        assert!(tight
            .wait(later, Duration::from_millis(10), &|| false)
            .is_ok());
    }

    #[test]
    fn release_hook_runs_before_next_admission() {
        let seen = Arc::new(Mutex::new(0));
        let s2 = Arc::clone(&seen);
        let hook: ReleaseHook = Arc::new(move |_| *s2.lock() += 1);
        let a = Arc::new(Admission::new(1, WhenFull::Refuse, Some(hook)));
        drop(a.try_acquire(None).unwrap());
        assert_eq!(*seen.lock(), 1);
        assert_eq!(a.status().active, 0);
    }
}
