//! Deadlines are deadlines: the write timeout bounds a whole frame,
//! `close` and `shutdown` never wait for a writer blocked on a peer that
//! does not read, and dropping a server with a call in flight returns
//! within the grace period plus a small bound. Also the small fixes that
//! came with the connection core. The time bounds here only catch a hang
//! (each is several times what the code needs).

mod support;

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::bounded;
use framerpc::codec::{BYTES, U32, UNIT};
use framerpc::frame::Kind;
use framerpc::{Command, Limits, Router, Server};
use support::*;

const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
const BIG: Command<u32, Bytes> = Command::new(5, "big", &U32, &BYTES);
const SLEEP: Command<(), ()> = Command::new(6, "sleep", &UNIT, &UNIT);

fn big_router() -> Router {
    Router::new()
        .handle(&ADD, |(a, b)| Ok(a + b))
        .handle(&BIG, |n| Ok(Bytes::from(vec![7u8; n as usize])))
}

/// Asks for a `len`-byte reply on a raw socket and never reads it.
fn stuck_reader(addr: std::net::SocketAddr, len: u32) -> std::net::TcpStream {
    let mut s = raw(addr);
    send(&mut s, Kind::Call, BIG.id(), 1, &len.to_le_bytes());
    s
}

#[test]
fn the_write_timeout_bounds_a_whole_frame() {
    let gone = Arc::new(AtomicBool::new(false));
    let g = Arc::clone(&gone);
    let server = Server::builder()
        .limits(Limits::default().write_timeout(Some(Duration::from_millis(300))))
        .on_disconnect(move |_| g.store(true, Ordering::SeqCst))
        .bind("127.0.0.1:0", big_router())
        .unwrap();
    // A client that keeps reading, slowly: every partial write succeeds,
    // but the 48 MiB frame as a whole takes far longer than 300 ms.
    let mut s = stuck_reader(server.local_addr(), 48 << 20);
    let mut buf = [0u8; 4096];
    let mut rounds = 0;
    while !gone.load(Ordering::SeqCst) {
        rounds += 1;
        assert!(rounds < 1000, "the server kept writing to a slow reader");
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    eventually("the slow reader's connection is dropped", || {
        gone.load(Ordering::SeqCst)
    });
    // Other users are untouched.
    let c = framerpc::Client::connect(server.local_addr()).unwrap();
    assert_eq!(c.call(&ADD, &(1, 2)).unwrap(), 3);
}

#[test]
fn shutdown_does_not_wait_for_a_writer_blocked_on_a_peer_that_never_reads() {
    let server = Server::builder()
        .grace(Duration::from_millis(200))
        .bind("127.0.0.1:0", big_router())
        .unwrap();
    let addr = server.local_addr();
    let _stuck = stuck_reader(addr, 48 << 20);
    // The reply is being written (and blocks: nobody reads it).
    let c = framerpc::Client::connect(addr).unwrap();
    eventually("the big reply is being written", || {
        c.status().is_ok() && server.connection_count() == 2
    });
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    server.shutdown();
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "shutdown with a 200 ms grace took {took:?} (the default write timeout is 30 s)"
    );
}

#[test]
fn dropping_a_server_with_a_call_in_flight_returns_after_the_grace_period() {
    let (started_tx, started) = bounded(1);
    let router = Router::new().handle(&SLEEP, move |()| {
        started_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(4));
        Ok(())
    });
    let server = Server::builder()
        .grace(Duration::from_millis(200))
        .bind("127.0.0.1:0", router)
        .unwrap();
    let c = framerpc::Client::builder()
        .timeout(T)
        .connect(server.local_addr())
        .unwrap();
    let call = std::thread::spawn(move || c.call(&SLEEP, &()));
    started.recv_timeout(T).unwrap();
    let t = Instant::now();
    drop(server);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "drop with a 200 ms grace and a 4 s handler took {took:?}"
    );
    // The caller is not left hanging either.
    assert!(call.join().unwrap().unwrap_err().is_disconnect());
}

#[test]
fn a_client_close_does_not_wait_for_its_blocked_writer() {
    // A server whose handler never reads more: the client's 48 MiB request
    // blocks in the write once the socket buffers are full.
    let (started_tx, started) = bounded(1);
    let (release, release_rx) = bounded::<()>(1);
    let router = Router::new()
        .handle(&SLEEP, move |()| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(Duration::from_secs(20));
            Ok(())
        })
        .handle(&ECHO, Ok);
    let srv = serve(router);
    let c = srv.client();
    let c1 = c.clone();
    std::thread::spawn(move || c1.call(&SLEEP, &()));
    started.recv_timeout(T).unwrap();
    // The handler runs: a second call queues, and with the inbox full the
    // server stops reading, so the big request cannot be written.
    let c2 = c.clone();
    let writer = std::thread::spawn(move || {
        let big = Bytes::from(vec![1u8; 60 << 20]);
        c2.call(&ECHO, &big)
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    c.close();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "close waited for the writer"
    );
    assert!(writer.join().unwrap().is_err());
    let _ = release.send(());
}

const ECHO: Command<Bytes, Bytes> = Command::new(7, "echo", &BYTES, &BYTES);

#[test]
fn router_default_is_router_new() {
    assert_eq!(Router::default().max_concurrency(), 1);
    let srv = serve(Router::default().handle(&ADD, |(a, b)| Ok(a + b)));
    assert_eq!(srv.client().call(&ADD, &(2, 2)).unwrap(), 4);
}
