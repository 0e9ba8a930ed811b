//! File descriptors per connection: one on each side, on every transport
//! (raw TCP, `ws://`, and with `tls` also `tls://` and `wss://`). One test
//! in its own binary, so no other test opens descriptors meanwhile.
#![cfg(all(feature = "ws", target_os = "linux"))]

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use framerpc::{Client, Server, WsConfig};
use support::*;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Opens `n` connections with `connect`, makes a call on each (so the
/// server serves them all), and returns the descriptors they take on
/// both sides together, per connection.
fn per_connection(n: usize, connect: impl Fn() -> Client) -> f64 {
    let before = open_fds();
    let clients: Vec<Client> = (0..n)
        .map(|_| {
            let c = connect();
            assert_eq!(c.call(&greet::HELLO, &"fd".into()).unwrap(), "hello fd");
            c
        })
        .collect();
    let after = open_fds();
    drop(clients);
    // The server lets go of its side once it sees each close.
    eventually("the server closed its side", || open_fds() <= before);
    (after - before) as f64 / n as f64
}

#[test]
fn one_descriptor_per_connection_on_each_side() {
    let n = 8;
    let srv = serve_with(
        Server::builder()
            .token("t")
            .ws(WsConfig::new().mount("/greet", greet::router())),
        greet::router(),
    );
    let addr = srv.addr();
    let raw = per_connection(n, || {
        Client::builder()
            .token("t")
            .timeout(T)
            .connect(addr)
            .unwrap()
    });
    assert_eq!(
        raw, 2.0,
        "raw TCP: client + server descriptors per connection"
    );
    let ws = per_connection(n, || {
        Client::builder()
            .token("t")
            .timeout(T)
            .connect_ws(&format!("ws://{addr}/greet"))
            .unwrap()
    });
    assert_eq!(ws, 2.0, "ws://: client + server descriptors per connection");

    #[cfg(feature = "tls")]
    {
        use support::tls_certs::*;
        let srv = serve_with(
            Server::builder()
                .tls(server_tls())
                .token("t")
                .ws(WsConfig::new().mount("/greet", greet::router())),
            greet::router(),
        );
        let port = srv.addr().port();
        let tls = per_connection(n, || {
            tls_client()
                .token("t")
                .timeout(T)
                .connect_tls(&format!("tls://localhost:{port}"))
                .unwrap()
        });
        assert_eq!(
            tls, 2.0,
            "tls://: client + server descriptors per connection"
        );
        let wss = per_connection(n, || {
            tls_client()
                .token("t")
                .timeout(T)
                .connect_ws(&format!("wss://localhost:{port}/greet"))
                .unwrap()
        });
        assert_eq!(
            wss, 2.0,
            "wss://: client + server descriptors per connection"
        );
    }
}
