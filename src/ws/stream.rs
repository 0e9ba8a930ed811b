//! The two halves of a WebSocket connection over one byte stream: a plain
//! `TcpStream` (`ws://`) or a TLS session (`wss://`), one socket handle
//! shared by both halves (one file descriptor per connection).
//!
//! tungstenite's `WebSocket` needs `&mut` for reading and writing, so a lock
//! around it would starve writers while the reader waits. Instead:
//!
//! - the bytes come from a [`Source`] (the socket, or the TLS session's
//!   plaintext, read with no lock held on the socket) and go to a [`Sink`]
//!   (the socket, or the TLS session's send path);
//! - tungstenite does the handshake over [`WsStream`], whose `Read` is the
//!   [`Source`] and whose `Write` goes to the shared [`Out`];
//! - then one reader thread ([`WsReader`]) reads WebSocket frames itself:
//!   headers parsed with tungstenite's `FrameHeader::parse`, small messages
//!   unmasked in place in a 4 KiB read buffer, big ones read straight into
//!   one buffer of their size; its pongs and close replies go out whole
//!   under the writer lock;
//! - writers ([`WsWriter`]) build binary frames with `FrameHeader::format`
//!   (masked in the client role, through a 64 KiB buffer) and write each
//!   frame whole under the same lock; big messages go out in
//!   [`FRAGMENT`]-sized fragments, releasing the lock between them so pongs
//!   are not held back;
//! - only the reader starts a close for bad input, or answers one.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::WebSocket;

use crate::conn::{Closer, FrameRead, FrameWrite};
use crate::error::{Error, ProtocolError, Side};
use crate::frame::{Frame, Header, Limits, HEADER_LEN};
#[cfg(feature = "tls")]
use crate::tls::session::{Session, TlsRead};

/// Big messages go out in fragments of this size, so a pong can slip in
/// between them.
pub(crate) const FRAGMENT: usize = 1 << 20;

/// Client-role frames are masked into a buffer of at most this size and
/// written from it piece by piece (never a copy of the whole frame).
const MASK_CHUNK: usize = 64 * 1024;

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
/// clients send) as big as a message. tungstenite only does the handshake
/// (its `WebSocket` is dropped right after), so its read buffer is small;
/// [`WsReader`] applies the same limits.
pub(crate) fn ws_config(limits: &Limits) -> WebSocketConfig {
    let max = limits.max_frame_len as usize + HEADER_LEN;
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Where a WebSocket connection's bytes come from: the shared socket, or
/// the plaintext of a TLS session (whose reader blocks on the socket with
/// no lock held).
pub(crate) enum Source {
    Tcp(Arc<TcpStream>),
    #[cfg(feature = "tls")]
    Tls(TlsRead),
}

impl Source {
    pub(crate) fn set_read_timeout(&self, timeout: Duration) {
        match self {
            Self::Tcp(s) => {
                let _ = s.set_read_timeout(Some(timeout));
            }
            #[cfg(feature = "tls")]
            Self::Tls(r) => r.set_read_timeout(timeout),
        }
    }
}

impl Read for Source {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => (&**s).read(buf),
            #[cfg(feature = "tls")]
            Self::Tls(r) => r.read(buf),
        }
    }
}

/// Where a WebSocket connection's bytes go: the shared socket, or a TLS
/// session's send path (which encrypts and writes under its own send lock;
/// see `tls::session`). Used under the [`Out`] lock.
#[derive(Clone)]
pub(crate) enum Sink {
    Tcp(Arc<TcpStream>),
    #[cfg(feature = "tls")]
    Tls(Arc<Session>),
}

impl Sink {
    /// The socket under the stream.
    pub(crate) fn socket(&self) -> &TcpStream {
        match self {
            Self::Tcp(s) => s,
            #[cfg(feature = "tls")]
            Self::Tls(sess) => sess.socket(),
        }
    }

    pub(crate) fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => (&**s).write_all(buf),
            #[cfg(feature = "tls")]
            Self::Tls(sess) => sess.send_frame(&[buf]),
        }
    }

    /// `a` then `b`, in one vectored write (TLS: encrypted together).
    fn write_two(&self, a: &[u8], b: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => write_two(s, a, b),
            #[cfg(feature = "tls")]
            Self::Tls(sess) => sess.send_frame(&[a, b]),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) {
        let _ = self.socket().set_write_timeout(t);
    }

    /// No more bytes from this side (TLS: `close_notify` first).
    pub(crate) fn shutdown_write(&self) {
        match self {
            Self::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            #[cfg(feature = "tls")]
            Self::Tls(sess) => sess.shutdown_write(),
        }
    }

    /// Shuts the stream both ways (TLS: `close_notify` first, briefly).
    fn shutdown(&self) {
        match self {
            Self::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            #[cfg(feature = "tls")]
            Self::Tls(sess) => sess.close(),
        }
    }

    fn closer(&self) -> Closer {
        match self {
            Self::Tcp(s) => Closer::shared(s),
            #[cfg(feature = "tls")]
            Self::Tls(sess) => Closer::shared(sess.socket_arc()),
        }
    }

    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(s) => s.peer_addr().ok(),
            #[cfg(feature = "tls")]
            Self::Tls(sess) => sess.peer_addr(),
        }
    }

    fn verified_name(&self) -> Option<String> {
        match self {
            Self::Tcp(_) => None,
            #[cfg(feature = "tls")]
            Self::Tls(sess) => sess.peer_subject(),
        }
    }
}

/// The write half, shared by every writer and by the reader's WebSocket.
pub(crate) struct Out {
    stream: Sink,
    /// Set once a close frame went out (or the connection is ending): no
    /// data frame may follow it.
    closing: bool,
    /// Client role: frames are masked, through `masked`.
    client: bool,
    /// Up to [`MASK_CHUNK`] bytes: a masked frame's header and payload
    /// pieces on their way out (client role only).
    masked: Vec<u8>,
}

pub(crate) type SharedOut = Arc<Mutex<Out>>;

impl Out {
    pub(crate) fn shared(stream: Sink, client: bool) -> SharedOut {
        Arc::new(Mutex::new(Self {
            stream,
            closing: false,
            client,
            masked: Vec::new(),
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

    /// Writes one WebSocket frame, whole: header and payload in one call,
    /// or (masked, bigger than [`MASK_CHUNK`]) in pieces masked into a
    /// reused buffer.
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
        let Some(mask) = header.mask else {
            return self.stream.write_two(&head[..hl], payload);
        };
        let want = (hl + payload.len()).min(MASK_CHUNK);
        if self.masked.len() < want {
            self.masked.resize(want, 0);
        }
        let buf = &mut self.masked[..];
        buf[..hl].copy_from_slice(&head[..hl]);
        let (mut start, mut done) = (hl, 0);
        loop {
            let n = (buf.len() - start).min(payload.len() - done);
            mask_into(
                &mut buf[start..start + n],
                &payload[done..done + n],
                mask,
                done,
            );
            self.stream.write_all(&buf[..start + n])?;
            done += n;
            start = 0;
            if done == payload.len() {
                return Ok(());
            }
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
fn write_two(mut s: &TcpStream, a: &[u8], b: &[u8]) -> io::Result<()> {
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

/// The mask repeated over 64 bytes, starting at `offset` into the frame.
fn wide_mask(mask: [u8; 4], offset: usize) -> [u8; 64] {
    let mut wide = [0u8; 64];
    for (i, w) in wide.iter_mut().enumerate() {
        *w = mask[(offset + i) & 3];
    }
    wide
}

/// XORs `buf` with the 4-byte WebSocket mask, 64 bytes at a time (which
/// the compiler turns into vector instructions).
pub(crate) fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    apply_mask_at(buf, mask, 0);
}

/// [`apply_mask`] for bytes starting at `offset` into the frame's payload.
pub(crate) fn apply_mask_at(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let wide = wide_mask(mask, offset);
    let mut chunks = buf.chunks_exact_mut(64);
    for c in &mut chunks {
        for (b, m) in c.iter_mut().zip(&wide) {
            *b ^= m;
        }
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(&wide) {
        *b ^= m;
    }
}

/// Copies `src` into `dst` (same length) masked, in one pass; `offset` is
/// where `src` starts in the frame's payload.
fn mask_into(dst: &mut [u8], src: &[u8], mask: [u8; 4], offset: usize) {
    let wide = wide_mask(mask, offset);
    let mut d = dst.chunks_exact_mut(64);
    let mut s = src.chunks_exact(64);
    for (dc, sc) in (&mut d).zip(&mut s) {
        for ((db, sb), m) in dc.iter_mut().zip(sc).zip(&wide) {
            *db = sb ^ m;
        }
    }
    for ((db, sb), m) in d.into_remainder().iter_mut().zip(s.remainder()).zip(&wide) {
        *db = sb ^ m;
    }
}

/// The stream under tungstenite's handshake: reads come from `prefix`
/// (bytes already read past the HTTP head) and then the socket; writes
/// (the handshake's request or response) go to the shared [`Out`]. After
/// the handshake, [`WsReader::from_stream`] takes it apart.
pub(crate) struct WsStream {
    prefix: Vec<u8>,
    pos: usize,
    /// False during the server handshake: tungstenite must see exactly the
    /// HTTP head we read, never the socket.
    socket_reads: bool,
    /// Client handshake: every byte read, so that what came past the 101
    /// answer can be handed to the reader.
    record: Option<Vec<u8>>,
    read: Source,
    out: SharedOut,
    received: u64,
}

impl WsStream {
    pub(crate) fn new(read: Source, out: SharedOut, prefix: Vec<u8>, socket_reads: bool) -> Self {
        Self {
            prefix,
            pos: 0,
            socket_reads,
            record: None,
            read,
            out,
            received: 0,
        }
    }

    /// After the handshake: `tail` is what the peer sent past its head.
    pub(crate) fn serve(&mut self, tail: Vec<u8>) {
        self.prefix = tail;
        self.pos = 0;
        self.socket_reads = true;
        self.record = None;
    }

    /// Keeps a copy of every byte read from now on (the client handshake).
    pub(crate) fn record_reads(&mut self) {
        self.record = Some(Vec::new());
    }

    /// The bytes recorded past the end of the first HTTP head (the 101
    /// answer has no body: whatever follows it is WebSocket frames).
    pub(crate) fn tail_after_head(&self) -> Vec<u8> {
        let Some(r) = &self.record else {
            return Vec::new();
        };
        r.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or_else(Vec::new, |p| r[p + 4..].to_vec())
    }
}

impl Read for WsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(n) = crate::tcp::read_pending(&mut self.prefix, &mut self.pos, buf) {
            self.received += n as u64;
            return Ok(n);
        }
        if !self.socket_reads {
            return Ok(0);
        }
        let n = self.read.read(buf)?;
        if let Some(r) = &mut self.record {
            r.extend_from_slice(&buf[..n]);
        }
        self.received += n as u64;
        Ok(n)
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = self.out.lock();
        match out.stream.write_all(buf) {
            Ok(()) => Ok(buf.len()),
            // A timed-out write may have left half a message: fatal, and
            // not a `WouldBlock` that tungstenite would retry.
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
    /// The stream under `out`, for what needs no writer lock.
    sink: Sink,
    peer: Option<SocketAddr>,
}

impl WsWriter {
    /// `peer`: the peer's address (behind a trusted proxy, the client's).
    pub(crate) fn new(out: SharedOut, peer: Option<SocketAddr>) -> Self {
        let sink = out.lock().stream.clone();
        Self { out, sink, peer }
    }
}

impl WsWriter {
    /// Sends one binary message as these fragments, releasing the writer
    /// lock between them so a pong is not held back.
    fn send_fragments<'a>(&self, fragments: impl Iterator<Item = &'a [u8]>) -> io::Result<()> {
        let mut fragments = fragments.peekable();
        let mut opcode = OpCode::Data(Data::Binary);
        while let Some(chunk) = fragments.next() {
            let fin = fragments.peek().is_none();
            let mut out = self.out.lock();
            out.check_open()?;
            out.send(opcode, fin, chunk)?;
            drop(out);
            opcode = OpCode::Data(Data::Continue);
        }
        Ok(())
    }
}

impl FrameWrite for WsWriter {
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        if frame.len() <= FRAGMENT {
            let mut out = self.out.lock();
            out.check_open()?;
            return out.send(OpCode::Data(Data::Binary), true, frame);
        }
        self.send_fragments(frame.chunks(FRAGMENT))
    }

    /// A frame whose large tail is sent from where it lies: the head as
    /// the message's first fragment, then the tail in ~1 MiB fragments.
    fn write_frame_parts(&mut self, head: &[u8], tail: &[u8]) -> io::Result<()> {
        if tail.is_empty() {
            return self.write_frame(head);
        }
        self.send_fragments(std::iter::once(head).chain(tail.chunks(FRAGMENT)))
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
            out.stream
                .set_write_timeout(Some(Duration::from_millis(200)));
            let _ = out.send_close(close::NORMAL, "closing");
        }
        out.closing = true;
        out.stream.shutdown();
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    fn closer(&self) -> Option<Closer> {
        Some(self.sink.closer())
    }

    fn verified_name(&self) -> Option<String> {
        self.sink.verified_name()
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

/// Bytes read from the socket at a time for WebSocket headers, control
/// frames and small messages: the whole read buffer of an idle connection.
const READ_CHUNK: usize = 4 * 1024;
/// A read into the small buffer asks for at least this much room.
const MIN_READ: usize = 1024;
/// A message buffer starts at most this big, then grows at most 4x what
/// has arrived, up to the message's size (never reserved from the claim).
const MSG_START: usize = 256 * 1024;
/// Messages of at least this size get pages of their own from the kernel
/// ([`pages::Pages`]), so that their memory goes back when they end.
const MAP_MIN: usize = 1 << 20;

/// One WebSocket frame whose payload is being received into a message.
#[derive(Clone, Copy, Debug)]
struct Part {
    mask: Option<[u8; 4]>,
    /// Payload bytes of this WebSocket frame received so far.
    done: usize,
    len: usize,
    fin: bool,
}

/// Where a message being received lives.
enum Store {
    /// Small messages: a zero-filled heap buffer.
    Heap(Vec<u8>),
    /// Big messages: pages from the kernel, returned to it on drop (or
    /// kept by the reader for the next big message).
    Pages(pages::Pages),
}

/// A binary message being received, in one buffer of its final size.
struct Msg {
    store: Store,
    len: usize,
    /// The message's size, once known: a single-frame message, or the
    /// framerpc header's `len` + 12.
    expect: Option<usize>,
    /// Whether the framerpc header (the first 12 bytes) was checked.
    checked: bool,
}

impl Msg {
    fn cap(&self) -> usize {
        match &self.store {
            Store::Heap(v) => v.len(),
            Store::Pages(p) => p.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.store {
            Store::Heap(v) => &v[..self.len],
            Store::Pages(p) => &p[..self.len],
        }
    }

    fn spare(&mut self) -> &mut [u8] {
        match &mut self.store {
            Store::Heap(v) => &mut v[self.len..],
            Store::Pages(p) => &mut p[self.len..],
        }
    }

    /// Makes room for more bytes: at most 4x what has arrived (or
    /// [`MSG_START`], or [`READ_CHUNK`] while the size is unknown), never
    /// past `bound` (the message's size or the limit).
    fn grow(&mut self, bound: usize, spare: &Spare) -> io::Result<()> {
        let start = if self.expect.is_some() {
            MSG_START
        } else {
            READ_CHUNK
        };
        let cap = bound.min((self.len * 4).max(start));
        match &mut self.store {
            Store::Heap(v) if cap < MAP_MIN => v.resize(cap, 0),
            Store::Heap(v) => {
                let mut p = take_pages(spare, cap)?;
                p[..self.len].copy_from_slice(&v[..self.len]);
                self.store = Store::Pages(p);
            }
            Store::Pages(p) if p.len() < cap => p.grow(cap)?,
            Store::Pages(_) => {}
        }
        Ok(())
    }

    /// The whole message, without a copy.
    fn finish(self, spare: &Spare) -> Bytes {
        match self.store {
            Store::Heap(mut v) => {
                v.truncate(self.len);
                Bytes::from(v)
            }
            Store::Pages(p) => Bytes::from_owner(Owned {
                pages: Some(p),
                len: self.len,
                home: Arc::downgrade(spare),
            }),
        }
    }
}

/// The big buffer of the last big message, back from its user, for the
/// next one; released when the connection goes idle or ends.
type Spare = Arc<Mutex<Option<pages::Pages>>>;

/// Pages of at least `cap` bytes: the spare ones if any, else new ones.
fn take_pages(spare: &Spare, cap: usize) -> io::Result<pages::Pages> {
    match spare.lock().take() {
        Some(mut p) => {
            if p.len() < cap {
                p.grow(cap)?;
            }
            Ok(p)
        }
        None => pages::Pages::new(cap),
    }
}

/// A big message handed out as `Bytes`: on drop, its pages go back to the
/// reader that filled them (if it still runs and has none), else to the
/// kernel.
struct Owned {
    pages: Option<pages::Pages>,
    len: usize,
    home: std::sync::Weak<Mutex<Option<pages::Pages>>>,
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        match &self.pages {
            Some(p) => &p[..self.len],
            None => &[],
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            let mut slot = home.lock();
            if slot.is_none() {
                *slot = self.pages.take();
            }
        }
    }
}

/// The reading side: one whole framerpc frame per binary message.
///
/// WebSocket frames are parsed here (headers with tungstenite's
/// `FrameHeader::parse`); tungstenite only did the handshake. Small
/// messages are unmasked in place in the read buffer and split off it; a
/// bigger one is read straight from the socket into one buffer of its own,
/// unmasked as it arrives, its size checked against the limit first.
pub(crate) struct WsReader {
    read: Source,
    out: SharedOut,
    /// Client role: frames from the server are unmasked; server role:
    /// frames from the client must be masked.
    client: bool,
    max_frame_len: u32,
    /// Largest message: frame limit + 12.
    max: usize,
    /// The read buffer: `filled` bytes of data, then initialized room.
    buf: BytesMut,
    filled: usize,
    received: u64,
    part: Option<Part>,
    msg: Option<Msg>,
    spare: Spare,
    /// A pong owed to the peer, sent when the writer lock is free.
    pong: Option<Vec<u8>>,
    /// The connection ended (close, end of stream, or refused input).
    ended: bool,
}

impl WsReader {
    /// Takes over the read half after tungstenite's handshake on it.
    pub(crate) fn new(ws: WebSocket<WsStream>, max_frame_len: u32) -> Self {
        Self::from_stream(ws.into_inner(), max_frame_len)
    }

    /// Reads from `st`'s socket, starting with the bytes it still holds
    /// (those that came past the HTTP head).
    pub(crate) fn from_stream(st: WsStream, max_frame_len: u32) -> Self {
        let client = st.out.lock().client;
        let rest = &st.prefix[st.pos.min(st.prefix.len())..];
        let buf = BytesMut::from(rest);
        Self {
            filled: buf.len(),
            buf,
            received: st.received,
            read: st.read,
            out: st.out,
            client,
            max_frame_len,
            max: max_frame_len as usize + HEADER_LEN,
            part: None,
            msg: None,
            spare: Arc::new(Mutex::new(None)),
            pong: None,
            ended: false,
        }
    }

    /// Closes for bad input: sends the close frame, half-closes, reads and
    /// discards for a moment (so the close is not lost to a reset), and
    /// hands back `err` for the connection's end.
    fn fail(&mut self, code: u16, reason: &str, err: Error) -> Error {
        self.ended = true;
        self.msg = None;
        {
            let mut out = self.out.lock();
            let _ = out.send_close(code, reason);
            out.stream.shutdown_write();
        }
        let deadline = Instant::now() + DRAIN;
        let mut sink = [0u8; 8192];
        while Instant::now() < deadline {
            match self.read.read(&mut sink) {
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

    /// Bad WebSocket framing: 1002.
    fn fail_ws(&mut self, what: &str) -> Error {
        let reason = format!("websocket protocol error: {what}");
        let err = Error::Protocol(ProtocolError::Unexpected("websocket protocol violation"));
        self.fail(close::PROTOCOL, &reason, err)
    }

    /// A message of (at least) `size` bytes, over the limit: 1009.
    fn fail_too_big(&mut self, size: u64) -> Error {
        let err = Error::TooLarge {
            len: size.saturating_sub(HEADER_LEN as u64),
            max: u64::from(self.max_frame_len),
            side: Side::Local,
        };
        let reason = format!(
            "too large: message of {size} bytes exceeds the limit of {} bytes (frame limit + 12)",
            self.max
        );
        self.fail(close::TOO_BIG, &reason, err)
    }

    fn fail_len(&mut self, len: u32, message: usize) -> Error {
        self.fail_protocol(ProtocolError::LengthMismatch {
            len,
            actual: message.saturating_sub(HEADER_LEN) as u64,
        })
    }

    /// Checks a whole binary message and splits it into a frame.
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

    /// Sends the pong owed, if the writer lock is free right now (the
    /// reader never waits for a writer: the peer may be waiting for us to
    /// read before it reads what the writer sends).
    fn flush_pong(&mut self) {
        let Some(p) = &self.pong else { return };
        let Some(mut out) = self.out.try_lock() else {
            return;
        };
        if !out.closing && out.send(OpCode::Control(Control::Pong), true, p).is_err() {
            // Half a frame may have gone out: nothing more may follow.
            out.closing = true;
        }
        self.pong = None;
    }

    /// Reads more of the stream into the read buffer; false at its end.
    fn fill(&mut self) -> Result<bool, Error> {
        if self.buf.len() - self.filled < MIN_READ {
            self.buf.resize(self.filled + READ_CHUNK, 0);
        }
        loop {
            match self.read.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.ended = true;
                    self.msg = None;
                    return Ok(false);
                }
                Ok(n) => {
                    self.filled += n;
                    self.received += n as u64;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Drops the first `n` buffered bytes.
    fn consume(&mut self, n: usize) {
        bytes::Buf::advance(&mut self.buf, n);
        self.filled -= n;
    }

    /// The peer's close frame: answered (its code echoed, or 1002 for a
    /// code not allowed on the wire) under the writer lock; then the end.
    fn peer_close(&mut self, payload: &[u8]) -> Result<Option<Frame>, Error> {
        let code = match payload.len() {
            0 => None,
            1 => return Err(self.fail_ws("close frame of 1 byte")),
            _ => {
                if std::str::from_utf8(&payload[2..]).is_err() {
                    return Err(self.fail_ws("close reason is not UTF-8"));
                }
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                Some(if CloseCode::from(code).is_allowed() {
                    code
                } else {
                    close::PROTOCOL
                })
            }
        };
        self.ended = true;
        self.msg = None;
        let mut out = self.out.lock();
        if !out.closing {
            out.closing = true;
            let reply = code.map(u16::to_be_bytes);
            let _ = out.send(
                OpCode::Control(Control::Close),
                true,
                reply.as_ref().map_or(&[][..], |r| &r[..]),
            );
        }
        Ok(None)
    }

    /// Checks the framerpc header at the start of a message (the first 12
    /// bytes, unmasked): its kind and flags, its `len` against the limit and
    /// against the message's size if known. Returns the message's size.
    fn check_head(&mut self, head: [u8; HEADER_LEN], known: Option<usize>) -> Result<usize, Error> {
        let header = match Header::parse(&head) {
            Ok(h) => h,
            Err(p) => return Err(self.fail_protocol(p)),
        };
        let size = header.len as usize + HEADER_LEN;
        match known {
            Some(k) if k != size => Err(self.fail_len(header.len, k)),
            _ if header.len > self.max_frame_len => Err(self.fail_too_big(size as u64)),
            _ => Ok(size),
        }
    }

    fn read_inner(&mut self) -> Result<Option<Frame>, Error> {
        loop {
            if self.ended {
                return Ok(None);
            }
            self.flush_pong();
            if let Some(part) = self.part {
                if let Some(frame) = self.read_part(part)? {
                    return Ok(Some(frame));
                }
                continue;
            }
            let parsed = {
                let mut cur = io::Cursor::new(&self.buf[..self.filled]);
                FrameHeader::parse(&mut cur).map(|h| h.map(|(h, len)| (h, len, cur.position())))
            };
            let (h, len, hl) = match parsed {
                Ok(Some((h, len, hl))) => (h, len, hl as usize),
                Ok(None) => {
                    self.fill()?;
                    continue;
                }
                Err(e) => return Err(self.fail_ws(&e.to_string())),
            };
            if h.rsv1 || h.rsv2 || h.rsv3 {
                return Err(self.fail_ws("reserved bits set"));
            }
            match (self.client, h.mask.is_some()) {
                (true, true) => return Err(self.fail_ws("masked frame from the server")),
                (false, false) => return Err(self.fail_ws("unmasked frame from the client")),
                _ => {}
            }
            let data = match h.opcode {
                OpCode::Control(c) => {
                    if !h.is_final || len > 125 {
                        return Err(self.fail_ws("fragmented or oversized control frame"));
                    }
                    let end = hl + len as usize;
                    if self.filled < end {
                        self.fill()?;
                        continue;
                    }
                    let mut payload = [0u8; 125];
                    let payload = &mut payload[..len as usize];
                    payload.copy_from_slice(&self.buf[hl..end]);
                    if let Some(m) = h.mask {
                        apply_mask(payload, m);
                    }
                    self.consume(end);
                    match c {
                        Control::Ping => self.pong = Some(payload.to_vec()),
                        Control::Pong => {}
                        Control::Close => return self.peer_close(payload),
                        Control::Reserved(_) => {
                            return Err(self.fail_ws("unknown control frame"));
                        }
                    }
                    continue;
                }
                OpCode::Data(d) => d,
            };
            match (data, self.msg.is_some()) {
                (Data::Binary, false) | (Data::Continue, true) => {}
                (Data::Text, false) => {
                    let err = Error::Protocol(ProtocolError::TextMessage);
                    let reason = err.to_string();
                    return Err(self.fail(close::UNSUPPORTED, &reason, err));
                }
                (Data::Continue, false) => {
                    return Err(self.fail_ws("continuation frame without a message"))
                }
                _ => return Err(self.fail_ws("unexpected data frame")),
            }
            let have = self.msg.as_ref().map_or(0, |m| m.len);
            let total = (have as u64).saturating_add(len);
            if total > self.max as u64 {
                return Err(self.fail_too_big(total));
            }
            let len = len as usize; // bounded by the limit
            if let Some(expect) = self.msg.as_ref().and_then(|m| m.expect) {
                if total as usize > expect || (h.is_final && (total as usize) < expect) {
                    return Err(self.fail_len((expect - HEADER_LEN) as u32, total as usize));
                }
            }
            if self.msg.is_none() {
                let end = hl + len;
                if h.is_final && self.filled >= end {
                    // The common case: a whole message in the buffer.
                    let mut b = self.buf.split_to(end);
                    self.filled -= end;
                    bytes::Buf::advance(&mut b, hl);
                    if let Some(m) = h.mask {
                        apply_mask(&mut b, m);
                    }
                    return self.frame(b.freeze());
                }
                if h.is_final && end <= READ_CHUNK {
                    self.fill()?;
                    continue;
                }
                // A bigger message: its framerpc header first, so that its
                // buffer is sized from it.
                let known = h.is_final.then_some(len);
                let mut expect = known;
                if len >= HEADER_LEN {
                    if self.filled < hl + HEADER_LEN {
                        self.fill()?;
                        continue;
                    }
                    let mut head = [0u8; HEADER_LEN];
                    head.copy_from_slice(&self.buf[hl..hl + HEADER_LEN]);
                    if let Some(m) = h.mask {
                        apply_mask(&mut head, m);
                    }
                    let size = self.check_head(head, known)?;
                    if size < len {
                        return Err(self.fail_len((size - HEADER_LEN) as u32, len));
                    }
                    expect = Some(size);
                }
                let store = match expect {
                    Some(size) if size >= MAP_MIN => {
                        Store::Pages(take_pages(&self.spare, size.min(MSG_START))?)
                    }
                    _ => Store::Heap(Vec::new()),
                };
                self.msg = Some(Msg {
                    store,
                    len: 0,
                    expect,
                    checked: expect.is_some(),
                });
            }
            self.consume(hl);
            self.part = Some(Part {
                mask: h.mask,
                done: 0,
                len,
                fin: h.is_final,
            });
        }
    }

    /// Receives the payload of a data frame into the message; the whole
    /// frame once the message is complete.
    fn read_part(&mut self, mut part: Part) -> Result<Option<Frame>, Error> {
        let Some(msg) = self.msg.as_mut() else {
            self.part = None;
            return Ok(None);
        };
        while part.done < part.len {
            let want = part.len - part.done;
            if msg.cap() == msg.len {
                let bound = msg.expect.unwrap_or(self.max);
                msg.grow(bound, &self.spare)?;
            }
            let room = msg.spare();
            let k = room.len().min(want);
            let n = if self.filled > 0 {
                let n = k.min(self.filled);
                room[..n].copy_from_slice(&self.buf[..n]);
                bytes::Buf::advance(&mut self.buf, n);
                self.filled -= n;
                n
            } else {
                match self.read.read(&mut room[..k]) {
                    Ok(0) => {
                        self.ended = true;
                        self.part = None;
                        self.msg = None;
                        return Ok(None);
                    }
                    Ok(n) => {
                        self.received += n as u64;
                        n
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.part = Some(part);
                        return Err(e.into());
                    }
                }
            };
            if let Some(m) = part.mask {
                apply_mask_at(&mut room[..n], m, part.done);
            }
            msg.len += n;
            part.done += n;
            if !msg.checked && msg.len >= HEADER_LEN {
                // A fragmented message whose first fragment was shorter
                // than a framerpc header.
                msg.checked = true;
                let mut head = [0u8; HEADER_LEN];
                head.copy_from_slice(&msg.bytes()[..HEADER_LEN]);
                let total = msg.len - part.done + part.len;
                let size = self.check_head(head, None)?;
                if total > size || (part.fin && total < size) {
                    return Err(self.fail_len((size - HEADER_LEN) as u32, total));
                }
                let Some(msg) = self.msg.as_mut() else {
                    return Ok(None);
                };
                msg.expect = Some(size);
                return self.read_part(part);
            }
        }
        self.part = None;
        if !part.fin {
            return Ok(None);
        }
        let msg = self.msg.take().expect("a message in progress");
        let b = msg.finish(&self.spare);
        self.frame(b)
    }
}

impl FrameRead for WsReader {
    fn read_frame(&mut self) -> Result<Option<Frame>, Error> {
        let r = self.read_inner();
        if let Err(Error::Io(e)) = &r {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) && self.msg.is_none()
            {
                // Idle for a tick: the spare big buffer goes back.
                self.spare.lock().take();
            }
        }
        r
    }

    fn received(&self) -> u64 {
        self.received
    }

    fn pending_header(&self) -> Option<[u8; 12]> {
        None
    }

    fn set_read_timeout(&mut self, timeout: Duration) {
        self.read.set_read_timeout(timeout);
    }
}

/// Big message buffers whose memory goes back to the system when they are
/// dropped, without `unsafe`: each is a zero-filled allocation of at least
/// [`RESERVE`] bytes. glibc serves a zeroed request that large with a
/// mapping of its own (fresh pages are zero, so none is touched until a
/// byte arrives: resident memory grows with the message, not with the
/// reservation) and unmaps it on free. A smaller big buffer would come from
/// a per-thread heap once the allocator's mmap threshold has risen (it does
/// after the first big free) and stay resident after.
mod pages {
    use std::io;
    use std::ops::{Deref, DerefMut};

    /// Address space reserved per big buffer; above glibc's largest mmap
    /// threshold (32 MiB on 64-bit systems).
    const RESERVE: usize = (32 << 20) + (64 << 10);

    /// A big zero-initialized buffer, at least as long as asked.
    pub(crate) struct Pages(Vec<u8>);

    impl Pages {
        pub(crate) fn new(len: usize) -> io::Result<Self> {
            Ok(Self(vec![0; len.max(RESERVE)]))
        }

        /// Grows to at least `len` bytes, keeping the contents.
        pub(crate) fn grow(&mut self, len: usize) -> io::Result<()> {
            if len > self.0.len() {
                self.0.resize(len, 0);
            }
            Ok(())
        }
    }

    impl Deref for Pages {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            &self.0
        }
    }

    impl DerefMut for Pages {
        fn deref_mut(&mut self) -> &mut [u8] {
            &mut self.0
        }
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
    fn mask_at_offsets_and_mask_into_match_bytewise_xor() {
        let mask = [0x11, 0x22, 0x44, 0x88];
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        for offset in 0..9 {
            for n in [0, 1, 3, 63, 64, 65, 130, 300] {
                let slow: Vec<u8> = data[..n]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(offset + i) % 4])
                    .collect();
                let mut fast = data[..n].to_vec();
                apply_mask_at(&mut fast, mask, offset);
                assert_eq!(fast, slow, "apply_mask_at {offset} {n}");
                let mut copy = vec![0u8; n];
                mask_into(&mut copy, &data[..n], mask, offset);
                assert_eq!(copy, slow, "mask_into {offset} {n}");
            }
        }
    }

    #[test]
    fn pages_are_zeroed_and_keep_contents_when_grown() {
        let mut p = pages::Pages::new(5000).unwrap();
        assert!(p.len() >= 5000 && p.iter().all(|&b| b == 0));
        p[..3].copy_from_slice(b"abc");
        p.grow(40 << 20).unwrap();
        assert!(p.len() >= 40 << 20);
        assert_eq!(&p[..3], b"abc");
        assert!(p[3..].iter().all(|&b| b == 0));
    }

    #[test]
    fn big_message_pages_come_back_to_their_reader_once() {
        let spare: Spare = Arc::new(Mutex::new(None));
        let msg = Msg {
            store: Store::Pages(take_pages(&spare, 1 << 20).unwrap()),
            len: 10,
            expect: Some(10),
            checked: true,
        };
        let b = msg.finish(&spare);
        assert_eq!(b.len(), 10);
        let c = b.slice(2..);
        drop(b);
        assert!(spare.lock().is_none(), "still in use");
        drop(c);
        assert!(spare.lock().is_some(), "back for the next message");
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 123), "abc");
    }
}
