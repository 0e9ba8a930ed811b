//! The hostile-client suite: one live server, every kind of bad client
//! thrown at it over real sockets while a well-behaved client keeps
//! calling. Afterwards the well-behaved client has lost no reply, the
//! server's thread count and resident memory are back where they were, and
//! no admission permit leaked. Run with `--nocapture` for the tally.
//!
//! Built with all features it also covers WebSocket upgrades and frames
//! (`ws`) and msgpack bombs (`msgpack`).

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framerpc::codec::{BYTES, U32, U64, UNIT};
use framerpc::frame::{encode_frame, Kind};
use framerpc::{
    Client, Command, ErrorCode, HandlerError, Limits, Router, Server, ServerBuilder, WhenFull,
};
use greet::ADD_2_WORDS;
use support::*;

const ECHO: Command<Bytes, Bytes> = Command::new(13, "echo", &BYTES, &BYTES);
const SLEEP: Command<u64, u64> = Command::new(14, "sleep", &U64, &U64);
const EXPLODE: Command<(), ()> = Command::new(15, "explode", &UNIT, &UNIT);
const HUGE: Command<u32, Bytes> = Command::new(16, "huge", &U32, &BYTES);

const TOKEN: &str = "hostile-suite-token-0123456789ab";
const LIMIT: u32 = 1 << 20;

fn router() -> Router {
    let r = greet::router()
        .handle(&ECHO, Ok)
        .handle_with(&SLEEP, |ctx, ms| {
            let end = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < end && !ctx.is_cancelled() {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(ms)
        })
        .handle(&EXPLODE, |()| -> Result<(), HandlerError> {
            panic!("hostile handler panic")
        })
        .handle(&HUGE, |n| Ok(Bytes::from(vec![0u8; n as usize])));
    #[cfg(feature = "msgpack")]
    let r = {
        use framerpc::dynamic::{Module, Params, Space};
        let m = Module::new().function("id", Params::new().req("x"), |a| {
            a.get::<framerpc::dynamic::Value>("x")
        });
        Space::builder().root("m", m).build().install(r).unwrap()
    };
    r
}

fn builder() -> ServerBuilder {
    let limits = Limits::default()
        .max_frame_len(LIMIT)
        .heartbeat(Some((
            Duration::from_millis(200),
            Duration::from_millis(800),
        )))
        .write_timeout(Some(Duration::from_millis(300)));
    let b = Server::builder()
        .limits(limits)
        .token(TOKEN)
        .max_users(8)
        .when_full(WhenFull::Queue {
            max_wait: Duration::from_millis(300),
        })
        .max_connections(64)
        .grace(Duration::from_millis(200));
    #[cfg(feature = "ws")]
    let b = b.ws(framerpc::WsConfig::new()
        .mount("/greet", router())
        .handshake_timeout(Duration::from_millis(500))
        // Browsers only from this origin; the Host check on (the heads
        // written by hand below say `Host: x`).
        .allowed_origins(["https://app.example"])
        .allowed_hosts(["x"]));
    b
}

/// A raw socket that has passed the `auth` frame.
fn authed(addr: SocketAddr) -> TcpStream {
    let mut s = raw(addr);
    send(&mut s, Kind::Call, 0xFF00, 1, TOKEN.as_bytes());
    let (h, _) = recv(&mut s).unwrap();
    assert_eq!(h.kind, Kind::Reply);
    s
}

fn good_client(addr: SocketAddr) -> Client {
    Client::builder()
        .token(TOKEN)
        .timeout(T)
        .connect(addr)
        .unwrap()
}

type Case = (&'static str, fn(SocketAddr));

fn cases() -> Vec<Case> {
    #[cfg_attr(not(any(feature = "msgpack", feature = "ws")), allow(unused_mut))]
    let mut v: Vec<Case> = vec![
        ("4 GiB length claim", |a| {
            let mut s = authed(a);
            s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 0, 3, 0, 9, 0, 0, 0])
                .unwrap();
            expect_error(&mut s, 7);
            assert!(closed(&mut s));
        }),
        ("length just over the limit", |a| {
            let mut s = authed(a);
            s.write_all(&(LIMIT + 1).to_le_bytes()).unwrap();
            s.write_all(&[1, 0, 13, 0, 2, 0, 0, 0]).unwrap();
            expect_error(&mut s, 7);
            assert!(closed(&mut s));
        }),
        ("truncated frame then EOF", |a| {
            let mut s = authed(a);
            s.write_all(&[100, 0, 0, 0, 1, 0, 13, 0, 2, 0, 0, 0, 1, 2, 3])
                .unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            assert!(closed(&mut s));
        }),
        ("unknown kind", |a| {
            let mut s = authed(a);
            send_raw(&mut s, &[0, 0, 0, 0, 7, 0, 3, 0, 2, 0, 0, 0]);
            expect_error(&mut s, 10);
            assert!(closed(&mut s));
        }),
        ("unknown flags", |a| {
            let mut s = authed(a);
            send_raw(&mut s, &[0, 0, 0, 0, 1, 4, 3, 0, 2, 0, 0, 0]);
            expect_error(&mut s, 10);
            assert!(closed(&mut s));
        }),
        ("unknown command", |a| {
            let mut s = authed(a);
            send(&mut s, Kind::Call, 4242, 2, b"");
            expect_error(&mut s, 1);
        }),
        ("payload that fails to decode", |a| {
            let mut s = authed(a);
            send(&mut s, Kind::Call, 3, 2, &[1, 2, 3]);
            expect_error(&mut s, 2);
        }),
        ("invalid UTF-8", |a| {
            let mut s = authed(a);
            send(&mut s, Kind::Call, 1, 2, &[2, 0, 0, 0, 0xff, 0xfe]);
            expect_error(&mut s, 2);
        }),
        ("no auth frame first", |a| {
            let mut s = raw(a);
            send(&mut s, Kind::Call, 3, 1, &[1, 0, 0, 0, 2, 0, 0, 0]);
            expect_error(&mut s, 6);
            assert!(closed(&mut s));
        }),
        ("wrong token", |a| {
            let mut s = raw(a);
            send(&mut s, Kind::Call, 0xFF00, 1, b"wrong");
            let msg = expect_error(&mut s, 6);
            assert!(!msg.contains(TOKEN));
            assert!(closed(&mut s));
        }),
        ("almost-right token", |a| {
            let mut s = raw(a);
            let mut t = TOKEN.as_bytes().to_vec();
            *t.last_mut().unwrap() ^= 1;
            send(&mut s, Kind::Call, 0xFF00, 1, &t);
            expect_error(&mut s, 6);
            assert!(closed(&mut s));
        }),
        ("missing token (empty auth)", |a| {
            let mut s = raw(a);
            send(&mut s, Kind::Call, 0xFF00, 1, b"");
            expect_error(&mut s, 6);
        }),
        ("REPLY, ERROR and CANCEL for ids never used", |a| {
            let mut s = authed(a);
            send(&mut s, Kind::Reply, 3, 777, &[1, 2, 3]);
            send(&mut s, Kind::Error, 3, 778, &[1, 0]);
            send(&mut s, Kind::Error, 3, 779, &[]);
            send(&mut s, Kind::Cancel, 3, 780, &[]);
            send(&mut s, Kind::Call, 3, 9, &[1, 0, 0, 0, 2, 0, 0, 0]);
            let (h, p) = recv(&mut s).unwrap();
            assert_eq!((h.kind, h.id, p), (Kind::Reply, 9, vec![3, 0, 0, 0]));
        }),
        ("flood of pings", |a| {
            let mut s = authed(a);
            let mut burst = Vec::new();
            for id in 0..5000u32 {
                burst.extend_from_slice(&encode_frame(Kind::Call, 0xFF02, id, b"flood"));
            }
            let mut w = s.try_clone().unwrap();
            let t = std::thread::spawn(move || w.write_all(&burst).unwrap());
            for _ in 0..5000 {
                recv(&mut s).unwrap();
            }
            t.join().unwrap();
        }),
        ("flood of pipelined calls", |a| {
            let mut s = authed(a);
            let mut burst = Vec::new();
            for id in 0..5000u32 {
                burst.extend_from_slice(&encode_frame(
                    Kind::Call,
                    3,
                    id,
                    &[1, 0, 0, 0, 1, 0, 0, 0],
                ));
            }
            let mut w = s.try_clone().unwrap();
            let t = std::thread::spawn(move || w.write_all(&burst).unwrap());
            for id in 0..5000u32 {
                let (h, _) = recv(&mut s).unwrap();
                assert_eq!(h.id, id, "replies in order");
            }
            t.join().unwrap();
        }),
        ("handler panics", |a| {
            let c = good_client(a);
            assert_eq!(
                c.call(&EXPLODE, &()).unwrap_err().code(),
                Some(ErrorCode::PANIC)
            );
            assert_eq!(c.call(&ADD_2_WORDS, &(1, 1)).unwrap(), 2);
        }),
        ("handler sleeps past every timeout", |a| {
            let c = good_client(a);
            let e = c
                .call_timeout(&SLEEP, &60_000, Duration::from_millis(50))
                .unwrap_err();
            assert_eq!(e.code(), Some(ErrorCode::TIMEOUT));
            assert_eq!(c.call(&ADD_2_WORDS, &(1, 1)).unwrap(), 2);
        }),
        ("handler returns a huge reply", |a| {
            let c = good_client(a);
            let e = c.call(&HUGE, &(2 * LIMIT)).unwrap_err();
            assert_eq!(e.code(), Some(ErrorCode::TOO_LARGE), "{e}");
            assert_eq!(c.call(&ADD_2_WORDS, &(1, 1)).unwrap(), 2);
        }),
        ("client that never reads its replies", |a| {
            let mut s = authed(a);
            let call = encode_frame(Kind::Call, 16, 5, &(LIMIT / 2).to_le_bytes());
            // Ask for 32 MiB of replies and read none: the server's write
            // times out and the connection (and its threads) go.
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            for _ in 0..64 {
                if s.write_all(&call).is_err() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(600));
            drop(s);
        }),
        ("client that dies mid-call", |a| {
            let mut s = authed(a);
            send(&mut s, Kind::Call, 14, 3, &200u64.to_le_bytes());
            drop(s);
        }),
        ("client that goes silent", |a| {
            let mut s = authed(a);
            send(&mut s, Kind::Call, 3, 3, &[1, 0, 0, 0, 2, 0, 0, 0]);
            recv(&mut s).unwrap();
            // No byte from here on: the heartbeat finds it and drops it.
            let start = Instant::now();
            assert!(closed_within(&mut s, Duration::from_secs(5)));
            assert!(start.elapsed() >= Duration::from_millis(500));
        }),
        (
            "flood of connections beyond max_users and max_connections",
            |a| {
                let socks: Vec<TcpStream> = (0..100)
                    .filter_map(|_| TcpStream::connect_timeout(&a, T).ok())
                    .collect();
                std::thread::sleep(Duration::from_millis(400));
                drop(socks);
            },
        ),
    ];
    #[cfg(feature = "msgpack")]
    v.extend(msgpack_cases());
    #[cfg(feature = "ws")]
    v.extend(ws_cases());
    v
}

fn send_raw(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).unwrap();
}

fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if closed(s) {
            return true;
        }
    }
    false
}

#[cfg(feature = "msgpack")]
fn msgpack_cases() -> Vec<Case> {
    vec![
        ("deep msgpack (100,000 nested arrays)", |a| {
            let mut s = authed(a);
            let payload = vec![0x91u8; 100_000];
            send(&mut s, Kind::Call, 0xFF10, 2, &payload);
            expect_error(&mut s, 2);
        }),
        ("wide msgpack (array32 claiming 4 billion items)", |a| {
            let mut s = authed(a);
            send(
                &mut s,
                Kind::Call,
                0xFF10,
                2,
                &[0xdd, 0xff, 0xff, 0xff, 0xff],
            );
            expect_error(&mut s, 2);
        }),
        ("msgpack bin claiming 4 GiB", |a| {
            let mut s = authed(a);
            send(
                &mut s,
                Kind::Call,
                0xFF10,
                2,
                &[0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2],
            );
            expect_error(&mut s, 2);
        }),
        ("malformed msgpack", |a| {
            let mut s = authed(a);
            send(&mut s, Kind::Call, 0xFF10, 2, &[0xc1, 0xc1, 0xc1]);
            expect_error(&mut s, 2);
        }),
    ]
}

#[cfg(feature = "ws")]
fn ws_cases() -> Vec<Case> {
    use std::io::Read;

    fn upgrade(a: SocketAddr, head: &str) -> String {
        let mut s = raw(a);
        let _ = s.write_all(head.as_bytes());
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        String::from_utf8_lossy(&resp)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    }
    fn head(extra: &str) -> String {
        format!(
            "GET /greet HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        )
    }
    fn ws_client(a: SocketAddr) -> tungstenite::WebSocket<TcpStream> {
        use tungstenite::client::IntoClientRequest;
        let s = raw(a);
        let mut req = format!("ws://{a}/greet").into_client_request().unwrap();
        req.headers_mut()
            .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
        tungstenite::client(req, s).unwrap().0
    }
    fn expect_close(ws: &mut tungstenite::WebSocket<TcpStream>, code: u16) {
        loop {
            match ws.read() {
                Ok(tungstenite::Message::Close(Some(f))) => {
                    assert_eq!(u16::from(f.code), code);
                    return;
                }
                Ok(_) => continue,
                Err(e) => panic!("no close frame: {e}"),
            }
        }
    }
    vec![
        ("ws upgrade with no key", |a| {
            let h = "GET /greet HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n";
            let status = upgrade(a, h);
            assert!(!status.contains("101"), "{status}");
        }),
        ("ws upgrade with a wrong version", |a| {
            let h = head(&format!("Authorization: Bearer {TOKEN}\r\n"))
                .replace("Version: 13", "Version: 7");
            assert!(!upgrade(a, &h).contains("101"));
        }),
        ("ws upgrade with huge headers", |a| {
            let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
            let status = upgrade(a, &head(&big));
            assert!(status.is_empty() || status.contains("431"), "{status}");
        }),
        ("ws header trickle, a byte at a time", |a| {
            let mut s = raw(a);
            let h = head("");
            let start = Instant::now();
            for b in h.as_bytes() {
                if s.write_all(&[*b]).is_err() || start.elapsed() > Duration::from_secs(3) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(closed_within(&mut s, Duration::from_secs(3)));
        }),
        ("ws missing token", |a| {
            assert!(upgrade(a, &head("")).contains("401"))
        }),
        ("ws wrong token", |a| {
            assert!(upgrade(a, &head("Authorization: Bearer nope\r\n")).contains("401"))
        }),
        ("ws almost-right token", |a| {
            let mut t = TOKEN.to_owned();
            t.pop();
            t.push('c');
            assert!(upgrade(a, &head(&format!("Authorization: Bearer {t}\r\n"))).contains("401"));
        }),
        ("ws unknown path", |a| {
            let h = head(&format!("Authorization: Bearer {TOKEN}\r\n")).replace("/greet", "/nope");
            assert!(upgrade(a, &h).contains("404"));
        }),
        ("ws foreign Origin with the right token", |a| {
            let h = head(&format!(
                "Origin: https://evil.example\r\nAuthorization: Bearer {TOKEN}\r\n"
            ));
            assert!(upgrade(a, &h).contains("403"))
        }),
        (
            "ws Origin null (a file:// page) with the token in the query",
            |a| {
                let h =
                    head("Origin: null\r\n").replace("/greet", &format!("/greet?token={TOKEN}"));
                assert!(upgrade(a, &h).contains("403"))
            },
        ),
        ("ws two Origin headers, one allowed", |a| {
            let h = head(&format!(
                "Origin: https://app.example\r\nOrigin: https://evil.example\r\n\
                 Authorization: Bearer {TOKEN}\r\n"
            ));
            assert!(upgrade(a, &h).contains("403"))
        }),
        ("ws long Origin with non-ASCII bytes", |a| {
            let o = format!("https://{}\u{e9}\u{202e}.example", "a".repeat(8000));
            let h = head(&format!("Origin: {o}\r\nAuthorization: Bearer {TOKEN}\r\n"));
            assert!(upgrade(a, &h).contains("403"))
        }),
        ("ws DNS rebinding Host with the right token", |a| {
            let h = head(&format!("Authorization: Bearer {TOKEN}\r\n"))
                .replace("Host: x", "Host: evil.example:80");
            assert!(upgrade(a, &h).contains("403"))
        }),
        ("ws missing Host", |a| {
            let h = head(&format!("Authorization: Bearer {TOKEN}\r\n")).replace("Host: x\r\n", "");
            assert!(upgrade(a, &h).contains("403"))
        }),
        ("ws two Host headers", |a| {
            let h = head(&format!(
                "Host: evil.example\r\nAuthorization: Bearer {TOKEN}\r\n"
            ));
            assert!(upgrade(a, &h).contains("403"))
        }),
        ("ws text message", |a| {
            let mut ws = ws_client(a);
            ws.send(tungstenite::Message::text("hello")).unwrap();
            expect_close(&mut ws, 1003);
        }),
        ("ws frame whose len disagrees with the message", |a| {
            let mut ws = ws_client(a);
            let mut f = encode_frame(Kind::Call, 3, 1, &[1, 0, 0, 0, 2, 0, 0, 0]);
            f[0] = 99;
            ws.send(tungstenite::Message::binary(f)).unwrap();
            expect_close(&mut ws, 1002);
        }),
        ("ws message over the limit", |a| {
            let mut ws = ws_client(a);
            let _ = ws.send(tungstenite::Message::binary(vec![0u8; LIMIT as usize + 64]));
            expect_close(&mut ws, 1009);
        }),
    ]
}

#[test]
fn hostile_suite() {
    let srv = serve_with(builder(), router());
    let addr = srv.addr();
    let warm = good_client(addr);
    assert_eq!(warm.call(&ADD_2_WORDS, &(1, 1)).unwrap(), 2);
    drop(warm);
    eventually("idle before", || srv.server().connection_count() == 0);
    let threads_before = thread_count();
    let rss_before = rss_kib();

    // A well-behaved client calls throughout; no reply may go missing.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let steady = {
        let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
        let c = good_client(addr);
        std::thread::spawn(move || {
            let mut lost = 0u64;
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                match c.call(&ADD_2_WORDS, &(i, 1)) {
                    Ok(v) if v == i + 1 => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => lost += 1,
                }
                i = i.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(2));
            }
            lost
        })
    };

    let cases = cases();
    // Twice: the allocator keeps what the first round freed, so the second
    // round must fit in the first round's high-water mark (nothing leaks).
    let mut rss_high = [rss_before; 2];
    for high in rss_high.iter_mut() {
        for (name, case) in &cases {
            let t = std::thread::Builder::new().name((*name).into()).spawn({
                let case = *case;
                move || case(addr)
            });
            t.unwrap()
                .join()
                .unwrap_or_else(|_| panic!("case {name:?} failed"));
            *high = (*high).max(rss_kib());
            let c = good_client(addr);
            assert_eq!(
                c.call(&ADD_2_WORDS, &(2, 3)).unwrap(),
                5,
                "not served after {name:?}"
            );
        }
    }

    stop.store(true, Ordering::Relaxed);
    let lost = steady.join().unwrap();
    assert_eq!(lost, 0, "the well-behaved client lost replies");
    assert!(answered.load(Ordering::Relaxed) > 0);
    eventually("connections closed", || {
        srv.server().connection_count() == 0
    });
    eventually("threads back", || thread_count() <= threads_before);
    let status = srv.server().status();
    assert_eq!((status.active, status.waiting), (0, 0), "a permit leaked");
    let rss_after = rss_kib();
    println!(
        "hostile cases: {} (each run twice), crashes: 0, lost replies: {lost}, calls answered meanwhile: {}, \
         rss before {rss_before} KiB, high-water round 1 {} KiB, round 2 {} KiB, after {rss_after} KiB",
        cases.len(),
        answered.load(Ordering::Relaxed),
        rss_high[0],
        rss_high[1],
    );
    assert!(
        rss_high[1] <= rss_high[0] + 8 * 1024,
        "memory grew between rounds: {rss_high:?} KiB"
    );
}

#[test]
fn holder_that_dies_frees_the_only_permit() {
    let srv = serve_with(
        Server::builder().max_users(1).when_full(WhenFull::Queue {
            max_wait: Duration::from_secs(10),
        }),
        router(),
    );
    for _ in 0..5 {
        let mut s = raw(srv.addr());
        send(&mut s, Kind::Call, 3, 1, &[1, 0, 0, 0, 2, 0, 0, 0]);
        recv(&mut s).unwrap();
        let waiter = Client::builder().timeout(T).connect(srv.addr()).unwrap();
        let w = std::thread::spawn(move || waiter.call(&ADD_2_WORDS, &(2, 2)));
        eventually("queued", || srv.server().status().waiting == 1);
        drop(s); // the holder dies
        assert_eq!(w.join().unwrap().unwrap(), 4);
    }
    eventually("released", || srv.server().status().active == 0);
}
