//! A simulated device (a motor and a camera) behind an exclusive-access
//! server: one user at a time, the others wait in a FIFO queue, and the
//! motor is stopped every time a user's hold ends, whatever the reason.
//! Reading the position and the frame count are shared commands: anyone
//! may read them while someone else holds the device.
//!
//! ```text
//! cargo run --example device_server -- 127.0.0.1:7879 [--max-users N] [--refuse] [--wait SECS] [--hold-idle SECS]
//!     [--move-ms MS] [--heartbeat MS] [--trust-proxy IP]... [--ws]
//! ```
//! Prints `listening on ADDR` once it accepts connections (with `--ws`,
//! feature `ws`: `listening on ws://ADDR/device`, then `token: T`, the
//! generated token WebSocket clients must present; raw TCP is served on
//! the same port without a token). `--move-ms`: how long a move takes
//! (default 20 ms); `--heartbeat MS`: ping after MS of silence, drop
//! after 4x that; `--trust-proxy IP`: a reverse proxy whose word on the
//! client address is taken (see docs/DEPLOY.md).

#[path = "common/device.rs"]
mod device;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use device::{CAPTURE, FRAMES, MOVE_TO, POSITION, STOP};
use framerpc::{HandlerError, Router, Server, WhenFull};
use parking_lot::Mutex;

#[derive(Default)]
struct Motor {
    position: f64,
    moving: bool,
}

fn main() -> Result<(), framerpc::Error> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7879".into());
    let mut hold_idle = None;
    let mut move_time = Duration::from_millis(20);
    let mut heartbeat = None;
    let mut proxies: Vec<std::net::IpAddr> = Vec::new();
    let mut ws = false;
    let (mut max_users, mut policy) = (
        1,
        WhenFull::Queue {
            max_wait: Duration::from_secs(60),
        },
    );
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max-users" => max_users = args.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            "--refuse" => policy = WhenFull::Refuse,
            "--wait" => {
                let secs = args.next().and_then(|v| v.parse().ok()).unwrap_or(60.0);
                policy = WhenFull::Queue {
                    max_wait: Duration::from_secs_f64(secs),
                };
            }
            "--hold-idle" => {
                hold_idle = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .map(Duration::from_secs_f64);
            }
            "--move-ms" => {
                move_time =
                    Duration::from_millis(args.next().and_then(|v| v.parse().ok()).unwrap_or(20));
            }
            "--heartbeat" => {
                heartbeat = args
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_millis);
            }
            "--trust-proxy" => {
                proxies.extend(args.next().and_then(|v| v.parse::<std::net::IpAddr>().ok()))
            }
            "--ws" => ws = true,
            other => eprintln!("ignoring unknown argument {other:?}"),
        }
    }

    let motor = Arc::new(Mutex::new(Motor::default()));
    let frames = Arc::new(AtomicU64::new(0));
    // One router for raw TCP, one for the WebSocket path (the same device).
    let make_router = || device_router(&motor, &frames, move_time);

    let mut builder = Server::builder()
        .max_users(max_users)
        .when_full(policy)
        .on_release({
            let motor = Arc::clone(&motor);
            move |r| {
                motor.lock().moving = false;
                let addr = r.peer.map_or_else(|| "?".into(), |p| p.to_string());
                let who = match &r.name {
                    Some(name) => format!("{name} ({addr})"),
                    None => addr,
                };
                println!(
                    "released by {who} after {:.1}s ({:?}): motor stopped",
                    r.held_for.as_secs_f64(),
                    r.reason
                );
            }
        });
    if let Some(idle) = hold_idle {
        builder = builder.hold_idle(idle);
    }
    if let Some(hb) = heartbeat {
        builder = builder.limits(framerpc::Limits::default().heartbeat(Some((hb, hb * 4))));
    }
    builder = builder.trusted_proxies(proxies);
    if ws {
        #[cfg(feature = "ws")]
        {
            builder = builder.ws(framerpc::WsConfig::new().mount("/device", make_router()));
        }
        #[cfg(not(feature = "ws"))]
        {
            eprintln!("--ws needs the `ws` feature: cargo run --example device_server --features ws -- ADDR --ws");
            std::process::exit(2);
        }
    }
    let server = builder.bind(addr.as_str(), make_router())?;
    let mut out = std::io::stdout().lock();
    #[cfg(feature = "ws")]
    if ws {
        writeln!(out, "listening on {}", server.ws_url("/device"))?;
        writeln!(out, "token: {}", server.token().unwrap_or_default())?;
    }
    if !ws {
        writeln!(out, "listening on {}", server.local_addr())?;
    }
    out.flush()?;
    drop(out);
    loop {
        std::thread::park();
    }
}

fn device_router(
    motor: &Arc<Mutex<Motor>>,
    frames: &Arc<AtomicU64>,
    move_time: Duration,
) -> Router {
    let (m1, m2, m3, m4) = (motor.clone(), motor.clone(), motor.clone(), motor.clone());
    let f1 = frames.clone();
    let frames = frames.clone();
    Router::new()
        .handle(&MOVE_TO, move |target| {
            if !(-1000.0..=1000.0).contains(&target) {
                return Err(HandlerError::with_code(
                    1001,
                    format!("{target} mm is outside the travel of -1000..1000 mm"),
                ));
            }
            m1.lock().moving = true;
            // The motor takes a moment to get there.
            std::thread::sleep(move_time);
            let mut m = m1.lock();
            m.position = target;
            m.moving = false;
            Ok(m.position)
        })
        .handle_shared(&POSITION, move |()| Ok(m2.lock().position))
        .handle(&CAPTURE, move |(w, h)| {
            let n = f1.fetch_add(1, Ordering::Relaxed);
            let pos = m3.lock().position;
            let img: Vec<u8> = (0..usize::from(w) * usize::from(h))
                .map(|i| (i as u64 + n + pos as u64) as u8)
                .collect();
            Ok(bytes::Bytes::from(img))
        })
        .handle(&STOP, move |()| {
            m4.lock().moving = false;
            Ok(())
        })
        .handle_shared(&FRAMES, move |()| Ok(frames.load(Ordering::Relaxed)))
}
