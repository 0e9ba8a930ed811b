//! Graceful shutdown: stop accepting, let calls in flight finish within the
//! grace period, refuse new calls, close connections, join threads; nobody
//! waiting hangs.

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use framerpc::codec::UNIT;
use framerpc::{Command, Error, ErrorCode, Server};
use greet::ADD_2_WORDS;
use support::*;

const BLOCK: Command<(), ()> = Command::new(20, "block", &UNIT, &UNIT);

#[test]
fn calls_in_flight_finish_and_new_calls_are_refused() {
    let (started_tx, started) = bounded(4);
    let (release, release_rx) = bounded::<()>(4);
    let router = greet::router().handle(&BLOCK, move |()| {
        started_tx.send(()).unwrap();
        release_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        Ok(())
    });
    let server = Server::builder()
        .grace(Duration::from_secs(5))
        .bind("127.0.0.1:0", router)
        .unwrap();
    let addr = server.local_addr();
    let c = framerpc::Client::builder()
        .timeout(T)
        .connect(addr)
        .unwrap();
    let c2 = c.clone();
    let in_flight = std::thread::spawn(move || c2.call(&BLOCK, &()));
    started.recv_timeout(T).unwrap();

    // A connection with nothing in flight (connected before the shutdown
    // begins: after it, the port is closed)...
    let other = framerpc::Client::builder()
        .timeout(T)
        .connect(addr)
        .unwrap();
    assert_eq!(other.call(&ADD_2_WORDS, &(1, 1)).unwrap(), 2);
    let handle = server.handle();
    let stopper = std::thread::spawn(move || handle.shutdown());
    // ...is closed at once...
    eventually("idle connection closed", || {
        other
            .call(&ADD_2_WORDS, &(1, 1))
            .is_err_and(|e| e.is_disconnect())
    });
    // ...while one with a call in flight stays open and refuses new calls.
    let e = c.call(&ADD_2_WORDS, &(1, 1)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::SHUTTING_DOWN), "{e}");
    release.send(()).unwrap();
    assert!(
        in_flight.join().unwrap().is_ok(),
        "the call in flight finished"
    );
    assert!(stopper.join().unwrap(), "every thread ended in time");
    let r = c.call(&ADD_2_WORDS, &(1, 1));
    assert!(
        matches!(r, Err(Error::Disconnected(_))) || r.as_ref().is_err_and(|e| e.is_disconnect()),
        "{r:?}"
    );
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() || {
            // The listener is gone once the server is dropped.
            drop(server);
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
        }
    );
}

#[test]
fn stuck_handler_bounded_by_grace() {
    let (started_tx, started) = bounded(1);
    let (_release, release_rx) = bounded::<()>(1);
    let router = greet::router().handle(&BLOCK, move |()| {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(3));
        Ok(())
    });
    let server = Server::builder()
        .grace(Duration::from_millis(100))
        .bind("127.0.0.1:0", router)
        .unwrap();
    let c = framerpc::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect(server.local_addr())
        .unwrap();
    let c2 = c.clone();
    let waiting = std::thread::spawn(move || c2.call(&BLOCK, &()));
    started.recv_timeout(T).unwrap();
    let start = Instant::now();
    let clean = server.shutdown();
    assert!(!clean, "the stuck handler is reported");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "shutdown is bounded: {:?}",
        start.elapsed()
    );
    let r = waiting.join().unwrap();
    assert!(r.is_err_and(|e| e.is_disconnect()));
}
