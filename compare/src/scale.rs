//! `compare scale`: what many connections cost a server, each part on a
//! fresh server child.
//!
//! - (a) idle: N connections (1,000) opened, one small call each, then left
//!   idle: server threads, RSS and descriptors per connection, and whether
//!   threads and RSS come back after they close;
//! - (b) busy: 256 clients, each on its own connection, sequential small
//!   calls for a bounded time: total calls/s, p50 and p99 latency;
//! - (c) memory coming back: 16 clients each echo 16 MiB at once, in
//!   waves; the server's RSS before, at its peak, and after each wave.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::systems::{self, AsyncClient, SyncClient, System};
use crate::{fmt_num, os, print_header, proc_status, Placement, RunStart, ServerProc, ECHO_LEN};

pub const DEFAULT: [System; 3] = [System::RawTcp, System::FramerpcTcp, System::FramerpcWs];

pub struct ScaleSettings {
    pub idle_conns: usize,
    pub busy_clients: usize,
    pub busy_warm: Duration,
    pub busy_time: Duration,
    pub echo_clients: usize,
    pub waves: usize,
}

impl ScaleSettings {
    pub fn new(quick: bool) -> Self {
        ScaleSettings {
            idle_conns: 1000,
            busy_clients: 256,
            busy_warm: Duration::from_millis(if quick { 300 } else { 500 }),
            busy_time: Duration::from_millis(if quick { 2000 } else { 5000 }),
            echo_clients: 16,
            waves: if quick { 2 } else { 3 },
        }
    }
}

/// Longest wait for connections to open (or threads to go away): past it
/// the part reports what it got.
const PATIENCE: Duration = Duration::from_secs(60);
const MIB: f64 = 1024.0; // KiB per MiB: /proc reports KiB

struct Idle {
    connected: usize,
    error: Option<String>,
    connect_us: f64,
    threads: [u64; 3],
    rss_kib: [u64; 3],
    server_fds: [usize; 2],
    client_fds: [usize; 2],
    release_ms: f64,
}

struct Busy {
    clients: usize,
    failed: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    threads: u64,
    hwm_kib: u64,
}

struct Mem {
    idle_kib: u64,
    peak_kib: u64,
    after_kib: Vec<u64>,
    threads_idle: u64,
    threads_after: u64,
}

struct Row {
    sys: System,
    placement: &'static str,
    idle: Idle,
    busy: Busy,
    mem: Mem,
}

pub fn run(quick: bool, placements: &[Placement], systems: &[System], args: &[String]) {
    let set = ScaleSettings::new(quick);
    let started = RunStart::now();
    // Both ends of every connection are in processes of this binary.
    let want = (4 * set.idle_conns + 1024) as u64;
    let (soft, hard) = os::raise_nofile(want);
    let mut rows = Vec::new();
    for p in placements {
        os::set_affinity(&p.cpus);
        eprintln!("== placement {} (CPUs {})", p.name, os::cpu_list(&p.cpus));
        for &sys in systems {
            let idle = idle(sys, set.idle_conns);
            eprintln!(
                "idle {:<13} {} conns  threads {:?}  RSS KiB {:?}  server fds {:?}{}",
                sys.name(),
                idle.connected,
                idle.threads,
                idle.rss_kib,
                idle.server_fds,
                idle.error
                    .as_deref()
                    .map(|e| format!("  error: {e}"))
                    .unwrap_or_default()
            );
            let busy = busy(sys, &set);
            eprintln!(
                "busy {:<13} {} clients  {:.0} calls/s  p50 {:.1} us  p99 {:.1} us  threads {}",
                sys.name(),
                busy.clients,
                busy.rate,
                busy.p50,
                busy.p99,
                busy.threads
            );
            let mem = echo_waves(sys, set.echo_clients, set.waves);
            eprintln!(
                "echo {:<13} RSS MiB idle {:.1}  peak {:.1}  after waves {:?}",
                sys.name(),
                mem.idle_kib as f64 / MIB,
                mem.peak_kib as f64 / MIB,
                mem.after_kib.iter().map(|k| k / 1024).collect::<Vec<_>>()
            );
            rows.push(Row {
                sys,
                placement: p.name,
                idle,
                busy,
                mem,
            });
        }
    }
    if let Some(p) = placements.last() {
        os::set_affinity(&p.cpus);
    }
    print_header(
        "framerpc at scale: many connections to one server, 127.0.0.1",
        args,
        &started,
    );
    println!(
        "- open-file limit (soft / hard) of the benchmark and its server children: {soft} / {hard} \
         (raised by the binary itself with setrlimit; {} descriptors are enough here).",
        want
    );
    println!("- every part on a fresh server child (`compare serve SYSTEM`), on the placement's CPUs like the clients.");
    println!();
    println!(
        "**(a) {} idle connections**: each opened and given one small call, then idle 0.5 s. \
         Per connection = (with − before) ÷ connections.",
        set.idle_conns
    );
    println!();
    println!("| system | placement | connected | connect+call µs/conn | server threads before / with / after close | threads/conn | server RSS MiB before / with / after close | RSS KiB/conn | server fds/conn | client fds/conn | threads gone after close ms |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let i = &r.idle;
        let n = i.connected.max(1) as f64;
        println!(
            "| {} | {} | {}{} | {:.0} | {} / {} / {} | {:.2} | {:.1} / {:.1} / {:.1} | {:.1} | {:.2} | {:.2} | {} |",
            r.sys.name(),
            r.placement,
            i.connected,
            if i.error.is_some() { " (stopped: see below)" } else { "" },
            i.connect_us,
            i.threads[0],
            i.threads[1],
            i.threads[2],
            (i.threads[1] as f64 - i.threads[0] as f64) / n,
            i.rss_kib[0] as f64 / MIB,
            i.rss_kib[1] as f64 / MIB,
            i.rss_kib[2] as f64 / MIB,
            (i.rss_kib[1] as f64 - i.rss_kib[0] as f64) / n,
            (i.server_fds[1] as f64 - i.server_fds[0] as f64) / n,
            (i.client_fds[1] as f64 - i.client_fds[0] as f64) / n,
            if i.release_ms.is_nan() {
                format!("not within {} s", PATIENCE.as_secs())
            } else {
                format!("{:.0}", i.release_ms)
            }
        );
    }
    for r in &rows {
        if let Some(e) = &r.idle.error {
            println!();
            println!(
                "{} ({}): stopped opening connections: {e}",
                r.sys.name(),
                r.placement
            );
        }
    }
    println!();
    println!(
        "**(b) {} busy clients**, each on its own connection making sequential small calls; \
         {:.1} s measured after all connected and {:.1} s of warm-up.",
        set.busy_clients,
        set.busy_time.as_secs_f64(),
        set.busy_warm.as_secs_f64()
    );
    println!();
    println!("| system | placement | calls/s | ÷ raw TCP | p50 µs | p99 µs | server threads | server peak RSS MiB |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let b = &r.busy;
        let raw = rows
            .iter()
            .find(|x| x.sys == System::RawTcp && x.placement == r.placement)
            .map(|x| x.busy.rate);
        println!(
            "| {} | {} | {}{} | {} | {:.1} | {:.1} | {} | {:.1} |",
            r.sys.name(),
            r.placement,
            fmt_num(b.rate),
            if b.failed > 0 {
                format!(" ({} of {} clients failed to connect)", b.failed, b.clients)
            } else {
                String::new()
            },
            raw.map_or("—".into(), |x| format!("{:.2}×", b.rate / x)),
            b.p50,
            b.p99,
            b.threads,
            b.hwm_kib as f64 / MIB
        );
    }
    println!();
    println!(
        "**(c) memory coming back**: {} clients, each on its own connection, echo 16 MiB at once \
         (one echo each, then they close); {} waves; RSS read 1 s after each wave.",
        set.echo_clients, set.waves
    );
    println!();
    let waves: Vec<String> = (1..=set.waves).map(|w| w.to_string()).collect();
    println!(
        "| system | placement | server RSS MiB idle | peak (VmHWM) | RSS after wave {} | after last − idle MiB | threads idle / after |",
        waves.join(" / ")
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let m = &r.mem;
        let last = m.after_kib.last().copied().unwrap_or(0);
        println!(
            "| {} | {} | {:.1} | {:.1} | {} | {:+.1} | {} / {} |",
            r.sys.name(),
            r.placement,
            m.idle_kib as f64 / MIB,
            m.peak_kib as f64 / MIB,
            m.after_kib
                .iter()
                .map(|k| format!("{:.1}", *k as f64 / MIB))
                .collect::<Vec<_>>()
                .join(" / "),
            (last as f64 - m.idle_kib as f64) / MIB,
            m.threads_idle,
            m.threads_after
        );
    }
    println!();
    println!(
        "Threads and RSS are /proc/PID/status Threads and VmRSS of the server child (one thread is its \
         main thread waiting on stdin); descriptors are entries of /proc/PID/fd. Blocking clients use an \
         OS thread per busy connection; the idle connections are held by the benchmark's main thread."
    );
}

/// Either kind of client, held open.
enum Held {
    Sync(Vec<Box<dyn SyncClient>>),
    /// Clients first: dropped before the runtime that drives them.
    Async {
        clients: Vec<AsyncClient>,
        _rt: tokio::runtime::Runtime,
    },
}

impl Held {
    fn len(&self) -> usize {
        match self {
            Held::Sync(v) => v.len(),
            Held::Async { clients, .. } => clients.len(),
        }
    }
}

/// Waits (bounded) until the server is back to `threads` threads; returns
/// how long it took in ms, or NaN.
fn wait_threads(pid: u32, threads: u64) -> f64 {
    let t = Instant::now();
    while t.elapsed() < PATIENCE {
        if proc_status(pid, "Threads") <= threads {
            return t.elapsed().as_secs_f64() * 1e3;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f64::NAN
}

fn idle(sys: System, n: usize) -> Idle {
    let mut server = ServerProc::spawn(sys);
    let pid = server.pid();
    std::thread::sleep(Duration::from_millis(300));
    let threads0 = proc_status(pid, "Threads");
    let rss0 = proc_status(pid, "VmRSS");
    let sfd0 = os::fd_count(&pid.to_string());
    let cfd0 = os::fd_count("self");
    let mut error = None;
    let t = Instant::now();
    let held = if sys.is_async() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let v = rt.block_on(async {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                if t.elapsed() > PATIENCE {
                    error = Some(format!("not all connected within {} s", PATIENCE.as_secs()));
                    break;
                }
                match AsyncClient::try_connect(sys, &server.line).await {
                    Ok(c) => {
                        c.add(1, 2).await;
                        v.push(c);
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            v
        });
        Held::Async {
            clients: v,
            _rt: rt,
        }
    } else {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            if t.elapsed() > PATIENCE {
                error = Some(format!("not all connected within {} s", PATIENCE.as_secs()));
                break;
            }
            match systems::try_connect_sync(sys, &server.line) {
                Ok(mut c) => {
                    c.add(1, 2);
                    v.push(c);
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        Held::Sync(v)
    };
    let connected = held.len();
    let connect_us = t.elapsed().as_secs_f64() * 1e6 / connected.max(1) as f64;
    std::thread::sleep(Duration::from_millis(500));
    let threads1 = proc_status(pid, "Threads");
    let rss1 = proc_status(pid, "VmRSS");
    let sfd1 = os::fd_count(&pid.to_string());
    let cfd1 = os::fd_count("self");
    drop(held);
    let release_ms = wait_threads(pid, threads0);
    std::thread::sleep(Duration::from_millis(300));
    let threads2 = proc_status(pid, "Threads");
    let rss2 = proc_status(pid, "VmRSS");
    server.stop();
    Idle {
        connected,
        error,
        connect_us,
        threads: [threads0, threads1, threads2],
        rss_kib: [rss0, rss1, rss2],
        server_fds: [sfd0, sfd1],
        client_fds: [cfd0, cfd1],
        release_ms,
    }
}

const WARM: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

fn busy(sys: System, set: &ScaleSettings) -> Busy {
    let n = set.busy_clients;
    let mut server = ServerProc::spawn(sys);
    let pid = server.pid();
    let line = server.line.clone();
    std::thread::sleep(Duration::from_millis(200));
    let phase = Arc::new(AtomicU8::new(WARM));
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    // All connected (or failed), warm-up, then the measured window.
    let conductor = || {
        let t = Instant::now();
        while ready.load(Ordering::Acquire) + failed.load(Ordering::Acquire) < n
            && t.elapsed() < PATIENCE
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(set.busy_warm);
        phase.store(MEASURE, Ordering::Release);
        let t0 = Instant::now();
        std::thread::sleep(set.busy_time / 2);
        let threads = proc_status(pid, "Threads");
        std::thread::sleep(set.busy_time / 2);
        phase.store(STOP, Ordering::Release);
        (t0.elapsed(), threads)
    };
    let (lats, (dt, threads)): (Vec<Vec<u32>>, _) = if sys.is_async() {
        // One task per connection on a multi-threaded runtime.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let handles: Vec<_> = (0..n)
            .map(|k| {
                let line = line.clone();
                let (phase, ready, failed) = (phase.clone(), ready.clone(), failed.clone());
                rt.spawn(async move {
                    let Ok(c) = AsyncClient::try_connect(sys, &line).await else {
                        failed.fetch_add(1, Ordering::Release);
                        return Vec::new();
                    };
                    ready.fetch_add(1, Ordering::Release);
                    let mut lat = Vec::new();
                    let mut i = k as u32;
                    loop {
                        let p = phase.load(Ordering::Acquire);
                        if p == STOP {
                            return lat;
                        }
                        let t = Instant::now();
                        assert_eq!(c.add(i, 3).await, i.wrapping_add(3));
                        if p == MEASURE {
                            lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                        }
                        i = i.wrapping_add(1);
                    }
                })
            })
            .collect();
        let m = conductor();
        let lats = rt.block_on(async {
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.expect("client task"));
            }
            out
        });
        (lats, m)
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|k| {
                    let (phase, ready, failed, line) = (&*phase, &*ready, &*failed, &line);
                    std::thread::Builder::new()
                        .stack_size(256 << 10)
                        .spawn_scoped(s, move || {
                            let Ok(mut c) = systems::try_connect_sync(sys, line) else {
                                failed.fetch_add(1, Ordering::Release);
                                return Vec::new();
                            };
                            ready.fetch_add(1, Ordering::Release);
                            let mut lat = Vec::new();
                            let mut i = k as u32;
                            loop {
                                let p = phase.load(Ordering::Acquire);
                                if p == STOP {
                                    return lat;
                                }
                                let t = Instant::now();
                                assert_eq!(c.add(i, 3), i.wrapping_add(3));
                                if p == MEASURE {
                                    lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                                }
                                i = i.wrapping_add(1);
                            }
                        })
                        .expect("spawn client thread")
                })
                .collect();
            let m = conductor();
            let lats = handles
                .into_iter()
                .map(|h| h.join().expect("client thread"))
                .collect();
            (lats, m)
        })
    };
    let hwm_kib = proc_status(pid, "VmHWM");
    server.stop();
    let mut all: Vec<u32> = lats.into_iter().flatten().collect();
    all.sort_unstable();
    let pct = |p: f64| {
        if all.is_empty() {
            f64::NAN
        } else {
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1e3
        }
    };
    Busy {
        clients: n,
        failed: failed.load(Ordering::Relaxed),
        rate: all.len() as f64 / dt.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        threads,
        hwm_kib,
    }
}

fn echo_waves(sys: System, clients: usize, waves: usize) -> Mem {
    let mut server = ServerProc::spawn(sys);
    let pid = server.pid();
    std::thread::sleep(Duration::from_millis(300));
    let idle_kib = proc_status(pid, "VmRSS");
    let threads_idle = proc_status(pid, "Threads");
    let data = Bytes::from(vec![0x5a; ECHO_LEN]);
    let mut after_kib = Vec::new();
    for _ in 0..waves {
        if sys.is_async() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let conns: Vec<AsyncClient> = futures::future::join_all(
                    (0..clients).map(|_| AsyncClient::connect(sys, &server.line)),
                )
                .await;
                let echoes = conns.iter().map(|c| c.echo(&data));
                for len in futures::future::join_all(echoes).await {
                    assert_eq!(len, data.len());
                }
            });
        } else {
            let start = Barrier::new(clients);
            std::thread::scope(|s| {
                for _ in 0..clients {
                    let (start, data, line) = (&start, &data, &server.line);
                    s.spawn(move || {
                        let mut c = systems::connect_sync(sys, line);
                        start.wait();
                        assert_eq!(c.echo(data), data.len());
                    });
                }
            });
        }
        wait_threads(pid, threads_idle);
        std::thread::sleep(Duration::from_secs(1));
        after_kib.push(proc_status(pid, "VmRSS"));
    }
    let peak_kib = proc_status(pid, "VmHWM");
    let threads_after = proc_status(pid, "Threads");
    server.stop();
    Mem {
        idle_kib,
        peak_kib,
        after_kib,
        threads_idle,
        threads_after,
    }
}
