//! framerpc over TCP against the plain-socket limit, in one run:
//! small-call round trip, 8 threads through one client, 8 clients, and a
//! 16 MiB echo; plus the small call with and without admission.
//!
//! ```text
//! taskset -c 0 cargo bench --bench core      # latency ratios, one core
//! cargo bench --bench core                   # both cores
//! ```

#[path = "../examples/common/greet.rs"]
mod greet;
mod raw_peer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use framerpc::codec::BYTES;
use framerpc::{Client, Command, Server, WhenFull};
use greet::ADD_2_WORDS;
use raw_peer::{raw_server, RawClient};

const ECHO: Command<Bytes, Bytes> = Command::new(13, "echo", &BYTES, &BYTES);

fn framerpc_server() -> Server {
    Server::bind("127.0.0.1:0", greet::router().handle(&ECHO, Ok)).unwrap()
}

/// Runs `iters` calls on each of `threads` threads; one iteration is one
/// call per thread.
fn parallel(
    iters: u64,
    threads: usize,
    call: impl Fn(usize) -> Box<dyn FnMut() + Send> + Sync,
) -> Duration {
    let mut calls: Vec<_> = (0..threads).map(&call).collect();
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for f in calls.iter_mut() {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    f();
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // Scope end joins the threads.
        start
    })
    .elapsed()
}

fn small_call(c: &mut Criterion) {
    let server = framerpc_server();
    let raw = raw_server();
    let mut g = c.benchmark_group("small_call");
    g.throughput(Throughput::Elements(1));
    let client = Client::connect(server.local_addr()).unwrap();
    g.bench_function("framerpc", |b| {
        b.iter(|| client.call(&ADD_2_WORDS, &(2, 3)).unwrap())
    });
    let mut rc = RawClient::connect(raw);
    g.bench_function("raw_tcp", |b| b.iter(|| rc.add(2, 3)));
    let limited = Server::builder()
        .max_users(1)
        .when_full(WhenFull::Refuse)
        .bind("127.0.0.1:0", greet::router())
        .unwrap();
    let admitted = Client::connect(limited.local_addr()).unwrap();
    g.bench_function("framerpc_max_users_1", |b| {
        b.iter(|| admitted.call(&ADD_2_WORDS, &(2, 3)).unwrap())
    });
    g.finish();
}

fn eight_threads(c: &mut Criterion) {
    let server = framerpc_server();
    let raw = raw_server();
    let mut g = c.benchmark_group("eight_threads");
    g.throughput(Throughput::Elements(8));
    g.sample_size(20);
    let shared = Client::connect(server.local_addr()).unwrap();
    g.bench_function("framerpc_one_client", |b| {
        b.iter_custom(|iters| {
            parallel(iters, 8, |_| {
                let c = shared.clone();
                Box::new(move || {
                    c.call(&ADD_2_WORDS, &(2, 3)).unwrap();
                })
            })
        })
    });
    let clients: Vec<Client> = (0..8)
        .map(|_| Client::connect(server.local_addr()).unwrap())
        .collect();
    g.bench_function("framerpc_eight_clients", |b| {
        b.iter_custom(|iters| {
            parallel(iters, 8, |i| {
                let c = clients[i].clone();
                Box::new(move || {
                    c.call(&ADD_2_WORDS, &(2, 3)).unwrap();
                })
            })
        })
    });
    let raws: Vec<Arc<Mutex<RawClient>>> = (0..8)
        .map(|_| Arc::new(Mutex::new(RawClient::connect(raw))))
        .collect();
    g.bench_function("raw_tcp_eight_connections", |b| {
        b.iter_custom(|iters| {
            parallel(iters, 8, |i| {
                let rc = Arc::clone(&raws[i]);
                Box::new(move || {
                    rc.lock().add(2, 3);
                })
            })
        })
    });
    g.finish();
}

fn echo_16mib(c: &mut Criterion) {
    let server = framerpc_server();
    let raw = raw_server();
    let data = Bytes::from(vec![7u8; 16 << 20]);
    let mut g = c.benchmark_group("echo_16mib");
    g.throughput(Throughput::Bytes(2 * data.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    let client = Client::connect(server.local_addr()).unwrap();
    g.bench_with_input(BenchmarkId::new("framerpc", "16MiB"), &data, |b, d| {
        b.iter(|| assert_eq!(client.call(&ECHO, d).unwrap().len(), d.len()))
    });
    let mut rc = RawClient::connect(raw);
    g.bench_with_input(BenchmarkId::new("raw_tcp", "16MiB"), &data, |b, d| {
        b.iter(|| assert_eq!(rc.echo(d), d.len()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = small_call, eight_threads, echo_16mib
}
criterion_main!(benches);
