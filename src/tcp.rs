//! Raw TCP transport: frames straight on the stream.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;

use crate::conn::{FrameRead, FrameWrite};
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

/// The writing half.
pub(crate) struct TcpWriter(pub TcpStream);

impl FrameWrite for TcpWriter {
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.0.write_all(frame)
    }
    fn heartbeat(&mut self, ping_frame: &[u8]) -> io::Result<()> {
        self.0.write_all(ping_frame)
    }
    fn refuse(&mut self, err: &Error, header: Option<[u8; 12]>) {
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
            Error::TooLarge { len, max, .. } => format!(
                "too large: payload of {len} bytes exceeds the receiver's limit of {max} bytes"
            ),
            other => other.to_string(),
        };
        let mut b = BytesMut::new();
        error_payload(code.0, &msg, &mut b);
        let frame = crate::frame::encode_frame(Kind::Error, cmd, id, &b);
        let _ = self.0.write_all(&frame);
    }
    fn shutdown(&mut self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
    fn peer_addr(&self) -> Option<SocketAddr> {
        self.0.peer_addr().ok()
    }
}

/// The reading half.
pub(crate) struct TcpReader(pub FrameReader<TcpStream>);

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
        let _ = self.0.get_ref().set_read_timeout(Some(timeout));
    }
}
