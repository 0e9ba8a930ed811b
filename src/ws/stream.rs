//! The two halves of a WebSocket connection over one split `TcpStream`.
//!
//! tungstenite's `WebSocket` needs `&mut` for reading and writing, so a lock
//! around it would starve writers while the reader waits. Instead:
//!
//! - one reader thread owns a `WebSocket` over [`WsStream`], whose `Read`
//!   is the read half of the socket and whose `Write` goes to the shared
//!   [`Out`] under its lock, so tungstenite's automatic pongs and close
//!   replies go out whole;
//! - writers ([`WsWriter`]) build binary frames with `FrameHeader::format`
//!   (masked in the client role) and write header and payload in one call
//!   under the same lock; big messages go out in [`FRAGMENT`]-sized
//!   fragments, releasing the lock between them so pongs are not held back;
//! - only the reader starts a close for bad input, or answers one.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError as WsProtocolError};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::conn::{Closer, FrameRead, FrameWrite};
use crate::error::{Error, ProtocolError, Side};
use crate::frame::{Frame, Header, Limits, HEADER_LEN};

/// Big messages go out in fragments of this size, so a pong can slip in
/// between them.
pub(crate) const FRAGMENT: usize = 1 << 20;

/// How long the reader keeps reading (and discarding) after it sent a close
/// for bad input, so the close frame is not lost to a TCP reset.
const DRAIN: Duration = Duration::from_secs(1);

/// Close codes (RFC 6455, 7.4.1).
pub(crate) mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Protocol error: bad WebSocket framing, or a bad framerpc frame.
    pub const PROTOCOL: u16 = 1002;
    /// Unsupported data: a text message.
    pub const UNSUPPORTED: u16 = 1003;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error (never used for bad peer input).
    pub const INTERNAL: u16 = 1011;
}

/// The tungstenite settings for a connection with these limits: one whole
/// framerpc frame per message, and a single-frame message (what Python
/// clients send) as big as a message.
pub(crate) fn ws_config(limits: &Limits) -> WebSocketConfig {
    let max = limits.max_frame_len as usize + HEADER_LEN;
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// The write half, shared by every writer and by the reader's WebSocket.
pub(crate) struct Out {
    stream: TcpStream,
    /// Set once a close frame went out (or the connection is ending): no
    /// data frame may follow it.
    closing: bool,
    /// Client role: frames are masked, so they are built here first.
    client: bool,
    scratch: Vec<u8>,
}

pub(crate) type SharedOut = Arc<Mutex<Out>>;

impl Out {
    pub(crate) fn shared(stream: TcpStream, client: bool) -> SharedOut {
        Arc::new(Mutex::new(Self {
            stream,
            closing: false,
            client,
            scratch: Vec::new(),
        }))
    }

    fn check_open(&self) -> io::Result<()> {
        if self.closing {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "websocket is closing",
            ));
        }
        Ok(())
    }

    /// Writes one WebSocket frame: header and payload in one call.
    fn send(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> io::Result<()> {
        let header = FrameHeader {
            is_final: fin,
            opcode,
            mask: self.client.then(rand::random::<[u8; 4]>),
            ..FrameHeader::default()
        };
        let mut head = [0u8; 14];
        let mut cur = io::Cursor::new(&mut head[..]);
        header
            .format(payload.len() as u64, &mut cur)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let hl = cur.position() as usize;
        match header.mask {
            Some(mask) => {
                self.scratch.clear();
                self.scratch.extend_from_slice(&head[..hl]);
                self.scratch.extend_from_slice(payload);
                apply_mask(&mut self.scratch[hl..], mask);
                let r = self.stream.write_all(&self.scratch);
                if self.scratch.capacity() > FRAGMENT + 64 {
                    self.scratch = Vec::new();
                }
                r
            }
            None => write_two(&mut self.stream, &head[..hl], payload),
        }
    }

    /// Sends a close frame (once) with `code` and a reason clipped to fit.
    fn send_close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        if self.closing {
            return Ok(());
        }
        self.closing = true;
        let mut p = Vec::with_capacity(2 + reason.len().min(123));
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(clip(reason, 123).as_bytes());
        self.send(OpCode::Control(Control::Close), true, &p)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes `a` then `b` with one vectored write (more only if it is short).
fn write_two(s: &mut TcpStream, a: &[u8], b: &[u8]) -> io::Result<()> {
    let n = loop {
        match s.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    if n < a.len() {
        s.write_all(&a[n..])?;
        s.write_all(b)
    } else {
        s.write_all(&b[n - a.len()..])
    }
}

/// XORs `buf` with the 4-byte WebSocket mask, eight bytes at a time.
pub(crate) fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ m;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// The stream under the reader's `WebSocket`: reads come from `prefix`
/// (bytes already read past the HTTP head) and then the socket; writes
/// (pongs, close replies, the handshake response) go to the shared [`Out`].
pub(crate) struct WsStream {
    prefix: Vec<u8>,
    pos: usize,
    /// False during the server handshake: tungstenite must see exactly the
    /// HTTP head we read, never the socket.
    socket_reads: bool,
    /// False while serving: a writer holds the lock, so tungstenite is told
    /// `WouldBlock` and retries its pong on the next read.
    blocking_writes: bool,
    read: TcpStream,
    out: SharedOut,
    received: u64,
}

impl WsStream {
    pub(crate) fn new(
        read: TcpStream,
        out: SharedOut,
        prefix: Vec<u8>,
        socket_reads: bool,
    ) -> Self {
        Self {
            prefix,
            pos: 0,
            socket_reads,
            blocking_writes: true,
            read,
            out,
            received: 0,
        }
    }

    /// After the handshake: `tail` is what the client sent past its head.
    pub(crate) fn serve(&mut self, tail: Vec<u8>) {
        self.prefix = tail;
        self.pos = 0;
        self.socket_reads = true;
        self.blocking_writes = false;
    }
}

impl Read for WsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.pos);
            buf[..n].copy_from_slice(&self.prefix[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            self.received += n as u64;
            return Ok(n);
        }
        if !self.socket_reads {
            return Ok(0);
        }
        let n = self.read.read(buf)?;
        self.received += n as u64;
        Ok(n)
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = if self.blocking_writes {
            self.out.lock()
        } else {
            self.out
                .try_lock()
                .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?
        };
        match out.stream.write_all(buf) {
            Ok(()) => Ok(buf.len()),
            // A timed-out write may have left half a frame: fatal, and not
            // a `WouldBlock` that tungstenite would retry.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "websocket write timed out",
                ))
            }
            Err(e) => Err(e),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The writing side of a WebSocket connection.
pub(crate) struct WsWriter {
    out: SharedOut,
    peer: Option<SocketAddr>,
}

impl WsWriter {
    pub(crate) fn new(out: SharedOut, peer: Option<SocketAddr>) -> Self {
        Self { out, peer }
    }
}

impl FrameWrite for WsWriter {
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        if frame.len() <= FRAGMENT {
            let mut out = self.out.lock();
            out.check_open()?;
            return out.send(OpCode::Data(Data::Binary), true, frame);
        }
        let mut chunks = frame.chunks(FRAGMENT).peekable();
        let mut opcode = OpCode::Data(Data::Binary);
        while let Some(chunk) = chunks.next() {
            let fin = chunks.peek().is_none();
            let mut out = self.out.lock();
            out.check_open()?;
            out.send(opcode, fin, chunk)?;
            drop(out); // let a pong through between fragments
            opcode = OpCode::Data(Data::Continue);
        }
        Ok(())
    }

    fn heartbeat(&mut self, _ping_frame: &[u8]) -> io::Result<()> {
        let mut out = self.out.lock();
        out.check_open()?;
        out.send(OpCode::Control(Control::Ping), true, b"")
    }

    fn refuse(&mut self, err: &Error, _header: Option<[u8; 12]>) {
        // The reader closes for everything it refuses; this is for anything
        // else that ends the reader with an error.
        let (code, reason) = close_for(err);
        let _ = self.out.lock().send_close(code, &reason);
    }

    fn shutdown(&mut self) {
        let mut out = self.out.lock();
        if !out.closing {
            // Best effort, and brief: the peer may be gone.
            let _ = out
                .stream
                .set_write_timeout(Some(Duration::from_millis(200)));
            let _ = out.send_close(close::NORMAL, "closing");
        }
        out.closing = true;
        let _ = out.stream.shutdown(Shutdown::Both);
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    fn closer(&self) -> Option<Closer> {
        Closer::new(&self.out.lock().stream)
    }
}

/// The close code and reason for an error that ends a connection.
fn close_for(err: &Error) -> (u16, String) {
    match err {
        Error::TooLarge { .. } => (close::TOO_BIG, err.to_string()),
        Error::Protocol(ProtocolError::TextMessage) => (close::UNSUPPORTED, err.to_string()),
        Error::Protocol(_) | Error::Decode(_) => (close::PROTOCOL, err.to_string()),
        _ => (close::INTERNAL, "internal error".into()),
    }
}

/// The reading side: one whole framerpc frame per binary message.
pub(crate) struct WsReader {
    ws: WebSocket<WsStream>,
    max_frame_len: u32,
}

impl WsReader {
    pub(crate) fn new(ws: WebSocket<WsStream>, max_frame_len: u32) -> Self {
        Self { ws, max_frame_len }
    }

    /// Closes for bad input: sends the close frame, half-closes, reads and
    /// discards for a moment (so the close is not lost to a reset), and
    /// hands back `err` for the connection's end.
    fn fail(&mut self, code: u16, reason: &str, err: Error) -> Error {
        let s = self.ws.get_ref();
        {
            let mut out = s.out.lock();
            let _ = out.send_close(code, reason);
            let _ = out.stream.shutdown(Shutdown::Write);
        }
        let deadline = Instant::now() + DRAIN;
        let mut sink = [0u8; 8192];
        let mut read = &s.read;
        while Instant::now() < deadline {
            match read.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => break,
            }
        }
        err
    }

    fn fail_protocol(&mut self, p: ProtocolError) -> Error {
        let err = Error::Protocol(p);
        let reason = err.to_string();
        self.fail(close::PROTOCOL, &reason, err)
    }

    /// Checks a binary message and splits it into a frame.
    fn frame(&mut self, b: Bytes) -> Result<Option<Frame>, Error> {
        if b.len() < HEADER_LEN {
            return Err(self.fail_protocol(ProtocolError::TruncatedFrame {
                needed: HEADER_LEN as u64,
                got: b.len() as u64,
            }));
        }
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&b[..HEADER_LEN]);
        let header = match Header::parse(&head) {
            Ok(h) => h,
            Err(p) => return Err(self.fail_protocol(p)),
        };
        let actual = (b.len() - HEADER_LEN) as u64;
        if u64::from(header.len) != actual {
            return Err(self.fail_protocol(ProtocolError::LengthMismatch {
                len: header.len,
                actual,
            }));
        }
        Ok(Some(Frame {
            header,
            payload: b.slice(HEADER_LEN..),
        }))
    }

    /// The peer closed: send the close reply (tungstenite queued it) and end.
    fn peer_closed(&mut self) {
        self.ws.get_ref().out.lock().closing = true;
        self.ws.get_mut().blocking_writes = true;
        let _ = self.ws.flush();
    }

    fn on_error(&mut self, e: WsError) -> Result<Option<Frame>, Error> {
        match e {
            WsError::Io(io) => Err(Error::Io(io)),
            WsError::ConnectionClosed | WsError::AlreadyClosed => Ok(None),
            WsError::Protocol(WsProtocolError::ResetWithoutClosingHandshake) => Ok(None),
            WsError::Capacity(c) => {
                let size = match c {
                    CapacityError::MessageTooLong { size, .. } => size as u64,
                    CapacityError::TooManyHeaders => 0,
                };
                let err = Error::TooLarge {
                    len: size.saturating_sub(HEADER_LEN as u64),
                    max: u64::from(self.max_frame_len),
                    side: Side::Local,
                };
                let reason = format!(
                    "too large: message of {size} bytes exceeds the limit of {} bytes (frame limit + 12)",
                    u64::from(self.max_frame_len) + HEADER_LEN as u64
                );
                Err(self.fail(close::TOO_BIG, &reason, err))
            }
            WsError::Utf8(_) => {
                let err = Error::Protocol(ProtocolError::TextMessage);
                let reason = err.to_string();
                Err(self.fail(close::UNSUPPORTED, &reason, err))
            }
            other => {
                let reason = format!("websocket protocol error: {other}");
                let err =
                    Error::Protocol(ProtocolError::Unexpected("websocket protocol violation"));
                Err(self.fail(close::PROTOCOL, &reason, err))
            }
        }
    }
}

impl FrameRead for WsReader {
    fn read_frame(&mut self) -> Result<Option<Frame>, Error> {
        loop {
            match self.ws.read() {
                Ok(Message::Binary(b)) => return self.frame(b),
                Ok(Message::Text(_)) => {
                    let err = Error::Protocol(ProtocolError::TextMessage);
                    let reason = err.to_string();
                    return Err(self.fail(close::UNSUPPORTED, &reason, err));
                }
                Ok(Message::Close(_)) => {
                    self.peer_closed();
                    return Ok(None);
                }
                // Pings are answered by tungstenite on the next read; any
                // byte received counts as life.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(e) => return self.on_error(e),
            }
        }
    }

    fn received(&self) -> u64 {
        self.ws.get_ref().received
    }

    fn pending_header(&self) -> Option<[u8; 12]> {
        None
    }

    fn set_read_timeout(&mut self, timeout: Duration) {
        let _ = self.ws.get_ref().read.set_read_timeout(Some(timeout));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_matches_bytewise_xor() {
        let mask = [1, 2, 3, 4];
        for n in 0..40 {
            let data: Vec<u8> = (0..n as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 123), "abc");
    }
}
