//! Sharing a device: the device is asked for when it is needed, shared
//! (observer) commands never queue, explicit holds with acquire/release,
//! holds that lapse, names, the administrator's view, and a waiting client
//! that gave up keeps no place. Each over raw TCP and over WebSocket.
#![cfg(feature = "ws")]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use framerpc::codec::{F64, U64, UNIT};
use framerpc::frame::Kind;
use framerpc::reserved::{ACQUIRE, IDENTIFY, RELEASE, SHARED};
use framerpc::{
    Client, Command, ErrorCode, ReleaseReason, Router, Server, ServerBuilder, Status, WhenFull,
    WsConfig,
};
use parking_lot::Mutex;
use support::*;

const MOVE: Command<f64, f64> = Command::new(1, "move_to", &F64, &F64);
const POSITION: Command<(), f64> = Command::new(2, "position", &UNIT, &F64);
const USE: Command<(), u64> = Command::new(3, "use", &UNIT, &U64);

/// A stage: records who is inside a call that needs the device, and any
/// overlap between two holders.
#[derive(Default)]
struct Stage {
    inside: Mutex<Option<u64>>,
    overlaps: AtomicUsize,
    entries: Mutex<Vec<u64>>,
    releases: Mutex<Vec<(Option<String>, ReleaseReason)>>,
}

struct Bench {
    server: Option<Server>,
    stage: Arc<Stage>,
    ws: bool,
}

impl Bench {
    fn new(ws: bool, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Self {
        let stage = Arc::new(Stage::default());
        let (s1, s2) = (Arc::clone(&stage), Arc::clone(&stage));
        let use_it = move |ctx: &framerpc::Ctx<'_>| {
            let me = ctx.conn_id();
            {
                let mut inside = s1.inside.lock();
                if inside.is_some() {
                    s1.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                *inside = Some(me);
                s1.entries.lock().push(me);
            }
            std::thread::sleep(Duration::from_millis(1));
            *s1.inside.lock() = None;
            me
        };
        let use2 = use_it.clone();
        let router = || {
            let (u1, u2) = (use_it.clone(), use2.clone());
            Router::new()
                .handle_with(&MOVE, move |ctx, x| {
                    u1(ctx);
                    Ok(x)
                })
                .handle_with(&USE, move |ctx, ()| Ok(u2(ctx)))
                .handle_shared(&POSITION, |()| Ok(1.5))
        };
        let builder = configure(Server::builder().max_users(1)).on_release(move |r| {
            s2.releases.lock().push((r.name.clone(), r.reason));
        });
        let server = if ws {
            builder
                .token("t0k3n")
                .ws(WsConfig::new().mount("/stage", router()))
                .bind("127.0.0.1:0", router())
                .unwrap()
        } else {
            builder.bind("127.0.0.1:0", router()).unwrap()
        };
        Self {
            server: Some(server),
            stage,
            ws,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    fn client_named(&self, name: Option<&str>) -> Client {
        let mut b = Client::builder().timeout(T);
        if let Some(n) = name {
            b = b.name(n);
        }
        if self.ws {
            b.token("t0k3n")
                .connect_ws(&self.server().ws_url("/stage"))
                .unwrap()
        } else {
            b.connect(self.server().local_addr()).unwrap()
        }
    }

    fn client(&self) -> Client {
        self.client_named(None)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

fn both(test: impl Fn(bool)) {
    test(false);
    test(true);
}

fn status(c: &Client) -> Status {
    c.status().unwrap()
}

#[test]
fn observers_never_queue_and_never_take_a_slot() {
    both(|ws| {
        let b = Bench::new(ws, |s| s);
        let holder = b.client();
        holder.call(&MOVE, &3.0).unwrap();
        let observer = b.client();
        for _ in 0..20 {
            assert_eq!(observer.call(&POSITION, &()).unwrap(), 1.5);
        }
        assert_eq!(observer.shared_commands().unwrap(), vec![POSITION.id()]);
        assert_eq!(
            status(&observer),
            Status {
                active: 1,
                max: 1,
                waiting: 0
            }
        );
        // The holder keeps the device; nobody waits behind it.
        assert_eq!(holder.call(&MOVE, &4.0).unwrap(), 4.0);
        assert!(b.stage.releases.lock().is_empty());
    });
}

#[test]
fn a_fresh_connection_is_never_counted_as_waiting() {
    both(|ws| {
        let b = Bench::new(ws, |s| s.max_users(u32::MAX));
        for _ in 0..25 {
            let c = b.client();
            assert_eq!(status(&c).waiting, 0);
        }
    });
}

#[test]
fn acquire_and_release_hand_the_device_over_in_order() {
    both(|ws| {
        let b = Bench::new(ws, |s| s);
        let first = b.client_named(Some("scan@bench-3"));
        let hold = first.acquire(Duration::from_secs(5)).unwrap();
        // Acquiring again while holding is a no-op (it renews the hold).
        let again = first.acquire(Duration::ZERO).unwrap();
        std::mem::forget(again);

        let second = b.client_named(Some("align@bench-1"));
        // acquire(0) does not wait: BUSY names the holder by its name.
        let e = second.acquire(Duration::ZERO).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BUSY), "{e}");
        let msg = e.remote_message().unwrap();
        assert!(msg.contains("held by scan@bench-3 (127.0.0.1:"), "{msg}");

        let s2 = second.clone();
        let waiter = std::thread::spawn(move || s2.acquire(Duration::from_secs(5)).map(drop));
        eventually("second waits", || status(&first).waiting == 1);
        let holders = b.server().holders();
        assert_eq!(holders.len(), 1);
        assert!(holders[0].name.starts_with("scan@bench-3 (127.0.0.1:"));
        assert_eq!(holders[0].waiting_behind, 1);

        hold.release().unwrap();
        waiter.join().unwrap().unwrap(); // `drop` of that Hold released it too
        eventually("both released", || b.stage.releases.lock().len() == 2);
        let r = b.stage.releases.lock().clone();
        assert_eq!(r[0], (Some("scan@bench-3".into()), ReleaseReason::Released));
        assert_eq!(
            r[1],
            (Some("align@bench-1".into()), ReleaseReason::Released)
        );
        // Release without a hold: nothing happens; the connection stays open.
        first.release().unwrap();
        assert_eq!(first.call(&POSITION, &()).unwrap(), 1.5);
        assert_eq!(b.stage.releases.lock().len(), 2);
    });
}

#[test]
fn a_waiter_that_gave_up_keeps_no_place() {
    both(|ws| {
        let b = Bench::new(ws, |s| s);
        let holder = b.client();
        holder.call(&USE, &()).unwrap();
        let quitter = b.client();
        let e = quitter
            .call_timeout(&USE, &(), Duration::from_millis(150))
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::TIMEOUT), "{e}");
        assert!(e.to_string().contains("number 1 of 1"), "{e}");
        eventually("left the queue", || status(&holder).waiting == 0);
        holder.release().unwrap();
        // The quitter was not made the holder behind its back.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(status(&holder).active, 0);
        // Its next call asks again, and gets the free device.
        assert!(quitter.call(&USE, &()).is_ok());
    });
}

#[test]
fn a_hold_lapses_after_hold_idle_and_says_so() {
    both(|ws| {
        let b = Bench::new(ws, |s| s.hold_idle(Duration::from_millis(300)));
        let sleeper = b.client_named(Some("sleepy"));
        sleeper.call(&USE, &()).unwrap();
        let worker = b.client();
        // The waiter is admitted once the idle holder's hold lapses.
        worker.call(&USE, &()).unwrap();
        assert_eq!(
            b.stage.releases.lock()[0],
            (Some("sleepy".into()), ReleaseReason::Lapsed)
        );
        // The lapsed holder stays connected; its next call queues, told why.
        let e = sleeper
            .call_timeout(&USE, &(), Duration::from_millis(100))
            .unwrap_err();
        assert!(e.to_string().contains("lapsed after"), "{e}");
        // With nobody waiting, a hold lapses too (on_release makes it safe).
        eventually("the worker's hold lapses", || {
            b.stage.releases.lock().len() == 2
        });
        assert_eq!(status(&worker).active, 0);
    });
}

#[test]
fn the_administrator_sees_holders_and_can_force_one_out() {
    both(|ws| {
        let b = Bench::new(ws, |s| s);
        let stuck = b.client_named(Some("forgot@bench-2"));
        stuck.call(&USE, &()).unwrap();
        let holders = b.server().holders();
        assert_eq!(holders.len(), 1);
        let h = &holders[0];
        assert!(h.name.starts_with("forgot@bench-2 ("), "{h:?}");
        assert!(h.addr.is_some());
        let next = b.client();
        let n2 = next.clone();
        let waiter = std::thread::spawn(move || n2.call(&USE, &()));
        eventually("waiting", || status(&next).waiting == 1);
        assert!(b.server().handle().release(h.conn_id));
        waiter.join().unwrap().unwrap();
        assert_eq!(
            b.stage.releases.lock()[0],
            (Some("forgot@bench-2".into()), ReleaseReason::Forced)
        );
        let e = stuck.acquire(Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("administrator released"), "{e}");
        assert!(!b.server().handle().release(9999), "no such holder");
    });
}

#[test]
fn silent_killed_lapsed_and_forced_holders_all_hand_over() {
    let b = Bench::new(false, |s| {
        s.hold_idle(Duration::from_millis(400))
            .limits(framerpc::Limits::default().heartbeat(Some((
                Duration::from_millis(200),
                Duration::from_millis(400),
            ))))
    });
    let addr = b.server().local_addr();
    // Killed: a raw socket that takes the device, then is dropped.
    {
        let mut s = raw(addr);
        send(&mut s, Kind::Call, USE.id(), 1, &[]);
        assert!(recv(&mut s).is_some());
    }
    let c = b.client();
    c.call(&USE, &()).unwrap();
    c.release().unwrap();
    // Silent: takes the device and stops talking (no heartbeat answers).
    let mut silent = raw(addr);
    send(&mut silent, Kind::Call, USE.id(), 1, &[]);
    assert!(recv(&mut silent).is_some());
    c.call(&USE, &()).unwrap(); // admitted once the silent one is dropped
                                // Lapsed: c goes idle; another waiter gets it.
    let d = b.client();
    d.call(&USE, &()).unwrap();
    // Forced.
    let e = b.client();
    let e2 = e.clone();
    let t = std::thread::spawn(move || e2.call(&USE, &()));
    eventually("waiting", || status(&e).waiting == 1);
    let holder = b.server().holders()[0].conn_id;
    assert!(b.server().handle().release(holder));
    t.join().unwrap().unwrap();
    drop(silent);
    let reasons: Vec<ReleaseReason> = b.stage.releases.lock().iter().map(|r| r.1).collect();
    // One on_release per hold: killed, released, silent (closed), lapsed, forced.
    assert_eq!(reasons[0], ReleaseReason::Closed);
    assert_eq!(reasons[1], ReleaseReason::Released);
    assert!(reasons.contains(&ReleaseReason::Lapsed), "{reasons:?}");
    assert!(reasons.contains(&ReleaseReason::Forced), "{reasons:?}");
    assert_eq!(b.stage.overlaps.load(Ordering::SeqCst), 0);
}

#[test]
fn two_hundred_connections_acquire_call_release_without_overlap() {
    let b = Bench::new(false, |s| {
        s.when_full(WhenFull::Queue {
            max_wait: Duration::from_secs(60),
        })
    });
    let clients: Vec<Client> = (0..200).map(|_| b.client()).collect();
    let threads: Vec<_> = clients
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                for _ in 0..2 {
                    let hold = c.acquire(Duration::from_secs(60)).unwrap();
                    c.call(&USE, &()).unwrap();
                    c.call(&MOVE, &1.0).unwrap();
                    hold.release().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(b.stage.overlaps.load(Ordering::SeqCst), 0, "two holders");
    let entries = b.stage.entries.lock().clone();
    assert_eq!(entries.len(), 800);
    // Each hold's two calls ran back to back: nobody cut in.
    for pair in entries.chunks(2) {
        assert_eq!(pair[0], pair[1], "another holder cut into a hold");
    }
    assert_eq!(b.stage.releases.lock().len(), 400);
}

#[test]
fn hostile_identify_acquire_and_release_cost_nothing_to_others() {
    let b = Bench::new(false, |s| s);
    let addr = b.server().local_addr();
    let user = b.client();
    user.call(&USE, &()).unwrap();
    let mut s = raw(addr);
    for bad in [
        vec![b'x'; 1 << 20],
        b"bell\x07".to_vec(),
        vec![0xff, 0xfe, 0xfd],
        Vec::new(),
    ] {
        send(&mut s, Kind::Call, IDENTIFY, 1, &bad);
        let msg = expect_error(&mut s, ErrorCode::BAD_PAYLOAD.0);
        assert!(msg.contains("name"), "{msg}");
    }
    // acquire with a wrong payload, floods of release and acquire(0).
    send(&mut s, Kind::Call, ACQUIRE, 2, &[1, 2]);
    expect_error(&mut s, ErrorCode::BAD_PAYLOAD.0);
    for i in 0..500 {
        send(&mut s, Kind::Call, RELEASE, 10 + i, &[]);
        send(&mut s, Kind::Call, ACQUIRE, 10_000 + i, &0u32.to_le_bytes());
    }
    let mut busy = 0;
    for _ in 0..1000 {
        let (h, _) = recv(&mut s).expect("an answer to each");
        if h.kind == Kind::Error {
            busy += 1;
        }
    }
    assert_eq!(busy, 500, "every acquire(0) refused while another holds");
    send(&mut s, Kind::Call, SHARED, 3, &[]);
    let (_, p) = recv(&mut s).unwrap();
    assert_eq!(p, [1, 0, 2, 0]);
    // The holder never noticed.
    assert_eq!(user.call(&MOVE, &2.0).unwrap(), 2.0);
    assert_eq!(b.stage.releases.lock().len(), 0);
    // A bad name is refused at connect, before any byte is sent.
    let e = Client::builder()
        .name("tab\there")
        .connect(addr)
        .unwrap_err();
    assert!(e.to_string().contains("printable"), "{e}");
}
