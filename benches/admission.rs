//! Admission costs, measured (never asserted):
//! - hand-over: from the holder's close, or its `release`, to the first
//!   reply of the waiter on a `max_users(1)` server (criterion);
//! - a shared command's small call while another connection holds the
//!   device, against the same call on a server without admission;
//! - resident memory and threads per idle connection (printed once).
//!
//! ```text
//! taskset -c 0 cargo bench --bench admission
//! ```

#[path = "../examples/common/greet.rs"]
mod greet;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use framerpc::codec::{U32, UNIT};
use framerpc::frame::{encode_frame, Kind};
use framerpc::reserved::RELEASE;
use framerpc::{Client, Command, Server, WhenFull};

const POSITION: Command<(), u32> = Command::new(40, "position", &UNIT, &U32);

fn round_trip(s: &mut TcpStream, id: u32) {
    s.write_all(&encode_frame(Kind::Call, 3, id, &[2, 0, 0, 0, 3, 0, 0, 0]))
        .unwrap();
    let mut reply = [0u8; 16];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[4], Kind::Reply as u8);
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn hand_over(c: &mut Criterion) {
    let server = Server::builder()
        .max_users(1)
        .when_full(WhenFull::Queue {
            max_wait: Duration::from_secs(30),
        })
        .bind("127.0.0.1:0", greet::router())
        .unwrap();
    let addr = server.local_addr();
    let mut g = c.benchmark_group("admission");
    g.sample_size(30);
    g.bench_function("hand_over_close_to_first_reply", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut holder = connect(addr);
            round_trip(&mut holder, 1);
            for _ in 0..iters {
                let mut waiter = connect(addr);
                // Queued: its call waits for the permit.
                waiter
                    .write_all(&encode_frame(Kind::Call, 3, 2, &[2, 0, 0, 0, 3, 0, 0, 0]))
                    .unwrap();
                while server.status().waiting == 0 {
                    std::thread::yield_now();
                }
                let start = Instant::now();
                drop(holder);
                let mut reply = [0u8; 16];
                waiter.read_exact(&mut reply).unwrap();
                total += start.elapsed();
                holder = waiter;
            }
            total
        })
    });
    g.bench_function("hand_over_release_to_first_reply", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut holder = connect(addr);
            round_trip(&mut holder, 1);
            let mut waiter = connect(addr);
            for i in 0..iters {
                let id = 10 + i as u32;
                waiter
                    .write_all(&encode_frame(Kind::Call, 3, id, &[2, 0, 0, 0, 3, 0, 0, 0]))
                    .unwrap();
                while server.status().waiting == 0 {
                    std::thread::yield_now();
                }
                let start = Instant::now();
                holder
                    .write_all(&encode_frame(Kind::Call, RELEASE, id, &[]))
                    .unwrap();
                let mut reply = [0u8; 16];
                waiter.read_exact(&mut reply).unwrap();
                total += start.elapsed();
                let mut released = [0u8; 12];
                holder.read_exact(&mut released).unwrap();
                std::mem::swap(&mut holder, &mut waiter);
            }
            total
        })
    });
    g.finish();
}

/// A shared command's small call while another connection holds the
/// device, against the same call on a server without admission.
fn shared_call(c: &mut Criterion) {
    let router = || greet::router().handle_shared(&POSITION, |()| Ok(7));
    let limited = Server::builder()
        .max_users(1)
        .bind("127.0.0.1:0", router())
        .unwrap();
    let plain = Server::bind("127.0.0.1:0", router()).unwrap();
    let mut holder = connect(limited.local_addr());
    round_trip(&mut holder, 1);
    let observer = Client::connect(limited.local_addr()).unwrap();
    let other = Client::connect(plain.local_addr()).unwrap();
    let mut g = c.benchmark_group("shared_call");
    g.bench_function("while_another_holds_the_device", |b| {
        b.iter(|| observer.call(&POSITION, &()).unwrap())
    });
    g.bench_function("server_without_admission", |b| {
        b.iter(|| other.call(&POSITION, &()).unwrap())
    });
    g.finish();
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Opens idle connections (each has answered one call, so its threads
/// are up) and reports what they cost the server process.
fn idle_connection_cost(_: &mut Criterion) {
    let server = Server::bind("127.0.0.1:0", greet::router()).unwrap();
    let n = 500;
    let (rss0, t0) = (rss_kib(), threads());
    let socks: Vec<TcpStream> = (0..n)
        .map(|i| {
            let mut s = connect(server.local_addr());
            round_trip(&mut s, i);
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let (rss1, t1) = (rss_kib(), threads());
    println!(
        "idle connections: {n}; server threads +{} ({:.1} per connection); resident memory +{} KiB ({:.1} KiB per connection)",
        t1 - t0,
        (t1 - t0) as f64 / n as f64,
        rss1.saturating_sub(rss0),
        rss1.saturating_sub(rss0) as f64 / n as f64
    );
    drop(socks);
    server.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = idle_connection_cost, hand_over, shared_call
}
criterion_main!(benches);
