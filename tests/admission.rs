//! Admission over real sockets: exclusive access, FIFO order, BUSY with
//! the holder named, permits released on every kind of exit, status.

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use framerpc::codec::{U64, UNIT};
use framerpc::frame::Kind;
use framerpc::{Client, Command, ErrorCode, Limits, Router, Server, Status, WhenFull};
use greet::ADD_2_WORDS;
use parking_lot::Mutex;
use support::*;

/// Uses the device: proves no two connections hold it at once.
const USE: Command<(), u64> = Command::new(1, "use", &UNIT, &U64);
const EXPLODE: Command<(), ()> = Command::new(2, "explode", &UNIT, &UNIT);
const SLOW: Command<u64, u64> = Command::new(9, "slow", &U64, &U64);

#[derive(Default)]
struct Device {
    holder: Mutex<Option<u64>>,
    overlaps: AtomicUsize,
    admitted: Mutex<Vec<u64>>,
    releases: AtomicU32,
}

fn device_server(max_users: u32, policy: WhenFull, limits: Limits) -> (TestServer, Arc<Device>) {
    let dev = Arc::new(Device::default());
    let d = Arc::clone(&dev);
    let router = Router::new()
        .handle_with(&USE, move |ctx, ()| {
            let me = ctx.conn_id();
            let mut h = d.holder.lock();
            match *h {
                Some(other) if other != me => {
                    d.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                Some(_) => {}
                None => {
                    *h = Some(me);
                    d.admitted.lock().push(me);
                }
            }
            Ok(me)
        })
        .handle(&EXPLODE, |()| -> Result<(), framerpc::HandlerError> {
            panic!("device on fire")
        })
        .handle(&SLOW, |ms| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(ms)
        })
        .handle(&ADD_2_WORDS, |(a, b)| Ok(a.wrapping_add(b)));
    let d = Arc::clone(&dev);
    let builder = Server::builder()
        .max_users(max_users)
        .when_full(policy)
        .limits(limits)
        .on_release(move |_| {
            *d.holder.lock() = None;
            d.releases.fetch_add(1, Ordering::SeqCst);
        });
    (serve_with(builder, router), dev)
}

fn queue(secs: u64) -> WhenFull {
    WhenFull::Queue {
        max_wait: Duration::from_secs(secs),
    }
}

#[test]
fn eight_clients_race_for_one_permit_in_arrival_order() {
    let (srv, dev) = device_server(1, queue(30), Limits::default());
    let mut conn_ids = Vec::new();
    let mut threads = Vec::new();
    for n in 0..8u32 {
        let c = Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_srv(&srv)
            .unwrap();
        // A connection joins the queue with its first call that needs the
        // device: wait until the server has queued this one before the
        // next one asks, so arrival order is well defined.
        let probe = c.clone();
        threads.push(std::thread::spawn(move || {
            let me = c.call(&USE, &()).unwrap();
            for _ in 0..5 {
                assert_eq!(c.call(&USE, &()).unwrap(), me);
            }
            me
        }));
        eventually("queued", || {
            let s = probe.status().unwrap();
            s.active + s.waiting == n + 1 || dev.releases.load(Ordering::SeqCst) > 0
        });
    }
    for t in threads {
        conn_ids.push(t.join().unwrap());
    }
    assert_eq!(
        dev.overlaps.load(Ordering::SeqCst),
        0,
        "two users held the device at once"
    );
    let admitted = dev.admitted.lock().clone();
    let mut sorted = conn_ids.clone();
    sorted.sort_unstable();
    assert_eq!(admitted, sorted, "admitted in arrival (connection) order");
    eventually("all released", || dev.releases.load(Ordering::SeqCst) == 8);
}

#[test]
fn refuse_policy_gives_busy_at_once_naming_the_holder() {
    let (srv, _dev) = device_server(1, WhenFull::Refuse, Limits::default());
    let holder = srv.client();
    holder.call(&USE, &()).unwrap();
    let other = srv.client();
    let e = other.call(&USE, &()).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BUSY), "{e}");
    let msg = e.remote_message().unwrap();
    assert!(
        msg.contains("held by ") && msg.contains(" (127.0.0.1:") && msg.contains("1 of 1"),
        "{msg}"
    );
    assert_eq!(
        other.status().unwrap(),
        Status {
            active: 1,
            max: 1,
            waiting: 0
        }
    );
    // The refused connection stays open and gets the device once it is free.
    drop(holder);
    eventually("admitted after release", || other.call(&USE, &()).is_ok());
}

#[test]
fn wait_bound_gives_busy_after_the_bound_with_queue_position() {
    let (srv, _dev) = device_server(
        1,
        WhenFull::Queue {
            max_wait: Duration::from_millis(300),
        },
        Limits::default(),
    );
    let holder = srv.client();
    holder.call(&USE, &()).unwrap();
    let waiter = srv.client();
    // Not waiting until it asks for the device.
    assert_eq!(waiter.status().unwrap().waiting, 0);
    let start = std::time::Instant::now();
    let w = waiter.clone();
    let call = std::thread::spawn(move || w.call(&USE, &()));
    eventually("waiting", || {
        holder.status().unwrap()
            == Status {
                active: 1,
                max: 1,
                waiting: 1,
            }
    });
    let e = call.join().unwrap().unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(e.code(), Some(ErrorCode::BUSY), "{e}");
    let msg = e.remote_message().unwrap();
    assert!(
        msg.contains("held by") && msg.contains("number 1 of 1") && msg.contains("waiting"),
        "{msg}"
    );
    // BUSY never closes the connection.
    assert_eq!(&waiter.ping(b"x").unwrap()[..], b"x");
    assert_eq!(
        holder.status().unwrap(),
        Status {
            active: 1,
            max: 1,
            waiting: 0
        }
    );
}

#[test]
fn client_timeout_while_waiting_is_a_clear_timeout() {
    let (srv, _dev) = device_server(1, queue(30), Limits::default());
    let holder = srv.client();
    holder.call(&USE, &()).unwrap();
    let waiter = srv.client();
    let e = waiter
        .call_timeout(&USE, &(), Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TIMEOUT), "{e}");
    // The error names the command, the holder, how long it has held the
    // device, and the waiter's place in the queue.
    let msg = e.to_string();
    assert!(msg.contains("no reply to use"), "{msg}");
    assert!(
        msg.contains("held by ")
            && msg.contains(" (127.0.0.1:")
            && msg.contains("number 1 of 1 in the queue"),
        "{msg}"
    );
    // Once admitted, a timeout does not ask.
    let e = holder
        .call_timeout(&SLOW, &200, Duration::from_millis(20))
        .unwrap_err();
    assert!(!e.to_string().contains("server:"), "{e}");
    // A client that gave up keeps no place in the queue.
    assert_eq!(&waiter.ping(b"x").unwrap()[..], b"x");
    eventually("left the queue", || waiter.status().unwrap().waiting == 0);
}

#[test]
fn killed_holder_socket_lets_the_next_waiter_in() {
    if over_tls() {
        return; // a raw plain-TCP peer; tests/tls_suites.rs has the TLS case
    }
    let (srv, dev) = device_server(1, queue(30), Limits::default());
    for how in ["drop", "shutdown"] {
        let mut s = raw(srv.addr());
        send(&mut s, Kind::Call, USE.id(), 1, &[]);
        let (h, _) = recv(&mut s).unwrap();
        assert_eq!(h.kind, Kind::Reply);
        let waiter = srv.client();
        let w = std::thread::spawn(move || waiter.call(&USE, &()));
        eventually("waiter queued", || srv.server().status().waiting == 1);
        match how {
            "drop" => drop(s),
            _ => s.shutdown(std::net::Shutdown::Both).unwrap(),
        }
        w.join().unwrap().unwrap();
        assert_eq!(dev.overlaps.load(Ordering::SeqCst), 0);
        eventually("idle", || srv.server().status().active == 0);
    }
}

#[test]
fn silent_peer_is_found_by_heartbeat_and_released() {
    if over_tls() {
        return; // a raw plain-TCP peer; tests/tls_suites.rs has the TLS case
    }
    let limits = Limits::default().heartbeat(Some((
        Duration::from_millis(100),
        Duration::from_millis(400),
    )));
    let (srv, dev) = device_server(1, queue(30), limits);
    let mut s = raw(srv.addr());
    send(&mut s, Kind::Call, USE.id(), 1, &[]);
    recv(&mut s).unwrap();
    // From now on the raw peer neither reads nor writes: it has gone silent.
    let waiter = Client::builder()
        .limits(limits)
        .timeout(Duration::from_secs(10))
        .connect_srv(&srv)
        .unwrap();
    let start = std::time::Instant::now();
    waiter.call(&USE, &()).unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "released too early: {waited:?}"
    );
    assert_eq!(dev.overlaps.load(Ordering::SeqCst), 0);
    assert_eq!(dev.releases.load(Ordering::SeqCst), 1);
    drop(s);
}

#[test]
fn live_but_idle_client_answers_heartbeats_and_keeps_its_permit() {
    let limits = Limits::default().heartbeat(Some((
        Duration::from_millis(50),
        Duration::from_millis(200),
    )));
    let (srv, dev) = device_server(1, queue(30), limits);
    let c = Client::builder().limits(limits).connect_srv(&srv).unwrap();
    let me = c.call(&USE, &()).unwrap();
    // Idle for several idle-timeouts: heartbeats keep the connection alive.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(c.call(&USE, &()).unwrap(), me);
    assert_eq!(dev.releases.load(Ordering::SeqCst), 0);
}

#[test]
fn handler_panic_keeps_the_permit_until_the_connection_ends() {
    let (srv, dev) = device_server(1, WhenFull::Refuse, Limits::default());
    let holder = srv.client();
    holder.call(&USE, &()).unwrap();
    assert_eq!(
        holder.call(&EXPLODE, &()).unwrap_err().code(),
        Some(ErrorCode::PANIC)
    );
    assert_eq!(srv.server().status().active, 1);
    assert_eq!(
        srv.client().call(&USE, &()).unwrap_err().code(),
        Some(ErrorCode::BUSY)
    );
    holder.call(&USE, &()).unwrap();
    drop(holder);
    eventually("released", || dev.releases.load(Ordering::SeqCst) == 1);
    assert_eq!(
        srv.server().status(),
        Status {
            active: 0,
            max: 1,
            waiting: 0
        }
    );
}

#[test]
fn two_hundred_connections_on_two_hundred_permits() {
    let (srv, dev) = device_server(200, WhenFull::Refuse, Limits::default());
    let clients: Vec<Client> = (0..200).map(|_| srv.client()).collect();
    let ok = Arc::new(AtomicU32::new(0));
    std::thread::scope(|s| {
        for chunk in clients.chunks(25) {
            let ok = Arc::clone(&ok);
            s.spawn(move || {
                for c in chunk {
                    assert_eq!(c.call(&ADD_2_WORDS, &(2, 3)).unwrap(), 5);
                    ok.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(ok.load(Ordering::SeqCst), 200);
    assert_eq!(srv.server().status().active, 200);
    drop(clients);
    eventually("all released", || {
        dev.releases.load(Ordering::SeqCst) == 200
    });
}
