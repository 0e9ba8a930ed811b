//! The server side of a TLS port: tell a TLS client from a plain one, run
//! the handshake under the deadline, then serve raw frames or the
//! WebSocket upgrade inside it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{Connection, ServerConnection};

use super::session::{handshake, HsError, Session, TlsRead, TlsReader, TlsWriter};
use crate::error::ErrorCode;
use crate::frame::{encode_frame, error_payload, FrameReader, Kind};
use crate::server::{run_conn, Shared};

use crate::tcp::{is_tick, linger};

/// The first bytes of a TLS connection: a handshake record of TLS 1.0 to
/// 1.3 (`16 03 00..=04`).
pub(crate) fn is_tls_start(b: &[u8]) -> bool {
    match b {
        [] => false,
        [0x16] | [0x16, 0x03] => true,
        [0x16, 0x03, v, ..] => *v <= 4,
        _ => false,
    }
}

/// What the handshake deadline is: the WebSocket handshake's when the
/// port also serves WebSocket (it covers TLS and the upgrade), else the
/// TLS config's.
fn handshake_timeout(shared: &Shared) -> Duration {
    #[cfg(feature = "ws")]
    if let Some(ws) = &shared.config.ws {
        return ws.handshake_timeout;
    }
    shared
        .config
        .tls
        .as_ref()
        .map_or(Duration::from_secs(10), |t| t.handshake_timeout)
}

/// Reads up to `want` bytes with `read`: before the first byte the idle
/// timeout applies, from the first byte `deadline` (set then). Returns the
/// bytes (fewer at the end of the stream or the deadline) or `None` when
/// the connection should just be dropped.
fn read_start(
    shared: &Shared,
    want: usize,
    deadline: &mut Option<Instant>,
    timeout: Duration,
    mut read: impl FnMut(&mut [u8], Duration) -> io::Result<usize>,
) -> Option<Vec<u8>> {
    let tick = shared.config.limits.tick();
    let idle_deadline = shared
        .config
        .limits
        .idle_timeout
        .map(|d| Instant::now() + d);
    let mut got = vec![0u8; want];
    let mut n = 0;
    while n < want {
        if shared.is_stopping() {
            return None;
        }
        let now = Instant::now();
        let wait = match *deadline {
            Some(d) if now >= d => break,
            Some(d) => (d - now).min(tick).max(Duration::from_millis(1)),
            None if idle_deadline.is_some_and(|d| now >= d) => return None,
            None => tick,
        };
        match read(&mut got[n..], wait) {
            Ok(0) => break,
            Ok(k) => {
                if n == 0 && deadline.is_none() {
                    *deadline = Some(now + timeout);
                }
                n += k;
            }
            Err(e) if is_tick(&e) => {}
            Err(_) => return None,
        }
    }
    got.truncate(n);
    Some(got)
}

/// Serves one accepted connection on a TLS port until it ends.
/// `forwarded`: the client's address named by a trusted proxy.
pub(crate) fn serve(
    shared: &Arc<Shared>,
    id: u64,
    stream: TcpStream,
    forwarded: Option<std::net::SocketAddr>,
) {
    let Some(cfg) = shared.config.tls.clone() else {
        return;
    };
    let limits = shared.config.limits;
    let tick = limits.tick();
    let timeout = handshake_timeout(shared);
    let mut deadline = None;
    let mut s = &stream;
    let Some(first) = read_start(shared, 3, &mut deadline, timeout, |b, wait| {
        let _ = stream.set_read_timeout(Some(wait));
        s.read(b)
    }) else {
        return;
    };
    let Some(deadline) = deadline else {
        return; // closed before a byte
    };
    if !is_tls_start(&first) {
        refuse_plain(shared, &stream, first, deadline);
        return;
    }
    let Ok(server) = ServerConnection::new(Arc::clone(&cfg.server)) else {
        return;
    };
    let mut tls = Connection::Server(server);
    let early = match handshake(&mut tls, &stream, deadline, tick, &first, false) {
        Ok(early) => early,
        // A failed, stalled or abandoned handshake costs this connection
        // only; the client sees the alert (or the close).
        Err(HsError::Deadline | HsError::Closed | HsError::NotTls(_) | HsError::Io(_)) => return,
        Err(HsError::Tls(_)) => {
            linger(&stream);
            return;
        }
    };
    let peer_name = forwarded
        .or_else(|| stream.peer_addr().ok())
        .map_or_else(|| "the client".to_owned(), |a| format!("the client {a}"));
    let sess = Session::new(tls, stream, limits.write_timeout, peer_name, forwarded);
    #[cfg_attr(not(feature = "ws"), allow(unused_mut))]
    let mut read = TlsRead::new(Arc::clone(&sess), early);

    // Inside TLS, the same sniff as on a plain port: `GET ` is a WebSocket
    // upgrade (sharing the handshake deadline), anything else raw frames.
    #[cfg(feature = "ws")]
    let prefix = match &shared.config.ws {
        Some(ws) => {
            let mut deadline = Some(deadline);
            let Some(start) = read_start(shared, 4, &mut deadline, timeout, |b, wait| {
                read.set_read_timeout(wait);
                read.read(b)
            }) else {
                return;
            };
            if start.is_empty() {
                return;
            }
            if start[..] == b"GET "[..start.len()] {
                if start.len() == 4 {
                    super::wss::serve(
                        shared,
                        ws,
                        id,
                        sess,
                        read,
                        deadline.unwrap_or(Instant::now()),
                    );
                }
                return;
            }
            if !ws.raw_tcp {
                return;
            }
            start
        }
        None => Vec::new(),
    };
    #[cfg(not(feature = "ws"))]
    let prefix: Vec<u8> = Vec::new();
    read.set_read_timeout(tick);
    let reader = FrameReader::with_prefix(read, limits.max_frame_len, &prefix);
    run_conn(
        shared,
        id,
        Box::new(TlsWriter::new(sess)),
        Box::new(TlsReader(reader)),
        shared.services.clone(),
    );
}

/// A plain client on a TLS port: a plain WebSocket upgrade gets HTTP 400,
/// raw framerpc gets a PROTOCOL error frame answering its first call;
/// both name TLS. Only this connection is spent.
fn refuse_plain(shared: &Shared, stream: &TcpStream, first: Vec<u8>, deadline: Instant) {
    let port = shared.local_port();
    if first.starts_with(b"GE") {
        let body =
            format!("bad request: this port speaks TLS; connect with wss://HOST:{port}/PATH\n");
        let text = format!(
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut s = stream;
        let _ = s.write_all(text.as_bytes());
        linger(stream);
        return;
    }
    let msg = format!(
        "protocol error: this port speaks TLS; connect with tls://HOST:{port} (a plain framerpc \
         client reached a TLS port)"
    );
    // Answer the first CALL (a NOTIFY such as `identify` may come first),
    // reading at most a few small frames before the deadline.
    let mut reader = FrameReader::with_prefix(stream, 64 * 1024, &first);
    let mut frames = 0;
    let mut answered = false;
    while frames < 4 && Instant::now() < deadline {
        let _ = stream.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(250))
                .max(Duration::from_millis(1)),
        ));
        match reader.read_frame() {
            Ok(Some(f)) => {
                frames += 1;
                if f.header.kind == Kind::Call {
                    send_error(stream, f.header.cmd, f.header.id, &msg);
                    answered = true;
                    break;
                }
            }
            Ok(None) => return,
            Err(crate::Error::Io(e)) if is_tick(&e) => {}
            Err(_) => break,
        }
    }
    if !answered {
        send_error(stream, 0, 0, &msg);
    }
    linger(stream);
}

fn send_error(stream: &TcpStream, cmd: u16, id: u32, msg: &str) {
    let mut b = bytes::BytesMut::new();
    error_payload(ErrorCode::PROTOCOL.0, msg, &mut b);
    let frame = encode_frame(Kind::Error, cmd, id, &b);
    let mut s = stream;
    let _ = s.write_all(&frame);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_start() {
        assert!(is_tls_start(&[0x16, 0x03, 0x01]));
        assert!(is_tls_start(&[0x16, 0x03, 0x03, 0x02]));
        assert!(!is_tls_start(&[0x16, 0x03, 0x09]));
        assert!(!is_tls_start(b"GET"));
        assert!(!is_tls_start(&[12, 0, 0]));
    }
}
