//! The server side: sniff `GET `, read the HTTP head under a deadline and
//! size bounds, check `Host`, `Origin`, path and token (in that order) in
//! tungstenite's handshake callback, then serve the connection like any
//! other.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{header, StatusCode};

use super::origin;
use super::stream::{ws_config, Out, Sink, Source, WsReader, WsStream, WsWriter};
use super::WsConfig;
use crate::conn::{constant_time_eq, FrameRead, Services};
use crate::router::Router;
use crate::server::{run_conn, Shared};

/// What [`serve_if_upgrade`] did with a connection.
pub(crate) enum Sniffed {
    /// It was a WebSocket upgrade (served, refused or dropped): done.
    Handled,
    /// Not an upgrade: these first bytes belong to a raw frame stream.
    Raw(Vec<u8>),
}

use crate::tcp::{drain, is_tick};

/// Reads the first bytes of a connection; a connection that starts with
/// `GET ` is a WebSocket upgrade and is served here until it ends. A raw
/// frame cannot start that way under the default size limit (its `len`
/// would be 0x20544547, over 500 MiB).
pub(crate) fn serve_if_upgrade(
    shared: &Arc<Shared>,
    ws: &WsConfig,
    id: u64,
    socket: &Arc<TcpStream>,
    forwarded: Option<SocketAddr>,
) -> Sniffed {
    let stream: &TcpStream = socket;
    let limits = shared.config.limits;
    let tick = limits.tick();
    // Before the first byte the peer is an idle connection (a raw client
    // may wait for its first call); from the first byte the handshake
    // deadline runs.
    let idle_deadline = limits.idle_timeout.map(|d| Instant::now() + d);
    let mut deadline: Option<Instant> = None;
    let mut first = [0u8; 4];
    let mut n = 0;
    let mut s = stream;
    while n < first.len() {
        if shared.is_stopping() {
            return Sniffed::Handled;
        }
        let now = Instant::now();
        match deadline {
            Some(d) if now >= d => break,
            Some(d) => {
                let _ = stream
                    .set_read_timeout(Some((d - now).min(tick).max(Duration::from_millis(1))));
            }
            None if idle_deadline.is_some_and(|d| now >= d) => return Sniffed::Handled,
            None => {}
        }
        match s.read(&mut first[n..]) {
            Ok(0) => break,
            Ok(k) => {
                if n == 0 {
                    deadline = Some(now + ws.handshake_timeout);
                }
                n += k;
            }
            Err(e) if is_tick(&e) => {}
            Err(_) => return Sniffed::Handled,
        }
    }
    if n == 0 {
        return Sniffed::Handled;
    }
    if first[..n] != b"GET "[..n] {
        let _ = stream.set_read_timeout(Some(tick));
        return Sniffed::Raw(first[..n].to_vec());
    }
    if n < first.len() {
        return Sniffed::Handled; // "GE" and then nothing: not a raw frame either
    }
    let Some(deadline) = deadline else {
        return Sniffed::Handled;
    };
    // One socket handle for both halves and the closer.
    serve_upgrade(
        shared,
        ws,
        id,
        Source::Tcp(Arc::clone(socket)),
        Sink::Tcp(Arc::clone(socket)),
        deadline,
        forwarded.or_else(|| stream.peer_addr().ok()),
    );
    Sniffed::Handled
}

/// Serves a WebSocket upgrade whose `GET ` was read from `input` (a plain
/// socket, or the plaintext of a TLS session), until the connection ends.
/// `deadline` bounds the rest of the handshake. `peer`: the peer's
/// address so far (a trusted proxy's PROXY line may have named it); a
/// trusted proxy's `X-Forwarded-For` or `X-Real-IP` replaces it.
pub(crate) fn serve_upgrade(
    shared: &Arc<Shared>,
    ws: &WsConfig,
    id: u64,
    input: Source,
    sink: Sink,
    deadline: Instant,
    peer: Option<SocketAddr>,
) {
    let max_frame_len = shared.config.limits.max_frame_len;
    let tick = shared.config.limits.tick();
    if let Some((out, services, ws_socket, forwarded)) =
        handshake(shared, ws, input, sink, deadline)
    {
        let mut reader = WsReader::new(ws_socket, max_frame_len);
        reader.set_read_timeout(tick);
        let peer = forwarded.map(|ip| SocketAddr::new(ip, 0)).or(peer);
        run_conn(
            shared,
            id,
            Box::new(WsWriter::new(out, peer)),
            Box::new(reader),
            services,
        );
    }
}

type Accepted = (
    super::stream::SharedOut,
    Services,
    tungstenite::WebSocket<WsStream>,
    // The client address a trusted proxy's headers named.
    Option<IpAddr>,
);

/// Reads the HTTP head (already started with `GET `) and runs tungstenite's
/// handshake on it; answers 4xx itself when it refuses.
#[allow(clippy::result_large_err)] // the callback's type is tungstenite's
fn handshake(
    shared: &Arc<Shared>,
    ws: &WsConfig,
    mut input: Source,
    sink: Sink,
    deadline: Instant,
) -> Option<Accepted> {
    let head = match read_head(shared, ws, &mut input, deadline) {
        Ok(h) => h,
        Err(Some(status)) => {
            respond(&sink, status, "");
            return None;
        }
        Err(None) => return None,
    };
    let (head, tail) = head;
    let stream = sink.socket();
    let out = Out::shared(sink.clone(), false);
    let st = WsStream::new(input, Arc::clone(&out), head, false);
    let mut chosen: Option<Arc<Router>> = None;
    let mut forwarded: Option<IpAddr> = None;
    let proxies = &shared.config.trusted_proxies;
    let from_proxy = !proxies.is_empty()
        && stream
            .peer_addr()
            .is_ok_and(|a| crate::proxy::trusted(proxies, a.ip()));
    let token = shared.services.token.clone();
    let local_ip = stream.local_addr().ok().map(|a| a.ip());
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        // Who may ask comes before what is asked: a refused page learns
        // nothing about paths or tokens.
        check_host(req, ws, token.is_none(), local_ip)?;
        check_origin(req, ws, token.is_none())?;
        let Some(router) = ws.mounts.get(req.uri().path()) else {
            return Err(error_response(
                StatusCode::NOT_FOUND,
                "not found: no namespace at this path\n",
            ));
        };
        if let Some(token) = &token {
            if !authorized(req, token) {
                return Err(error_response(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized: missing or wrong token\n",
                ));
            }
        }
        chosen = Some(Arc::clone(router));
        if from_proxy {
            let h = req.headers();
            let xff: Vec<&[u8]> = h
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            let real = h.get("x-real-ip").map(|v| v.as_bytes());
            forwarded = crate::proxy::from_headers(proxies, &xff, real);
        }
        Ok(resp)
    };
    // The head is complete in memory: the handshake reads no socket, and
    // writes its answer under the write timeout.
    let socket = match tungstenite::accept_hdr_with_config(
        st,
        callback,
        Some(ws_config(&shared.config.limits)),
    ) {
        Ok(mut socket) => {
            socket.get_mut().serve(tail);
            socket
        }
        Err(HandshakeError::Failure(tungstenite::Error::Http(_))) => {
            // 401, 403 or 404 was written.
            linger(&sink);
            return None;
        }
        Err(_) => {
            // Not a WebSocket upgrade (or a malformed one): nothing written.
            respond(
                &sink,
                StatusCode::BAD_REQUEST,
                "bad request: expected a WebSocket upgrade\n",
            );
            return None;
        }
    };
    let router = chosen?;
    let services = Services {
        router: Some(router),
        // The token was checked at the upgrade: no `auth` frame on WS.
        token: None,
        unknown_hint: None,
        ..shared.services.clone()
    };
    Some((out, services, socket, forwarded))
}

/// The `Host` check (see [`WsConfig::allowed_hosts`]): on an open server,
/// or whenever a list is set. The request target's authority, if it has
/// one (`GET ws://host/path`), must pass too.
#[allow(clippy::result_large_err)] // the callback's type is tungstenite's
fn check_host(
    req: &Request,
    ws: &WsConfig,
    open: bool,
    local_ip: Option<IpAddr>,
) -> Result<(), ErrorResponse> {
    let list = match &ws.allowed_hosts {
        Some(list) => list,
        None if open => &[][..],
        None => return Ok(()),
    };
    let hint = "allow it with WsConfig::allowed_hosts; loopback addresses, localhost and the \
                address the server was reached on are always allowed";
    let mut values = req.headers().get_all(header::HOST).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        let why = if req.headers().contains_key(header::HOST) {
            "more than one Host header"
        } else {
            "no Host header"
        };
        return Err(forbidden(format!(
            "forbidden: {why}; this server checks Host ({hint})\n"
        )));
    };
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    for v in std::iter::once(value.as_bytes()).chain(authority) {
        if !origin::host_allowed(v, local_ip, list) {
            return Err(forbidden(format!(
                "forbidden: Host {} is not allowed ({hint})\n",
                origin::quote(v)
            )));
        }
    }
    Ok(())
}

/// The `Origin` check (see [`WsConfig::allowed_origins`]): a request
/// without `Origin` passes; with one, it must be on the list, or (no list)
/// the server must have a token.
#[allow(clippy::result_large_err)] // the callback's type is tungstenite's
fn check_origin(req: &Request, ws: &WsConfig, open: bool) -> Result<(), ErrorResponse> {
    let mut values = req.headers().get_all(header::ORIGIN).iter();
    let Some(value) = values.next() else {
        return Ok(());
    };
    let list = match &ws.allowed_origins {
        Some(list) => list,
        None if open => {
            return Err(forbidden(format!(
                "forbidden: Origin {} refused: this server has no token and allows no browser \
                 origin; list it with WsConfig::allowed_origins, or require a token\n",
                origin::quote(value.as_bytes())
            )))
        }
        None => return Ok(()),
    };
    if values.next().is_some() {
        return Err(forbidden(
            "forbidden: more than one Origin header\n".to_owned(),
        ));
    }
    if !origin::origin_allowed(value.as_bytes(), list) {
        return Err(forbidden(format!(
            "forbidden: Origin {} is not allowed; allow it with WsConfig::allowed_origins\n",
            origin::quote(value.as_bytes())
        )));
    }
    Ok(())
}

fn forbidden(body: String) -> ErrorResponse {
    error_response(StatusCode::FORBIDDEN, &body)
}

/// Reads up to the end of the HTTP head: `Ok((head, tail))`, or the status
/// to answer with (`None`: just drop the connection).
fn read_head(
    shared: &Shared,
    ws: &WsConfig,
    s: &mut Source,
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<u8>), Option<StatusCode>> {
    let tick = shared.config.limits.tick();
    let mut buf = Vec::with_capacity(1024);
    buf.extend_from_slice(b"GET ");
    let mut chunk = [0u8; 2048];
    let mut scanned: usize = 0;
    loop {
        if let Some(pos) = find_end(&buf[scanned.saturating_sub(3)..]) {
            let end = scanned.saturating_sub(3) + pos + 4;
            if end > ws.max_header_bytes || count_lines(&buf[..end]) > ws.max_header_lines + 1 {
                return Err(Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
            }
            let tail = buf.split_off(end);
            return Ok((buf, tail));
        }
        scanned = buf.len();
        if buf.len() > ws.max_header_bytes || count_lines(&buf) > ws.max_header_lines + 1 {
            return Err(Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        }
        let now = Instant::now();
        if now >= deadline || shared.is_stopping() {
            return Err(None);
        }
        s.set_read_timeout((deadline - now).min(tick).max(Duration::from_millis(1)));
        match s.read(&mut chunk) {
            Ok(0) => return Err(None),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if is_tick(&e) => {}
            Err(_) => return Err(None),
        }
    }
}

fn find_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

fn count_lines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

fn error_response(status: StatusCode, body: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(body.to_owned()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    h.insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from(body.len()),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    h.insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// Tells a raw TCP client on a port that serves WebSocket only why it is
/// closed (an ERROR frame with call id 0), then half-closes.
pub(crate) fn refuse_raw(stream: &TcpStream, ws: &WsConfig, addr: std::net::SocketAddr) {
    let msg = format!(
        "raw TCP is off on this port (WsConfig::raw_tcp(false)); {}",
        ws.raw_hint(addr)
    );
    let mut b = bytes::BytesMut::new();
    crate::frame::error_payload(crate::ErrorCode::PROTOCOL.0, &msg, &mut b);
    let frame = crate::frame::encode_frame(crate::frame::Kind::Error, 0, 0, &b);
    let mut s = stream;
    let _ = std::io::Write::write_all(&mut s, &frame);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    drain(stream);
}

/// Writes a plain HTTP error response and half-closes.
fn respond(sink: &Sink, status: StatusCode, body: &str) {
    let text = format!(
        "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let _ = sink.write_all(text.as_bytes());
    linger(sink);
}

/// Half-closes, then reads and discards what the peer still sends (up to
/// 1 s), so the answer is not lost to a TCP reset. Inside TLS the
/// discarded bytes are ciphertext, read from the socket itself.
fn linger(sink: &Sink) {
    sink.shutdown_write();
    drain(sink.socket());
}

/// The token from `Authorization: Bearer` first, else the `token` query
/// parameter, compared in constant time. Never logged, never echoed.
fn authorized(req: &Request, token: &[u8]) -> bool {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let v = value.as_bytes();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            return constant_time_eq(token, trim(&v[7..]));
        }
    }
    let Some(query) = req.uri().query() else {
        return false;
    };
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("token="))
        .any(|v| constant_time_eq(token, &percent_decode(v)))
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// `%XX` escapes and `+` (space) of a query value.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, auth: Option<&str>) -> Request {
        let mut r = Request::builder().uri(uri);
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn bearer_header_first_then_query() {
        assert!(authorized(&req("/g", Some("Bearer abc")), b"abc"));
        assert!(authorized(&req("/g", Some("bearer  abc ")), b"abc"));
        assert!(!authorized(&req("/g", Some("Bearer abd")), b"abc"));
        assert!(authorized(&req("/g?x=1&token=abc", None), b"abc"));
        assert!(authorized(&req("/g?token=a%62c", None), b"abc"));
        assert!(!authorized(&req("/g?token=ab", None), b"abc"));
        assert!(!authorized(&req("/g", None), b"abc"));
        // A wrong header is not rescued by the query.
        assert!(!authorized(
            &req("/g?token=abc", Some("Bearer nope")),
            b"abc"
        ));
    }

    #[test]
    fn head_end_and_lines() {
        assert_eq!(find_end(b"GET / HTTP/1.1\r\n\r\nxx"), Some(14));
        assert_eq!(count_lines(b"a\r\nb\r\n"), 2);
        assert_eq!(percent_decode("a%2Fb+c%zz"), b"a/b c%zz");
    }
}
