//! Incoming calls of one connection: the queue of calls that may not run
//! yet, how many run now, whether calls may run at all (the gate), and the
//! table of calls that the peer may cancel.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use std::sync::Arc;

use crate::admission::Who;
use crate::frame::Header;

/// One incoming CALL or NOTIFY.
pub(crate) struct Incoming {
    pub header: Header,
    pub payload: Bytes,
    /// It may run only while the connection holds the device.
    pub needs_device: bool,
}

/// Whether calls may run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Gate {
    /// The server's `on_connect` hook runs: no call runs before it
    /// returns.
    Starting,
    /// Calls run (those that need the device only while it is held).
    Open,
    /// The connection is over.
    Closed,
}

/// A bounded queue (by count and by bytes, so a flood of pipelined calls
/// holds back the reader, and so the sender, instead of growing memory)
/// plus the count of handlers running.
///
/// A connection's threads share it: the thread that reads a CALL runs it
/// at once when nothing runs or waits (the common case, no hand-off);
/// otherwise the call is queued, and the thread that finishes a handler
/// runs the next. So calls run in arrival order, at most `max_busy` at
/// once. A call that needs the device waits at the head of the queue
/// (and so do the calls behind it) until the connection holds the device.
pub(crate) struct Inbox {
    q: Mutex<State>,
    cv: Condvar,
    max_items: usize,
    max_bytes: usize,
    max_busy: usize,
    /// The connection, as admission sees it.
    who: Arc<Who>,
}

struct State {
    items: VecDeque<Incoming>,
    bytes: usize,
    gate: Gate,
    /// Handlers running now.
    busy: usize,
    /// The reader role is free and a waiting thread should take it.
    takeover: bool,
    /// Threads waiting in [`Inbox::wait_for_work`] or [`Inbox::wait_idle`].
    waiters: usize,
    /// Spare threads working for this connection now.
    guests: usize,
    /// Calls from this side waiting for the peer's reply: while any wait,
    /// a full queue does not hold the reader back (it must read that
    /// reply), so the queue may grow past its bound for that long.
    peer_waits: usize,
}

impl State {
    fn may_run(&self, max_busy: usize) -> bool {
        self.gate == Gate::Open && self.busy < max_busy
    }

    /// Whether the call at the head of the queue may start now.
    fn head_ready(&self, max_busy: usize, who: &Who) -> bool {
        self.may_run(max_busy)
            && self
                .items
                .front()
                .is_some_and(|i| !i.needs_device || who.holding())
    }
}

/// Counts a call that needs the device as a use of it; false when the
/// connection does not hold the device (the call must wait).
fn start(item: &Incoming, who: &Who) -> bool {
    !item.needs_device || who.begin_use()
}

impl Inbox {
    /// `hooked`: nothing runs until [`Inbox::started`].
    pub fn new(
        max_items: usize,
        max_bytes: usize,
        max_busy: usize,
        hooked: bool,
        who: Arc<Who>,
    ) -> Self {
        let gate = if hooked { Gate::Starting } else { Gate::Open };
        Self {
            q: Mutex::new(State {
                items: VecDeque::with_capacity(16),
                bytes: 0,
                gate,
                busy: 0,
                takeover: false,
                waiters: 0,
                guests: 0,
                peer_waits: 0,
            }),
            cv: Condvar::new(),
            max_items,
            max_bytes,
            max_busy: max_busy.max(1),
            who,
        }
    }

    /// Hands a call over: returns it back (counted as running) when the
    /// reading thread should run it now, else queues it, waiting while the
    /// queue is full (an empty queue always takes one, however big). The
    /// second value is true when a queued call may run now and no thread
    /// waits to run it (the caller finds one).
    pub fn offer(&self, item: Incoming, run_here: bool) -> (Option<Incoming>, bool) {
        let mut s = self.q.lock();
        if s.gate == Gate::Closed {
            return (None, false);
        }
        if run_here && s.may_run(self.max_busy) && s.items.is_empty() && start(&item, &self.who) {
            s.busy += 1;
            return (Some(item), false);
        }
        while s.gate != Gate::Closed
            && s.peer_waits == 0
            && !s.items.is_empty()
            && (s.items.len() >= self.max_items || s.bytes + item.payload.len() > self.max_bytes)
        {
            self.cv.wait(&mut s);
        }
        if s.gate == Gate::Closed {
            return (None, false);
        }
        s.bytes += item.payload.len();
        s.items.push_back(item);
        self.cv.notify_all();
        let unserved = s.head_ready(self.max_busy, &self.who) && s.waiters == 0;
        (None, unserved)
    }

    /// A queued call to run now (counted as running), if one may run.
    pub fn try_take(&self) -> Option<Incoming> {
        let mut s = self.q.lock();
        if !s.may_run(self.max_busy) || !start(s.items.front()?, &self.who) {
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
        if !s.items.is_empty() || s.waiters > 0 {
            self.cv.notify_all();
        }
    }

    /// A spare thread starts (`true`) or stops working for the connection.
    pub fn guest(&self, enter: bool) {
        let mut s = self.q.lock();
        if enter {
            s.guests += 1;
        } else {
            s.guests -= 1;
            if s.waiters > 0 {
                self.cv.notify_all();
            }
        }
    }

    /// Waits until no handler runs and no spare thread works for the
    /// connection (at its end, so that "ended" means every handler has
    /// returned).
    pub fn wait_idle(&self) {
        let mut s = self.q.lock();
        while s.busy > 0 || s.guests > 0 {
            s.waiters += 1;
            self.cv.wait(&mut s);
            s.waiters -= 1;
        }
    }

    /// Handlers running now.
    pub fn busy(&self) -> usize {
        self.q.lock().busy
    }

    /// True when nothing runs and nothing is queued.
    pub fn is_quiet(&self) -> bool {
        let s = self.q.lock();
        s.busy == 0 && s.items.is_empty()
    }

    /// Waits until a queued call may run, the reader role is handed over,
    /// or the connection is closed (then false).
    pub fn wait_for_work(&self) -> bool {
        let mut s = self.q.lock();
        loop {
            if s.gate == Gate::Closed {
                return false;
            }
            if s.takeover {
                s.takeover = false;
                return true;
            }
            if s.head_ready(self.max_busy, &self.who) {
                return true;
            }
            s.waiters += 1;
            self.cv.wait(&mut s);
            s.waiters -= 1;
        }
    }

    /// A call from this side starts (`true`) or stops (`false`) waiting
    /// for the peer's reply.
    pub fn peer_wait(&self, start: bool) {
        let mut s = self.q.lock();
        if start {
            s.peer_waits += 1;
            self.cv.notify_all();
        } else {
            s.peer_waits -= 1;
        }
    }

    /// Says the reader role is free for a waiting thread to take. Returns
    /// false when no thread waits (the caller finds one).
    pub fn hand_over(&self) -> bool {
        let mut s = self.q.lock();
        s.takeover = true;
        if s.waiters > 0 {
            self.cv.notify_all();
            return true;
        }
        false
    }

    /// The device is held now: waiting threads look again.
    pub fn wake(&self) {
        let _s = self.q.lock();
        self.cv.notify_all();
    }

    /// The `on_connect` hook has returned: calls may run.
    pub fn started(&self) {
        let mut s = self.q.lock();
        if s.gate == Gate::Starting {
            s.gate = Gate::Open;
        }
        self.cv.notify_all();
    }

    /// Takes the queued calls that need the device (its wait ended without
    /// it); the others stay, in order.
    pub fn take_waiting(&self) -> Vec<Incoming> {
        let mut s = self.q.lock();
        let (waiting, rest): (VecDeque<_>, VecDeque<_>) =
            s.items.drain(..).partition(|i| i.needs_device);
        s.items = rest;
        s.bytes = s.items.iter().map(|i| i.payload.len()).sum();
        self.cv.notify_all();
        waiting.into()
    }

    /// Whether a queued call that needs the device satisfies `wanted`.
    pub fn any_waiting(&self, wanted: impl Fn(&Incoming) -> bool) -> bool {
        self.q
            .lock()
            .items
            .iter()
            .any(|i| i.needs_device && wanted(i))
    }

    pub fn close(&self) {
        self.q.lock().gate = Gate::Closed;
        self.cv.notify_all();
    }
}

/// Incoming CALLs queued or running, by call id, with whether the peer has
/// cancelled each.
#[derive(Default)]
pub(crate) struct CallTable(Mutex<HashMap<u32, bool>>);

impl CallTable {
    pub fn insert(&self, id: u32) {
        self.0.lock().insert(id, false);
    }

    /// The peer sent CANCEL for `id` (ignored for an unknown id).
    pub fn cancel(&self, id: u32) {
        if let Some(c) = self.0.lock().get_mut(&id) {
            *c = true;
        }
    }

    pub fn is_cancelled(&self, id: u32) -> bool {
        self.0.lock().get(&id).copied().unwrap_or(false)
    }

    /// True if `id` was cancelled before it started; forgets it then.
    pub fn skip_if_cancelled(&self, id: u32) -> bool {
        let mut calls = self.0.lock();
        if calls.get(&id) == Some(&true) {
            calls.remove(&id);
            return true;
        }
        false
    }

    pub fn done(&self, id: u32) {
        self.0.lock().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.0.lock().len()
    }
}
