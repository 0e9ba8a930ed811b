//! Writing: the writer lock, and frames that wait to be written together.
//!
//! On a transport that carries frames back to back (raw TCP), two kinds of
//! frames may wait in `pending` instead of taking the writer lock:
//! - a small frame whose writer finds the lock taken: the thread that holds
//!   it writes the waiting frames right after its own (so eight threads
//!   sharing one client make a few large writes, not eight small ones);
//! - a reply sent while more calls are already read and waiting to run on
//!   the same thread ("later"): it goes out with the next write, or at the
//!   latest before the reading thread waits on the socket again, so a batch
//!   of pipelined calls is answered with one write.
//!
//! Every write takes the waiting frames first, so frames keep their order
//! per writer.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::BytesMut;
use parking_lot::Mutex;

use super::{Closer, FrameWrite};

/// Frames at most this big may wait to be written together.
const COALESCE_MAX: usize = 16 * 1024;
/// Waiting frames are written once they add up to this much.
const PENDING_MAX: usize = 64 * 1024;

pub(crate) struct Outbox {
    writer: Mutex<Box<dyn FrameWrite>>,
    pending: Mutex<BytesMut>,
    has_pending: AtomicBool,
    coalesce: bool,
    closer: Option<Closer>,
}

/// When a frame may go out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// Now (or with the write that holds the lock right now).
    Now,
    /// With the next write, or before the reader waits on the socket.
    Later,
}

impl Outbox {
    pub fn new(writer: Box<dyn FrameWrite>) -> Self {
        Self {
            coalesce: writer.coalesces(),
            closer: writer.closer(),
            writer: Mutex::new(writer),
            pending: Mutex::new(BytesMut::new()),
            has_pending: AtomicBool::new(false),
        }
    }

    /// Writes one frame: `head`, then the rest of its payload, `tail`.
    pub fn send(&self, head: &[u8], tail: &[u8], when: When) -> io::Result<()> {
        let small = tail.is_empty() && head.len() <= COALESCE_MAX;
        if self.coalesce && small {
            if when == When::Later {
                let full = self.push(head);
                return if full { self.flush() } else { Ok(()) };
            }
            let Some(mut w) = self.writer.try_lock() else {
                // The thread that holds the lock writes it after its own
                // frame (it looks again once it has let go of the lock).
                self.push(head);
                return self.flush_if_free();
            };
            let r = self.write_locked(&mut **w, head, tail);
            drop(w);
            return r.and_then(|()| self.flush_if_free());
        }
        let mut w = self.writer.lock();
        let r = self.write_locked(&mut **w, head, tail);
        drop(w);
        r.and_then(|()| self.flush_if_free())
    }

    /// Adds a frame to the waiting ones; true when they should go now.
    fn push(&self, frame: &[u8]) -> bool {
        let mut p = self.pending.lock();
        p.extend_from_slice(frame);
        self.has_pending.store(true, Ordering::Release);
        p.len() >= PENDING_MAX
    }

    /// Writes the waiting frames and then this one, in one write.
    fn write_locked(&self, w: &mut dyn FrameWrite, head: &[u8], tail: &[u8]) -> io::Result<()> {
        if self.has_pending.load(Ordering::Acquire) {
            let waiting = self.take_pending();
            if !waiting.is_empty() {
                return w.write_frames(&[&waiting, head, tail]);
            }
        }
        if tail.is_empty() {
            w.write_frame(head)
        } else {
            w.write_frame_parts(head, tail)
        }
    }

    fn take_pending(&self) -> BytesMut {
        let mut p = self.pending.lock();
        self.has_pending.store(false, Ordering::Release);
        let keep = p.capacity().min(PENDING_MAX * 2);
        std::mem::replace(&mut *p, BytesMut::with_capacity(keep))
    }

    /// Whether frames wait to be written.
    pub fn has_pending(&self) -> bool {
        self.has_pending.load(Ordering::Acquire)
    }

    /// Writes the waiting frames (waits for the writer lock).
    pub fn flush(&self) -> io::Result<()> {
        if !self.has_pending() {
            return Ok(());
        }
        let mut w = self.writer.lock();
        let waiting = self.take_pending();
        if waiting.is_empty() {
            return Ok(());
        }
        w.write_frames(&[&waiting])
    }

    /// Writes the waiting frames unless another thread holds the lock (it
    /// then writes them).
    fn flush_if_free(&self) -> io::Result<()> {
        while self.has_pending() {
            let Some(mut w) = self.writer.try_lock() else {
                return Ok(());
            };
            let waiting = self.take_pending();
            if !waiting.is_empty() {
                w.write_frames(&[&waiting])?;
            }
        }
        Ok(())
    }

    /// Runs `f` with the writer (heartbeats, refusals), after the waiting
    /// frames.
    pub fn with_writer<R>(&self, f: impl FnOnce(&mut dyn FrameWrite) -> R) -> R {
        let mut w = self.writer.lock();
        if self.has_pending() {
            let waiting = self.take_pending();
            if !waiting.is_empty() {
                let _ = w.write_frames(&[&waiting]);
            }
        }
        f(&mut **w)
    }

    /// Last words before a close (see [`FrameWrite::farewell`]), only when
    /// the writer is free: never waits for a writer blocked on a peer that
    /// does not read.
    pub fn farewell(&self, frame: &[u8]) {
        if let Some(mut w) = self.writer.try_lock() {
            w.farewell(frame);
        }
    }

    /// A graceful close when the writer is free, else a hard cut that does
    /// not wait for a writer blocked on a peer that does not read.
    pub fn cut(&self) {
        match self.writer.try_lock() {
            Some(mut w) => w.shutdown(),
            None => match &self.closer {
                Some(c) => c.close(),
                // No handle to cut with: wait for the writer.
                None => self.writer.lock().shutdown(),
            },
        }
    }
}
