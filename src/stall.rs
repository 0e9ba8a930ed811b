//! The watchdog: a connection's reading thread runs a call itself when
//! nothing else runs (no hand-off, the fast path), so while that call runs
//! nobody reads the connection. If the call runs past [`STALL`], the
//! watchdog has another thread take over reading (pings, status, replies
//! to the handler's own calls to its peer), so a long call never makes the
//! connection look dead.
//!
//! It costs nothing while no handler runs: the watchdog thread then sleeps
//! until a handler starts. While handlers run it looks every [`STALL`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How long a handler may run with nobody reading its connection before
/// another thread takes over reading.
pub(crate) const STALL: Duration = Duration::from_millis(5);

/// What the watchdog and the connections share.
#[derive(Default)]
pub(crate) struct Watch {
    /// Handlers running now, on every connection of the server.
    running: AtomicUsize,
    /// The watchdog sleeps until a handler starts.
    parked: AtomicBool,
    stop: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Watch {
    /// A handler starts (`true`) or ends.
    pub fn running(&self, start: bool) {
        if start {
            // SeqCst with the watchdog's store of `parked` and load of
            // `running`: one of the two sees the other.
            self.running.fetch_add(1, Ordering::SeqCst);
            if self.parked.load(Ordering::SeqCst) {
                let _g = self.lock.lock();
                self.cv.notify_one();
            }
        } else {
            self.running.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Ends [`Watch::run`].
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _g = self.lock.lock();
        self.cv.notify_one();
    }

    /// The watchdog loop: `scan` looks at every connection, every
    /// [`STALL`] while any handler runs; in between, it sleeps.
    pub fn run(&self, scan: impl Fn()) {
        while !self.stop.load(Ordering::Acquire) {
            if self.running.load(Ordering::Acquire) == 0 {
                let mut g = self.lock.lock();
                self.parked.store(true, Ordering::SeqCst);
                // A handler that started before `parked` was set is seen
                // here; one that starts after it takes the lock to wake us.
                while self.running.load(Ordering::SeqCst) == 0 && !self.stop.load(Ordering::Acquire)
                {
                    self.cv.wait(&mut g);
                }
                self.parked.store(false, Ordering::Release);
                continue;
            }
            std::thread::sleep(STALL);
            scan();
        }
    }
}
