//! An idle server connection costs one thread; a long call borrows a
//! spare thread only while it runs. (Alone in its test binary: it counts
//! this process's threads by name.)

mod support;

use std::time::Duration;

use crossbeam_channel::bounded;
use framerpc::codec::{U32, UNIT};
use framerpc::{Client, Command, Router};
use support::*;

const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
const LONG: Command<(), ()> = Command::new(4, "long", &UNIT, &UNIT);

/// Threads of this process whose name starts with `prefix` (names are
/// cut to 15 bytes by the kernel).
fn threads_named(prefix: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[test]
fn idle_connections_cost_one_thread_each_and_long_calls_borrow_one() {
    let (started_tx, started) = bounded(1);
    let (release, release_rx) = bounded::<()>(1);
    let router = Router::new()
        .handle(&ADD, |(a, b)| Ok(a + b))
        .handle(&LONG, move |()| {
            started_tx.send(()).unwrap();
            release_rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            Ok(())
        });
    let srv = serve(router);
    let n = 40;
    let clients: Vec<Client> = (0..n).map(|_| srv.client()).collect();
    for c in &clients {
        assert_eq!(c.call(&ADD, &(2, 3)).unwrap(), 5);
    }
    eventually("one server thread per idle connection", || {
        threads_named("framerpc-conn") == n
    });
    assert_eq!(
        threads_named("framerpc-spare"),
        0,
        "no spare thread while idle"
    );

    // A long call: its connection is read by a spare thread meanwhile.
    let c0 = clients[0].clone();
    let long = std::thread::spawn(move || c0.call(&LONG, &()));
    started.recv_timeout(T).unwrap();
    eventually("a spare thread reads the busy connection", || {
        threads_named("framerpc-spare") == 1
    });
    assert_eq!(clients[0].ping(b"alive").unwrap().as_ref(), b"alive");
    release.send(()).unwrap();
    long.join().unwrap().unwrap();
    // Reading goes back to the connection's own thread; the spare thread
    // waits for more work (it ends after a few idle seconds).
    assert_eq!(clients[0].call(&ADD, &(1, 1)).unwrap(), 2);
    assert_eq!(threads_named("framerpc-conn"), n);

    drop(clients);
    eventually("connection threads end with their connections", || {
        threads_named("framerpc-conn") == 0
    });
}
