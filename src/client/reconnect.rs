//! Reconnecting: a thread per client that waits for the connection to end,
//! then dials again with exponential backoff and jitter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{ClientBuilder, ClientInner, Target};

/// What calls do while a reconnecting client is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// Fail at once with [`Error::Disconnected`](crate::Error::Disconnected).
    FailFast,
    /// Wait for the reconnect, within the call's own timeout.
    Wait,
}

/// How a client reconnects; every field states its default.
///
/// ```
/// use framerpc::{Outage, Reconnect};
/// use std::time::Duration;
/// let policy = Reconnect::default().max_delay(Duration::from_secs(2)).during_outage(Outage::Wait);
/// assert_eq!(policy.initial_delay, Duration::from_millis(100));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnect {
    /// The first delay before dialing again. Default 100 ms.
    pub initial_delay: Duration,
    /// The delay doubles after each failed attempt up to this. Default 5 s.
    pub max_delay: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    /// Default `None`.
    pub max_attempts: Option<u32>,
    /// What calls do while the client is down. Default [`Outage::FailFast`].
    pub during_outage: Outage,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_attempts: None,
            during_outage: Outage::FailFast,
        }
    }
}

impl Reconnect {
    /// Sets [`Reconnect::initial_delay`] (default 100 ms).
    #[must_use]
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }
    /// Sets [`Reconnect::max_delay`] (default 5 s).
    #[must_use]
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }
    /// Sets [`Reconnect::max_attempts`] (default: never give up).
    #[must_use]
    pub fn max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n;
        self
    }
    /// Sets [`Reconnect::during_outage`] (default fail fast).
    #[must_use]
    pub fn during_outage(mut self, o: Outage) -> Self {
        self.during_outage = o;
        self
    }

    /// The delay before attempt `n` (0-based): exponential, capped, with
    /// jitter between 50% and 100% so clients do not come back in step.
    pub(crate) fn delay(&self, attempt: u32, random: u64) -> Duration {
        let base = self
            .initial_delay
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_delay);
        let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
        base.mul_f64(fraction)
    }
}

/// A random number from the standard library's per-process hash keys.
fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// Runs until the client is dropped or closed, or gives up.
pub(super) fn supervise(
    inner: &Weak<ClientInner>,
    builder: &ClientBuilder,
    target: &Target,
    policy: Reconnect,
    mut reader: JoinHandle<()>,
) {
    loop {
        let _ = reader.join(); // the connection has ended
        let mut attempt = 0u32;
        loop {
            match inner.upgrade() {
                Some(i) if !i.closed.load(Ordering::Acquire) => {}
                _ => return,
            }
            std::thread::sleep(policy.delay(attempt, random()));
            let Some(i) = inner.upgrade() else { return };
            if i.closed.load(Ordering::Acquire) {
                return;
            }
            match builder.open(target) {
                Ok((peer, handle)) => {
                    *i.current.lock() = peer;
                    i.generation.fetch_add(1, Ordering::AcqRel);
                    i.changed.notify_all();
                    reader = handle;
                    break;
                }
                Err(_) => {
                    attempt += 1;
                    if policy.max_attempts.is_some_and(|max| attempt >= max) {
                        i.gave_up.store(true, Ordering::Release);
                        i.changed.notify_all();
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_caps_and_jitters() {
        let p = Reconnect::default();
        for attempt in 0..30 {
            let base = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(5));
            let d = p.delay(attempt, random());
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
        }
    }
}
