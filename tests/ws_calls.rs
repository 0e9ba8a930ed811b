//! The call matrix over WebSocket: typed calls, 16 threads pipelining
//! through one client, handler errors, panics, timeouts, big messages,
//! namespaces, raw TCP and WebSocket on one port, heartbeats.
#![cfg(feature = "ws")]

#[path = "../examples/common/greet.rs"]
mod greet;
mod ws_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framerpc::codec::{BYTES, U32, U64};
use framerpc::{Client, Command, Error, ErrorCode, HandlerError, Limits, Router, Server, WsConfig};
use greet::{ADD_2_WORDS, FUNC_NO_ARGS, GOODBYE, HELLO};
use ws_support::*;

const DIVIDE: Command<(u32, u32), u32> = Command::new(10, "divide", &(U32, U32), &U32);
const EXPLODE: Command<u32, u32> = Command::new(11, "explode", &U32, &U32);
const SLOW: Command<u64, u64> = Command::new(12, "slow", &U64, &U64);
const ECHO: Command<Bytes, Bytes> = Command::new(13, "echo", &BYTES, &BYTES);

fn router() -> Router {
    greet::router()
        .handle(&DIVIDE, |(a, b)| {
            a.checked_div(b)
                .ok_or_else(|| HandlerError::with_code(1001, "division by zero"))
        })
        .handle(&EXPLODE, |n| -> Result<u32, HandlerError> {
            panic!("boom {n}")
        })
        .handle_with(&SLOW, |ctx, ms| {
            let deadline = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < deadline {
                if ctx.is_cancelled() {
                    return Ok(u64::MAX);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(ms)
        })
        .handle(&ECHO, Ok)
}

#[test]
fn ws_typed_calls() {
    let s = serve_ws("/greet", router());
    let c = s.client("/greet");
    assert_eq!(c.call(&HELLO, &"bob".to_string()).unwrap(), "hello bob");
    assert_eq!(c.call(&GOODBYE, &"bob".to_string()).unwrap(), "goodbye bob");
    assert_eq!(c.call(&ADD_2_WORDS, &(2, 3)).unwrap(), 5);
    assert_eq!(c.call(&ADD_2_WORDS, &(u32::MAX, 1)).unwrap(), 0);
    c.call(&FUNC_NO_ARGS, &()).unwrap();
    assert_eq!(&c.ping(b"abc").unwrap()[..], b"abc");
    c.check(&[&HELLO, &GOODBYE, &ADD_2_WORDS, &FUNC_NO_ARGS, &DIVIDE])
        .unwrap();
    let names: Vec<String> = c.list().unwrap().into_iter().map(|i| i.name).collect();
    assert!(names.contains(&"hello".to_string()), "{names:?}");
}

#[test]
fn ws_connect_checked_reports_a_schema_mismatch() {
    const WRONG: Command<u32, u32> = Command::new(3, "add_2_words", &U32, &U32);
    let s = serve_ws("/greet", router());
    let err = Client::builder()
        .timeout(T)
        .token(s.token())
        .connect_ws_checked(&s.url("/greet"), &[&WRONG])
        .unwrap_err();
    assert!(matches!(err, Error::SchemaMismatch(_)), "{err}");
}

#[test]
fn ws_sixteen_threads_pipeline_through_one_client() {
    let s = serve_ws("/greet", router().concurrency(4));
    let c = s.client("/greet");
    std::thread::scope(|scope| {
        for t in 0..16u32 {
            let c = c.clone();
            scope.spawn(move || {
                for i in 0..200u32 {
                    assert_eq!(c.call(&ADD_2_WORDS, &(t * 1000, i)).unwrap(), t * 1000 + i);
                    let name = format!("t{t}-{i}");
                    assert_eq!(c.call(&HELLO, &name).unwrap(), format!("hello {name}"));
                }
            });
        }
    });
}

#[test]
fn ws_handler_errors_and_panics_keep_the_connection() {
    let s = serve_ws("/greet", router());
    let c = s.client("/greet");
    let e = c.call(&DIVIDE, &(1, 0)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode(1001)));
    assert_eq!(e.remote_message(), Some("division by zero"));
    let e = c.call(&EXPLODE, &7).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PANIC));
    assert!(e.remote_message().unwrap().contains("boom 7"), "{e}");
    let e = c.call_raw(999, b"", None).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UNKNOWN_COMMAND));
    let e = c.call_raw(ADD_2_WORDS.id(), b"\x01", None).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BAD_PAYLOAD));
    assert_eq!(c.call(&DIVIDE, &(9, 3)).unwrap(), 3);
}

#[test]
fn ws_timeout_poisons_nothing() {
    let s = serve_ws("/greet", router());
    let c = s.client("/greet");
    let e = c
        .call_timeout(&SLOW, &3_000, Duration::from_millis(50))
        .unwrap_err();
    match &e {
        Error::Timeout(t) => assert_eq!(&*t.what, "slow"),
        other => panic!("{other}"),
    }
    // The CANCEL lets the handler stop early; the next call works.
    let t0 = Instant::now();
    assert_eq!(c.call(&ADD_2_WORDS, &(1, 2)).unwrap(), 3);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn ws_big_messages_go_in_fragments_both_ways() {
    let s = serve_ws("/greet", router());
    let c = s.client("/greet");
    let big: Bytes = (0..5 * 1024 * 1024 + 7)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let back = c.call(&ECHO, &big).unwrap();
    assert_eq!(back, big);
    // And a small call right after, on the same connection.
    assert_eq!(c.call(&ADD_2_WORDS, &(4, 5)).unwrap(), 9);
}

#[test]
fn ws_oversize_request_fails_locally_and_the_connection_survives() {
    let s = serve_ws("/greet", router());
    let c = Client::builder()
        .timeout(T)
        .token(s.token())
        .limits(Limits::default().max_frame_len(1024))
        .connect_ws(&s.url("/greet"))
        .unwrap();
    let e = c.call(&ECHO, &Bytes::from(vec![0u8; 4096])).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert_eq!(c.call(&ADD_2_WORDS, &(1, 1)).unwrap(), 2);
}

#[test]
fn ws_namespaces_share_one_router_and_keep_their_own() {
    const ONLY_B: Command<u32, u32> = Command::new(20, "only_b", &U32, &U32);
    let shared = Arc::new(greet::router());
    let b = greet::router().handle(&ONLY_B, |x| Ok(x * 2));
    let server = Server::builder()
        .ws(WsConfig::new()
            .mount("/server_a", Arc::clone(&shared))
            .mount("/also_a", shared)
            .mount("/server_b", b))
        .bind("127.0.0.1:0", Router::new())
        .unwrap();
    let s = WsServer(Some(server));
    let a = s.client("/server_a");
    let a2 = s.client("/also_a");
    let b = s.client("/server_b");
    assert_eq!(a.call(&HELLO, &"x".into()).unwrap(), "hello x");
    assert_eq!(a2.call(&HELLO, &"y".into()).unwrap(), "hello y");
    assert_eq!(b.call(&ONLY_B, &21).unwrap(), 42);
    let e = a.call(&ONLY_B, &21).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UNKNOWN_COMMAND));
}

#[test]
fn ws_and_raw_tcp_share_one_port_and_one_token() {
    let s = serve_ws_with(Server::builder(), WsConfig::new().mount("/greet", router()));
    // Raw TCP on the same port: the bind router (empty here) and the token.
    let raw = Client::builder()
        .timeout(T)
        .token(s.token())
        .connect(s.addr())
        .unwrap();
    assert_eq!(&raw.ping(b"hi").unwrap()[..], b"hi");
    let e = Client::builder()
        .timeout(T)
        .token("wrong")
        .connect(s.addr())
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UNAUTHORIZED), "{e}");
    let ws = s.client("/greet");
    assert_eq!(ws.call(&ADD_2_WORDS, &(1, 2)).unwrap(), 3);
}

#[test]
fn ws_raw_tcp_can_be_turned_off() {
    let s = serve_ws_with(
        Server::builder(),
        WsConfig::new().mount("/greet", router()).raw_tcp(false),
    );
    let raw = Client::builder()
        .timeout(T)
        .token(s.token())
        .connect(s.addr());
    match raw {
        Err(_) => {}
        Ok(c) => assert!(c.ping(b"x").is_err()),
    }
    assert_eq!(s.client("/greet").call(&ADD_2_WORDS, &(1, 2)).unwrap(), 3);
}

#[test]
fn ws_admission_counts_websocket_users() {
    let s = serve_ws_with(
        Server::builder()
            .max_users(1)
            .when_full(framerpc::WhenFull::Refuse),
        WsConfig::new().mount("/greet", router()),
    );
    let a = s.client("/greet");
    assert_eq!(a.call(&ADD_2_WORDS, &(1, 2)).unwrap(), 3);
    let b = s.client("/greet");
    let e = b.call(&ADD_2_WORDS, &(1, 2)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BUSY), "{e}");
    assert_eq!(a.status().unwrap().active, 1);
}

#[test]
fn ws_pings_keep_an_idle_connection_alive_and_a_closed_one_fails_fast() {
    let hb = Limits::default().heartbeat(Some((
        Duration::from_millis(100),
        Duration::from_millis(400),
    )));
    let s = serve_ws_with(
        Server::builder().limits(hb),
        WsConfig::new().mount("/greet", router()),
    );
    let c = Client::builder()
        .timeout(T)
        .limits(hb)
        .token(s.token())
        .connect_ws(&s.url("/greet"))
        .unwrap();
    // Idle for several idle timeouts: WebSocket pings and pongs keep it up.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1200) {
        assert!(c.is_connected());
        std::thread::park_timeout(Duration::from_millis(100));
    }
    assert_eq!(c.call(&ADD_2_WORDS, &(1, 2)).unwrap(), 3);
    // A slow call is not a dead peer either.
    assert_eq!(c.call(&SLOW, &800).unwrap(), 800);
    // Server shutdown: the client learns at once.
    drop(s);
    let e = c.call(&ADD_2_WORDS, &(1, 2)).unwrap_err();
    assert!(e.is_disconnect(), "{e}");
}

#[test]
fn ws_client_reads_the_token_from_the_environment() {
    let s = serve_ws("/greet", router());
    std::env::set_var(framerpc::TOKEN_ENV, s.token());
    let c = Client::connect_ws(&s.url("/greet"), None).unwrap();
    std::env::remove_var(framerpc::TOKEN_ENV);
    assert_eq!(c.call(&ADD_2_WORDS, &(2, 2)).unwrap(), 4);
}

#[test]
fn ws_open_server_needs_no_token() {
    let s = serve_ws_with(
        Server::builder(),
        WsConfig::new().mount("/greet", router()).open(),
    );
    assert!(s.server().token().is_none());
    let c = Client::builder()
        .timeout(T)
        .connect_ws(&s.url("/greet"))
        .unwrap();
    assert_eq!(c.call(&ADD_2_WORDS, &(2, 2)).unwrap(), 4);
}
