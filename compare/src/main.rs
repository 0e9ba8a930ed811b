//! framerpc side by side with its peers, on 127.0.0.1, in one run.
//!
//! ```text
//! cargo run --release --manifest-path compare/Cargo.toml -- [--quick]
//! ```
//!
//! Systems: a plain std::net TCP ping-pong with a 4-byte length prefix (the
//! limit), plain tungstenite binary ping-pong, framerpc over TCP and over
//! WebSocket, tarpc (tokio, TCP, bincode) and jsonrpsee (WebSocket).
//!
//! Workloads: (A) one client, sequential `add(u32, u32) -> u32`: p50/p99
//! latency and calls/s; (B) 8 and 32 clients, each on its own connection,
//! total calls/s over a fixed time; (C) a 16 MiB echo, MiB/s.
//!
//! Each system's server runs in a child process of this binary (`compare
//! serve SYSTEM`), so that its peak RSS (VmHWM) and thread count can be
//! read from /proc/PID/status. Rounds are interleaved: every round runs
//! every workload on every system (the order rotating), and the report
//! gives the median over rounds.
//!
//! Two more runs, one command each, for measuring framerpc before and
//! after a change:
//!
//! - `compare ref [--quick]`: the reference table (framerpc against plain
//!   TCP and plain tungstenite), pinned to one CPU and unpinned in the same
//!   run (`reference.rs`);
//! - `compare scale [--quick] [SYSTEM...]`: 1,000 idle connections, 256
//!   busy clients, memory after concurrent 16 MiB echoes (`scale.rs`).
//!
//! `--pinned` or `--unpinned` runs only one placement.

mod os;
mod reference;
mod scale;
mod systems;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use systems::{AsyncClient, System, ALL};

pub const ECHO_LEN: usize = 16 << 20;
const MIB: f64 = (1 << 20) as f64;

pub struct Settings {
    rounds: usize,
    /// Warm-up before each timed part.
    warm: Duration,
    a_time: Duration,
    b_time: Duration,
    c_calls: usize,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Settings {
                rounds: 3,
                warm: Duration::from_millis(200),
                a_time: Duration::from_millis(1000),
                b_time: Duration::from_millis(1200),
                c_calls: 3,
            }
        } else {
            Settings {
                rounds: 5,
                warm: Duration::from_millis(300),
                a_time: Duration::from_millis(2500),
                b_time: Duration::from_millis(3000),
                c_calls: 5,
            }
        }
    }

    /// `compare ref`: both placements in one run, so shorter parts.
    fn reference(quick: bool) -> Self {
        if quick {
            Settings {
                rounds: 3,
                warm: Duration::from_millis(200),
                a_time: Duration::from_millis(800),
                b_time: Duration::from_millis(1000),
                c_calls: 3,
            }
        } else {
            Settings::new(false)
        }
    }
}

/// Where the benchmark and its server children run: one CPU, or all the
/// CPUs the run was started with.
#[derive(Clone)]
pub struct Placement {
    pub name: &'static str,
    pub cpus: Vec<usize>,
}

/// The placements a run asked for (`--pinned`, `--unpinned`, default
/// both). Pinned is the first CPU this process may use (CPU 0 unless the
/// run was started under taskset). Unpinned is left out, with a note, when
/// the run was started on one CPU.
fn placements(args: &[String]) -> Vec<Placement> {
    let inherited = os::affinity();
    let pinned = Placement {
        name: "pinned",
        cpus: inherited.first().map_or(vec![0], |&c| vec![c]),
    };
    let unpinned = Placement {
        name: "unpinned",
        cpus: inherited.clone(),
    };
    let want_pinned = !args.iter().any(|a| a == "--unpinned");
    let want_unpinned = !args.iter().any(|a| a == "--pinned");
    let mut out = Vec::new();
    if want_pinned {
        out.push(pinned);
    }
    if want_unpinned {
        if inherited.len() > 1 {
            out.push(unpinned);
        } else {
            eprintln!("started on one CPU ({inherited:?}): no unpinned placement");
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        let name = args.get(1).expect("compare serve SYSTEM");
        serve(System::from_name(name).expect("unknown system"));
    }
    if args.first().map(String::as_str) == Some("rss") {
        let sys = args.get(1).map_or(System::FramerpcTcp, |n| {
            System::from_name(n).expect("unknown system")
        });
        let conns = args.get(2).map_or(20, |n| n.parse().expect("connections"));
        rss_growth(sys, conns);
        return;
    }
    let mode = args
        .first()
        .map(String::as_str)
        .filter(|m| matches!(*m, "ref" | "scale"))
        .unwrap_or("peers");
    let rest = if mode == "peers" {
        &args[..]
    } else {
        &args[1..]
    };
    let mut quick = false;
    let mut only: Vec<System> = Vec::new();
    for a in rest {
        match a.as_str() {
            "--quick" => quick = true,
            "--pinned" | "--unpinned" if mode != "peers" => {}
            "-h" | "--help" => {
                println!(
                    "usage: compare [--quick] [SYSTEM...]           peers, one placement\n       \
                     compare ref [--quick] [--pinned|--unpinned]  reference table, both placements\n       \
                     compare scale [--quick] [--pinned|--unpinned] [SYSTEM...]\n       \
                     compare rss [SYSTEM] [N]                      RSS after N sequential 16 MiB echoes\n\
                     systems: {}",
                    names()
                );
                return;
            }
            s => only.push(System::from_name(s).unwrap_or_else(|| {
                eprintln!("unknown argument {s}; systems: {}", names());
                std::process::exit(2)
            })),
        }
    }
    let all: &[System] = match mode {
        "scale" => &scale::DEFAULT,
        _ => &ALL,
    };
    let systems: Vec<System> = if only.is_empty() {
        all.to_vec()
    } else {
        ALL.into_iter().filter(|s| only.contains(s)).collect()
    };
    match mode {
        "ref" => {
            if !only.is_empty() {
                eprintln!(
                    "compare ref always runs raw-tcp, framerpc-tcp, tungstenite, framerpc-ws"
                );
                std::process::exit(2)
            }
            reference::run(quick, &placements(&args), &args)
        }
        "scale" => scale::run(quick, &placements(&args), &systems, &args),
        _ => run(Settings::new(quick), &systems, &args),
    }
}

/// `compare rss [SYSTEM] [N]`: N connections one after another, each
/// echoing 16 MiB twice then closing; prints the server's RSS after each.
/// (`compare scale` part (c) is the concurrent version: 16 connections
/// echoing at once, in waves.)
fn rss_growth(sys: System, conns: usize) {
    let data = Bytes::from(vec![0x5a; ECHO_LEN]);
    let set = Settings {
        c_calls: 1,
        ..Settings::new(true)
    };
    let mut server = ServerProc::spawn(sys);
    println!(
        "{}: RSS {} MiB idle",
        sys.name(),
        proc_status(server.pid(), "VmRSS") / 1024
    );
    for k in 1..=conns {
        workload_c(sys, &server.line, &data, &set);
        std::thread::sleep(Duration::from_millis(200));
        println!(
            "after connection {k:>3}: RSS {:>5} MiB, peak {:>5} MiB, threads {}",
            proc_status(server.pid(), "VmRSS") / 1024,
            proc_status(server.pid(), "VmHWM") / 1024,
            proc_status(server.pid(), "Threads")
        );
    }
    server.stop();
}

fn names() -> String {
    ALL.map(System::name).join(", ")
}

/// `compare serve SYSTEM`: starts the server, prints its line, and exits
/// when stdin closes (the parent going away).
fn serve(sys: System) -> ! {
    let line = systems::start_server(sys);
    let mut out = std::io::stdout();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    std::process::exit(0)
}

/// One server child process.
pub struct ServerProc {
    pub sys: System,
    child: Child,
    stdin: Option<ChildStdin>,
    pub line: String,
    idle_threads: u64,
    threads_at_32: u64,
    end_threads: u64,
}

impl ServerProc {
    pub fn spawn(sys: System) -> Self {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .args(["serve", sys.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("server line");
        assert!(
            !line.trim().is_empty(),
            "{} server printed nothing",
            sys.name()
        );
        ServerProc {
            sys,
            child,
            stdin,
            line: line.trim().to_owned(),
            idle_threads: 0,
            threads_at_32: 0,
            end_threads: 0,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// A field of /proc/PID/status, as its first number (kB for Vm* fields).
pub fn proc_status(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Samples {
    a_p50: Vec<f64>,
    a_p99: Vec<f64>,
    a_rate: Vec<f64>,
    b8: Vec<f64>,
    b32: Vec<f64>,
    c: Vec<f64>,
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn loadavg() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn run(set: Settings, systems: &[System], args: &[String]) {
    let started = RunStart::now();
    let mut servers: Vec<ServerProc> = systems.iter().map(|&s| ServerProc::spawn(s)).collect();
    std::thread::sleep(Duration::from_millis(300));
    for s in &mut servers {
        s.idle_threads = proc_status(s.pid(), "Threads");
    }
    let mut samples: Vec<Samples> = systems.iter().map(|_| Samples::default()).collect();
    let data = Bytes::from(vec![0x5a; ECHO_LEN]);

    for round in 0..set.rounds {
        let mut order: Vec<usize> = (0..servers.len()).collect();
        order.rotate_left(round % servers.len());
        for &i in &order {
            let s = &servers[i];
            let (p50, p99, rate) = workload_a(s.sys, &s.line, &set);
            eprintln!(
                "round {} A   {:<13} p50 {p50:>8.1} us  p99 {p99:>8.1} us  {rate:>9.0} calls/s",
                round + 1,
                s.sys.name()
            );
            samples[i].a_p50.push(p50);
            samples[i].a_p99.push(p99);
            samples[i].a_rate.push(rate);
        }
        for n in [8, 32] {
            for &i in &order {
                let s = &mut servers[i];
                let (rate, threads) = workload_b(s.sys, &s.line, n, s.pid(), &set);
                eprintln!(
                    "round {} B{n:<2} {:<13} {rate:>9.0} calls/s  server threads {threads}",
                    round + 1,
                    s.sys.name()
                );
                if n == 8 {
                    samples[i].b8.push(rate);
                } else {
                    samples[i].b32.push(rate);
                    s.threads_at_32 = s.threads_at_32.max(threads);
                }
            }
        }
        for &i in &order {
            let s = &servers[i];
            let mib_s = workload_c(s.sys, &s.line, &data, &set);
            eprintln!(
                "round {} C   {:<13} {mib_s:>8.0} MiB/s",
                round + 1,
                s.sys.name()
            );
            samples[i].c.push(mib_s);
        }
    }

    // Every client is gone: a server's threads should be back to idle.
    std::thread::sleep(Duration::from_millis(500));
    for s in &mut servers {
        s.end_threads = proc_status(s.pid(), "Threads");
    }
    let hwm: Vec<(u64, u64)> = servers
        .iter()
        .map(|s| (proc_status(s.pid(), "VmHWM"), proc_status(s.pid(), "VmRSS")))
        .collect();
    for s in &mut servers {
        s.stop();
    }
    report(&set, &servers, &samples, &hwm, args, &started);
}

// ---------------------------------------------------------------- workloads

/// A: one client, sequential small calls. Returns p50 µs, p99 µs, calls/s.
pub fn workload_a(sys: System, line: &str, set: &Settings) -> (f64, f64, f64) {
    let mut lat: Vec<u64> = Vec::with_capacity(1 << 20);
    let elapsed = if sys.is_async() {
        // One task on a current-thread runtime: the cheapest way to make
        // sequential calls with an async client.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = AsyncClient::connect(sys, line).await;
            let warm = Instant::now();
            while warm.elapsed() < set.warm {
                c.add(2, 3).await;
            }
            let start = Instant::now();
            let mut i = 0u32;
            loop {
                let t = Instant::now();
                if t - start >= set.a_time {
                    break t - start;
                }
                let r = c.add(i, 3).await;
                lat.push(t.elapsed().as_nanos() as u64);
                assert_eq!(r, i.wrapping_add(3));
                i = i.wrapping_add(1);
            }
        })
    } else {
        let mut c = systems::connect_sync(sys, line);
        let warm = Instant::now();
        while warm.elapsed() < set.warm {
            c.add(2, 3);
        }
        let start = Instant::now();
        let mut i = 0u32;
        loop {
            let t = Instant::now();
            if t - start >= set.a_time {
                break t - start;
            }
            let r = c.add(i, 3);
            lat.push(t.elapsed().as_nanos() as u64);
            assert_eq!(r, i.wrapping_add(3));
            i = i.wrapping_add(1);
        }
    };
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1e3;
    (
        pct(0.50),
        pct(0.99),
        lat.len() as f64 / elapsed.as_secs_f64(),
    )
}

/// B: `n` clients, each on its own connection, calling in a loop. Returns
/// total calls/s and the server's thread count in mid-run.
pub fn workload_b(sys: System, line: &str, n: usize, pid: u32, set: &Settings) -> (f64, u64) {
    let calls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicUsize::new(0));
    // Counts from all clients connected and warmed up to the end.
    let measure = || {
        while ready.load(Ordering::Acquire) < n {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(set.warm);
        let c0 = calls.load(Ordering::Relaxed);
        let t0 = Instant::now();
        std::thread::sleep(set.b_time / 2);
        let threads = proc_status(pid, "Threads");
        std::thread::sleep(set.b_time / 2);
        let c1 = calls.load(Ordering::Relaxed);
        let dt = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        ((c1 - c0) as f64 / dt.as_secs_f64(), threads)
    };
    if sys.is_async() {
        // The async way: one task per connection on a multi-threaded
        // runtime (one worker per core this process may run on).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let tasks: Vec<_> = (0..n)
            .map(|k| {
                let (calls, stop, ready) = (calls.clone(), stop.clone(), ready.clone());
                let line = line.to_owned();
                rt.spawn(async move {
                    let c = AsyncClient::connect(sys, &line).await;
                    ready.fetch_add(1, Ordering::Release);
                    let mut i = k as u32;
                    while !stop.load(Ordering::Relaxed) {
                        assert_eq!(c.add(i, 3).await, i.wrapping_add(3));
                        calls.fetch_add(1, Ordering::Relaxed);
                        i = i.wrapping_add(1);
                    }
                })
            })
            .collect();
        let out = measure();
        rt.block_on(async {
            for t in tasks {
                t.await.expect("client task");
            }
        });
        out
    } else {
        std::thread::scope(|s| {
            for k in 0..n {
                let (calls, stop, ready) = (&calls, &stop, &ready);
                s.spawn(move || {
                    let mut c = systems::connect_sync(sys, line);
                    ready.fetch_add(1, Ordering::Release);
                    let mut i = k as u32;
                    while !stop.load(Ordering::Relaxed) {
                        assert_eq!(c.add(i, 3), i.wrapping_add(3));
                        calls.fetch_add(1, Ordering::Relaxed);
                        i = i.wrapping_add(1);
                    }
                });
            }
            measure()
        })
    }
}

/// C: echo 16 MiB and get the same bytes back; MiB/s counts the bytes of
/// both directions (32 MiB per call), as benches/core.rs does.
pub fn workload_c(sys: System, line: &str, data: &Bytes, set: &Settings) -> f64 {
    let elapsed = if sys.is_async() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = AsyncClient::connect(sys, line).await;
            assert_eq!(c.echo(data).await, data.len());
            let t = Instant::now();
            for _ in 0..set.c_calls {
                assert_eq!(c.echo(data).await, data.len());
            }
            t.elapsed()
        })
    } else {
        let mut c = systems::connect_sync(sys, line);
        assert_eq!(c.echo(data), data.len());
        let t = Instant::now();
        for _ in 0..set.c_calls {
            assert_eq!(c.echo(data), data.len());
        }
        t.elapsed()
    };
    (2 * data.len() * set.c_calls) as f64 / MIB / elapsed.as_secs_f64()
}

// ---------------------------------------------------------------- report

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A report's title and the lines that say where, when and how it was
/// measured: the command line first, so that a pasted table can be re-run.
/// When a run started, and what the machine was doing then.
pub struct RunStart {
    t: Instant,
    load: String,
    ticks: (u64, u64),
}

impl RunStart {
    pub fn now() -> Self {
        RunStart {
            t: Instant::now(),
            load: loadavg(),
            ticks: os::cpu_ticks(),
        }
    }
}

pub fn print_header(title: &str, args: &[String], run: &RunStart) {
    let took = run.t.elapsed();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            Some(
                l.strip_prefix("model name")?
                    .split(':')
                    .nth(1)?
                    .trim()
                    .to_owned(),
            )
        })
        .unwrap_or_else(|| "?".into());
    let allowed = os::affinity();
    let nproc = sh("nproc", &["--all"]);
    let taskset = if nproc.parse() == Ok(allowed.len()) {
        String::new()
    } else {
        format!("taskset -c {} ", os::cpu_list(&allowed))
    };
    println!("### {title}");
    println!();
    println!(
        "- command: `{taskset}scripts/compare.sh{}` ({:.0} s)",
        args.iter().map(|a| format!(" {a}")).collect::<String>(),
        took.as_secs_f64()
    );
    println!(
        "- machine: nproc {nproc} ({cpu}), CPUs allowed: {}, Linux {}, {}",
        os::cpu_list(&allowed),
        sh("uname", &["-r"]),
        sh("rustc", &["--version"])
    );
    println!("- date: {}", sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
    println!(
        "- load average (1, 5, 15 min): {} before, {} after (the figure after counts this run's own threads)",
        run.load,
        loadavg()
    );
    let (busy, own) = os::cpu_ticks();
    let hz = os::ticks_per_sec();
    let other = (busy.saturating_sub(run.ticks.0) as f64 - own.saturating_sub(run.ticks.1) as f64)
        .max(0.0)
        / hz;
    let avail = took.as_secs_f64() * nproc.parse::<f64>().unwrap_or(1.0);
    let share = 100.0 * other / avail.max(1e-9);
    println!(
        "- CPU taken by other processes during the run (/proc/stat busy and stolen time less this run's): \
         {other:.0} of {avail:.0} CPU-seconds ({share:.0}%)"
    );
    if share > 20.0 {
        println!(
            "- **warning: other work took {share:.0}% of the machine during this run: compare figures \
             only within this run, or run again on a quieter machine**"
        );
    }
}

/// 41500.3 -> "41,500"; below 100, one decimal.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    if x.abs() < 100.0 {
        return format!("{x:.1}");
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn report(
    set: &Settings,
    servers: &[ServerProc],
    samples: &[Samples],
    hwm_kib: &[(u64, u64)],
    args: &[String],
    started: &RunStart,
) {
    print_header("framerpc and its peers, same run, 127.0.0.1", args, started);
    println!(
        "- {} rounds, interleaved (every system in each round, order rotating); medians over rounds. \
         A: {:.1} s of sequential calls per round; B: {:.1} s per round after all clients connected; \
         C: {} echoes of 16 MiB per round (MiB/s counts both directions, 32 MiB per call).",
        set.rounds,
        set.a_time.as_secs_f64(),
        set.b_time.as_secs_f64(),
        set.c_calls
    );
    println!();
    println!(
        "| system | A p50 µs | A p99 µs | A calls/s | B8 calls/s | B32 calls/s | C MiB/s | server RSS MiB peak / after | server threads idle / 32 conns / after |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let med = |i: usize| {
        let s = &samples[i];
        [
            median(&s.a_p50),
            median(&s.a_p99),
            median(&s.a_rate),
            median(&s.b8),
            median(&s.b32),
            median(&s.c),
        ]
    };
    for (i, s) in servers.iter().enumerate() {
        let m = med(i);
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {} / {} / {} |",
            s.sys.label(),
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            hwm_kib[i].0 as f64 / 1024.0,
            hwm_kib[i].1 as f64 / 1024.0,
            s.idle_threads,
            s.threads_at_32,
            s.end_threads
        );
    }
    if let Some(raw) = servers.iter().position(|s| s.sys == System::RawTcp) {
        let r = med(raw);
        println!();
        println!("Against the plain-TCP limit (system ÷ raw TCP; latency: higher is worse, throughput: lower is worse):");
        println!();
        println!("| system | A p50 | A p99 | A calls/s | B8 calls/s | B32 calls/s | C MiB/s |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (i, s) in servers.iter().enumerate() {
            if i == raw {
                continue;
            }
            let m = med(i);
            let cells: Vec<String> = (0..6).map(|k| format!("{:.2}×", m[k] / r[k])).collect();
            println!("| {} | {} |", s.sys.name(), cells.join(" | "));
        }
    }
    println!();
    println!(
        "Notes: each server runs in its own child process of the same binary (`compare serve SYSTEM`); \
         RSS: its VmHWM over the whole run and its VmRSS after the last client left; threads are /proc/PID/status Threads (one of them the \
         main thread waiting on stdin), read idle at start, mid-run of B32 (highest over rounds) and 0.5 s after the last client left. \
         Blocking clients (raw, tungstenite, framerpc) use one OS thread per connection; tarpc and jsonrpsee \
         clients are tokio tasks (A and C: one task on a current-thread runtime; B: one task per connection \
         on a multi-threaded runtime). tarpc: bincode over tokio TCP with TCP_NODELAY, frame limit raised \
         from 8 MiB to 64 MiB, echo as serde_bytes::ByteBuf. jsonrpsee: request/response limits raised from \
         10 MiB to 64 MiB on server and client, echo as a base64 string (decoded and re-encoded by the server)."
    );
}
