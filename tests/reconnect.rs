//! A client that survives the server going away: backoff, token sent again,
//! in-flight calls failed (never replayed), fail-fast and wait modes.

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use framerpc::codec::UNIT;
use framerpc::{Client, Command, Error, ErrorCode, Outage, Reconnect, Server};
use greet::ADD_2_WORDS;
use support::*;

const BLOCK: Command<(), ()> = Command::new(30, "block", &UNIT, &UNIT);
const TOKEN: &str = "s3cret-token";

struct Running {
    server: Server,
    started: Receiver<()>,
    _release: Sender<()>,
}

/// Binds `addr` again and again until it is free (the port can take a
/// moment to be free after a server on it stopped).
fn bind_retry(
    addr: SocketAddr,
    mut bind: impl FnMut(SocketAddr) -> Result<Server, framerpc::Error>,
) -> Server {
    let deadline = Instant::now() + T;
    loop {
        match bind(addr) {
            Ok(server) => return server,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Serves greet + BLOCK on `addr` (port 0 for a new one) with the token.
fn start(addr: SocketAddr, calls: &Arc<AtomicU32>) -> Running {
    let (started_tx, started) = bounded(4);
    let (release, release_rx) = bounded::<()>(1);
    let server = bind_retry(addr, |addr| {
        let (calls, started_tx, release_rx) =
            (Arc::clone(calls), started_tx.clone(), release_rx.clone());
        let router = greet::router().handle(&BLOCK, move |()| {
            calls.fetch_add(1, Ordering::SeqCst);
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(Duration::from_secs(30));
            Ok(())
        });
        Server::builder()
            .grace(Duration::from_millis(50))
            .token(TOKEN)
            .bind(addr, router)
    });
    Running {
        server,
        started,
        _release: release,
    }
}

fn policy(outage: Outage) -> Reconnect {
    Reconnect::default()
        .initial_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
        .during_outage(outage)
}

#[test]
fn token_is_required_on_raw_tcp() {
    let calls = Arc::new(AtomicU32::new(0));
    let run = start("127.0.0.1:0".parse().unwrap(), &calls);
    let e = Client::connect(run.server.local_addr())
        .unwrap()
        .call(&ADD_2_WORDS, &(1, 2))
        .unwrap_err();
    assert!(
        e.code() == Some(ErrorCode::UNAUTHORIZED) || e.is_disconnect(),
        "{e}"
    );
    let e = Client::builder()
        .token("s3cret-tokeN")
        .connect(run.server.local_addr())
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UNAUTHORIZED), "{e}");
    assert!(!e.to_string().contains(TOKEN));
    let c = Client::builder()
        .token(TOKEN)
        .connect(run.server.local_addr())
        .unwrap();
    assert_eq!(c.call(&ADD_2_WORDS, &(1, 2)).unwrap(), 3);
}

#[test]
fn reconnects_after_restart_and_never_replays_calls_in_flight() {
    let calls = Arc::new(AtomicU32::new(0));
    let run = start("127.0.0.1:0".parse().unwrap(), &calls);
    let addr = run.server.local_addr();
    let c = Client::builder()
        .token(TOKEN)
        .timeout(T)
        .reconnect(policy(Outage::Wait))
        .connect(addr)
        .unwrap();
    assert_eq!(c.call(&ADD_2_WORDS, &(1, 2)).unwrap(), 3);
    let c2 = c.clone();
    let in_flight = std::thread::spawn(move || c2.call(&BLOCK, &()));
    run.started.recv_timeout(T).unwrap();
    drop(run); // the server goes away with a call in flight
    let r = in_flight.join().unwrap();
    assert!(matches!(r, Err(Error::Disconnected(_))), "{r:?}");

    let run = start(addr, &calls);
    // Wait mode: this call waits for the reconnect, within its timeout.
    assert_eq!(c.call(&ADD_2_WORDS, &(2, 3)).unwrap(), 5);
    assert_eq!(c.generation(), 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the call in flight was replayed"
    );
    drop(run);
}

#[test]
fn fail_fast_mode_fails_at_once_during_the_outage() {
    let calls = Arc::new(AtomicU32::new(0));
    let run = start("127.0.0.1:0".parse().unwrap(), &calls);
    let addr = run.server.local_addr();
    let c = Client::builder()
        .token(TOKEN)
        .timeout(T)
        .reconnect(policy(Outage::FailFast))
        .connect(addr)
        .unwrap();
    assert_eq!(c.call(&ADD_2_WORDS, &(1, 2)).unwrap(), 3);
    drop(run);
    eventually("disconnect seen", || !c.is_connected());
    let start_call = Instant::now();
    let e = c.call(&ADD_2_WORDS, &(1, 2)).unwrap_err();
    assert!(matches!(e, Error::Disconnected(_)), "{e:?}");
    assert!(start_call.elapsed() < Duration::from_secs(1));
    let _run = start(addr, &calls);
    eventually("reconnected", || c.call(&ADD_2_WORDS, &(1, 2)).is_ok());
    assert!(c.generation() >= 1);
}

#[test]
fn gives_up_after_max_attempts() {
    let calls = Arc::new(AtomicU32::new(0));
    let run = start("127.0.0.1:0".parse().unwrap(), &calls);
    let addr = run.server.local_addr();
    let c = Client::builder()
        .token(TOKEN)
        .timeout(Duration::from_secs(30))
        .reconnect(policy(Outage::Wait).max_attempts(Some(3)))
        .connect(addr)
        .unwrap();
    drop(run);
    let start_call = Instant::now();
    // Waits for the reconnect, but the client gives up after 3 attempts:
    // the call fails long before its own 30 s timeout.
    let e = c.call(&ADD_2_WORDS, &(1, 2)).unwrap_err();
    assert!(matches!(e, Error::Disconnected(_)), "{e:?}");
    assert!(start_call.elapsed() < Duration::from_secs(10));
}

/// Remote objects live in the connection that made them: after a
/// reconnect, an old proxy gives a clear error instead of reaching
/// whatever a new connection's handle with the same number would be.
#[cfg(feature = "msgpack")]
#[test]
fn proxies_from_before_a_reconnect_fail_clearly() {
    use framerpc::dynamic::{Class, Module, Params, Session, Space};

    struct Counter(i64);
    fn serve_space(addr: SocketAddr) -> Server {
        let class = Class::<Counter>::builder("Counter")
            .method("add", Params::new().req("n"), |c: &mut Counter, a| {
                c.0 += a.get::<i64>("n")?;
                Ok(c.0)
            })
            .build();
        let m = Module::new().function("counter", Params::new(), move |_| {
            Ok(class.instance(Counter(0)))
        });
        let space = Space::builder().root("m", m).build();
        bind_retry(addr, |addr| {
            let router = space.install(framerpc::Router::new())?;
            Server::builder()
                .grace(Duration::from_millis(50))
                .bind(addr, router)
        })
    }
    let server = serve_space("127.0.0.1:0".parse().unwrap());
    let addr = server.local_addr();
    let c = Client::builder()
        .timeout(T)
        .reconnect(policy(Outage::Wait))
        .connect(addr)
        .unwrap();
    let old = Session::new(&c);
    let counter = old.root("m").method("counter", ());
    assert_eq!(counter.method("add", (2,)).materialize::<i64>().unwrap(), 2);
    drop(server);
    let _server = serve_space(addr);
    // A new session on the reconnected client works...
    eventually("reconnected", || c.ping(b"").is_ok());
    let fresh = Session::new(&c);
    let other = fresh.root("m").method("counter", ());
    assert_eq!(other.method("add", (5,)).materialize::<i64>().unwrap(), 5);
    // ...while the old proxy does not reach the new connection's objects.
    let e = counter
        .method("add", (1,))
        .materialize::<i64>()
        .unwrap_err();
    assert!(e.to_string().contains("disconnected"), "{e}");
}
