//! The watchdog: a connection's reading thread runs a call itself when
//! nothing else runs (no hand-off, the fast path), so while that call runs
//! nobody reads the connection. If the call runs past [`STALL`], the
//! watchdog has another thread take over reading (pings, status, replies
//! to the handler's own calls to its peer), so a long call never makes the
//! connection look dead.
//!
//! It costs nothing while no call runs unread: the watchdog thread then
//! sleeps until one starts (the connection's thread looks at one flag per
//! call). While calls run it looks every [`STALL`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How long a handler may run with nobody reading its connection before
/// another thread takes over reading.
pub(crate) const STALL: Duration = Duration::from_millis(5);

/// Quiet scans in a row after which the watchdog sleeps until a call runs
/// unread again.
const QUIET_SCANS: u32 = 20;

/// What the watchdog and the connections share.
#[derive(Default)]
pub(crate) struct Watch {
    /// The watchdog sleeps until a call runs unread.
    parked: AtomicBool,
    stop: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Watch {
    /// A call starts running while nobody reads its connection (the caller
    /// has just published that, SeqCst): wakes the watchdog if it sleeps.
    /// One load when it is awake: nothing shared is written per call.
    pub fn started(&self) {
        if self.parked.load(Ordering::SeqCst) {
            let _g = self.lock.lock();
            self.cv.notify_one();
        }
    }

    /// Ends [`Watch::run`].
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _g = self.lock.lock();
        self.cv.notify_one();
    }

    /// The watchdog loop: `scan` looks at every connection every [`STALL`]
    /// and says whether any call still runs unread; after [`QUIET_SCANS`]
    /// scans that found none, it sleeps until one starts.
    pub fn run(&self, scan: impl Fn() -> bool) {
        let mut quiet = 0;
        while !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(STALL);
            if scan() {
                quiet = 0;
                continue;
            }
            quiet += 1;
            if quiet < QUIET_SCANS {
                continue;
            }
            quiet = 0;
            let mut g = self.lock.lock();
            self.parked.store(true, Ordering::SeqCst);
            // A call that started before `parked` was set is seen by this
            // scan; one that starts after it takes the lock to wake us.
            if !scan() && !self.stop.load(Ordering::Acquire) {
                self.cv.wait(&mut g);
            }
            self.parked.store(false, Ordering::SeqCst);
        }
    }
}
