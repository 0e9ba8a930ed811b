//! Admission costs, measured (never asserted):
//! - hand-over: from the holder's close to the first reply of the waiter
//!   on a `max_users(1)` server (criterion);
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
use framerpc::frame::{encode_frame, Kind};
use framerpc::{Server, WhenFull};

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
    targets = idle_connection_cost, hand_over
}
criterion_main!(benches);
