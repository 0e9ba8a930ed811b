//! What a connection needs from its transport (raw TCP, WebSocket, TLS):
//! a half that writes whole frames, a half that reads them, and a way to
//! cut the connection that never waits for a writer.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::frame::Frame;

/// Writes whole frames; implemented by each transport. Used under the
/// connection's writer lock.
pub(crate) trait FrameWrite: Send {
    /// Sends one whole frame (header included) in one write, within the
    /// write timeout for the whole frame.
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Sends a frame whose payload ends with `tail` (a large value sent
    /// without copying it into `head`): the same bytes as `head ++ tail`.
    fn write_frame_parts(&mut self, head: &[u8], tail: &[u8]) -> io::Result<()> {
        let mut v = Vec::with_capacity(head.len() + tail.len());
        v.extend_from_slice(head);
        v.extend_from_slice(tail);
        self.write_frame(&v)
    }
    /// Sends several things in one write: whole frames back to back, the
    /// last of which may end with a large tail (`parts` concatenated are
    /// whole frames). Only used when [`FrameWrite::coalesces`].
    fn write_frames(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let mut v = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            v.extend_from_slice(p);
        }
        self.write_frame(&v)
    }
    /// Whether frames may be written back to back in one write (raw byte
    /// streams; not WebSocket, whose messages carry one frame each).
    fn coalesces(&self) -> bool {
        false
    }
    /// Sends a heartbeat: a `ping` CALL on TCP, a ping frame on WebSocket.
    fn heartbeat(&mut self, ping_frame: &[u8]) -> io::Result<()>;
    /// Best-effort last words before a protocol-error close.
    fn refuse(&mut self, err: &Error, header: Option<[u8; 12]>);
    /// Best-effort last words before this side closes (an ERROR frame with
    /// call id 0 saying why), never blocking for long. Default: nothing.
    fn farewell(&mut self, _frame: &[u8]) {}
    /// A graceful close (a WebSocket close frame), then shuts the stream
    /// both ways; wakes the reader.
    fn shutdown(&mut self);
    /// The peer's address, if the transport has one.
    fn peer_addr(&self) -> Option<SocketAddr>;
    /// A handle that cuts the connection without the writer lock, so that
    /// closing never waits for a writer blocked on a peer that does not
    /// read.
    fn closer(&self) -> Option<Closer>;
    /// The name the transport verified for the peer (a TLS client
    /// certificate's subject), which names the connection in messages.
    fn verified_name(&self) -> Option<String> {
        None
    }
}

/// Reads whole frames; implemented by each transport. Held by one thread
/// at a time (the reader role).
pub(crate) trait FrameRead: Send {
    /// The next frame; `Ok(None)` at a clean end; an `Io` error of kind
    /// `WouldBlock`/`TimedOut` is a tick for heartbeat checks.
    fn read_frame(&mut self) -> Result<Option<Frame>, Error>;
    /// Bytes received so far (any byte counts as life).
    fn received(&self) -> u64;
    /// The header of the frame being read, if its 12 bytes are in.
    fn pending_header(&self) -> Option<[u8; 12]>;
    /// Sets how long one read may block (the heartbeat tick, or a caller's
    /// nearer deadline).
    fn set_read_timeout(&mut self, timeout: Duration);
    /// Whether a whole frame is already received and buffered, so the next
    /// [`FrameRead::read_frame`] returns without waiting on the socket.
    fn has_buffered_frame(&self) -> bool {
        false
    }
    /// Lets go of buffers kept from a large frame while the connection is
    /// quiet (called on a read tick).
    fn trim(&mut self) {}
}

/// Cuts a connection from any thread: shuts the socket down both ways, so
/// a blocked read or write returns at once.
pub(crate) struct Closer(Arc<TcpStream>);

impl Closer {
    /// A closer for a socket that the transport shares.
    pub fn shared(stream: &Arc<TcpStream>) -> Self {
        Self(Arc::clone(stream))
    }

    pub fn close(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}
