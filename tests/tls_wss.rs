//! `wss://`: the WebSocket upgrade inside TLS on the TLS port, with the
//! token rules of `ws://`, big messages both ways, full duplex, client
//! certificates naming the connection, and a standard WebSocket client
//! (tungstenite over rustls) as a full client.
#![cfg(all(feature = "tls", feature = "ws"))]

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use framerpc::codec::BYTES;
use framerpc::frame::{encode_frame, Kind};
use framerpc::{Client, Command, Error, ErrorCode, Router, Server, WhenFull, WsConfig};
use support::tls_certs::*;
use support::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

const ECHO: Command<bytes::Bytes, bytes::Bytes> = Command::new(10, "echo", &BYTES, &BYTES);
const SLOW: Command<u32, u32> =
    Command::new(11, "slow", &framerpc::codec::U32, &framerpc::codec::U32);

fn router() -> Router {
    greet::router().handle(&ECHO, Ok).handle(&SLOW, |ms| {
        std::thread::sleep(Duration::from_millis(u64::from(ms)));
        Ok(ms)
    })
}

fn wss_server(builder: framerpc::ServerBuilder) -> TestServer {
    serve_with(
        builder
            .tls(server_tls())
            .token("s3cret")
            .ws(WsConfig::new().mount("/greet", router())),
        router(),
    )
}

fn wss_url(srv: &TestServer, path: &str) -> String {
    format!("wss://localhost:{}{path}", srv.addr().port())
}

#[test]
fn calls_over_wss_with_the_token_rules_of_ws() {
    let srv = wss_server(Server::builder());
    let c = tls_client()
        .token("s3cret")
        .timeout(T)
        .connect_ws_checked(&wss_url(&srv, "/greet"), &[&greet::HELLO])
        .unwrap();
    assert_eq!(c.call(&greet::HELLO, &"wss".into()).unwrap(), "hello wss");
    // The same TLS port serves tls:// (raw frames, auth frame) too.
    let raw = tls_client()
        .token("s3cret")
        .timeout(T)
        .connect_tls(&tls_url(srv.addr()))
        .unwrap();
    assert_eq!(raw.call(&greet::ADD_2_WORDS, &(2, 3)).unwrap(), 5);

    let refused = |token: Option<&str>, path: &str| {
        let mut b = tls_client().timeout(T);
        if let Some(t) = token {
            b = b.token(t);
        }
        match b.connect_ws(&wss_url(&srv, path)) {
            Err(Error::Handshake(m)) => m.into_string(),
            Err(other) => panic!("expected a handshake error, got {other:?}"),
            Ok(_) => panic!("expected a refusal"),
        }
    };
    assert!(refused(Some("wrong"), "/greet").contains("HTTP 401"));
    assert!(refused(Some("s3cret"), "/nowhere").contains("HTTP 404"));
    // The token in the query works as on ws://.
    let q = tls_client()
        .timeout(T)
        .connect_ws(&format!("{}?token=s3cret", wss_url(&srv, "/greet")))
        .unwrap();
    assert_eq!(q.call(&greet::HELLO, &"q".into()).unwrap(), "hello q");
    // Without roots: a clear config error.
    let e = Client::builder()
        .connect_ws(&wss_url(&srv, "/greet"))
        .unwrap_err();
    assert!(e.to_string().contains("tls_roots_pem"), "{e}");
    // A plain ws:// client on the TLS port is told.
    let e = Client::builder()
        .token("s3cret")
        .timeout(T)
        .connect_ws(&format!("ws://127.0.0.1:{}/greet", srv.addr().port()))
        .unwrap_err();
    assert!(e.to_string().contains("400"), "{e}");
}

#[test]
fn big_messages_both_ways_over_wss() {
    let srv = wss_server(Server::builder());
    let c = tls_client()
        .token("s3cret")
        .timeout(T * 4)
        .connect_ws(&wss_url(&srv, "/greet"))
        .unwrap();
    for size in [
        0usize,
        1,
        4096,
        16 * 1024 + 3,
        300_000,
        (1 << 20) + 5,
        5 << 20,
    ] {
        let data: bytes::Bytes = (0..size)
            .map(|i| (i * 13 % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let back = c.call(&ECHO, &data).unwrap();
        assert!(back == data, "echo of {size} bytes differs");
    }
}

#[test]
fn full_duplex_over_wss_while_a_handler_runs() {
    let srv = wss_server(Server::builder());
    let c = Arc::new(
        tls_client()
            .token("s3cret")
            .timeout(T * 4)
            .connect_ws(&wss_url(&srv, "/greet"))
            .unwrap(),
    );
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for i in 0..40u32 {
                    if t == 0 && i % 10 == 0 {
                        let big: bytes::Bytes = vec![t as u8; 700_000].into();
                        assert_eq!(c.call(&ECHO, &big).unwrap().len(), 700_000);
                    } else {
                        assert_eq!(c.call(&greet::ADD_2_WORDS, &(t, i)).unwrap(), t + i);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn client_certificate_names_a_wss_connection() {
    let l = lab();
    let srv = serve_with(
        Server::builder()
            .tls(server_tls().client_auth(l.ca.pem.cert.as_bytes()).unwrap())
            .token("s3cret")
            .max_users(1)
            .when_full(WhenFull::Refuse)
            .ws(WsConfig::new().mount("/greet", router())),
        router(),
    );
    let alice = tls_client()
        .tls_client_cert(l.alice.cert.as_bytes(), l.alice.key.as_bytes())
        .unwrap()
        .token("s3cret")
        .timeout(T)
        .connect_ws(&wss_url(&srv, "/greet"))
        .unwrap();
    alice.call(&greet::HELLO, &"x".into()).unwrap();
    let holders = srv.server().holders();
    assert_eq!(holders.len(), 1);
    assert!(
        holders[0].name.starts_with("alice@bench-3 ("),
        "{}",
        holders[0].name
    );
    let bob_pem = l.ca.leaf("bob", &[]);
    let bob = tls_client()
        .tls_client_cert(bob_pem.cert.as_bytes(), bob_pem.key.as_bytes())
        .unwrap()
        .token("s3cret")
        .timeout(T)
        .connect_ws(&wss_url(&srv, "/greet"))
        .unwrap();
    let e = bob.call(&greet::HELLO, &"y".into()).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BUSY));
    assert!(e.to_string().contains("alice@bench-3"), "{e}");
}

type TlsWs = tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

/// A standard WebSocket client (tungstenite) over a standard TLS stream
/// (rustls's `StreamOwned`), not framerpc's.
fn standard_client(srv: &TestServer, path: &str) -> TlsWs {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(lab().ca.pem.cert.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(srv.addr()).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    sock.set_write_timeout(Some(T)).unwrap();
    let stream = rustls::StreamOwned::new(conn, sock);
    let mut req = wss_url(srv, path).into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Bearer s3cret".parse().unwrap());
    match tungstenite::client(req, stream) {
        Ok((ws, _)) => ws,
        Err(e) => panic!("standard wss client: {e}"),
    }
}

use rustls::pki_types::pem::PemObject;

#[test]
fn a_standard_wss_client_is_a_full_client_and_text_gets_1003() {
    let srv = wss_server(Server::builder());
    let mut ws = standard_client(&srv, "/greet");
    let mut payload = bytes::BytesMut::new();
    framerpc::codec::Codec::encode(&framerpc::codec::STR, &"std".to_owned(), &mut payload);
    let frame = encode_frame(Kind::Call, greet::HELLO.id(), 7, &payload);
    ws.send(Message::Binary(frame.to_vec().into())).unwrap();
    // A ping from the standard client is answered with a pong while the
    // reply comes.
    ws.send(Message::Ping(b"hi".to_vec().into())).unwrap();
    let (mut got_reply, mut got_pong) = (false, false);
    for _ in 0..10 {
        match ws.read().unwrap() {
            Message::Binary(b) => {
                assert_eq!(b[4], Kind::Reply as u8);
                assert_eq!(&b[8..12], &7u32.to_le_bytes());
                got_reply = true;
            }
            Message::Pong(p) => {
                assert_eq!(&p[..], b"hi");
                got_pong = true;
            }
            _ => {}
        }
        if got_reply && got_pong {
            break;
        }
    }
    assert!(got_reply && got_pong);
    ws.send(Message::Text("nope".into())).unwrap();
    let code = loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => break u16::from(f.code),
            Ok(Message::Close(None)) => panic!("close without a code"),
            Ok(_) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    };
    assert_eq!(code, 1003);
}

#[test]
fn heartbeats_keep_a_long_wss_call_alive_and_the_server_lives_on() {
    let limits = framerpc::frame::Limits::default().heartbeat(Some((
        Duration::from_millis(100),
        Duration::from_millis(400),
    )));
    let srv = wss_server(Server::builder().limits(limits));
    let c = tls_client()
        .token("s3cret")
        .limits(limits)
        .timeout(T)
        .connect_ws(&wss_url(&srv, "/greet"))
        .unwrap();
    // Longer than the drop time: WebSocket pings both ways keep it up.
    assert_eq!(c.call(&SLOW, &1200).unwrap(), 1200);
    assert_eq!(
        c.call(&greet::HELLO, &"after".into()).unwrap(),
        "hello after"
    );
}
