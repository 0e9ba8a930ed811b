//! Holding a shared device from the client side: `acquire` and `release`,
//! the connection's name, and which commands are shared.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use super::Client;
use crate::codec::{Codec, U16};
use crate::error::{DecodeError, Error};
use crate::router::builtin;

/// The device, held by a [`Client`] until this guard is dropped (or
/// [`Hold::release`]d). Dropping it sends `release`; the server then runs
/// its `on_release` hook and admits the next waiter.
///
/// ```no_run
/// use std::time::Duration;
/// use framerpc::Client;
/// let client = Client::builder().name("scan@bench-3").connect("127.0.0.1:7879")?;
/// {
///     let _hold = client.acquire(Duration::from_secs(60))?; // waits in line
///     // ... move the stage, take pictures: nobody else can meanwhile ...
/// } // released here
/// # Ok::<(), framerpc::Error>(())
/// ```
#[must_use = "the device is released when the Hold is dropped"]
pub struct Hold {
    client: Client,
    released: bool,
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold")
            .field("released", &self.released)
            .finish()
    }
}

impl Hold {
    /// Gives the device back now and says whether the server took it.
    pub fn release(mut self) -> Result<(), Error> {
        self.released = true;
        self.client.release()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.client.release();
        }
    }
}

impl Client {
    /// Waits (up to `wait`) until this connection holds the device of a
    /// server with `max_users`, and returns a guard that releases it when
    /// dropped. Holding it already renews the hold. Fails with BUSY naming
    /// the holder, how long it has held the device and this client's place
    /// in the queue when the wait runs out (at once under
    /// [`WhenFull::Refuse`](crate::WhenFull::Refuse)).
    ///
    /// Without `acquire`, a connection asks for the device at its first
    /// call that needs it and holds it until [`Client::release`] or the
    /// end of the connection.
    pub fn acquire(&self, wait: Duration) -> Result<Hold, Error> {
        let ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        // The server answers when the wait is decided: give it that long
        // plus the usual timeout.
        let timeout = wait.saturating_add(self.timeout());
        if let Err(e) = self.call_raw(builtin::ACQUIRE, &ms.to_le_bytes(), Some(timeout)) {
            if e.code() == Some(crate::ErrorCode::TIMEOUT) {
                // The server may have admitted it just as this side gave
                // up: give back what nobody knows it holds (without a hold
                // this does nothing).
                let _ = self.release();
            }
            return Err(e);
        }
        Ok(Hold {
            client: self.clone(),
            released: false,
        })
    }

    /// Gives the device back now (after this connection's calls sent
    /// before it): `on_release` runs and the next waiter is admitted; the
    /// connection stays open. Without a hold nothing happens.
    pub fn release(&self) -> Result<(), Error> {
        self.call_raw(builtin::RELEASE, &[], None).map(drop)
    }

    /// The ids of the server's shared commands: those that run without the
    /// device, also while another connection holds it.
    pub fn shared_commands(&self) -> Result<Vec<u16>, Error> {
        Ok(decode_shared(self.call_raw(builtin::SHARED, &[], None)?)?)
    }
}

/// Decodes a `shared` reply: `u16 count`, then `u16` ids.
fn decode_shared(mut p: Bytes) -> Result<Vec<u16>, DecodeError> {
    let count = U16.decode(&mut p)?;
    let mut ids = Vec::with_capacity(usize::from(count).min(p.len() / 2));
    for _ in 0..count {
        ids.push(U16.decode(&mut p)?);
    }
    if !p.is_empty() {
        return Err(DecodeError::TrailingBytes(p.len()));
    }
    Ok(ids)
}

/// The name a client gives by default: `user@host`, from the environment
/// (`USER` or `LOGNAME`, and `HOSTNAME` or /etc/hostname), cut to what
/// `identify` takes; `None` when neither is known.
pub(crate) fn default_name() -> Option<String> {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok();
    let host = std::env::var("HOSTNAME").ok().or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
    });
    let name = match (user, host) {
        (Some(u), Some(h)) if !h.is_empty() => format!("{u}@{h}"),
        (Some(u), _) => u,
        (None, Some(h)) if !h.is_empty() => h,
        _ => return None,
    };
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let mut end = name.len().min(crate::admission::MAX_LABEL);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    (end > 0).then(|| name[..end].to_owned())
}
