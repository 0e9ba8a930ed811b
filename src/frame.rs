//! Frames: the 12-byte header, reading whole frames from any [`Read`] and
//! building them for one write, with size limits checked first.
//!
//! ```text
//! offset  size  field
//! 0       4     len    u32  payload length (header excluded), little-endian
//! 4       1     kind   u8   1 CALL, 2 REPLY, 3 ERROR, 4 NOTIFY, 5 CANCEL
//! 5       1     flags  u8   0
//! 6       2     cmd    u16  command id
//! 8       4     id     u32  call id
//! 12      len   payload
//!
//! CALL add_2_words(2, 3), id 7:
//! 08 00 00 00 | 01 | 00 | 03 00 | 07 00 00 00 | 02 00 00 00 03 00 00 00
//! ```
//!
//! ```
//! use framerpc::frame::{Header, Kind};
//! let h = Header::parse(&[8, 0, 0, 0, 1, 0, 3, 0, 7, 0, 0, 0]).unwrap();
//! assert_eq!((h.kind, h.cmd, h.id, h.len), (Kind::Call, 3, 7, 8));
//! assert_eq!(h.to_bytes(), [8, 0, 0, 0, 1, 0, 3, 0, 7, 0, 0, 0]);
//! ```

use std::io::{self, Read};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, ProtocolError, Side};

/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 12;

/// First command id reserved for the library.
pub const RESERVED_START: u16 = 0xFF00;

/// The frame kind byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A call that expects one REPLY or ERROR with the same id.
    Call = 1,
    /// The answer to a CALL.
    Reply = 2,
    /// A failed CALL: `u16 code` then a UTF-8 message.
    Error = 3,
    /// A one-way call, never answered.
    Notify = 4,
    /// The caller gave up on a call.
    Cancel = 5,
}

impl TryFrom<u8> for Kind {
    type Error = ProtocolError;
    fn try_from(b: u8) -> Result<Self, ProtocolError> {
        Ok(match b {
            1 => Self::Call,
            2 => Self::Reply,
            3 => Self::Error,
            4 => Self::Notify,
            5 => Self::Cancel,
            other => return Err(ProtocolError::UnknownKind(other)),
        })
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload length in bytes.
    pub len: u32,
    /// Frame kind.
    pub kind: Kind,
    /// Command id.
    pub cmd: u16,
    /// Call id (0 for NOTIFY).
    pub id: u32,
}

impl Header {
    /// Parses 12 bytes; rejects unknown kinds and any flag bit.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Self, ProtocolError> {
        let kind = Kind::try_from(b[4])?;
        if b[5] != 0 {
            return Err(ProtocolError::UnknownFlags(b[5]));
        }
        Ok(Self {
            len: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            kind,
            cmd: u16::from_le_bytes([b[6], b[7]]),
            id: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        })
    }

    /// The header's 12 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4] = self.kind as u8;
        b[6..8].copy_from_slice(&self.cmd.to_le_bytes());
        b[8..12].copy_from_slice(&self.id.to_le_bytes());
        b
    }
}

/// A whole received frame; the payload shares the reader's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header.
    pub header: Header,
    /// The payload (`header.len` bytes).
    pub payload: Bytes,
}

/// Size and time limits, shared by servers and clients.
///
/// ```
/// use framerpc::Limits;
/// let limits = Limits::default().max_frame_len(16 << 20);
/// assert_eq!(limits.max_frame_len, 16 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload accepted or sent, checked on the header before any
    /// allocation. Defaults to 64 MiB: big enough for a camera frame or a
    /// 4k x 4k f32 array, small enough that a hostile length costs nothing.
    pub max_frame_len: u32,
    /// Send a heartbeat ping after this much silence from the peer.
    /// Defaults to 30 s; `None` turns heartbeats off.
    pub ping_after: Option<Duration>,
    /// Drop the connection after this long without a single byte from the
    /// peer. Defaults to 40 s; `None` never drops a silent peer.
    pub idle_timeout: Option<Duration>,
    /// Give up a write that makes no progress for this long, so a peer that
    /// never reads frees its thread. Defaults to 30 s.
    pub write_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_len: 64 << 20,
            ping_after: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(40)),
            write_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_frame_len`] (default 64 MiB).
    #[must_use]
    pub fn max_frame_len(mut self, v: u32) -> Self {
        self.max_frame_len = v;
        self
    }
    /// Sets [`Limits::ping_after`] and [`Limits::idle_timeout`] (defaults
    /// 30 s and 40 s); `None` turns both off.
    #[must_use]
    pub fn heartbeat(mut self, v: Option<(Duration, Duration)>) -> Self {
        self.ping_after = v.map(|(p, _)| p);
        self.idle_timeout = v.map(|(_, d)| d);
        self
    }
    /// Sets [`Limits::write_timeout`] (default 30 s).
    #[must_use]
    pub fn write_timeout(mut self, v: Option<Duration>) -> Self {
        self.write_timeout = v;
        self
    }

    /// The read timeout that lets a reader wake up for heartbeat checks.
    pub(crate) fn tick(&self) -> Duration {
        let base = match (self.ping_after, self.idle_timeout) {
            (Some(p), Some(i)) => p.min(i),
            (Some(d), None) | (None, Some(d)) => d,
            (None, None) => Duration::from_secs(1),
        };
        (base / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }

    /// Checks a payload length against `max_frame_len`.
    pub fn check_len(&self, len: u64, side: Side) -> Result<(), Error> {
        if len > u64::from(self.max_frame_len) {
            return Err(Error::TooLarge {
                len,
                max: u64::from(self.max_frame_len),
                side,
            });
        }
        Ok(())
    }
}

/// Reads whole frames from a byte stream, one buffer per connection.
///
/// The limit is checked on the header before the buffer grows, and the
/// buffer then grows as bytes arrive, never reserved from the claimed
/// length. A read timeout on the stream surfaces as an `Io` error and the
/// partial frame is kept, so the next call resumes where this one stopped.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    /// Initialized bytes; `filled` of them hold data.
    buf: BytesMut,
    filled: usize,
    max_frame_len: u32,
    /// Bytes received in total, for liveness checks.
    received: u64,
    /// A large frame being received (header included), grown as it arrives.
    big: Option<Vec<u8>>,
    /// The buffers of the last large frames: one is reused for the next
    /// large frame once its frame has been dropped (no page faults, no
    /// allocation), all are let go when the connection is quiet
    /// ([`FrameReader::trim`]). Two, so that a handler that keeps the
    /// latest frame until the next one arrives (a value stored for a
    /// later request) still leaves one to reuse.
    last_big: [Option<Bytes>; 2],
}

const READ_CHUNK: usize = 8 * 1024;
/// A quiet connection keeps at most this much read buffer.
const KEEP_READ: usize = 64 * 1024;
/// Frames larger than this are read into a buffer of their own, which
/// grows at most 4x the bytes already received and is never zero-filled.
const BIG_FRAME: usize = 256 * 1024;
/// Address space reserved for a large frame's buffer (not memory: pages
/// are used as bytes arrive). Above glibc's largest mmap threshold.
const BIG_RESERVE: usize = (32 << 20) + (64 << 10);

impl<R: Read> FrameReader<R> {
    /// A reader that refuses payloads over `max_frame_len`.
    pub fn new(inner: R, max_frame_len: u32) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            filled: 0,
            max_frame_len,
            received: 0,
            big: None,
            last_big: [None, None],
        }
    }

    /// A reader that starts with bytes already read from the stream.
    pub fn with_prefix(inner: R, max_frame_len: u32, prefix: &[u8]) -> Self {
        let mut r = Self::new(inner, max_frame_len);
        r.buf.extend_from_slice(prefix);
        r.filled = prefix.len();
        r
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Total bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Lets go of a read buffer grown for large frames while no frame is
    /// partly read (called when the connection is quiet), so memory that
    /// big frames took comes back.
    pub fn trim(&mut self) {
        if self.filled == 0 && self.buf.capacity() > KEEP_READ {
            self.buf = BytesMut::new();
        }
        self.last_big = [None, None];
    }

    /// A buffer for a large frame: the last one's if its frame is gone,
    /// else a new one. A new one reserves at least [`BIG_RESERVE`] bytes
    /// of address space (touched only as bytes arrive, so resident memory
    /// still grows with the data): the allocator then maps it on its own
    /// and unmaps it when it is freed, so large frames never leave memory
    /// behind in the allocator's heaps (glibc serves requests under 32 MiB
    /// from its heaps once a large block has been freed, and keeps them).
    fn big_buffer(&mut self, first: usize) -> Vec<u8> {
        for slot in &mut self.last_big {
            let Some(b) = slot.take() else { continue };
            match b.try_into_mut() {
                Ok(mut m) => {
                    m.clear();
                    return Vec::from(m);
                }
                Err(b) => *slot = Some(b), // still in use: maybe next time
            }
        }
        Vec::with_capacity(first.max(BIG_RESERVE))
    }

    /// Whether a whole frame is already in the buffer.
    pub fn has_buffered_frame(&self) -> bool {
        if self.big.is_some() || self.filled < HEADER_LEN {
            return false;
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        self.filled >= HEADER_LEN + len as usize
    }

    /// The header of the frame being read, once its 12 bytes are in
    /// (used to answer TOO_LARGE with the right id and cmd).
    pub fn pending_header(&self) -> Option<[u8; HEADER_LEN]> {
        if let Some(big) = &self.big {
            return Some(head(big));
        }
        (self.filled >= HEADER_LEN).then(|| head(&self.buf))
    }

    /// Reads the next frame. `Ok(None)` is a clean end of stream between
    /// frames; an end inside a frame is [`ProtocolError::TruncatedFrame`].
    pub fn read_frame(&mut self) -> Result<Option<Frame>, Error> {
        if self.big.is_some() {
            return self.read_big();
        }
        loop {
            let mut need = HEADER_LEN;
            if self.filled >= HEADER_LEN {
                let header = Header::parse(&head(&self.buf))?;
                let len = u64::from(header.len);
                if len > u64::from(self.max_frame_len) {
                    return Err(Error::TooLarge {
                        len,
                        max: u64::from(self.max_frame_len),
                        side: Side::Local,
                    });
                }
                need = HEADER_LEN + header.len as usize; // bounded by the check above
                if self.filled >= need {
                    let mut frame = self.buf.split_to(need);
                    self.filled -= need;
                    let payload = frame.split_off(HEADER_LEN).freeze();
                    return Ok(Some(Frame { header, payload }));
                }
                if need > BIG_FRAME {
                    // Everything buffered belongs to this frame.
                    let mut v = self.big_buffer(self.filled.max(BIG_FRAME).min(need));
                    v.extend_from_slice(&self.buf[..self.filled]);
                    self.buf.clear();
                    self.filled = 0;
                    self.big = Some(v);
                    return self.read_big();
                }
            }
            if self.filled == self.buf.len() {
                let missing = need - self.filled;
                let grow = if missing <= READ_CHUNK {
                    READ_CHUNK
                } else {
                    missing.min(self.filled.max(64 * 1024))
                };
                self.buf.resize(self.filled + grow, 0);
            }
            let n = match self.inner.read(&mut self.buf[self.filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                if self.filled == 0 {
                    return Ok(None);
                }
                return Err(ProtocolError::TruncatedFrame {
                    needed: need as u64,
                    got: self.filled as u64,
                }
                .into());
            }
            self.filled += n;
            self.received += n as u64;
        }
    }
}

impl<R: Read> FrameReader<R> {
    /// Continues a large frame: reads straight into its own buffer (the
    /// stream fills uninitialized capacity, so nothing is zeroed), growing
    /// it at most 4x what has arrived, then hands it out without a copy.
    fn read_big(&mut self) -> Result<Option<Frame>, Error> {
        let mut v = self.big.take().expect("a big frame in progress");
        let header = Header::parse(&head(&v))?;
        let need = HEADER_LEN + header.len as usize; // checked against the limit already
        while v.len() < need {
            if v.len() == v.capacity() {
                v.reserve_exact((v.len() * 3).min(need - v.len()));
            }
            // Never read past this frame: the next one belongs to `buf`.
            let room = (v.capacity() - v.len()).min(need - v.len()) as u64;
            let before = v.len();
            let r = (&mut self.inner).take(room).read_to_end(&mut v);
            self.received += (v.len() - before) as u64;
            match r {
                Ok(_) if v.len() == before => {
                    return Err(ProtocolError::TruncatedFrame {
                        needed: need as u64,
                        got: before as u64,
                    }
                    .into());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.big = Some(v);
                    return Err(e.into());
                }
            }
        }
        let whole = Bytes::from(v);
        let payload = whole.slice(HEADER_LEN..);
        // The newest first; the oldest is let go.
        self.last_big.swap(0, 1);
        self.last_big[0] = Some(whole);
        Ok(Some(Frame { header, payload }))
    }
}

fn head(buf: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&buf[..HEADER_LEN]);
    h
}

/// Starts a frame in `buf`: clears it and writes a header whose `len` is
/// patched by [`finish_frame`] once the payload is appended.
#[doc(hidden)]
pub fn start_frame(buf: &mut BytesMut, kind: Kind, cmd: u16, id: u32) {
    buf.clear();
    buf.put_slice(
        &Header {
            len: 0,
            kind,
            cmd,
            id,
        }
        .to_bytes(),
    );
}

/// Patches the length of a frame started with [`start_frame`], refusing a
/// payload over `limits.max_frame_len` before anything is written.
#[doc(hidden)]
pub fn finish_frame(buf: &mut BytesMut, limits: &Limits) -> Result<(), Error> {
    finish_frame_with_tail(buf, 0, limits)
}

/// Like [`finish_frame`] for a frame whose payload continues with `tail`
/// bytes sent after `buf`.
pub(crate) fn finish_frame_with_tail(
    buf: &mut BytesMut,
    tail: usize,
    limits: &Limits,
) -> Result<(), Error> {
    let len = (buf.len() - HEADER_LEN + tail) as u64;
    limits.check_len(len, Side::Local)?;
    buf[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Builds one whole frame with the given payload bytes.
pub fn encode_frame(kind: Kind, cmd: u16, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(
        &Header {
            len: payload.len() as u32,
            kind,
            cmd,
            id,
        }
        .to_bytes(),
    );
    v.extend_from_slice(payload);
    v
}

/// An ERROR frame's payload: `u16 code` then the UTF-8 message.
pub fn error_payload(code: u16, message: &str, dst: &mut BytesMut) {
    dst.put_u16_le(code);
    dst.put_slice(message.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields one byte per read, like a very poor network.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    const CALL_ADD: &[u8] = &[8, 0, 0, 0, 1, 0, 3, 0, 7, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0];

    #[test]
    fn read_single_frame_one_byte_at_a_time() {
        let mut r = FrameReader::new(Trickle(CALL_ADD), 1 << 20);
        let f = r.read_frame().unwrap().unwrap();
        assert_eq!(f.header.cmd, 3);
        assert_eq!(&f.payload[..], &CALL_ADD[12..]);
        assert!(r.read_frame().unwrap().is_none());
    }

    #[test]
    fn read_two_frames_in_one_buffer() {
        let mut both = CALL_ADD.to_vec();
        both.extend_from_slice(CALL_ADD);
        let mut r = FrameReader::new(&both[..], 1 << 20);
        assert!(r.read_frame().unwrap().is_some());
        assert!(r.read_frame().unwrap().is_some());
        assert!(r.read_frame().unwrap().is_none());
    }

    #[test]
    fn read_max_frame_len_refused_before_allocating() {
        let hdr = [0xff, 0xff, 0xff, 0xff, 1, 0, 1, 0, 1, 0, 0, 0];
        let mut r = FrameReader::new(&hdr[..], 64 << 20);
        match r.read_frame() {
            Err(Error::TooLarge { len, max, side }) => {
                assert_eq!(
                    (len, max, side),
                    (u64::from(u32::MAX), 64 << 20, Side::Local)
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(r.buf.capacity() < 64 * 1024);
    }

    #[test]
    fn read_truncated_frame_then_eof() {
        let mut r = FrameReader::new(&CALL_ADD[..15], 1 << 20);
        assert!(matches!(
            r.read_frame(),
            Err(Error::Protocol(ProtocolError::TruncatedFrame {
                needed: 20,
                got: 15
            }))
        ));
    }

    #[test]
    fn read_unknown_kind_and_flags() {
        let mut bad = CALL_ADD.to_vec();
        bad[4] = 9;
        let mut r = FrameReader::new(&bad[..], 1 << 20);
        assert!(matches!(
            r.read_frame(),
            Err(Error::Protocol(ProtocolError::UnknownKind(9)))
        ));
        let mut bad = CALL_ADD.to_vec();
        bad[5] = 0x80;
        let mut r = FrameReader::new(&bad[..], 1 << 20);
        assert!(matches!(
            r.read_frame(),
            Err(Error::Protocol(ProtocolError::UnknownFlags(0x80)))
        ));
    }

    #[test]
    fn write_max_frame_len_checked_before_sending() {
        let limits = Limits::default().max_frame_len(4);
        let mut buf = BytesMut::new();
        start_frame(&mut buf, Kind::Call, 1, 1);
        buf.put_slice(b"12345");
        assert!(matches!(
            finish_frame(&mut buf, &limits),
            Err(Error::TooLarge {
                len: 5,
                max: 4,
                side: Side::Local
            })
        ));
    }

    /// Yields up to 100 KiB per read and a timeout between reads.
    struct Stutter<'a> {
        data: &'a [u8],
        tick: bool,
    }
    impl Read for Stutter<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.tick = !self.tick;
            if self.tick {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = out.len().min(self.data.len()).min(100 * 1024);
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn large_frame_resumes_after_read_timeouts() {
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let mut bytes = encode_frame(Kind::Reply, 1, 2, &payload);
        bytes.extend_from_slice(&encode_frame(Kind::Reply, 1, 3, b"next"));
        let mut r = FrameReader::new(
            Stutter {
                data: &bytes,
                tick: false,
            },
            4 << 20,
        );
        let mut frames = Vec::new();
        for _ in 0..1000 {
            match r.read_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(frames.len(), 2);
        assert!(frames[0].payload == payload);
        assert_eq!(&frames[1].payload[..], b"next");
        assert_eq!(r.received(), bytes.len() as u64);
    }

    #[test]
    fn large_frame_truncated_by_eof() {
        let bytes = encode_frame(Kind::Reply, 1, 2, &vec![0u8; 500_000]);
        let mut r = FrameReader::new(&bytes[..400_000], 1 << 20);
        assert!(matches!(
            r.read_frame(),
            Err(Error::Protocol(ProtocolError::TruncatedFrame {
                needed: 500_012,
                ..
            }))
        ));
    }

    #[test]
    fn large_frame_grows_as_bytes_arrive() {
        let payload = vec![7u8; 300_000];
        let bytes = encode_frame(Kind::Reply, 1, 2, &payload);
        let mut r = FrameReader::new(&bytes[..], 1 << 20);
        let f = r.read_frame().unwrap().unwrap();
        assert_eq!(f.payload.len(), 300_000);
    }
}
