//! One TLS connection shared by a blocking reader and any number of
//! writers, full duplex.
//!
//! rustls keeps one state machine per connection (`Connection`) that both
//! directions go through, and it does no I/O itself: `read_tls` takes bytes
//! that someone read, `write_tls` hands out bytes for someone to write.
//! So the socket I/O happens outside the state machine's lock:
//!
//! - the state machine is behind a mutex (`tls`) that is only ever held
//!   for in-memory work: feeding bytes already read, decrypting, taking
//!   plaintext, encrypting a chunk into a buffer. Nobody blocks on the
//!   network while holding it.
//! - the reader reads ciphertext from its own handle of the socket with no
//!   lock at all (a read may block for the whole heartbeat tick), then
//!   takes `tls` for a moment to feed and drain what it read.
//! - writers take the send lock (`send`), which orders records on the
//!   wire: a frame is encrypted in chunks of [`CHUNK`] bytes, each chunk
//!   under `tls` into the send buffer, and written to the socket after
//!   `tls` is let go. A writer blocked on a peer that does not read holds
//!   only `send`, which the reader never needs to read.
//! - the only bytes the reader itself makes rustls emit are rare control
//!   records (a TLS 1.3 key update answer, an alert). It leaves them in
//!   the state machine: the next writer sends them ahead of its own
//!   records, and a writer that finishes its frame looks again before it
//!   lets go of `send`. If no writer holds `send`, the reader sends them
//!   itself (a `try_lock`, never a wait).
//!
//! So a blocked reader holds nothing a writer needs, and a writer never
//! waits for a read.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::Connection;

use crate::conn::{Closer, FrameRead, FrameWrite};
use crate::error::Error;
use crate::frame::{Frame, FrameReader};

/// Plaintext encrypted per turn of the state machine's lock.
const CHUNK: usize = 64 * 1024;

/// Ciphertext read from the socket per read call.
const READ_BUF: usize = 64 * 1024;

/// The shared state of one TLS connection.
pub(crate) struct Session {
    tls: Mutex<Connection>,
    sock: Arc<TcpStream>,
    send: Mutex<Vec<u8>>,
    peer: Option<SocketAddr>,
    write_timeout: Option<Duration>,
    /// Names the peer in errors.
    pub(crate) peer_name: String,
}

impl Session {
    /// `peer`: the peer's address when a trusted proxy named it (else the
    /// socket's).
    pub(crate) fn new(
        tls: Connection,
        sock: TcpStream,
        write_timeout: Option<Duration>,
        peer_name: String,
        peer: Option<SocketAddr>,
    ) -> Arc<Self> {
        let peer = peer.or_else(|| sock.peer_addr().ok());
        let mut tls = tls;
        // Chunks are drained after each write: no limit needed on the
        // outgoing buffer (received plaintext is drained after each feed).
        tls.set_buffer_limit(None);
        Arc::new(Self {
            tls: Mutex::new(tls),
            sock: Arc::new(sock),
            send: Mutex::new(Vec::new()),
            peer,
            write_timeout,
            peer_name,
        })
    }

    /// The verified client certificate's subject (server side).
    pub(crate) fn peer_subject(&self) -> Option<String> {
        let tls = self.tls.lock();
        let cert = tls.peer_certificates()?.first()?;
        super::subject::subject_name(cert.as_ref())
    }

    #[cfg(feature = "ws")]
    /// The socket under the session.
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.sock
    }

    #[cfg(feature = "ws")]
    /// The shared handle of the socket (for a [`Closer`]).
    pub(crate) fn socket_arc(&self) -> &Arc<TcpStream> {
        &self.sock
    }

    #[cfg(feature = "ws")]
    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Encrypts `parts` (one frame) and writes the records in order, within
    /// the write timeout for the whole frame.
    pub(crate) fn send_frame(&self, parts: &[&[u8]]) -> io::Result<()> {
        let mut buf = self.send.lock();
        let mut w = Deadline::new(self.write_timeout);
        // Up to CHUNK bytes of the parts per turn, encrypted together (a
        // WebSocket header and its payload, or frames written back to back,
        // share records) and written in one go.
        let (mut at, mut off) = (0, 0);
        while at < parts.len() {
            let mut slices: [&[u8]; 8] = [&[]; 8];
            let (mut n, mut bytes) = (0, 0);
            while at < parts.len() && n < slices.len() && bytes < CHUNK {
                let rest = &parts[at][off..];
                let take = rest.len().min(CHUNK - bytes);
                slices[n] = &rest[..take];
                n += 1;
                bytes += take;
                off += take;
                if off == parts[at].len() {
                    at += 1;
                    off = 0;
                }
            }
            {
                let mut tls = self.tls.lock();
                write_all_vectored(&mut tls, &slices[..n])
                    .map_err(|e| explain(e, &self.peer_name))?;
                drain_out(&mut tls, &mut buf)?;
            }
            w.write(&self.sock, &buf)?;
            buf.clear();
        }
        // Anything the reader left for us (a key update answer).
        self.flush_locked(&mut buf, &mut w)?;
        w.restore(&self.sock);
        if buf.capacity() > 2 * CHUNK {
            *buf = Vec::new();
        }
        Ok(())
    }

    fn flush_locked(&self, buf: &mut Vec<u8>, w: &mut Deadline) -> io::Result<()> {
        loop {
            {
                let mut tls = self.tls.lock();
                drain_out(&mut tls, buf)?;
            }
            if buf.is_empty() {
                return Ok(());
            }
            w.write(&self.sock, buf)?;
            buf.clear();
        }
    }

    /// Sends what the state machine has queued, unless a writer holds the
    /// send lock (it will send it before letting go).
    fn flush_if_free(&self) {
        if let Some(mut buf) = self.send.try_lock() {
            let mut w = Deadline::new(self.write_timeout);
            let _ = self.flush_locked(&mut buf, &mut w);
            w.restore(&self.sock);
        }
    }

    #[cfg(feature = "ws")]
    /// `close_notify`, sent briefly and best effort, then the socket is
    /// shut for writing; reading goes on (a WebSocket reader drains after
    /// its close frame).
    pub(crate) fn shutdown_write(&self) {
        if let Some(mut buf) = self.send.try_lock_for(Duration::from_millis(200)) {
            self.tls.lock().send_close_notify();
            let mut w = Deadline::new(self.write_timeout);
            let _ = self.flush_locked(&mut buf, &mut w);
            w.restore(&self.sock);
        }
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    /// `close_notify`, sent briefly and best effort, then the socket is
    /// shut both ways.
    pub(crate) fn close(&self) {
        if let Some(mut buf) = self.send.try_lock_for(Duration::from_millis(200)) {
            self.tls.lock().send_close_notify();
            let _ = self
                .sock
                .set_write_timeout(Some(Duration::from_millis(200)));
            let mut w = Deadline::new(None);
            let _ = self.flush_locked(&mut buf, &mut w);
        }
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// An I/O error from rustls that carries a TLS error (the connection
/// failed earlier, e.g. the peer refused our certificate), explained.
fn explain(e: io::Error, peer: &str) -> io::Error {
    let Some(tls) = e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>()) else {
        return e;
    };
    io::Error::new(io::ErrorKind::InvalidData, super::describe(tls, peer))
}

/// Hands all of `slices` (at most 8) to the state machine, encrypted
/// together into records.
fn write_all_vectored(tls: &mut Connection, slices: &[&[u8]]) -> io::Result<()> {
    let (mut i, mut off) = (0, 0);
    loop {
        while i < slices.len() && off == slices[i].len() {
            i += 1;
            off = 0;
        }
        if i == slices.len() {
            return Ok(());
        }
        let mut v = [IoSlice::new(&[]); 8];
        for (k, s) in slices[i..].iter().enumerate() {
            v[k] = IoSlice::new(if k == 0 { &s[off..] } else { s });
        }
        let mut n = tls.writer().write_vectored(&v[..slices.len() - i])?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let left = slices[i].len() - off;
            if n >= left {
                n -= left;
                i += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
}

/// Moves every queued TLS record into `buf`.
fn drain_out(tls: &mut Connection, buf: &mut Vec<u8>) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(buf)?;
    }
    Ok(())
}

/// The whole-frame write deadline: the socket's write timeout bounds one
/// write call, so once part of a frame is out it is set to what is left of
/// the frame's time (and put back after the frame).
struct Deadline {
    limit: Option<Duration>,
    end: Option<Instant>,
    touched: bool,
}

impl Deadline {
    fn new(limit: Option<Duration>) -> Self {
        Self {
            limit,
            end: None,
            touched: false,
        }
    }

    fn write(&mut self, sock: &TcpStream, mut data: &[u8]) -> io::Result<()> {
        let mut s = sock;
        while !data.is_empty() {
            if let (Some(limit), Some(end)) = (self.limit, self.end) {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("write timeout: the peer did not take a frame within {limit:?}"),
                    ));
                }
                let _ = sock.set_write_timeout(Some(left));
                self.touched = true;
            }
            match s.write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if self.end.is_none() {
                self.end = self.limit.map(|l| Instant::now() + l);
            }
        }
        Ok(())
    }

    fn restore(&self, sock: &TcpStream) {
        if self.touched {
            let _ = sock.set_write_timeout(self.limit);
        }
    }
}

/// Feeds `raw` (ciphertext read from the socket) to the state machine and
/// appends the plaintext it yields to `plain`. True once the peer sent
/// `close_notify`.
pub(crate) fn feed(
    tls: &mut Connection,
    mut raw: &[u8],
    plain: &mut Vec<u8>,
) -> Result<bool, rustls::Error> {
    let mut closed = false;
    while !raw.is_empty() {
        match tls.read_tls(&mut raw) {
            Ok(0) => break, // close_notify seen: nothing more is read
            Ok(_) => {}
            // "received plaintext buffer full": drained below, then again.
            Err(_) => {}
        }
        let state = tls.process_new_packets()?;
        let n = state.plaintext_bytes_to_read();
        if n > 0 {
            let at = plain.len();
            plain.resize(at + n, 0);
            let _ = tls.reader().read_exact(&mut plain[at..]);
        }
        closed |= state.peer_has_closed();
    }
    Ok(closed)
}

/// The plaintext side of the reading half: `Read` for a [`FrameReader`].
///
/// Decrypted bytes go from rustls's buffer straight into the caller's
/// (the frame reader's buffer, or a big frame's own buffer): no copy of
/// our own in between. Ciphertext read from the socket that rustls cannot
/// take yet (its plaintext buffer is full until drained) waits in `raw`.
pub(crate) struct TlsRead {
    sess: Arc<Session>,
    raw: Box<[u8]>,
    /// Ciphertext read but not yet fed: `raw[fed..filled]`.
    fed: usize,
    filled: usize,
    /// Plaintext that arrived with the handshake, served first.
    early: Vec<u8>,
    pos: usize,
    /// The socket reached its end (or the peer sent `close_notify`).
    closed: bool,
}

impl TlsRead {
    /// `early`: plaintext that arrived with the handshake.
    pub(crate) fn new(sess: Arc<Session>, early: Vec<u8>) -> Self {
        Self {
            sess,
            raw: vec![0u8; READ_BUF].into_boxed_slice(),
            fed: 0,
            filled: 0,
            early,
            pos: 0,
            closed: false,
        }
    }

    pub(crate) fn set_read_timeout(&self, t: Duration) {
        let _ = self.sess.sock.set_read_timeout(Some(t));
    }

    /// Under the state machine's lock: feeds what is waiting in `raw`,
    /// then moves plaintext into `buf`. `Ok(None)`: nothing to hand out
    /// yet; `Ok(Some(0))`: the clean end.
    fn drain(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let sess = Arc::clone(&self.sess);
        let (got, pending) = {
            let mut tls = sess.tls.lock();
            let got = self.drain_locked(&mut tls, buf);
            (got, tls.wants_write())
        };
        if pending {
            // A key update answer or an alert: sent now if no writer is
            // busy (else the writer sends it).
            sess.flush_if_free();
        }
        got
    }

    fn drain_locked(&mut self, tls: &mut Connection, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match tls.reader().read(buf) {
                Ok(n) if n > 0 => return Ok(Some(n)),
                // close_notify seen and everything handed out.
                Ok(_) => return Ok(Some(0)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // An end of stream without close_notify: the frame reader
                // tells a cut frame from a clean end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
                Err(e) => return Err(e),
            }
            if self.fed == self.filled {
                return Ok(None);
            }
            let mut rest = &self.raw[self.fed..self.filled];
            let before = rest.len();
            // An error here is "received plaintext buffer full": the
            // plaintext was just drained, so it cannot recur right away;
            // rustls's own state errors come from `process_new_packets`.
            let _ = tls.read_tls(&mut rest);
            if rest.len() == before {
                // Nothing taken: bytes after close_notify. Dropped.
                self.fed = self.filled;
            } else {
                self.fed += before - rest.len();
            }
            if let Err(e) = tls.process_new_packets() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    super::describe(&e, &self.sess.peer_name),
                ));
            }
        }
    }
}

impl Read for TlsRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(n) = crate::tcp::read_pending(&mut self.early, &mut self.pos, buf) {
            return Ok(n);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(n) = self.drain(buf)? {
                return Ok(n);
            }
            if self.closed {
                return Ok(0);
            }
            // No lock while blocked here: writers go on.
            let n = (&*self.sess.sock).read(&mut self.raw)?;
            if n == 0 {
                self.closed = true;
                // Let rustls know, so a missing close_notify is told
                // apart (and a clean one honoured).
                let mut tls = self.sess.tls.lock();
                let _ = tls.read_tls(&mut &[][..]);
                continue;
            }
            self.fed = 0;
            self.filled = n;
        }
    }
}

/// The writing half of a TLS connection.
pub(crate) struct TlsWriter {
    sess: Arc<Session>,
}

impl TlsWriter {
    pub(crate) fn new(sess: Arc<Session>) -> Self {
        Self { sess }
    }
}

impl FrameWrite for TlsWriter {
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.sess.send_frame(&[frame])
    }
    fn write_frame_parts(&mut self, head: &[u8], tail: &[u8]) -> io::Result<()> {
        self.sess.send_frame(&[head, tail])
    }
    fn write_frames(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        self.sess.send_frame(parts)
    }
    fn coalesces(&self) -> bool {
        true
    }
    fn heartbeat(&mut self, ping_frame: &[u8]) -> io::Result<()> {
        self.write_frame(ping_frame)
    }
    fn refuse(&mut self, err: &Error, header: Option<[u8; 12]>) {
        let _ = self.write_frame(&crate::tcp::refusal(err, header));
    }
    fn shutdown(&mut self) {
        self.sess.close();
    }
    fn peer_addr(&self) -> Option<SocketAddr> {
        self.sess.peer
    }
    fn closer(&self) -> Option<Closer> {
        Some(Closer::shared(&self.sess.sock))
    }
    fn verified_name(&self) -> Option<String> {
        self.sess.peer_subject()
    }
}

/// The reading half: whole frames out of the plaintext.
pub(crate) struct TlsReader(pub FrameReader<TlsRead>);

impl FrameRead for TlsReader {
    fn read_frame(&mut self) -> Result<Option<Frame>, Error> {
        self.0.read_frame()
    }
    fn received(&self) -> u64 {
        self.0.received()
    }
    fn pending_header(&self) -> Option<[u8; 12]> {
        self.0.pending_header()
    }
    fn set_read_timeout(&mut self, timeout: Duration) {
        self.0.get_ref().set_read_timeout(timeout);
    }
    fn trim(&mut self) {
        self.0.trim();
    }
    fn has_buffered_frame(&self) -> bool {
        self.0.has_buffered_frame()
    }
}

/// Why a blocking handshake failed.
pub(crate) enum HsError {
    /// The deadline ran out (a trickling or stalled peer).
    Deadline,
    /// The peer closed (or reset) before the handshake ended.
    Closed,
    /// The first bytes the peer sent are not TLS.
    NotTls(Vec<u8>),
    /// rustls refused the handshake (the alert was sent).
    Tls(rustls::Error),
    /// Socket error.
    Io(io::Error),
}

/// Runs the handshake on `sock` until it ends or `deadline` passes.
/// `first`: bytes already read (the server's sniff). Returns the plaintext
/// that arrived with the handshake. With `check_first`, the first byte the
/// peer sends must start a TLS record (a client checking a server).
pub(crate) fn handshake(
    tls: &mut Connection,
    sock: &TcpStream,
    deadline: Instant,
    tick: Duration,
    first: &[u8],
    check_first: bool,
) -> Result<Vec<u8>, HsError> {
    let mut plain = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    let mut pending: Vec<u8> = first.to_vec();
    let mut seen_any = !first.is_empty();
    let mut s = sock;
    loop {
        if !pending.is_empty() {
            let r = feed(tls, &pending, &mut plain);
            pending.clear();
            if let Err(e) = r {
                // Send the alert rustls queued, best effort.
                let _ = drain_out(tls, &mut out);
                let _ = s.write_all(&out);
                return Err(HsError::Tls(e));
            }
        }
        out.clear();
        drain_out(tls, &mut out).map_err(HsError::Io)?;
        if !out.is_empty() {
            s.write_all(&out).map_err(HsError::Io)?;
        }
        if !tls.is_handshaking() {
            let _ = sock.set_read_timeout(Some(tick));
            return Ok(plain);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(HsError::Deadline);
        }
        let _ = sock.set_read_timeout(Some(
            (deadline - now).min(tick).max(Duration::from_millis(1)),
        ));
        match s.read(&mut buf) {
            Ok(0) => return Err(HsError::Closed),
            Ok(n) => {
                if check_first && !seen_any && !matches!(buf[0], 0x15 | 0x16) {
                    // Not a TLS record: wait briefly for the rest of what
                    // the peer says, for the error message.
                    let mut got = buf[..n].to_vec();
                    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
                    while got.len() < 4096 {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => got.extend_from_slice(&buf[..k]),
                        }
                    }
                    return Err(HsError::NotTls(got));
                }
                seen_any = true;
                pending.extend_from_slice(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) if crate::error::is_disconnect_io(&e) => return Err(HsError::Closed),
            Err(e) => return Err(HsError::Io(e)),
        }
    }
}
