//! Soak: many clients doing a mix of every kind of call against one live
//! server, over raw TCP and WebSocket at once, while clients are killed at
//! random moments and replaced. Every call must be answered correctly or
//! fail with a clear, expected error; afterwards the server's threads,
//! dynamic handles and admission permits are back to zero and resident
//! memory did not grow between the first and second half of the run.
//!
//! The full soak (1,000,000 calls, 32 clients) is ignored by default:
//!
//! ```sh
//! cargo test --release --all-features --test soak -- --ignored --nocapture
//! FRAMERPC_SOAK_CALLS=200000 scripts/soak.sh      # scaled down
//! ```
//!
//! `soak_small` (20,000 calls, 8 clients) runs in the normal suite.
#![cfg(all(feature = "ws", feature = "msgpack"))]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framerpc::codec::{BYTES, U32, U64, UNIT};
use framerpc::dynamic::{Class, Module, Params, Session, Space, Value};
use framerpc::frame::{encode_frame, Kind};
use framerpc::{Client, Command, Error, ErrorCode, HandlerError, Router, Server, WsConfig};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ADD: Command<(u32, u32), u32> = Command::new(1, "add", &(U32, U32), &U32);
const ECHO: Command<Bytes, Bytes> = Command::new(2, "echo", &BYTES, &BYTES);
const NOTE: Command<u64, ()> = Command::new(3, "note", &U64, &UNIT);
const SLEEP: Command<u64, u64> = Command::new(4, "sleep", &U64, &U64);
const FAIL: Command<u32, u32> = Command::new(5, "fail", &U32, &U32);
const EXPLODE: Command<u32, u32> = Command::new(6, "explode", &U32, &U32);

const FAIL_CODE: u16 = 1001;
const DYN_FAIL_CODE: u16 = 1003;
const WS_PATH: &str = "/soak";
const SEED: u64 = 0x50a4_0000;
/// Deadline of every call that is meant to succeed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The two tests share the process's thread count and RSS: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Server-side counters.
#[derive(Default)]
struct Seen {
    notes: AtomicU64,
    cancelled: AtomicU64,
}

struct Counter {
    n: i64,
}

fn space() -> Space {
    let counter = Class::<Counter>::builder("Counter")
        .method("add", Params::new().req("k"), |c: &mut Counter, a| {
            c.n += a.get::<i64>("k")?;
            Ok(c.n)
        })
        .build();
    let m = Module::new()
        .function("add", Params::new().req("a").req("b"), |a| {
            Ok(a.get::<i64>("a")? + a.get::<i64>("b")?)
        })
        .function("counter", Params::new().opt("start", 0), move |a| {
            Ok(counter.instance(Counter { n: a.get("start")? }))
        })
        .function(
            "fail",
            Params::new().req("msg"),
            |a| -> Result<i64, HandlerError> {
                Err(HandlerError::with_code(
                    DYN_FAIL_CODE,
                    a.get::<String>("msg")?,
                ))
            },
        );
    Space::builder().root("m", m).build()
}

fn router(space: &Space, seen: &Arc<Seen>) -> Router {
    let notes = Arc::clone(seen);
    let cancels = Arc::clone(seen);
    let r = Router::new()
        .handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)))
        .handle(&ECHO, Ok)
        .handle(&NOTE, move |_| {
            notes.notes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .handle_with(&SLEEP, move |ctx, ms| {
            let end = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < end {
                if ctx.is_cancelled() {
                    cancels.cancelled.fetch_add(1, Ordering::Relaxed);
                    return Ok(u64::MAX);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(ms)
        })
        .handle(&FAIL, |n| -> Result<u32, HandlerError> {
            Err(HandlerError::with_code(FAIL_CODE, format!("fail {n}")))
        })
        .handle(&EXPLODE, |n| -> Result<u32, HandlerError> {
            panic!("soak panic {n}")
        });
    space.install(r).unwrap()
}

#[derive(Clone, Copy, Debug)]
struct Plan {
    calls: u64,
    clients: usize,
    /// One operation in this many kills the client instead.
    kill_one_in: u32,
    max_echo: usize,
    /// Check RSS growth (only meaningful for a long run in release).
    check_rss: bool,
}

/// What happened to each call, by kind.
#[derive(Default, Debug)]
struct Tally(BTreeMap<&'static str, u64>);

impl Tally {
    fn add(&mut self, k: &'static str) {
        *self.0.entry(k).or_default() += 1;
    }
    fn get(&self, k: &str) -> u64 {
        self.0.get(k).copied().unwrap_or(0)
    }
    fn merge(&mut self, o: Tally) {
        for (k, v) in o.0 {
            *self.0.entry(k).or_default() += v;
        }
    }
}

/// Errors that are neither expected nor wrong answers, kept for the report.
type Problems = Mutex<Vec<String>>;

struct Ctx {
    plan: Plan,
    addr: SocketAddr,
    url: String,
    token: String,
    issued: AtomicU64,
    problems: Problems,
}

struct Conn {
    client: Client,
    session: Session,
}

fn open(ctx: &Ctx, ws: bool) -> Result<Conn, Error> {
    let b = Client::builder()
        .timeout(CALL_TIMEOUT)
        .token(ctx.token.clone());
    let client = if ws {
        b.connect_ws(&ctx.url)?
    } else {
        b.connect(ctx.addr)?
    };
    let session = Session::new(&client);
    Ok(Conn { client, session })
}

/// An expected outcome: `Ok(())` for a right answer, `Err(kind)` for an
/// expected error of that kind.
type Verdict = Result<&'static str, String>;

fn wrong(what: impl Into<String>) -> Verdict {
    Err(format!("WRONG {}", what.into()))
}

fn unexpected(op: &str, e: &Error) -> Verdict {
    Err(format!("{op}: {e:?}"))
}

fn remote(e: &Error) -> Option<(u16, &str)> {
    match e {
        Error::Remote { code, message } => Some((code.0, message)),
        _ => None,
    }
}

/// Runs one operation and judges its result.
fn one_op(op: u32, c: &Conn, rng: &mut StdRng, n: u64, max_echo: usize) -> Verdict {
    let client = &c.client;
    match op {
        0..=29 => {
            let (a, b) = (rng.random::<u32>(), rng.random::<u32>());
            match client.call(&ADD, &(a, b)) {
                Ok(v) if v == a.wrapping_add(b) => Ok("ok"),
                Ok(v) => wrong(format!("add({a},{b}) = {v}")),
                Err(e) => unexpected("add", &e),
            }
        }
        30..=44 => {
            let size = if rng.random_ratio(1, 10) {
                rng.random_range(0..=max_echo)
            } else {
                rng.random_range(0..4096)
            };
            let mut v = vec![n as u8; size];
            let tag = n.to_le_bytes();
            let k = size.min(8);
            v[..k].copy_from_slice(&tag[..k]);
            let req = Bytes::from(v);
            match client.call(&ECHO, &req) {
                Ok(r) if r == req => Ok("ok"),
                Ok(r) => wrong(format!(
                    "echo of {} bytes came back as {}",
                    req.len(),
                    r.len()
                )),
                Err(e) => unexpected("echo", &e),
            }
        }
        45..=54 => match client.notify(&NOTE, &n) {
            Ok(()) => Ok("notify sent"),
            Err(e) => unexpected("notify", &e),
        },
        55..=56 => {
            let after = Duration::from_millis(rng.random_range(2..20));
            match client.call_timeout(&SLEEP, &300, after) {
                Err(Error::Timeout(_)) => Ok("timeout (expected)"),
                Ok(v) => wrong(format!("sleep 300 answered {v} within {after:?}")),
                Err(e) => unexpected("sleep", &e),
            }
        }
        57..=61 => {
            let x = rng.random::<u32>();
            match client.call(&FAIL, &x) {
                Err(e) => match remote(&e) {
                    Some((FAIL_CODE, m)) if m == format!("fail {x}") => {
                        Ok("handler error (expected)")
                    }
                    Some(_) => wrong(format!("fail({x}) gave {e:?}")),
                    None => unexpected("fail", &e),
                },
                Ok(v) => wrong(format!("fail({x}) answered {v}")),
            }
        }
        62..=64 => match client.call(&EXPLODE, &1) {
            Err(e) if e.code() == Some(ErrorCode::PANIC) => Ok("panic (expected)"),
            Err(e) if remote(&e).is_some() => wrong(format!("explode gave {e:?}")),
            Err(e) => unexpected("explode", &e),
            Ok(v) => wrong(format!("explode answered {v}")),
        },
        65..=71 => {
            let data = n.to_le_bytes().repeat(rng.random_range(0..8));
            match client.ping(&data) {
                Ok(r) if r[..] == data[..] => Ok("ok"),
                Ok(r) => wrong(format!("ping {data:?} came back {r:?}")),
                Err(e) => unexpected("ping", &e),
            }
        }
        72..=74 => match client.status() {
            // `waiting` counts connections accepted but not yet admitted
            // (reconnecting clients), even on an unlimited server.
            Ok(s) if s.max == u32::MAX => Ok("ok"),
            Ok(s) => wrong(format!("status {s:?} on an unlimited server")),
            Err(e) => unexpected("status", &e),
        },
        75..=84 => {
            let (a, b) = (
                i64::from(rng.random::<i32>()),
                i64::from(rng.random::<i32>()),
            );
            match c
                .session
                .root("m")
                .method("add", (a, b))
                .materialize::<i64>()
            {
                Ok(v) if v == a + b => Ok("ok"),
                Ok(v) => wrong(format!("m.add({a},{b}) = {v}")),
                Err(e) => unexpected("m.add", &e),
            }
        }
        85..=94 => {
            // Three pipelined calls, one round trip.
            let start = i64::from(rng.random::<i16>());
            let (k1, k2) = (
                i64::from(rng.random::<i16>()),
                i64::from(rng.random::<i16>()),
            );
            let ctr = c.session.root("m").method("counter", (start,));
            ctr.method("add", (k1,));
            match ctr.method("add", (k2,)).materialize::<i64>() {
                Ok(v) if v == start + k1 + k2 => Ok("ok"),
                Ok(v) => wrong(format!("counter({start}) +{k1} +{k2} = {v}")),
                Err(e) => unexpected("counter", &e),
            }
        }
        _ => {
            // A failed call poisons what depends on it.
            let msg = format!("dyn fail {n}");
            let r = c
                .session
                .root("m")
                .method("fail", (msg.as_str(),))
                .method("add", (1,))
                .materialize::<Value>();
            match r {
                Err(e) => match remote(&e) {
                    Some((DYN_FAIL_CODE, m)) if m.contains(&msg) => Ok("handler error (expected)"),
                    Some(_) => wrong(format!("poisoned call gave {e:?}")),
                    None => unexpected("m.fail", &e),
                },
                Ok(v) => wrong(format!("poisoned call answered {v}")),
            }
        }
    }
}

/// Kills `conn` at a random moment: closed while a call is in flight on
/// another thread, or (raw TCP) a socket shut down mid-frame.
fn kill(ctx: &Ctx, conn: Conn, rng: &mut StdRng, tally: &mut Tally) {
    match rng.random_range(0..3) {
        0 | 1 => {
            let c = conn.client.clone();
            let echo = rng.random_bool(0.5);
            let size = rng.random_range(0..=ctx.plan.max_echo);
            let victim = std::thread::spawn(move || -> Result<bool, Error> {
                if echo {
                    let req = Bytes::from(vec![7u8; size]);
                    Ok(c.call(&ECHO, &req)? == req)
                } else {
                    Ok(c.call(&SLEEP, &20)? == 20)
                }
            });
            std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
            conn.client.close();
            drop(conn);
            tally.add("kill: client closed mid-call");
            match victim.join().expect("victim thread") {
                Ok(true) => tally.add("ok"),
                Ok(false) => {
                    tally.add("wrong");
                    ctx.problems
                        .lock()
                        .push("WRONG answer to the call in flight at a kill".into());
                }
                Err(e) if e.is_disconnect() => tally.add("disconnected by the kill (expected)"),
                Err(e) => {
                    tally.add("unexpected");
                    ctx.problems
                        .lock()
                        .push(format!("call in flight at a kill: {e:?}"));
                }
            }
        }
        _ => {
            drop(conn);
            tally.add("kill: raw socket shut mid-call");
            let Ok(mut s) = TcpStream::connect(ctx.addr) else {
                tally.add("unexpected");
                ctx.problems.lock().push("raw connect failed".into());
                return;
            };
            let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
            let mut bytes = encode_frame(Kind::Call, 0xFF00, 1, ctx.token.as_bytes());
            bytes.extend(encode_frame(
                Kind::Call,
                SLEEP.id(),
                2,
                &20u64.to_le_bytes(),
            ));
            let echo = encode_frame(Kind::Call, ECHO.id(), 3, &{
                let mut p = 4096u32.to_le_bytes().to_vec();
                p.resize(4 + 4096, 1);
                p
            });
            let cut = rng.random_range(0..echo.len());
            bytes.extend_from_slice(&echo[..cut]);
            let _ = s.write_all(&bytes);
            std::thread::sleep(Duration::from_micros(rng.random_range(0..10_000)));
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn client_loop(ctx: &Ctx, id: usize) -> Tally {
    let mut rng = StdRng::seed_from_u64(SEED + id as u64);
    let mut tally = Tally::default();
    let ws = id % 2 == 1;
    tally.add(if ws {
        "clients over WebSocket"
    } else {
        "clients over TCP"
    });
    let mut conn = None;
    loop {
        let n = ctx.issued.fetch_add(1, Ordering::Relaxed);
        if n >= ctx.plan.calls {
            break;
        }
        let c = match conn.take() {
            Some(c) => c,
            None => match open(ctx, ws) {
                Ok(c) => c,
                Err(e) => {
                    tally.add("unexpected");
                    ctx.problems.lock().push(format!("connect: {e:?}"));
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        if rng.random_ratio(1, ctx.plan.kill_one_in) {
            kill(ctx, c, &mut rng, &mut tally);
            continue;
        }
        let op = rng.random_range(0..100);
        match one_op(op, &c, &mut rng, n, ctx.plan.max_echo) {
            Ok(kind) => tally.add(kind),
            Err(why) => {
                tally.add(if why.starts_with("WRONG") {
                    "wrong"
                } else {
                    "unexpected"
                });
                let mut p = ctx.problems.lock();
                if p.len() < 100 {
                    p.push(why);
                }
            }
        }
        conn = Some(c);
    }
    tally
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Keeps the expected handler panics out of the output.
fn quiet_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or("");
            if !msg.starts_with("soak panic") {
                default(info);
            }
        }));
    });
}

fn soak(plan: Plan) {
    let _serial = SERIAL.lock();
    quiet_expected_panics();
    let seen = Arc::new(Seen::default());
    let space = space();
    let server = Server::builder()
        .ws(WsConfig::new().mount(WS_PATH, router(&space, &seen)))
        .bind("127.0.0.1:0", router(&space, &seen))
        .unwrap();
    let ctx = Arc::new(Ctx {
        plan,
        addr: server.local_addr(),
        url: server.ws_url(WS_PATH),
        token: server.token().unwrap().to_owned(),
        issued: AtomicU64::new(0),
        problems: Mutex::new(Vec::new()),
    });
    let threads_before = thread_count();
    let rss_start = rss_kib();

    // RSS high-water marks: warm-up (first 10%), first half, second half.
    let done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (ctx, done) = (Arc::clone(&ctx), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut high = [0u64; 3];
            let mut peak_threads = 0;
            while !done.load(Ordering::Relaxed) {
                let at = ctx.issued.load(Ordering::Relaxed).min(plan.calls);
                let phase = match at * 10 / plan.calls.max(1) {
                    0 => 0,
                    1..=4 => 1,
                    _ => 2,
                };
                high[phase] = high[phase].max(rss_kib());
                peak_threads = peak_threads.max(thread_count());
                std::thread::sleep(Duration::from_millis(20));
            }
            (high, peak_threads)
        })
    };

    let start = Instant::now();
    let workers: Vec<_> = (0..plan.clients)
        .map(|id| {
            let ctx = Arc::clone(&ctx);
            std::thread::Builder::new()
                .name(format!("soak-client-{id}"))
                .spawn(move || client_loop(&ctx, id))
                .unwrap()
        })
        .collect();
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.join().expect("a client thread panicked"));
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let (high, peak_threads) = monitor.join().unwrap();

    // Everything released once every client is gone.
    eventually("connections closed", Duration::from_secs(30), || {
        server.connection_count() == 0
    });
    eventually("threads back to baseline", Duration::from_secs(30), || {
        thread_count() <= threads_before
    });
    eventually("dynamic handles released", Duration::from_secs(10), || {
        space.handle_count() == 0 && space.connection_count() == 0
    });
    let status = server.status();
    let rss_end = rss_kib();
    let threads_after = thread_count();
    let notes = seen.notes.load(Ordering::Relaxed);
    let cancelled = seen.cancelled.load(Ordering::Relaxed);
    let stats = space.stats();
    server.shutdown();

    let problems = ctx.problems.lock().clone();
    let calls = plan.calls;
    let wrong = tally.get("wrong");
    let unexpected = tally.get("unexpected");
    println!(
        "soak: {calls} calls, {} clients, {elapsed:.1?} ({:.0} calls/s)",
        plan.clients,
        calls as f64 / elapsed.as_secs_f64()
    );
    for (k, v) in &tally.0 {
        println!("  {k:<40} {v}");
    }
    println!(
        "  notifies handled by the server           {notes} (of {} sent; the rest died with killed clients)",
        tally.get("notify sent")
    );
    println!("  cancels seen by running handlers         {cancelled}");
    println!(
        "  dynamic layer                            {} messages, {} calls, {} handles released",
        stats.messages, stats.calls, stats.released
    );
    println!(
        "  threads: {threads_before} before, peak {peak_threads}, {threads_after} after; \
         dynamic handles after: {}; admission after: active {} waiting {}",
        space.handle_count(),
        status.active,
        status.waiting
    );
    println!(
        "  rss KiB: start {rss_start}, high-water warm-up {}, first half {}, second half {}, end {rss_end}",
        high[0], high[1], high[2]
    );
    for p in &problems {
        println!("  problem: {p}");
    }
    println!(
        "SOAK SUMMARY calls={calls} clients={} secs={:.1} ok={} expected_errors={} killed_calls={} kills={} wrong={wrong} \
         unexpected={unexpected} threads_before={threads_before} threads_after={threads_after} handles_after={} \
         active_after={} rss_first_half_kib={} rss_second_half_kib={} rss_end_kib={rss_end}",
        plan.clients,
        elapsed.as_secs_f64(),
        tally.get("ok") + tally.get("notify sent"),
        tally.get("timeout (expected)")
            + tally.get("handler error (expected)")
            + tally.get("panic (expected)"),
        tally.get("disconnected by the kill (expected)"),
        tally.get("kill: client closed mid-call") + tally.get("kill: raw socket shut mid-call"),
        space.handle_count(),
        status.active,
        high[1],
        high[2],
    );

    assert_eq!(wrong, 0, "wrong answers: {problems:#?}");
    assert_eq!(unexpected, 0, "unexpected errors: {problems:#?}");
    assert!(notes <= tally.get("notify sent"));
    assert_eq!((status.active, status.waiting), (0, 0), "a permit leaked");
    assert!(tally.get("kill: client closed mid-call") > 0);
    if plan.check_rss {
        let first = high[1];
        let slack = (first / 5).max(32 * 1024);
        assert!(
            high[2] <= first + slack && rss_end <= first + slack,
            "memory grew: first-half high-water {first} KiB, second half {} KiB, end {rss_end} KiB",
            high[2]
        );
    }
}

#[test]
fn soak_small() {
    soak(Plan {
        calls: 20_000,
        clients: 8,
        kill_one_in: 400,
        max_echo: 256 * 1024,
        check_rss: false,
    });
}

#[test]
#[ignore = "a few minutes in release: scripts/soak.sh"]
fn soak_full() {
    let calls = std::env::var("FRAMERPC_SOAK_CALLS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    soak(Plan {
        calls,
        clients: 32,
        kill_one_in: 4000,
        max_echo: 1 << 20,
        check_rss: true,
    });
}

/// On a server with WebSocket enabled every connection takes its admission
/// queue place at accept; a socket that has sent nothing yet (or half an
/// upgrade) must not hold back later connections on a server with room.
#[test]
fn silent_socket_does_not_block_admission() {
    let _serial = SERIAL.lock();
    let r = || Router::new().handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)));
    let server = Server::builder()
        .ws(WsConfig::new().mount(WS_PATH, r()))
        .bind("127.0.0.1:0", r())
        .unwrap();
    let silent = TcpStream::connect(server.local_addr()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let c = Client::builder()
        .token(server.token().unwrap())
        .timeout(Duration::from_secs(40))
        .connect(server.local_addr())
        .unwrap();
    let t = Instant::now();
    let r = c.call(&ADD, &(2, 3));
    let took = t.elapsed();
    drop(silent);
    server.shutdown();
    assert_eq!(r.unwrap(), 5);
    assert!(took < Duration::from_secs(1), "admitted after {took:?}");
}
