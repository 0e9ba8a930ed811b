//! framerpc over WebSocket against plain tungstenite binary ping-pong (the
//! limit for this layer) and against framerpc over raw TCP, in one run:
//! a small call round trip and a 16 MiB echo.
//!
//! First, memory: each server runs in a child process (this binary again),
//! and its RSS is read from /proc: per idle connection (200 clients
//! connected, nothing sent), and the peak (VmHWM) during five 16 MiB
//! echoes and the RSS 2 s after them.
//!
//! ```text
//! taskset -c 0 cargo bench --features ws --bench ws
//! taskset -c 0 cargo bench --features ws --bench ws -- small_call   # no memory pass
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command as Proc, Stdio};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
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

/// `FRAMERPC_WS_BENCH_CALLS=SYSTEM:N` (`ws`, `plain`, `tcp`; `ws_echo`,
/// `plain_echo`, `tcp_echo` for 16 MiB echoes): just N round trips, then
/// exit. Under `valgrind --tool=callgrind`, the difference between runs
/// with N and 2N is the instruction count of N round trips, both ends,
/// whatever the machine's load.
const CALLS_ENV: &str = "FRAMERPC_WS_BENCH_CALLS";

fn calls_only(spec: &str) -> ! {
    let (system, n) = spec.split_once(':').expect("SYSTEM:N");
    let n: usize = n.parse().expect("N");
    let echo = system.ends_with("_echo");
    let big = Bytes::from(vec![7u8; BIG]);
    let small = Bytes::from(framerpc::frame::encode_frame(
        framerpc::frame::Kind::Call,
        3,
        1,
        &[2, 0, 0, 0, 3, 0, 0, 0],
    ));
    let server = Server::builder()
        .ws(WsConfig::new().mount("/bench", router()).open())
        .bind("127.0.0.1:0", router())
        .unwrap();
    match system.trim_end_matches("_echo") {
        "plain" => {
            let mut ws = plain_client(plain_server());
            let msg = if echo { &big } else { &small };
            for _ in 0..n {
                round_trip(&mut ws, msg);
            }
        }
        kind => {
            let c = if kind == "tcp" {
                Client::connect(server.local_addr()).unwrap()
            } else {
                Client::connect_ws(&server.ws_url("/bench"), None).unwrap()
            };
            for _ in 0..n {
                if echo {
                    c.call(&ECHO, &big).unwrap();
                } else {
                    c.call(&ADD, &(2, 3)).unwrap();
                }
            }
        }
    }
    std::process::exit(0);
}

/// The environment variable that makes this binary a server child.
const SERVE_ENV: &str = "FRAMERPC_WS_BENCH_SERVE";

/// Child mode: serve `which`, print the address, exit when stdin closes.
fn serve_child(which: &str) {
    let addr = match which {
        "tungstenite" => plain_server(),
        _ => {
            let server = Server::builder()
                .ws(WsConfig::new().mount("/bench", router()).open())
                .bind("127.0.0.1:0", router())
                .unwrap();
            let addr = server.local_addr();
            std::mem::forget(server);
            addr
        }
    };
    println!("{addr}");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

struct ServerProc {
    child: Child,
    addr: std::net::SocketAddr,
}

impl ServerProc {
    fn spawn(which: &str) -> Self {
        let mut child = Proc::new(std::env::current_exe().unwrap())
            .env(SERVE_ENV, which)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().parse().unwrap();
        Self { child, addr }
    }
    /// A field of /proc/PID/status, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

enum Conn {
    Framerpc(Client),
    Plain(Box<WebSocket<TcpStream>>),
}

fn connect(kind: &str, addr: std::net::SocketAddr) -> Conn {
    match kind {
        "framerpc_ws" => {
            Conn::Framerpc(Client::connect_ws(&format!("ws://{addr}/bench"), None).unwrap())
        }
        "framerpc_tcp" => Conn::Framerpc(Client::connect(addr).unwrap()),
        _ => Conn::Plain(Box::new(plain_client(addr))),
    }
}

/// Server RSS per idle connection and around 16 MiB echoes, each system in
/// a child process of its own.
fn memory() {
    const IDLE: usize = 200;
    let big = Bytes::from(vec![7u8; BIG]);
    println!("server memory (child process; VmRSS / VmHWM from /proc):");
    for (kind, server) in [
        ("framerpc_ws", "framerpc"),
        ("tungstenite_plain", "tungstenite"),
        ("framerpc_tcp", "framerpc"),
    ] {
        let s = ServerProc::spawn(server);
        // One connection first, so that per-process setup is not counted.
        let first = connect(kind, s.addr);
        if let Conn::Framerpc(c) = &first {
            c.call(&ADD, &(2, 3)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        let before = s.status_kib("VmRSS");
        let idle: Vec<Conn> = (0..IDLE).map(|_| connect(kind, s.addr)).collect();
        std::thread::sleep(Duration::from_millis(500));
        let after = s.status_kib("VmRSS");
        drop(idle);
        std::thread::sleep(Duration::from_millis(300));
        let base = s.status_kib("VmRSS");
        let mut c = first;
        for _ in 0..5 {
            match &mut c {
                Conn::Framerpc(c) => {
                    c.call(&ECHO, &big).unwrap();
                }
                Conn::Plain(ws) => {
                    round_trip(ws, &big);
                }
            }
        }
        let peak = s.status_kib("VmHWM");
        std::thread::sleep(Duration::from_secs(2));
        let rest = s.status_kib("VmRSS");
        println!(
            "  {kind:<18} idle connection {:>5.1} KiB ({IDLE} connected: {before} -> {after} KiB); \
             16 MiB echo x5: peak {} MiB, before {} MiB, 2 s after {} MiB",
            after.saturating_sub(before) as f64 / IDLE as f64,
            peak / 1024,
            base / 1024,
            rest / 1024,
        );
        drop(c);
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(which) = std::env::var(SERVE_ENV) {
        serve_child(&which);
    }
    if let Ok(spec) = std::env::var(CALLS_ENV) {
        calls_only(&spec);
    }
    // The memory pass runs unless benchmarks are filtered (`-- small_call`;
    // `-- memory` runs it alone) or only tested (`cargo test --benches`).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let tested = args.iter().any(|a| a == "--test" || a == "--list");
    if !tested && (filters.is_empty() || filters.iter().any(|f| "memory".contains(f.as_str()))) {
        memory();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
