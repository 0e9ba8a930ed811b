//! Both directions on one connection: the server calls its clients (even
//! from inside a handler serving that client), connection hooks, broadcast.

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded};
use framerpc::codec::{STR, U32};
use framerpc::{Client, Command, Peer, Router, Server};
use parking_lot::Mutex;
use support::*;

/// Served by clients: the server asks a client to double a number.
const DOUBLE: Command<u32, u32> = Command::new(100, "double", &U32, &U32);
/// Served by the server: it asks the calling client to double `n`, adds 1.
const DOUBLE_PLUS_ONE: Command<u32, u32> = Command::new(101, "double_plus_one", &U32, &U32);
/// Server to client: a one-way announcement.
const ANNOUNCE: Command<String, ()> = Command::new(102, "announce", &STR, &framerpc::codec::UNIT);

fn client_router(announcements: crossbeam_channel::Sender<String>) -> Router {
    Router::new()
        .handle(&DOUBLE, |n| Ok(n * 2))
        .handle(&ANNOUNCE, move |s| {
            announcements.send(s).unwrap();
            Ok(())
        })
}

fn server_router() -> Router {
    greet::router().handle_with(&DOUBLE_PLUS_ONE, |ctx, n| {
        // Calls back into the very client that is waiting for this reply.
        let doubled = ctx
            .peer()
            .call_timeout(&DOUBLE, &n, Duration::from_secs(5))?;
        Ok(doubled + 1)
    })
}

#[test]
fn handler_calls_back_into_its_caller_before_returning() {
    let srv = serve(server_router());
    let (tx, _rx) = unbounded();
    let c = Client::builder()
        .handlers(client_router(tx))
        .timeout(T)
        .connect_srv(&srv)
        .unwrap();
    assert_eq!(c.call(&DOUBLE_PLUS_ONE, &20).unwrap(), 41);
}

#[test]
fn both_directions_at_once_from_several_threads() {
    let (peers_tx, peers_rx) = bounded::<Peer>(1);
    let builder = Server::builder().on_connect(move |p| {
        let _ = peers_tx.try_send(p.clone());
    });
    let srv = serve_with(builder, server_router());
    let (tx, _rx) = unbounded();
    let c = Client::builder()
        .handlers(client_router(tx))
        .timeout(T)
        .connect_srv(&srv)
        .unwrap();
    let peer = peers_rx.recv_timeout(T).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let c = c.clone();
            s.spawn(move || {
                for i in 0..200 {
                    assert_eq!(c.call(&greet::ADD_2_WORDS, &(t, i)).unwrap(), t + i);
                    assert_eq!(c.call(&DOUBLE_PLUS_ONE, &i).unwrap(), 2 * i + 1);
                }
            });
            let peer = peer.clone();
            s.spawn(move || {
                for i in 0..200 {
                    assert_eq!(
                        peer.call_timeout(&DOUBLE, &(t * 1000 + i), T).unwrap(),
                        2 * (t * 1000 + i)
                    );
                }
            });
        }
    });
}

#[test]
fn client_without_handlers_answers_unknown_command() {
    let (peers_tx, peers_rx) = bounded::<Peer>(1);
    let srv = serve_with(
        Server::builder().on_connect(move |p| {
            let _ = peers_tx.try_send(p.clone());
        }),
        greet::router(),
    );
    let c = srv.client();
    let peer = peers_rx.recv_timeout(T).unwrap();
    let e = peer.call_timeout(&DOUBLE, &1, T).unwrap_err();
    assert_eq!(e.code(), Some(framerpc::ErrorCode::UNKNOWN_COMMAND));
    assert_eq!(c.call(&greet::ADD_2_WORDS, &(1, 2)).unwrap(), 3);
}

#[test]
fn broadcast_reaches_each_of_twenty_clients_exactly_once() {
    let connected = Arc::new(AtomicU32::new(0));
    let disconnected = Arc::new(Mutex::new(Vec::new()));
    let (c1, d1) = (Arc::clone(&connected), Arc::clone(&disconnected));
    let builder = Server::builder()
        .on_connect(move |_| {
            c1.fetch_add(1, Ordering::SeqCst);
        })
        .on_disconnect(move |p| d1.lock().push(p.conn_id()));
    let srv = serve_with(builder, greet::router());
    let (tx, rx) = unbounded();
    let mut clients: Vec<Client> = (0..20)
        .map(|_| {
            Client::builder()
                .handlers(client_router(tx.clone()))
                .timeout(T)
                .connect_srv(&srv)
                .unwrap()
        })
        .collect();
    eventually("all connected", || connected.load(Ordering::SeqCst) == 20);
    // One goes away first: it is skipped, with no error for the others.
    let gone = clients.pop().unwrap();
    let gone_id = gone.peer().conn_id();
    drop(gone);
    eventually("one disconnected", || disconnected.lock().len() == 1);
    let reached = srv.server().broadcast(&ANNOUNCE, &"hello all".to_string());
    assert_eq!(reached, 19);
    for _ in 0..19 {
        assert_eq!(rx.recv_timeout(T).unwrap(), "hello all");
    }
    // Each client answers a call after the broadcast, so every announcement
    // that was coming has arrived: none twice.
    for c in &clients {
        c.ping(b"").unwrap();
    }
    assert!(rx.try_recv().is_err(), "a client got the broadcast twice");
    let _ = gone_id;
}

#[test]
fn server_handle_notifies_one_client_later_from_another_thread() {
    let (peers_tx, peers_rx) = bounded::<Peer>(4);
    let srv = serve_with(
        Server::builder().on_connect(move |p| {
            let _ = peers_tx.try_send(p.clone());
        }),
        greet::router(),
    );
    let (tx, rx) = unbounded();
    let _c = Client::builder()
        .handlers(client_router(tx))
        .connect_srv(&srv)
        .unwrap();
    let peer = peers_rx.recv_timeout(T).unwrap();
    std::thread::spawn(move || peer.notify(&ANNOUNCE, &"just you".to_string()).unwrap())
        .join()
        .unwrap();
    assert_eq!(rx.recv_timeout(T).unwrap(), "just you");
    assert_eq!(srv.server().handle().peers().len(), 1);
}

#[test]
fn on_connect_finishes_before_any_call_runs_even_under_refuse() {
    let hooked = Arc::new(AtomicU32::new(0));
    let h = Arc::clone(&hooked);
    let seen = Arc::new(AtomicU32::new(u32::MAX));
    let s2 = Arc::clone(&seen);
    const PROBE: Command<(), u32> = Command::new(103, "probe", &framerpc::codec::UNIT, &U32);
    let builder = Server::builder()
        .max_users(4)
        .when_full(framerpc::WhenFull::Refuse)
        .on_connect(move |_| {
            std::thread::sleep(Duration::from_millis(50));
            h.store(1, Ordering::SeqCst);
        });
    let h2 = Arc::clone(&hooked);
    let router = greet::router().handle(&PROBE, move |()| {
        let v = h2.load(Ordering::SeqCst);
        s2.store(v, Ordering::SeqCst);
        Ok(v)
    });
    let srv = serve_with(builder, router);
    let c = srv.client();
    assert_eq!(
        c.call(&PROBE, &()).unwrap(),
        1,
        "a call ran before on_connect returned"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

/// A handler calls back into its peer while that peer floods the
/// connection with more calls than the queue holds: the reader must still
/// read the callback's reply instead of waiting for queue space.
#[test]
fn callback_reply_is_read_while_the_queue_is_full() {
    const SLOW_CB: Command<u32, u32> = Command::new(104, "slow_cb", &U32, &U32);
    const NOOP: Command<(), ()> =
        Command::new(105, "noop", &framerpc::codec::UNIT, &framerpc::codec::UNIT);
    let router = greet::router()
        .handle_with(&SLOW_CB, |ctx, n| {
            // Takes a while, so the flood below fills the queue meanwhile.
            std::thread::sleep(Duration::from_millis(100));
            Ok(ctx
                .peer()
                .call_timeout(&DOUBLE, &n, Duration::from_secs(3))?)
        })
        .handle(&NOOP, |()| Ok(()));
    let srv = serve(router);
    let (tx, _rx) = unbounded();
    let c = Client::builder()
        .handlers(client_router(tx))
        .timeout(T)
        .connect_srv(&srv)
        .unwrap();
    let c2 = c.clone();
    let slow = std::thread::spawn(move || c2.call(&SLOW_CB, &21));
    for _ in 0..1000 {
        c.notify(&NOOP, &()).unwrap();
    }
    assert_eq!(slow.join().unwrap().unwrap(), 42);
    assert_eq!(c.call(&greet::ADD_2_WORDS, &(1, 2)).unwrap(), 3);
}
