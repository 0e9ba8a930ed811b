//! `Origin` and `Host` at the upgrade, with forged headers sent by hand:
//! allowed origins upgrade and are served, refused ones get 403 with a body
//! that names what was refused and the setting that allows it (never the
//! token), requests without `Origin` are unaffected; open mode refuses
//! browser origins and non-loopback `Host` names by default, token mode
//! allows any origin unless a list is set. No handler runs for a refused
//! upgrade and no admission permit is taken.
#![cfg(feature = "ws")]

#[path = "../examples/common/greet.rs"]
mod greet;
mod ws_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use framerpc::codec::UNIT;
use framerpc::frame::{encode_frame, Kind};
use framerpc::{Client, Command, Router, Server, ServerBuilder, WsConfig};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};
use ws_support::*;

const COUNT: Command<(), ()> = Command::new(30, "count", &UNIT, &UNIT);
const TOKEN: &str = "origin-test-token-0123456789abcdef";

fn counting_router(n: Arc<AtomicU32>) -> Router {
    greet::router().handle(&COUNT, move |()| {
        n.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}

struct Srv {
    ws: WsServer,
    calls: Arc<AtomicU32>,
}

impl Srv {
    fn addr(&self) -> SocketAddr {
        self.ws.addr()
    }
    /// `127.0.0.1:PORT`, the Host a client of `ws://127.0.0.1:PORT` sends.
    fn host(&self) -> String {
        self.addr().to_string()
    }
    fn port(&self) -> u16 {
        self.addr().port()
    }
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn serve(builder: ServerBuilder, config: impl FnOnce(WsConfig) -> WsConfig) -> Srv {
    let calls = Arc::new(AtomicU32::new(0));
    let router = counting_router(Arc::clone(&calls));
    let ws = serve_ws_with(builder, config(WsConfig::new().mount("/greet", router)));
    Srv { ws, calls }
}

fn open_server(config: impl FnOnce(WsConfig) -> WsConfig) -> Srv {
    serve(Server::builder(), |c| config(c.open()))
}

fn token_server(config: impl FnOnce(WsConfig) -> WsConfig) -> Srv {
    serve(Server::builder().token(TOKEN), config)
}

/// What the server answered to a hand-written upgrade.
struct Answer {
    status: u16,
    body: String,
    stream: TcpStream,
}

/// Sends an upgrade for `target` with exactly the `headers` given (plus the
/// WebSocket ones; no Host unless given), and right behind it a masked
/// binary message carrying a COUNT call, which must never run if the
/// upgrade is refused. Reads the answer's head (and, if refused, the body
/// up to the close).
fn upgrade(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Answer {
    let mut s = tcp(addr);
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let k = s.read(&mut chunk).unwrap();
        assert!(
            k > 0,
            "closed before a full answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..k]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let mut body = buf[end..].to_vec();
    if status == 101 {
        assert!(body.is_empty(), "bytes after 101");
    } else {
        // The COUNT message goes out after the refusal arrived: the server
        // must not read it as a frame.
        let call = encode_frame(Kind::Call, 30, 1, b"");
        let mut frame = vec![0x82, 0x80 | call.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(&call);
        let _ = s.write_all(&frame);
        let _ = s.read_to_end(&mut body);
    }
    Answer {
        status,
        body: String::from_utf8_lossy(&body).to_string(),
        stream: s,
    }
}

/// The upgrade succeeded: one `add_2_words` call over the same socket.
fn assert_served(a: Answer, what: &str) {
    assert_eq!(a.status, 101, "{what}: {}", a.body);
    let mut ws = WebSocket::from_raw_socket(a.stream, Role::Client, None);
    let call = encode_frame(
        Kind::Call,
        greet::ADD_2_WORDS.id(),
        7,
        &[2, 0, 0, 0, 3, 0, 0, 0],
    );
    ws.send(Message::binary(call)).unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Binary(b) => {
                assert_eq!(b[4], Kind::Reply as u8, "{what}");
                assert_eq!(&b[12..], &[5, 0, 0, 0], "{what}");
                break;
            }
            _ => continue,
        }
    }
    let _ = ws.close(None);
}

/// A 403 whose body names `names` and `setting`.
fn assert_forbidden(a: &Answer, names: &str, setting: &str, what: &str) {
    assert_eq!(a.status, 403, "{what}: {}", a.body);
    assert!(a.body.contains(names), "{what}: {:?}", a.body);
    assert!(a.body.contains(setting), "{what}: {:?}", a.body);
    assert!(!a.body.contains(TOKEN), "{what}: the token was echoed");
}

#[test]
fn open_server_refuses_every_browser_origin_by_default_and_runs_nothing() {
    let s = open_server(|c| c);
    let host = s.host();
    for origin in [
        "http://localhost:8080",
        format!("http://127.0.0.1:{}", s.port()).as_str(),
        "http://127.0.0.1:5173",
        "https://evil.example",
        "null",
        "file://",
        "chrome-extension://abcdef",
        "not even an origin",
    ] {
        let a = upgrade(s.addr(), "/greet", &[("Host", &host), ("Origin", origin)]);
        assert_forbidden(&a, "allowed_origins", "require a token", origin);
        assert!(a.body.contains(origin), "{origin}: {:?}", a.body);
    }
    // Also on an unknown path: the origin is checked first.
    let a = upgrade(
        s.addr(),
        "/nope",
        &[("Host", &host), ("Origin", "http://localhost:1")],
    );
    assert_eq!(a.status, 403);
    assert_eq!(s.calls(), 0, "a handler ran for a refused browser");
    // Without Origin (a non-browser client) the same server serves.
    assert_served(upgrade(s.addr(), "/greet", &[("Host", &host)]), "no Origin");
    let c = Client::builder()
        .timeout(T)
        .connect_ws(&s.ws.url("/greet"))
        .unwrap();
    c.call(&COUNT, &()).unwrap();
    assert_eq!(s.calls(), 1);
    // A plain tungstenite client sends no Origin either.
    let mut ws = tung(s.addr(), "/greet", None).unwrap();
    ws.send(Message::binary(encode_frame(Kind::Call, 30, 1, b"")))
        .unwrap();
    while !matches!(ws.read().unwrap(), Message::Binary(_)) {}
    assert_eq!(s.calls(), 2);
}

#[test]
fn open_server_serves_listed_origins_exactly_as_documented() {
    let s = open_server(|c| c.allowed_origins(["http://localhost:*", "https://*.lab.example"]));
    let host = s.host();
    for origin in [
        "http://localhost:3000",
        "http://localhost",
        "HTTP://LocalHost:1",
        "https://a.lab.example",
        "https://a.b.lab.example:443",
    ] {
        let a = upgrade(s.addr(), "/greet", &[("Host", &host), ("Origin", origin)]);
        assert_served(a, origin);
    }
    for origin in [
        "https://localhost:3000",
        "http://localhost.evil.example:3000",
        "https://lab.example",
        "https://evil-lab.example",
        "https://a.lab.example:8443",
        "http://a.lab.example",
        "null",
        "http://127.0.0.1:3000",
    ] {
        let a = upgrade(s.addr(), "/greet", &[("Host", &host), ("Origin", origin)]);
        assert_forbidden(&a, origin, "WsConfig::allowed_origins", origin);
    }
    // Two Origin headers are refused even if both are listed.
    let a = upgrade(
        s.addr(),
        "/greet",
        &[
            ("Host", &host),
            ("Origin", "http://localhost:1"),
            ("Origin", "http://localhost:2"),
        ],
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(s.calls(), 0);
}

#[test]
fn null_origin_only_when_listed() {
    let s = open_server(|c| c.allowed_origins(["*"]));
    let host = s.host();
    assert_served(
        upgrade(
            s.addr(),
            "/greet",
            &[("Host", &host), ("Origin", "https://x.example")],
        ),
        "* allows any origin",
    );
    let a = upgrade(s.addr(), "/greet", &[("Host", &host), ("Origin", "null")]);
    assert_forbidden(&a, "\"null\"", "allowed_origins", "* does not allow null");

    let s = open_server(|c| c.allowed_origins(["null"]));
    let host = s.host();
    assert_served(
        upgrade(s.addr(), "/greet", &[("Host", &host), ("Origin", "null")]),
        "null listed",
    );
    assert_eq!(s.calls(), 0);
}

#[test]
fn open_server_accepts_only_loopback_localhost_and_its_own_address_as_host() {
    let s = open_server(|c| c);
    let p = s.port();
    for host in [
        format!("127.0.0.1:{p}"),
        "127.0.0.1".to_owned(),
        format!("127.9.8.7:{p}"),
        format!("localhost:{p}"),
        format!("LocalHost:{p}"),
        format!("[::1]:{p}"),
        format!("[::ffff:127.0.0.1]:{p}"),
    ] {
        assert_served(upgrade(s.addr(), "/greet", &[("Host", &host)]), &host);
    }
    for host in [
        format!("evil.example:{p}"),
        "evil.example".to_owned(),
        format!("localhost.evil.example:{p}"),
        format!("127.0.0.1.nip.io:{p}"),
        format!("localhost.:{p}"),
        format!("0.0.0.0:{p}"),
        format!("192.168.1.20:{p}"),
        format!("[::2]:{p}"),
        "127.0.0.1:port".to_owned(),
        String::new(),
    ] {
        let a = upgrade(s.addr(), "/greet", &[("Host", &host)]);
        assert_forbidden(&a, "Host", "WsConfig::allowed_hosts", &host);
        assert!(
            a.body.contains(&format!("\"{host}\"")),
            "{host}: {:?}",
            a.body
        );
    }
    // Missing (HTTP/1.1 requires it) and repeated.
    let a = upgrade(s.addr(), "/greet", &[]);
    assert_forbidden(&a, "no Host header", "allowed_hosts", "missing Host");
    let a = upgrade(
        s.addr(),
        "/greet",
        &[("Host", "127.0.0.1"), ("Host", "evil.example")],
    );
    assert_forbidden(&a, "more than one Host", "allowed_hosts", "two Hosts");
    // An absolute request target is checked too.
    let a = upgrade(
        s.addr(),
        &format!("ws://evil.example:{p}/greet"),
        &[("Host", "127.0.0.1")],
    );
    assert_forbidden(&a, "evil.example", "allowed_hosts", "absolute target");
    assert_eq!(s.calls(), 0);
}

#[test]
fn allowed_hosts_adds_names_and_star_turns_the_check_off() {
    let s = open_server(|c| c.allowed_hosts(["Device.Lab.example", "*.farm.example", "10.1.2.3"]));
    let p = s.port();
    for host in [
        format!("device.lab.example:{p}"),
        format!("rack7.farm.example:{p}"),
        "10.1.2.3".to_owned(),
        format!("localhost:{p}"),
        format!("127.0.0.1:{p}"),
    ] {
        assert_served(upgrade(s.addr(), "/greet", &[("Host", &host)]), &host);
    }
    for host in ["lab.example", "farm.example", "10.1.2.4", "evil.example"] {
        let a = upgrade(s.addr(), "/greet", &[("Host", host)]);
        assert_forbidden(&a, host, "allowed_hosts", host);
    }
    // The Host list does not open the door to browsers.
    let a = upgrade(
        s.addr(),
        "/greet",
        &[
            ("Host", "device.lab.example"),
            ("Origin", "http://device.lab.example"),
        ],
    );
    assert_forbidden(&a, "Origin", "allowed_origins", "origin still refused");

    let s = open_server(|c| c.allowed_hosts(["*"]));
    assert_served(
        upgrade(s.addr(), "/greet", &[("Host", "anything.example:1")]),
        "* host",
    );
}

#[test]
fn token_server_allows_any_origin_and_host_by_default_the_token_decides() {
    let s = token_server(|c| c);
    let q = format!("/greet?token={TOKEN}");
    // A browser page with the token in the query (browsers cannot set
    // headers), from any origin and any Host.
    for (host, origin) in [
        ("127.0.0.1", "https://app.example"),
        ("evil.example:1", "null"),
        ("device.lab.example", "http://localhost:3000"),
    ] {
        let a = upgrade(s.addr(), &q, &[("Host", host), ("Origin", origin)]);
        assert_served(a, origin);
    }
    // Without the token: 401, not 403.
    let a = upgrade(
        s.addr(),
        "/greet",
        &[("Host", "127.0.0.1"), ("Origin", "https://app.example")],
    );
    assert_eq!(a.status, 401, "{}", a.body);
    // No Host at all is left to the token too.
    assert_served(upgrade(s.addr(), &q, &[]), "no Host, token");
    assert_eq!(s.calls(), 0);
}

#[test]
fn token_server_with_a_list_refuses_other_origins_before_the_token() {
    let s = token_server(|c| c.allowed_origins(["https://app.example"]));
    let q = format!("/greet?token={TOKEN}");
    let bearer = format!("Bearer {TOKEN}");
    assert_served(
        upgrade(
            s.addr(),
            &q,
            &[("Host", "127.0.0.1"), ("Origin", "https://APP.example")],
        ),
        "listed origin, token",
    );
    // A foreign origin is refused even with the right token (in the query
    // or the header), and the 403 never echoes it.
    for (target, auth) in [(q.as_str(), None), ("/greet", Some(bearer.as_str()))] {
        let mut h = vec![("Host", "127.0.0.1"), ("Origin", "https://evil.example")];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        let a = upgrade(s.addr(), target, &h);
        assert_forbidden(&a, "https://evil.example", "allowed_origins", target);
    }
    // With a wrong token the foreign origin still gets 403: origin first.
    let a = upgrade(
        s.addr(),
        "/greet?token=wrong",
        &[("Host", "127.0.0.1"), ("Origin", "null")],
    );
    assert_eq!(a.status, 403);
    // A listed origin with a wrong token: 401.
    let a = upgrade(
        s.addr(),
        "/greet?token=wrong",
        &[("Host", "127.0.0.1"), ("Origin", "https://app.example")],
    );
    assert_eq!(a.status, 401);
    // Non-browser clients are not affected.
    let c = s.ws.client("/greet");
    c.call(&COUNT, &()).unwrap();
    assert_eq!(s.calls(), 1);
}

#[test]
fn token_server_with_allowed_hosts_checks_host() {
    let s = token_server(|c| c.allowed_hosts(["device.lab.example"]));
    let q = format!("/greet?token={TOKEN}");
    assert_served(
        upgrade(s.addr(), &q, &[("Host", "device.lab.example:9")]),
        "listed",
    );
    assert_served(upgrade(s.addr(), &q, &[("Host", &s.host())]), "loopback");
    let a = upgrade(s.addr(), &q, &[("Host", "evil.example")]);
    assert_forbidden(&a, "evil.example", "allowed_hosts", "evil host");
    let a = upgrade(s.addr(), &q, &[]);
    assert_forbidden(&a, "no Host", "allowed_hosts", "missing host");
}

#[test]
fn refused_browser_never_holds_the_only_permit() {
    // The device: open, one user at a time.
    let s = serve(Server::builder().max_users(1), |c| c.open());
    let host = s.host();
    let mut refused = Vec::new();
    for _ in 0..3 {
        let a = upgrade(
            s.addr(),
            "/greet",
            &[("Host", &host), ("Origin", "http://localhost:8000")],
        );
        assert_eq!(a.status, 403);
        refused.push(a.stream); // our end stays open, like a tab that stays open
    }
    // No permit was taken. (A refused connection keeps its place in the
    // admission queue only while the server finishes answering it.)
    assert_eq!(s.ws.server().status().active, 0);
    let c = Client::builder()
        .timeout(T)
        .connect_ws(&s.ws.url("/greet"))
        .unwrap();
    c.call(&COUNT, &()).unwrap();
    drop(c);
    let mut idle = false;
    for _ in 0..500 {
        let st = s.ws.server().status();
        if (st.active, st.waiting) == (0, 0) {
            idle = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(idle, "{:?}", s.ws.server().status());
    drop(refused);
    assert_eq!(s.calls(), 1);
}

#[test]
fn bad_patterns_are_config_errors() {
    let e = WsConfig::new()
        .try_allowed_origins(["https://app.example/"])
        .unwrap_err();
    assert!(e.to_string().contains("https://app.example/"), "{e}");
    assert!(WsConfig::new()
        .try_allowed_origins(["http://*.x.example:*", "null", "*"])
        .is_ok());
    let e = WsConfig::new()
        .try_allowed_hosts(["device.example:9000"])
        .unwrap_err();
    assert!(e.to_string().contains("no port"), "{e}");
    let r = std::panic::catch_unwind(|| WsConfig::new().allowed_origins(["localhost"]));
    assert!(r.is_err());
}
