//! Raw TCP transport: frames straight on the stream.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::conn::{Closer, FrameRead, FrameWrite};
use crate::error::{Error, ErrorCode};
use crate::frame::{error_payload, Frame, FrameReader, Kind, Limits};

/// Sets the options every framerpc socket gets: no Nagle delay, a write
/// timeout, and a read timeout that wakes the reader for heartbeats.
pub(crate) fn tune(stream: &TcpStream, limits: &Limits) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(limits.write_timeout)?;
    stream.set_read_timeout(Some(limits.tick()))?;
    Ok(())
}

/// One TCP socket shared by a connection's reading half, writing half and
/// closer: one file descriptor per connection (std implements `Read` and
/// `Write` for `&TcpStream`, and the two directions do not share state).
#[derive(Clone)]
pub(crate) struct Socket(pub Arc<TcpStream>);

impl Socket {
    pub fn new(stream: TcpStream) -> Self {
        Self(Arc::new(stream))
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

/// Serves a read from bytes that arrived before the stream was handed over
/// (`pending[*pos..]`: the tail of a handshake), freeing them once used.
/// `None` once they are all read: read the stream itself.
#[cfg_attr(not(any(feature = "ws", feature = "tls")), allow(dead_code))]
pub(crate) fn read_pending(
    pending: &mut Vec<u8>,
    pos: &mut usize,
    buf: &mut [u8],
) -> Option<usize> {
    if *pos >= pending.len() {
        return None;
    }
    let n = buf.len().min(pending.len() - *pos);
    buf[..n].copy_from_slice(&pending[*pos..*pos + n]);
    *pos += n;
    if *pos == pending.len() {
        *pending = Vec::new();
        *pos = 0;
    }
    Some(n)
}

/// A read timeout (the wake-up to look at the clock), not a failure.
#[cfg_attr(not(any(feature = "ws", feature = "tls")), allow(dead_code))]
pub(crate) fn is_tick(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Half-closes, then reads and discards what the peer still sends for up
/// to a second, so what was written last (an answer, an alert) is not lost
/// to a reset.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) fn linger(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    drain(stream);
}

/// Reads and discards what the peer sends, for up to a second.
#[cfg_attr(not(any(feature = "ws", feature = "tls")), allow(dead_code))]
pub(crate) fn drain(mut stream: &TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if is_tick(&e) => {}
            Err(_) => break,
        }
    }
}

/// Writes all of `parts` (one frame) within `limit` for the whole frame:
/// the socket's write timeout bounds one `write`, so after a partial write
/// it is set to what is left of the frame's time (and put back after).
pub(crate) fn write_all_within(
    mut stream: &TcpStream,
    parts: &[&[u8]],
    limit: Option<Duration>,
) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0;
    let mut deadline: Option<Instant> = None;
    let r = loop {
        if done == total {
            break Ok(());
        }
        let n = match write_some(&mut stream, parts, done) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => break Err(e),
        };
        done += n;
        if done < total {
            if let Some(limit) = limit {
                // Set once the frame did not go out in one write.
                let end = *deadline.get_or_insert_with(|| Instant::now() + limit);
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("write timeout: a frame of {total} bytes was not taken by the peer within {limit:?}"),
                    ));
                }
                let _ = stream.set_write_timeout(Some(left));
            }
        }
    };
    if deadline.is_some() {
        let _ = stream.set_write_timeout(limit);
    }
    r
}

/// One vectored write of what is left of `parts` after `skip` bytes.
fn write_some(stream: &mut &TcpStream, parts: &[&[u8]], mut skip: usize) -> io::Result<usize> {
    let mut slices: [IoSlice<'_>; 3] = [IoSlice::new(&[]), IoSlice::new(&[]), IoSlice::new(&[])];
    let mut n = 0;
    for p in parts {
        if skip >= p.len() {
            skip -= p.len();
            continue;
        }
        if n < slices.len() {
            slices[n] = IoSlice::new(&p[skip..]);
            n += 1;
        }
        skip = 0;
    }
    stream.write_vectored(&slices[..n])
}

/// The writing half.
pub(crate) struct TcpWriter {
    stream: Arc<TcpStream>,
    write_timeout: Option<Duration>,
    /// The peer's address (behind a trusted proxy: the client's).
    pub(crate) peer: Option<SocketAddr>,
}

impl TcpWriter {
    pub fn new(socket: &Socket, limits: &Limits) -> Self {
        Self {
            stream: Arc::clone(&socket.0),
            write_timeout: limits.write_timeout,
            peer: socket.0.peer_addr().ok(),
        }
    }
}

impl FrameWrite for TcpWriter {
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        write_all_within(&self.stream, &[frame], self.write_timeout)
    }
    fn write_frame_parts(&mut self, head: &[u8], tail: &[u8]) -> io::Result<()> {
        write_all_within(&self.stream, &[head, tail], self.write_timeout)
    }
    fn write_frames(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        write_all_within(&self.stream, parts, self.write_timeout)
    }
    fn coalesces(&self) -> bool {
        true
    }
    fn heartbeat(&mut self, ping_frame: &[u8]) -> io::Result<()> {
        self.write_frame(ping_frame)
    }
    fn refuse(&mut self, err: &Error, header: Option<[u8; 12]>) {
        let _ = self.write_frame(&refusal(err, header));
    }
    fn farewell(&mut self, frame: &[u8]) {
        // The connection closes next: a peer that does not read costs at
        // most this much.
        let _ = self
            .stream
            .set_write_timeout(Some(Duration::from_millis(50)));
        let _ = (&*self.stream).write_all(frame);
    }
    fn shutdown(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
    fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }
    fn closer(&self) -> Option<Closer> {
        Some(Closer::shared(&self.stream))
    }
}

/// The ERROR frame that answers a frame refused for breaking the protocol
/// (or its size limit), echoing its command and call id.
pub(crate) fn refusal(err: &Error, header: Option<[u8; 12]>) -> Vec<u8> {
    let (cmd, id) = header.map_or((0, 0), |h| {
        (
            u16::from_le_bytes([h[6], h[7]]),
            u32::from_le_bytes([h[8], h[9], h[10], h[11]]),
        )
    });
    let code = match err {
        Error::TooLarge { .. } => ErrorCode::TOO_LARGE,
        _ => ErrorCode::PROTOCOL,
    };
    let msg = match err {
        Error::TooLarge { len, max, .. } => {
            format!("too large: payload of {len} bytes exceeds the receiver's limit of {max} bytes")
        }
        other => other.to_string(),
    };
    // A TLS client on this plain port: its ClientHello parsed as a header.
    let msg = match header {
        Some([0x16, 0x03, v, ..]) if v <= 4 => format!(
            "{msg}; the bytes look like a TLS handshake, but this port does not speak TLS \
             (connect without tls:// or wss://)"
        ),
        _ => msg,
    };
    let mut b = BytesMut::new();
    error_payload(code.0, &msg, &mut b);
    crate::frame::encode_frame(Kind::Error, cmd, id, &b)
}

/// The reading half.
pub(crate) struct TcpReader(pub FrameReader<Socket>);

impl FrameRead for TcpReader {
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
        let _ = self.0.get_ref().0.set_read_timeout(Some(timeout));
    }
    fn trim(&mut self) {
        self.0.trim();
    }
    fn has_buffered_frame(&self) -> bool {
        self.0.has_buffered_frame()
    }
}
