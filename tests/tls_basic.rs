//! `tls://`: calls, tokens, client certificates naming the connection,
//! full duplex under load, and every failure saying what happened.
#![cfg(feature = "tls")]

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use framerpc::codec::BYTES;
use framerpc::frame::Kind;
use framerpc::{Client, Command, Error, ErrorCode, Router, Server, TlsConfig, WhenFull};
use support::tls_certs::*;
use support::*;

const ECHO: Command<bytes::Bytes, bytes::Bytes> = Command::new(10, "echo", &BYTES, &BYTES);

fn router() -> Router {
    greet::router().handle(&ECHO, Ok)
}

fn tls_server() -> TestServer {
    serve_with(Server::builder().tls(server_tls()), router())
}

fn handshake_msg(e: Error) -> String {
    match e {
        Error::Handshake(m) => m.into_string(),
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[test]
fn calls_over_tls() {
    let srv = tls_server();
    let c = tls_client()
        .timeout(T)
        .connect_tls_checked(&tls_url(srv.addr()), &[&greet::HELLO, &greet::ADD_2_WORDS])
        .unwrap();
    assert_eq!(c.call(&greet::HELLO, &"tls".into()).unwrap(), "hello tls");
    // By IP address too (the certificate names 127.0.0.1).
    let c2 = tls_client()
        .timeout(T)
        .connect_tls(&format!("tls://127.0.0.1:{}", srv.addr().port()))
        .unwrap();
    assert_eq!(c2.call(&greet::ADD_2_WORDS, &(2, 3)).unwrap(), 5);
}

#[test]
fn big_frames_both_ways() {
    let srv = tls_server();
    let c = tls_client()
        .timeout(T * 4)
        .connect_tls(&tls_url(srv.addr()))
        .unwrap();
    for size in [0usize, 1, 16 * 1024 - 13, 16 * 1024, 300_000, 5 << 20] {
        let data: bytes::Bytes = (0..size)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let back = c.call(&ECHO, &data).unwrap();
        assert_eq!(back.len(), size);
        assert!(back == data, "echo of {size} bytes differs");
    }
}

#[test]
fn token_rules_inside_tls() {
    let srv = serve_with(
        Server::builder().tls(server_tls()).token("s3cret"),
        router(),
    );
    let ok = tls_client()
        .token("s3cret")
        .timeout(T)
        .connect_tls(&tls_url(srv.addr()))
        .unwrap();
    assert_eq!(ok.call(&greet::HELLO, &"a".into()).unwrap(), "hello a");
    let bad = tls_client()
        .token("nope")
        .timeout(T)
        .connect_tls(&tls_url(srv.addr()));
    let e = bad.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UNAUTHORIZED), "{e}");
}

#[test]
fn many_threads_share_one_tls_connection() {
    let srv = tls_server();
    let c = tls_client()
        .timeout(T * 4)
        .connect_tls(&tls_url(srv.addr()))
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let c = c.clone();
            s.spawn(move || {
                for i in 0..300 {
                    assert_eq!(c.call(&greet::ADD_2_WORDS, &(t, i)).unwrap(), t + i);
                }
            });
        }
        // A big echo in flight at the same time: small calls go on.
        let c = c.clone();
        s.spawn(move || {
            let data = bytes::Bytes::from(vec![7u8; 8 << 20]);
            assert_eq!(c.call(&ECHO, &data).unwrap().len(), 8 << 20);
        });
    });
}

#[test]
fn client_certificate_names_the_connection_in_busy() {
    let l = lab();
    let tls = server_tls().client_auth(l.ca.pem.cert.as_bytes()).unwrap();
    let srv = serve_with(
        Server::builder()
            .tls(tls)
            .max_users(1)
            .when_full(WhenFull::Refuse),
        router(),
    );
    let alice = tls_client()
        .tls_client_cert(l.alice.cert.as_bytes(), l.alice.key.as_bytes())
        .unwrap()
        .name("pretending-to-be-bob")
        .timeout(T)
        .connect_tls(&tls_url(srv.addr()))
        .unwrap();
    alice.call(&greet::HELLO, &"x".into()).unwrap();
    let holders = srv.server().holders();
    assert_eq!(holders.len(), 1);
    assert!(
        holders[0].name.starts_with("alice@bench-3 ("),
        "{}",
        holders[0].name
    );
    // A second user with its own certificate is refused, told who holds it.
    let bob_pem = l.ca.leaf("bob", &[]);
    let bob = tls_client()
        .tls_client_cert(bob_pem.cert.as_bytes(), bob_pem.key.as_bytes())
        .unwrap()
        .timeout(T)
        .connect_tls(&tls_url(srv.addr()))
        .unwrap();
    let e = bob.call(&greet::HELLO, &"y".into()).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BUSY));
    assert!(e.to_string().contains("alice@bench-3"), "{e}");

    // Without a certificate: refused at the handshake, told why.
    let e = tls_client()
        .timeout(T)
        .connect_tls(&tls_url(srv.addr()))
        .and_then(|c| c.call(&greet::HELLO, &"z".into()))
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("certificate") || msg.contains("closed"),
        "{msg}"
    );
    // A certificate from another CA: refused.
    let e = tls_client()
        .tls_client_cert(l.stranger.cert.as_bytes(), l.stranger.key.as_bytes())
        .unwrap()
        .timeout(T)
        .connect_tls(&tls_url(srv.addr()))
        .and_then(|c| c.call(&greet::HELLO, &"z".into()))
        .unwrap_err();
    assert!(
        e.to_string().contains("unknown CA") || e.to_string().contains("refused"),
        "{e}"
    );
    // The server lives on.
    assert_eq!(alice.call(&greet::HELLO, &"x".into()).unwrap(), "hello x");
}

#[test]
fn optional_client_auth_accepts_anonymous() {
    let l = lab();
    let tls = server_tls()
        .client_auth_optional(l.ca.pem.cert.as_bytes())
        .unwrap();
    let srv = serve_with(Server::builder().tls(tls), router());
    let anon = tls_client()
        .timeout(T)
        .connect_tls(&tls_url(srv.addr()))
        .unwrap();
    assert_eq!(anon.call(&greet::HELLO, &"a".into()).unwrap(), "hello a");
}

#[test]
fn unknown_ca_is_named() {
    let srv = tls_server();
    let e = Client::builder()
        .tls_roots_pem(lab().other_ca.pem.cert.as_bytes())
        .unwrap()
        .connect_tls(&tls_url(srv.addr()))
        .unwrap_err();
    let m = handshake_msg(e);
    assert!(m.contains("unknown certificate authority"), "{m}");
    // The server is fine.
    tls_client().connect_tls(&tls_url(srv.addr())).unwrap();
}

#[test]
fn name_mismatch_is_named() {
    let l = lab();
    let tls =
        TlsConfig::from_pem(l.wrong_name.cert.as_bytes(), l.wrong_name.key.as_bytes()).unwrap();
    let srv = serve_with(Server::builder().tls(tls), router());
    let e = tls_client().connect_tls(&tls_url(srv.addr())).unwrap_err();
    let m = handshake_msg(e);
    assert!(m.contains("name mismatch"), "{m}");
    assert!(m.contains("elsewhere.example"), "{m}");
    // tls_server_name fixes it.
    let c = tls_client()
        .tls_server_name("elsewhere.example")
        .connect_tls(&tls_url(srv.addr()))
        .unwrap();
    assert_eq!(c.call(&greet::HELLO, &"n".into()).unwrap(), "hello n");
}

#[test]
fn expired_certificate_is_named() {
    let l = lab();
    let tls = TlsConfig::from_pem(l.expired.cert.as_bytes(), l.expired.key.as_bytes()).unwrap();
    let srv = serve_with(Server::builder().tls(tls), router());
    let m = handshake_msg(tls_client().connect_tls(&tls_url(srv.addr())).unwrap_err());
    assert!(m.contains("expired"), "{m}");
}

#[test]
fn no_roots_is_a_config_error() {
    let e = Client::builder()
        .connect_tls("tls://localhost:1")
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(e.to_string().contains("tls_roots_pem"), "{e}");
}

#[test]
fn plain_client_on_a_tls_port_is_told() {
    let srv = serve_with(Server::builder().tls(server_tls()).token("t"), router());
    // The framerpc client: its first call (auth) fails, naming TLS.
    let e = Client::builder()
        .token("t")
        .timeout(T)
        .connect(srv.addr())
        .unwrap_err();
    assert!(e.to_string().contains("this port speaks TLS"), "{e}");
    assert_eq!(e.code(), Some(ErrorCode::PROTOCOL));
    // A raw frame: answered with PROTOCOL echoing its id.
    let mut s = raw(srv.addr());
    send(&mut s, Kind::Call, 1, 77, b"\x01\0\0\0x");
    let (h, p) = recv(&mut s).expect("an answer");
    assert_eq!((h.kind, h.id), (Kind::Error, 77));
    assert!(String::from_utf8_lossy(&p).contains("tls://"));
    assert!(closed(&mut s));
    // A plain HTTP GET (ws:// on a wss port): HTTP 400.
    let mut s = raw(srv.addr());
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("wss://"), "{text}");
    // The port still serves TLS.
    tls_client()
        .token("t")
        .connect_tls(&tls_url(srv.addr()))
        .unwrap();
}

#[test]
fn tls_client_on_a_plain_port_is_told() {
    let srv = serve(router());
    let e = tls_client().connect_tls(&tls_url(srv.addr())).unwrap_err();
    let m = handshake_msg(e);
    assert!(m.contains("does not speak TLS"), "{m}");
    assert!(
        m.contains("this port does not speak TLS"),
        "the server's words: {m}"
    );
    // Plain clients still work.
    srv.client().call(&greet::HELLO, &"p".into()).unwrap();
}

#[test]
fn stalled_and_trickling_handshakes_cost_one_connection() {
    let srv = serve_with(
        Server::builder().tls(server_tls().handshake_timeout(Duration::from_millis(600))),
        router(),
    );
    // Stalled: one byte of a ClientHello, then nothing.
    let mut stalled = raw(srv.addr());
    stalled.write_all(&[0x16]).unwrap();
    // Trickling: a byte every 100 ms.
    let mut trickle = raw(srv.addr());
    let start = Instant::now();
    let mut cut = false;
    for _ in 0..50 {
        if trickle.write_all(&[0x16, 0x03, 0x01, 0x02][..1]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut b = [0u8; 1];
        trickle.set_nonblocking(true).unwrap();
        let r = trickle.read(&mut b);
        trickle.set_nonblocking(false).unwrap();
        if matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "the trickling handshake was never cut");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(closed(&mut stalled), "the stalled handshake was not cut");
    // Meanwhile and after, others are served.
    let c = tls_client()
        .timeout(T)
        .connect_tls(&tls_url(srv.addr()))
        .unwrap();
    assert_eq!(c.call(&greet::HELLO, &"ok".into()).unwrap(), "hello ok");

    // A client facing a server that never answers the handshake.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let _keep: Vec<TcpStream> = Vec::new();
    let t = std::thread::spawn(move || l.accept().map(|(s, _)| s));
    let e = tls_client()
        .connect_timeout(Duration::from_millis(500))
        .connect_tls(&format!("tls://localhost:{port}"))
        .unwrap_err();
    let m = handshake_msg(e);
    assert!(m.contains("did not finish within"), "{m}");
    drop(t.join());
}
