//! Behind a proxy: the client address a trusted proxy names (PROXY v1
//! line, `X-Forwarded-For`, `X-Real-IP`) names the connection in BUSY and
//! holders and is what `Peer::peer_addr` reports; from anyone else it is
//! ignored.
#![cfg(feature = "ws")]

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use framerpc::codec::{Codec, STR};
use framerpc::frame::{encode_frame, Kind};
use framerpc::{Client, ErrorCode, Server, WhenFull, WsConfig};
use support::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

type Seen = Arc<Mutex<Vec<Option<SocketAddr>>>>;

/// An exclusive server that trusts `proxies`, recording each connection's
/// `Peer::peer_addr`.
fn server(proxies: &[&str]) -> (TestServer, Seen) {
    let seen: Seen = Arc::default();
    let s2 = Arc::clone(&seen);
    let srv = serve_with(
        Server::builder()
            .token("t")
            .max_users(1)
            .when_full(WhenFull::Refuse)
            .trusted_proxies(proxies.iter().map(|p| p.parse::<IpAddr>().unwrap()))
            .on_connect(move |p| s2.lock().unwrap().push(p.peer_addr()))
            .ws(WsConfig::new().mount("/greet", greet::router())),
        greet::router(),
    );
    (srv, seen)
}

fn hello_frame(id: u32) -> Vec<u8> {
    let mut p = BytesMut::new();
    STR.encode(&"p".to_owned(), &mut p);
    encode_frame(Kind::Call, greet::HELLO.id(), id, &p).to_vec()
}

/// A WebSocket client (tungstenite) that sends the proxy headers, and
/// makes one call (taking the device).
fn ws_with_headers(
    srv: &TestServer,
    headers: &[(&'static str, &str)],
) -> tungstenite::WebSocket<TcpStream> {
    let mut req = format!("ws://{}/greet", srv.addr())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", "Bearer t".parse().unwrap());
    for (k, v) in headers {
        req.headers_mut().append(*k, v.parse().unwrap());
    }
    let (mut ws, _) = tungstenite::client(req, raw(srv.addr())).unwrap();
    ws.send(Message::Binary(hello_frame(1).into())).unwrap();
    loop {
        if let Message::Binary(b) = ws.read().unwrap() {
            assert_eq!(b[4], Kind::Reply as u8);
            return ws;
        }
    }
}

fn busy_text(srv: &TestServer) -> String {
    let c = Client::builder()
        .token("t")
        .timeout(T)
        .connect(srv.addr())
        .unwrap();
    let e = c.call(&greet::HELLO, &"b".into()).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BUSY));
    e.to_string()
}

#[test]
fn x_forwarded_for_from_a_trusted_proxy_names_the_client() {
    let (srv, seen) = server(&["127.0.0.1"]);
    // The client wrote its own X-Forwarded-For; the proxy appended the
    // address it saw: the right-most untrusted entry counts.
    let _ws = ws_with_headers(
        &srv,
        &[
            ("X-Forwarded-For", "6.6.6.6, 203.0.113.7"),
            ("X-Real-IP", "1.1.1.1"),
        ],
    );
    let want: SocketAddr = "203.0.113.7:0".parse().unwrap();
    let holders = srv.server().holders();
    assert_eq!(holders[0].addr, Some(want));
    assert_eq!(holders[0].name, "203.0.113.7:0");
    assert_eq!(seen.lock().unwrap()[0], Some(want));
    let busy = busy_text(&srv);
    assert!(busy.contains("203.0.113.7:0"), "{busy}");
    assert!(!busy.contains("6.6.6.6"), "{busy}");
}

#[test]
fn x_real_ip_when_there_is_no_x_forwarded_for() {
    let (srv, _) = server(&["127.0.0.1"]);
    let _ws = ws_with_headers(&srv, &[("X-Real-IP", "198.51.100.9")]);
    assert_eq!(
        srv.server().holders()[0].addr,
        Some("198.51.100.9:0".parse().unwrap())
    );
}

#[test]
fn headers_from_an_untrusted_peer_are_ignored() {
    let (srv, seen) = server(&["10.9.9.9"]);
    let ws = ws_with_headers(&srv, &[("X-Forwarded-For", "203.0.113.7")]);
    let own = ws.get_ref().local_addr().unwrap();
    assert_eq!(srv.server().holders()[0].addr, Some(own));
    assert_eq!(seen.lock().unwrap()[0], Some(own));
    assert!(!busy_text(&srv).contains("203.0.113.7"));
}

#[test]
fn proxy_protocol_line_from_a_trusted_proxy_names_the_client() {
    let (srv, seen) = server(&["127.0.0.1"]);
    let mut s = raw(srv.addr());
    use std::io::Write;
    s.write_all(b"PROXY TCP4 198.51.100.4 127.0.0.1 40000 9000\r\n")
        .unwrap();
    send(&mut s, Kind::Call, 0xFF00, 1, b"t");
    let (h, _) = recv(&mut s).unwrap();
    assert_eq!(h.kind, Kind::Reply);
    s.write_all(&hello_frame(2)).unwrap();
    let (h, _) = recv(&mut s).unwrap();
    assert_eq!(h.kind, Kind::Reply);
    let want: SocketAddr = "198.51.100.4:40000".parse().unwrap();
    assert_eq!(srv.server().holders()[0].addr, Some(want));
    assert_eq!(seen.lock().unwrap()[0], Some(want));
    assert!(busy_text(&srv).contains("198.51.100.4:40000"));
    // A plain client from the trusted address still works (no PROXY line).
    drop(s);
    eventually("released", || srv.server().holders().is_empty());
    let c = Client::builder()
        .token("t")
        .timeout(T)
        .connect(srv.addr())
        .unwrap();
    assert_eq!(c.call(&greet::HELLO, &"x".into()).unwrap(), "hello x");
    // A WebSocket upgrade after a PROXY line.
    let mut s = raw(srv.addr());
    s.write_all(b"PROXY TCP4 198.51.100.5 127.0.0.1 40001 9000\r\n")
        .unwrap();
    let mut req = format!("ws://{}/greet", srv.addr())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", "Bearer t".parse().unwrap());
    let (ws, _) = tungstenite::client(req, s).unwrap();
    // Seen so far: the PROXY client, the BUSY one, the plain one, this.
    eventually("the ws peer is seen", || seen.lock().unwrap().len() >= 4);
    assert_eq!(
        seen.lock().unwrap()[3],
        Some("198.51.100.5:40001".parse().unwrap())
    );
    drop(ws);
}
