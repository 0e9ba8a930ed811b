//! Incoming calls of one connection: the queue of calls that may not run
//! yet, how many run now, whether calls may run at all (the gate), and the
//! table of calls that the peer may cancel.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use crate::frame::Header;

/// One incoming CALL or NOTIFY.
pub(crate) struct Incoming {
    pub header: Header,
    pub payload: Bytes,
}

/// Whether calls may run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Gate {
    /// The server's `on_connect` hook runs: no call runs before it
    /// returns. `admitted` records an admission that came meanwhile.
    Starting { admitted: bool },
    /// Waiting for an admission permit.
    Queued,
    /// Calls run.
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
/// once.
pub(crate) struct Inbox {
    q: Mutex<State>,
    cv: Condvar,
    max_items: usize,
    max_bytes: usize,
    max_busy: usize,
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
}

impl Inbox {
    /// `admitted`: calls may run without an admission permit; `hooked`:
    /// nothing runs until [`Inbox::started`].
    pub fn new(
        max_items: usize,
        max_bytes: usize,
        max_busy: usize,
        admitted: bool,
        hooked: bool,
    ) -> Self {
        let gate = match (hooked, admitted) {
            (true, admitted) => Gate::Starting { admitted },
            (false, true) => Gate::Open,
            (false, false) => Gate::Queued,
        };
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
        if run_here && s.may_run(self.max_busy) && s.items.is_empty() {
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
        let unserved = s.may_run(self.max_busy) && s.waiters == 0;
        (None, unserved)
    }

    /// A queued call to run now (counted as running), if one may run.
    pub fn try_take(&self) -> Option<Incoming> {
        let mut s = self.q.lock();
        if !s.may_run(self.max_busy) {
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
            if s.may_run(self.max_busy) && !s.items.is_empty() {
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

    /// Lets calls run (admission granted). Returns true when calls are
    /// queued that a thread must now run.
    pub fn admit(&self) -> bool {
        let mut s = self.q.lock();
        s.gate = match s.gate {
            Gate::Starting { .. } => Gate::Starting { admitted: true },
            Gate::Queued => Gate::Open,
            g => g,
        };
        self.cv.notify_all();
        s.gate == Gate::Open && !s.items.is_empty()
    }

    /// The `on_connect` hook has returned: calls may run once admitted.
    pub fn started(&self) {
        let mut s = self.q.lock();
        if let Gate::Starting { admitted } = s.gate {
            s.gate = if admitted { Gate::Open } else { Gate::Queued };
        }
        self.cv.notify_all();
    }

    /// True once admitted (whether or not `on_connect` has returned).
    pub fn is_admitted(&self) -> bool {
        matches!(
            self.q.lock().gate,
            Gate::Open | Gate::Starting { admitted: true }
        )
    }

    /// Takes every queued call (to refuse them).
    pub fn drain(&self) -> Vec<Incoming> {
        let mut s = self.q.lock();
        s.bytes = 0;
        s.items.drain(..).collect()
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
