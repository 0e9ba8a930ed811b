//! framerpc over WebSocket against plain tungstenite binary ping-pong (the
//! limit for this layer) and against framerpc over raw TCP, in one run:
//! a small call round trip and a 16 MiB echo.
//!
//! ```text
//! taskset -c 0 cargo bench --features ws --bench ws
//! ```

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use framerpc::codec::{BYTES, U32};
use framerpc::{Client, Command, Router, Server, WsConfig};
use tungstenite::{Message, WebSocket};

const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
const ECHO: Command<Bytes, Bytes> = Command::new(13, "echo", &BYTES, &BYTES);

const BIG: usize = 16 << 20;

fn router() -> Router {
    Router::new()
        .handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)))
        .handle(&ECHO, Ok)
}

/// A plain tungstenite echo server: one thread per connection, binary
/// messages sent straight back.
fn plain_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || {
                s.set_nodelay(true).unwrap();
                let cfg = tungstenite::protocol::WebSocketConfig::default()
                    .max_message_size(Some(64 << 20))
                    .max_frame_size(Some(64 << 20));
                let mut ws = tungstenite::accept_with_config(s, Some(cfg)).unwrap();
                while let Ok(m) = ws.read() {
                    if let Message::Binary(b) = m {
                        if ws.send(Message::Binary(b)).is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn plain_client(addr: std::net::SocketAddr) -> WebSocket<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let cfg = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, _) =
        tungstenite::client::client_with_config(format!("ws://{addr}/"), s, Some(cfg)).unwrap();
    ws
}

fn round_trip(ws: &mut WebSocket<TcpStream>, msg: &Bytes) -> usize {
    ws.send(Message::Binary(msg.clone())).unwrap();
    loop {
        if let Message::Binary(b) = ws.read().unwrap() {
            return b.len();
        }
    }
}

fn bench(c: &mut Criterion) {
    let server = Server::builder()
        .ws(WsConfig::new().mount("/bench", router()).open())
        .bind("127.0.0.1:0", router())
        .unwrap();
    let ws_client = Client::connect_ws(&server.ws_url("/bench"), None).unwrap();
    let tcp_client = Client::connect(server.local_addr()).unwrap();
    let mut plain = plain_client(plain_server());

    // The small call: 8-byte request, 4-byte reply, 12-byte headers. The
    // plain ping-pong sends the same 20 bytes back.
    let small_frame = Bytes::from(framerpc::frame::encode_frame(
        framerpc::frame::Kind::Call,
        3,
        1,
        &[2, 0, 0, 0, 3, 0, 0, 0],
    ));
    let mut g = c.benchmark_group("small_call");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("framerpc_ws", |b| {
        b.iter(|| ws_client.call(&ADD, &(2, 3)).unwrap())
    });
    g.bench_function("tungstenite_plain", |b| {
        b.iter(|| round_trip(&mut plain, &small_frame))
    });
    g.bench_function("framerpc_tcp", |b| {
        b.iter(|| tcp_client.call(&ADD, &(2, 3)).unwrap())
    });
    g.finish();

    let big = Bytes::from(vec![7u8; BIG]);
    let mut g = c.benchmark_group("echo_16MiB");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(6))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Bytes(2 * BIG as u64));
    g.bench_with_input(BenchmarkId::new("framerpc_ws", BIG), &big, |b, big| {
        b.iter(|| ws_client.call(&ECHO, big).unwrap())
    });
    g.bench_with_input(
        BenchmarkId::new("tungstenite_plain", BIG),
        &big,
        |b, big| b.iter(|| round_trip(&mut plain, big)),
    );
    g.bench_with_input(BenchmarkId::new("framerpc_tcp", BIG), &big, |b, big| {
        b.iter(|| tcp_client.call(&ECHO, big).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
