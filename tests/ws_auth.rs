//! The upgrade: 401 for missing, wrong and almost-right tokens with no
//! handler ever run, 404 for an unknown path, 431 for a huge head, and a
//! slow-header client dropped within the handshake bound while others are
//! served.
#![cfg(feature = "ws")]

#[path = "../examples/common/greet.rs"]
mod greet;
mod ws_support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use framerpc::codec::UNIT;
use framerpc::{Client, Command, Error, Router, Server, WsConfig};
use ws_support::*;

const COUNT: Command<(), ()> = Command::new(30, "count", &UNIT, &UNIT);

fn counting_router(n: Arc<AtomicU32>) -> Router {
    greet::router().handle(&COUNT, move |()| {
        n.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}

/// A COUNT call frame, sent by hand after a refused upgrade.
const COUNT_CALL: &[u8] = &[0, 0, 0, 0, 1, 0, 30, 0, 1, 0, 0, 0];

fn serve_fixed_token(token: &str, n: Arc<AtomicU32>) -> WsServer {
    serve_ws_with(
        Server::builder().token(token),
        WsConfig::new().mount("/greet", counting_router(n)),
    )
}

/// Sends a raw upgrade request plus a frame, returns the status line.
fn raw_upgrade(s: &WsServer, path: &str, extra_headers: &str) -> String {
    let mut t = tcp(s.addr());
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra_headers}\r\n"
    );
    t.write_all(req.as_bytes()).unwrap();
    // A masked binary frame carrying COUNT: must never reach a handler.
    let mut frame = vec![0x82, 0x80 | COUNT_CALL.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(COUNT_CALL);
    let _ = t.write_all(&frame);
    let mut resp = Vec::new();
    let _ = t.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).to_string();
    text.lines().next().unwrap_or("").to_string()
}

#[test]
fn ws_missing_wrong_and_almost_right_tokens_get_401_and_run_nothing() {
    let token = "0123456789abcdef0123456789abcdef";
    let n = Arc::new(AtomicU32::new(0));
    let s = serve_fixed_token(token, Arc::clone(&n));
    let almost = "0123456789abcdef0123456789abcdee"; // same length, last byte off
    assert_eq!(almost.len(), token.len());
    for t in [None, Some("wrong"), Some(almost), Some("")] {
        let status = refused_status(tung(s.addr(), "/greet", t));
        assert_eq!(status, 401, "token {t:?}");
    }
    assert_eq!(
        refused_status(tung(s.addr(), &format!("/greet?token={almost}"), None)),
        401
    );
    // By hand, with a frame right behind the request.
    let line = raw_upgrade(&s, "/greet", &format!("Authorization: Bearer {almost}\r\n"));
    assert!(line.starts_with("HTTP/1.1 401"), "{line}");
    // framerpc's client says 401 without echoing the token.
    let e = Client::builder()
        .timeout(T)
        .token(almost)
        .connect_ws(&s.url("/greet"))
        .unwrap_err();
    match &e {
        Error::Handshake(why) => {
            assert!(why.contains("401"), "{why}");
            assert!(!why.contains(almost), "{why}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        n.load(Ordering::SeqCst),
        0,
        "a handler ran for a refused client"
    );
    // The right token works, and the counter proves the handler is wired.
    let c = Client::builder()
        .timeout(T)
        .token(token)
        .connect_ws(&s.url("/greet"))
        .unwrap();
    c.call(&COUNT, &()).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

#[test]
fn ws_generated_token_is_64_hex_chars() {
    let s = serve_ws("/greet", greet::router());
    let t = s.token();
    assert_eq!(t.len(), 64);
    assert!(t.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(refused_status(tung(s.addr(), "/greet", None)), 401);
}

#[test]
fn ws_unknown_path_gets_404() {
    let n = Arc::new(AtomicU32::new(0));
    let s = serve_fixed_token("secret-token", Arc::clone(&n));
    assert_eq!(
        refused_status(tung(s.addr(), "/nope", Some("secret-token"))),
        404
    );
    assert_eq!(
        refused_status(tung(s.addr(), "/greet/x", Some("secret-token"))),
        404
    );
    let e = Client::builder()
        .timeout(T)
        .token("secret-token")
        .connect_ws(&s.url("/nope"))
        .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    assert_eq!(n.load(Ordering::SeqCst), 0);
}

#[test]
fn ws_huge_head_gets_431() {
    let n = Arc::new(AtomicU32::new(0));
    let s = serve_fixed_token("secret-token", n);
    let many: String = (0..150).map(|i| format!("X-Filler-{i}: y\r\n")).collect();
    let line = raw_upgrade(&s, "/greet", &many);
    assert!(line.starts_with("HTTP/1.1 431"), "{line}");
    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    let line = raw_upgrade(&s, "/greet", &big);
    assert!(line.starts_with("HTTP/1.1 431"), "{line}");
}

#[test]
fn ws_plain_http_get_gets_400() {
    let s = serve_fixed_token("secret-token", Arc::new(AtomicU32::new(0)));
    let mut t = tcp(s.addr());
    t.write_all(b"GET /greet HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    let _ = t.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[test]
fn ws_slow_header_client_is_dropped_within_the_bound_while_others_are_served() {
    let bound = Duration::from_secs(1);
    let s = serve_ws_with(
        Server::builder(),
        WsConfig::new()
            .mount("/greet", greet::router())
            .handshake_timeout(bound),
    );
    let mut slow = tcp(s.addr());
    slow.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let head =
        b"GET /greet HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let t0 = Instant::now();
    let mut dropped_after = None;
    let mut sent = 0;
    let mut served = false;
    while t0.elapsed() < Duration::from_secs(5) {
        // One byte at a time, a byte every 50 ms.
        if sent < head.len() && slow.write_all(&head[sent..sent + 1]).is_ok() {
            sent += 1;
        }
        let mut b = [0u8; 64];
        match slow.read(&mut b) {
            Ok(0) => {
                dropped_after = Some(t0.elapsed());
                break;
            }
            Ok(_) => panic!("the slow client got an answer"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                dropped_after = Some(t0.elapsed());
                break;
            }
        }
        if !served {
            // Meanwhile another client is served at once.
            let c = s.client("/greet");
            assert_eq!(c.call(&greet::ADD_2_WORDS, &(1, 2)).unwrap(), 3);
            served = true;
        }
    }
    let after = dropped_after.expect("the slow client was never dropped");
    assert!(
        after >= bound - Duration::from_millis(100),
        "dropped too early: {after:?}"
    );
    assert!(
        after < bound + Duration::from_millis(1500),
        "dropped too late: {after:?}"
    );
    assert!(sent < head.len(), "the head was complete before the drop");
    assert!(served);
}
