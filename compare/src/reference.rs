//! `compare ref`: the reference table of the connection-core issue, both
//! placements in one run. framerpc over TCP against the plain-socket limit,
//! framerpc over WebSocket against plain tungstenite:
//!
//! - small call `add(u32, u32)`, one connection: p50 and p99 µs;
//! - 8 clients, each on its own connection: calls/s;
//! - 8 threads through ONE shared framerpc client: calls/s, against the
//!   reference's 8 connections (a raw socket cannot be shared);
//! - 16 MiB echo: MiB/s, both directions counted;
//! - the server's peak RSS during the 16 MiB echo: VmHWM of a fresh server
//!   child that did nothing else.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::systems::{self, System};
use crate::{
    fmt_num, median, os, print_header, proc_status, workload_a, workload_b, workload_c, Placement,
    RunStart, ServerProc, Settings, ECHO_LEN,
};

/// Column order: each reference, then framerpc over the same transport.
const SYSTEMS: [System; 4] = [
    System::RawTcp,
    System::FramerpcTcp,
    System::Tungstenite,
    System::FramerpcWs,
];

#[derive(Default, Clone)]
struct Figures {
    a_p50: Vec<f64>,
    a_p99: Vec<f64>,
    b8: Vec<f64>,
    /// 8 threads, one shared client (framerpc only).
    shared8: Vec<f64>,
    c: Vec<f64>,
    /// Server VmHWM, KiB: idle, then after the echo workload alone.
    rss_idle: u64,
    rss_peak: u64,
}

pub fn run(quick: bool, placements: &[Placement], args: &[String]) {
    let set = Settings::reference(quick);
    let started = RunStart::now();
    let mut all: Vec<(Placement, Vec<Figures>)> = Vec::new();
    for p in placements {
        os::set_affinity(&p.cpus);
        eprintln!("== placement {} (CPUs {})", p.name, os::cpu_list(&p.cpus));
        all.push((p.clone(), measure(&set)));
    }
    if let Some(p) = placements.last() {
        // Back to what the run started with.
        os::set_affinity(&p.cpus);
    }
    print_header(
        "framerpc reference: against plain TCP and plain tungstenite, 127.0.0.1",
        args,
        &started,
    );
    println!(
        "- {} rounds, interleaved (every system in each round, order rotating); medians over rounds. \
         Small call: {:.1} s of sequential calls per round; 8 clients / 8 threads: {:.1} s per round after all \
         connected and {:.1} s of warm-up; echo: {} echoes of 16 MiB per round after one unmeasured. \
         Peak RSS: VmHWM of a fresh server child that served only one connection echoing 16 MiB {} times.",
        set.rounds,
        set.a_time.as_secs_f64(),
        set.b_time.as_secs_f64(),
        set.warm.as_secs_f64(),
        set.c_calls,
        set.c_calls + 1,
    );
    println!();
    println!(
        "| workload | placement | raw TCP | framerpc TCP | framerpc ÷ raw | tungstenite | framerpc WS | framerpc WS ÷ tungstenite |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    type Pick = fn(&Figures) -> f64;
    let rows: [(&str, Pick); 6] = [
        ("small call p50, one connection (µs)", |f| median(&f.a_p50)),
        ("small call p99, one connection (µs)", |f| median(&f.a_p99)),
        ("8 clients, own connections (calls/s)", |f| median(&f.b8)),
        (
            "8 threads, ONE shared client (calls/s; reference: its 8 connections)",
            |f| {
                if f.shared8.is_empty() {
                    median(&f.b8)
                } else {
                    median(&f.shared8)
                }
            },
        ),
        ("16 MiB echo (MiB/s, both ways)", |f| median(&f.c)),
        (
            "server peak RSS during the 16 MiB echo (MiB, fresh server)",
            |f| f.rss_peak as f64 / 1024.0,
        ),
    ];
    for (label, pick) in rows {
        for (p, figs) in &all {
            let v: Vec<f64> = figs.iter().map(pick).collect();
            let cell = |x: f64| {
                if label.contains("µs") {
                    format!("{x:.1}")
                } else {
                    fmt_num(x)
                }
            };
            println!(
                "| {label} | {} | {} | {} | {:.2}× | {} | {} | {:.2}× |",
                p.name,
                cell(v[0]),
                cell(v[1]),
                v[1] / v[0],
                cell(v[2]),
                cell(v[3]),
                v[3] / v[2],
            );
        }
    }
    println!();
    println!(
        "Ratios are framerpc's figure divided by its reference's: above 1 is worse for µs and RSS, \
         below 1 is worse for calls/s and MiB/s. Idle server VmHWM before the echo, MiB: {}.",
        all.iter()
            .map(|(p, f)| format!(
                "{} {}",
                p.name,
                f.iter()
                    .zip(SYSTEMS)
                    .map(|(f, s)| format!("{} {:.1}", s.name(), f.rss_idle as f64 / 1024.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "Each server runs in its own child process of the same binary (`compare serve SYSTEM`), on the \
         placement's CPUs like the clients. Clients are blocking, one OS thread per connection; the \
         shared-client row runs 8 threads calling through clones of one `framerpc::Client`."
    );
}

fn measure(set: &Settings) -> Vec<Figures> {
    let mut servers: Vec<ServerProc> = SYSTEMS.iter().map(|&s| ServerProc::spawn(s)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut figs = vec![Figures::default(); SYSTEMS.len()];
    let data = Bytes::from(vec![0x5a; ECHO_LEN]);
    for round in 0..set.rounds {
        let mut order: Vec<usize> = (0..servers.len()).collect();
        order.rotate_left(round % servers.len());
        for &i in &order {
            let s = &servers[i];
            let (p50, p99, _) = workload_a(s.sys, &s.line, set);
            eprintln!(
                "round {} small  {:<13} p50 {p50:>8.1} us  p99 {p99:>8.1} us",
                round + 1,
                s.sys.name()
            );
            figs[i].a_p50.push(p50);
            figs[i].a_p99.push(p99);
        }
        for &i in &order {
            let s = &mut servers[i];
            let (rate, _) = workload_b(s.sys, &s.line, 8, s.pid(), set);
            eprintln!(
                "round {} 8 own  {:<13} {rate:>9.0} calls/s",
                round + 1,
                s.sys.name()
            );
            figs[i].b8.push(rate);
            if matches!(s.sys, System::FramerpcTcp | System::FramerpcWs) {
                let rate = shared_client(s.sys, &s.line, 8, set);
                eprintln!(
                    "round {} 8 shared {:<11} {rate:>9.0} calls/s",
                    round + 1,
                    s.sys.name()
                );
                figs[i].shared8.push(rate);
            }
        }
        for &i in &order {
            let s = &servers[i];
            let mib_s = workload_c(s.sys, &s.line, &data, set);
            eprintln!(
                "round {} echo   {:<13} {mib_s:>8.0} MiB/s",
                round + 1,
                s.sys.name()
            );
            figs[i].c.push(mib_s);
        }
    }
    for s in &mut servers {
        s.stop();
    }
    // Peak RSS of the echo alone: a fresh server per system.
    for (i, &sys) in SYSTEMS.iter().enumerate() {
        let mut server = ServerProc::spawn(sys);
        std::thread::sleep(Duration::from_millis(200));
        figs[i].rss_idle = proc_status(server.pid(), "VmHWM");
        workload_c(sys, &server.line, &data, set);
        figs[i].rss_peak = proc_status(server.pid(), "VmHWM");
        eprintln!(
            "echo RSS {:<13} idle {:>6.1} MiB  peak {:>6.1} MiB",
            sys.name(),
            figs[i].rss_idle as f64 / 1024.0,
            figs[i].rss_peak as f64 / 1024.0
        );
        server.stop();
    }
    figs
}

/// `n` threads calling through clones of one framerpc client (one
/// connection) for `set.b_time` after a warm-up; total calls/s.
pub fn shared_client(sys: System, line: &str, n: usize, set: &Settings) -> f64 {
    let client = systems::connect_framerpc(sys, line).expect("framerpc connect");
    let calls = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let ready = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for k in 0..n {
            let c = client.clone();
            let (calls, stop, ready) = (&calls, &stop, &ready);
            s.spawn(move || {
                ready.fetch_add(1, Ordering::Release);
                let mut i = k as u32;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(systems::framerpc_add(&c, i, 3), i.wrapping_add(3));
                    calls.fetch_add(1, Ordering::Relaxed);
                    i = i.wrapping_add(1);
                }
            });
        }
        while ready.load(Ordering::Acquire) < n {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(set.warm);
        let c0 = calls.load(Ordering::Relaxed);
        let t0 = Instant::now();
        std::thread::sleep(set.b_time);
        let c1 = calls.load(Ordering::Relaxed);
        let dt = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        (c1 - c0) as f64 / dt.as_secs_f64()
    })
}
