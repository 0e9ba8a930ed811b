//! Calls over a real socket: typed calls, every error path, pipelining from
//! many threads, timeouts and cancellation, notify, schema checks.

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::bounded;
use framerpc::codec::{BYTES, STR, U32, U64, UNIT};
use framerpc::{Client, Command, Error, ErrorCode, HandlerError, Limits, Router, Side};
use greet::{ADD_2_WORDS, FUNC_NO_ARGS, GOODBYE, HELLO};
use support::*;

const DIVIDE: Command<(u32, u32), u32> = Command::new(10, "divide", &(U32, U32), &U32);
const EXPLODE: Command<u32, u32> = Command::new(11, "explode", &U32, &U32);
const SLOW: Command<u64, u64> = Command::new(12, "slow", &U64, &U64);
const ECHO: Command<bytes::Bytes, bytes::Bytes> = Command::new(13, "echo", &BYTES, &BYTES);
const COUNT: Command<(), ()> = Command::new(14, "count", &UNIT, &UNIT);
const FAIL: Command<(), ()> = Command::new(15, "fail", &UNIT, &UNIT);
/// Says it started, then waits until the test releases it.
const BLOCK: Command<(), ()> = Command::new(16, "block", &UNIT, &UNIT);

struct Gate {
    started: crossbeam_channel::Receiver<()>,
    release: crossbeam_channel::Sender<()>,
}

fn router(counter: Arc<AtomicU32>) -> Router {
    router_gated(counter).0
}

fn router_gated(counter: Arc<AtomicU32>) -> (Router, Gate) {
    let (started_tx, started) = bounded(16);
    let (release, release_rx) = bounded::<()>(16);
    let r = greet::router()
        .handle(&BLOCK, move |()| {
            started_tx.send(()).unwrap();
            release_rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .handle(&DIVIDE, |(a, b)| {
            a.checked_div(b)
                .ok_or_else(|| HandlerError::with_code(1001, "division by zero"))
        })
        .handle(&EXPLODE, |n| -> Result<u32, HandlerError> {
            panic!("boom {n}")
        })
        .handle_with(&SLOW, |ctx, ms| {
            let deadline = std::time::Instant::now() + Duration::from_millis(ms);
            while std::time::Instant::now() < deadline {
                if ctx.is_cancelled() {
                    return Ok(u64::MAX);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(ms)
        })
        .handle(&ECHO, Ok)
        .handle(&COUNT, move |()| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .handle(&FAIL, |()| Err("the motor stalled".into()));
    (r, Gate { started, release })
}

fn server() -> (TestServer, Arc<AtomicU32>) {
    let counter = Arc::new(AtomicU32::new(0));
    (serve(router(Arc::clone(&counter))), counter)
}

#[test]
fn typed_calls_return_values() {
    let (srv, _) = server();
    let c = Client::connect_checked(srv.addr(), &[&HELLO, &GOODBYE, &ADD_2_WORDS, &FUNC_NO_ARGS])
        .unwrap();
    assert_eq!(c.call(&HELLO, &"bob".into()).unwrap(), "hello bob");
    assert_eq!(c.call(&GOODBYE, &"bob".into()).unwrap(), "goodbye bob");
    assert_eq!(c.call(&ADD_2_WORDS, &(u32::MAX, 2)).unwrap(), 1);
    c.call(&FUNC_NO_ARGS, &()).unwrap();
    assert_eq!(&c.ping(b"abc").unwrap()[..], b"abc");
}

#[test]
fn unknown_command_and_bad_payload() {
    let (srv, _) = server();
    let c = srv.client();
    let e = c.call_raw(777, b"", None).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UNKNOWN_COMMAND), "{e}");
    assert!(e.to_string().contains("777"));
    let e = c
        .call_raw(ADD_2_WORDS.id(), &[1, 0, 0, 0], None)
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BAD_PAYLOAD), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert_eq!(c.call(&ADD_2_WORDS, &(1, 1)).unwrap(), 2);
}

#[test]
fn handler_errors_keep_code_and_message() {
    let (srv, _) = server();
    let c = srv.client();
    let e = c.call(&DIVIDE, &(1, 0)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode(1001)));
    assert_eq!(e.remote_message(), Some("division by zero"));
    let e = c.call(&FAIL, &()).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::HANDLER));
    assert_eq!(e.remote_message(), Some("the motor stalled"));
}

#[test]
fn handler_panic_then_same_connection_works() {
    let (srv, _) = server();
    let c = srv.client();
    let e = c.call(&EXPLODE, &7).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PANIC));
    assert!(e.to_string().contains("boom 7"), "{e}");
    assert_eq!(c.call(&ADD_2_WORDS, &(2, 3)).unwrap(), 5);
    // And another connection too.
    assert_eq!(srv.client().call(&ADD_2_WORDS, &(2, 3)).unwrap(), 5);
}

#[test]
fn sixteen_threads_pipeline_through_one_client() {
    let (srv, _) = server();
    let c = srv.client();
    let threads: Vec<_> = (0..16u32)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..1000u32 {
                    let a = t * 1_000_000 + i;
                    assert_eq!(c.call(&ADD_2_WORDS, &(a, i)).unwrap(), a + i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.peer().stray_replies(), 0);
}

#[test]
fn timeout_cancels_and_the_next_call_works() {
    let (srv, _) = server();
    let c = srv.client();
    let e = c
        .call_timeout(&SLOW, &3_000, Duration::from_millis(50))
        .unwrap_err();
    match &e {
        Error::Timeout(t) => {
            assert_eq!(&*t.what, "slow");
            assert!(t.id > 0);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("may still be running"), "{e}");
    // The handler saw the CANCEL and returned early; its late reply is
    // dropped, never delivered to the next call.
    assert_eq!(c.call(&ADD_2_WORDS, &(20, 22)).unwrap(), 42);
    eventually("late reply counted", || c.peer().stray_replies() == 1);
    assert_eq!(c.call(&SLOW, &1).unwrap(), 1);
}

#[test]
fn cancel_of_a_queued_call_drops_it() {
    let counter = Arc::new(AtomicU32::new(0));
    let (router, gate) = router_gated(Arc::clone(&counter));
    let srv = serve(router);
    let c = srv.client();
    let c2 = c.clone();
    let busy = std::thread::spawn(move || c2.call(&BLOCK, &()));
    gate.started.recv_timeout(T).unwrap();
    // Queued behind BLOCK; times out before it starts, so it never runs.
    assert!(c
        .call_timeout(&COUNT, &(), Duration::from_millis(10))
        .is_err());
    // The reader answers ping in stream order: once it has, the CANCEL
    // that went before it has been seen too.
    c.ping(b"").unwrap();
    gate.release.send(()).unwrap();
    busy.join().unwrap().unwrap();
    c.call(&FUNC_NO_ARGS, &()).unwrap();
    assert_eq!(counter.load(Ordering::SeqCst), 0);
}

#[test]
fn notify_runs_without_reply() {
    let (srv, counter) = server();
    let c = srv.client();
    for _ in 0..10 {
        c.notify(&COUNT, &()).unwrap();
    }
    // Handlers run in arrival order: this call's reply means all ran.
    c.call(&FUNC_NO_ARGS, &()).unwrap();
    assert_eq!(counter.load(Ordering::SeqCst), 10);
}

#[test]
fn schema_mismatch_names_command_and_both_schemas() {
    let (srv, _) = server();
    const WRONG: Command<(u32, u64), u32> = Command::new(3, "add_2_words", &(U32, U64), &U32);
    let e = Client::connect_checked(srv.addr(), &[&HELLO, &WRONG]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("add_2_words") && msg.contains("(u32,u64)") && msg.contains("(u32,u32)"),
        "{msg}"
    );
    const MISSING: Command<String, String> = Command::new(99, "missing", &STR, &STR);
    let e = Client::connect_checked(srv.addr(), &[&MISSING]).unwrap_err();
    assert!(e.to_string().contains("no command with id 99"), "{e}");
}

#[test]
fn duplicate_ids_and_names_refused_when_building() {
    const A: Command<(), ()> = Command::new(1, "a", &UNIT, &UNIT);
    const B: Command<(), ()> = Command::new(1, "b", &UNIT, &UNIT);
    const C: Command<(), ()> = Command::new(2, "a", &UNIT, &UNIT);
    let r = Router::new().handle(&A, |()| Ok(()));
    let e = r.try_handle_with(&B, |_, ()| Ok(())).unwrap_err();
    assert!(e.to_string().contains("id 1"), "{e}");
    let r = Router::new().handle(&A, |()| Ok(()));
    let e = r.try_handle_with(&C, |_, ()| Ok(())).unwrap_err();
    assert!(e.to_string().contains("\"a\""), "{e}");
}

#[test]
fn oversize_request_fails_locally_and_connection_survives() {
    let (srv, _) = server();
    let c = Client::builder()
        .limits(Limits::default().max_frame_len(1024))
        .timeout(T)
        .connect(srv.addr())
        .unwrap();
    let big = bytes::Bytes::from(vec![0u8; 2048]);
    match c.call(&ECHO, &big).unwrap_err() {
        Error::TooLarge { len, max, side } => {
            assert_eq!((len, max, side), (2052, 1024, Side::Local))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.call(&ECHO, &bytes::Bytes::from_static(b"ok")).unwrap(),
        &b"ok"[..]
    );
}

#[test]
fn oversize_reply_is_an_error_not_a_dead_connection() {
    let srv = serve_with(
        framerpc::Server::builder().limits(Limits::default().max_frame_len(1024)),
        router(Arc::new(AtomicU32::new(0))),
    );
    let c = srv.client();
    // The request fits the server's limit; the peer refuses it: TOO_LARGE
    // names the size, the limit and whose it is, then that connection ends.
    let e = c
        .call(&ECHO, &bytes::Bytes::from(vec![1u8; 4000]))
        .unwrap_err();
    assert!(
        e.to_string().contains("4004") && e.to_string().contains("1024"),
        "{e}"
    );
    assert_eq!(srv.client().call(&ADD_2_WORDS, &(1, 2)).unwrap(), 3);
}

#[test]
fn big_echo_round_trips() {
    let (srv, _) = server();
    let c = srv.client();
    let data: Vec<u8> = (0..(16u32 << 20)).map(|i| (i % 251) as u8).collect();
    let got = c.call(&ECHO, &bytes::Bytes::from(data.clone())).unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data);
}

#[test]
fn client_disconnect_mid_call_leaves_server_serving() {
    let (router, gate) = router_gated(Arc::new(AtomicU32::new(0)));
    let srv = serve(router);
    let c = srv.client();
    let c2 = c.clone();
    let t = std::thread::spawn(move || c2.call(&BLOCK, &()));
    gate.started.recv_timeout(T).unwrap();
    c.close();
    let r = t.join().unwrap();
    assert!(matches!(r, Err(Error::Disconnected(_))), "{r:?}");
    assert!(!c.is_connected());
    assert_eq!(srv.client().call(&ADD_2_WORDS, &(2, 3)).unwrap(), 5);
    gate.release.send(()).unwrap();
}

#[test]
fn server_death_fails_pending_calls_at_once() {
    let (router, gate) = router_gated(Arc::new(AtomicU32::new(0)));
    let srv = serve_with(
        framerpc::Server::builder().grace(Duration::from_millis(100)),
        router,
    );
    let c = srv.client();
    let c2 = c.clone();
    let t = std::thread::spawn(move || c2.call_timeout(&BLOCK, &(), Duration::from_secs(60)));
    gate.started.recv_timeout(T).unwrap();
    let start = std::time::Instant::now();
    drop(srv);
    let r = t.join().unwrap();
    assert!(r.is_err(), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(c.call(&ADD_2_WORDS, &(1, 1)).is_err());
    drop(gate);
}

#[test]
fn ping_status_and_other_replies_flow_while_a_handler_runs() {
    let (router, gate) = router_gated(Arc::new(AtomicU32::new(0)));
    let srv = serve(router);
    let c = srv.client();
    let c2 = c.clone();
    let long = std::thread::spawn(move || c2.call(&BLOCK, &()));
    gate.started.recv_timeout(T).unwrap();
    // The handler is blocked until released: these are answered anyway,
    // so a long call never makes the connection look dead.
    for _ in 0..3 {
        assert_eq!(&c.ping(b"alive").unwrap()[..], b"alive");
        c.status().unwrap();
    }
    // A call queued behind the handler waits its turn (arrival order).
    let c3 = c.clone();
    let queued = std::thread::spawn(move || c3.call(&ADD_2_WORDS, &(1, 2)));
    gate.release.send(()).unwrap();
    long.join().unwrap().unwrap();
    assert_eq!(queued.join().unwrap().unwrap(), 3);
}
