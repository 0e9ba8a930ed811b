//! Drives the simulated device. Start two at once to see the queue: the
//! second one prints its place while it waits, then gets the device when
//! the first one releases it. `watch` reads the position every 100 ms as
//! an observer, without ever queueing, while another client holds the
//! stage.
//!
//! ```text
//! cargo run --example device_client -- 127.0.0.1:7879 [HOLD_SECS] [--name NAME]
//! cargo run --example device_client -- 127.0.0.1:7879 watch [SECS]
//! ```

#[path = "common/device.rs"]
mod device;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use device::{CAPTURE, MOVE_TO, POSITION, STOP};
use framerpc::Client;

fn main() -> Result<(), framerpc::Error> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7879".into());
    let mut rest: Vec<String> = args.collect();
    let mut builder = Client::builder().timeout(Duration::from_secs(120));
    if let Some(i) = rest.iter().position(|a| a == "--name") {
        if let Some(name) = rest.get(i + 1).cloned() {
            builder = builder.name(name);
        }
        rest.drain(i..(i + 2).min(rest.len()));
    }
    let client = builder.connect(addr.as_str())?;
    if rest.first().map(String::as_str) == Some("watch") {
        let secs: f64 = rest.get(1).and_then(|v| v.parse().ok()).unwrap_or(5.0);
        return watch(&client, Duration::from_secs_f64(secs));
    }
    let hold: f64 = rest.first().and_then(|v| v.parse().ok()).unwrap_or(2.0);
    operate(&client, hold)
}

/// An observer: `position` is a shared command, so this never waits for
/// the device and never takes it from anyone.
fn watch(client: &Client, for_how_long: Duration) -> Result<(), framerpc::Error> {
    let shared = client.shared_commands()?;
    println!("shared commands: {shared:?}");
    let start = Instant::now();
    while start.elapsed() < for_how_long {
        let pos = client.call(&POSITION, &())?;
        let s = client.status()?;
        println!(
            "{:>5.1}s  position {pos:>8.2} mm   ({} of {} users active, {} waiting)",
            start.elapsed().as_secs_f64(),
            s.active,
            s.max,
            s.waiting
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// An operator: holds the device for a while, then gives it back.
fn operate(client: &Client, hold_secs: f64) -> Result<(), framerpc::Error> {
    let s = client.status()?;
    println!(
        "status on arrival: {} of {} users active, {} waiting",
        s.active, s.max, s.waiting
    );
    let admitted = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (c, admitted) = (client.clone(), admitted.clone());
        std::thread::spawn(move || {
            // Polls while `acquire` waits for the device.
            for _ in 0..600 {
                std::thread::sleep(Duration::from_millis(500));
                if admitted.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(s) = c.status() {
                    println!(
                        "  waiting: {} of {} users active, {} in the queue",
                        s.active, s.max, s.waiting
                    );
                }
            }
        })
    };
    let start = Instant::now();
    let hold = client.acquire(Duration::from_secs(120))?;
    admitted.store(true, Ordering::Relaxed);
    let pos = client.call(&POSITION, &())?;
    println!(
        "holding the device after {:.1}s; motor at {pos} mm",
        start.elapsed().as_secs_f64()
    );
    let _ = watcher.join();

    let target = pos + 10.0;
    println!("moved to {} mm", client.call(&MOVE_TO, &(target))?);
    let img = client.call(&CAPTURE, &(64, 48))?;
    println!(
        "captured a 64x48 frame: {} bytes, first pixels {:?}",
        img.len(),
        &img[..4]
    );
    if let Err(e) = client.call(&MOVE_TO, &5000.0) {
        println!("refused as expected: {e}");
    }
    std::thread::sleep(Duration::from_secs_f64(hold_secs));
    client.call(&STOP, &())?;
    hold.release()?;
    println!("done; the device is released (the connection stays open)");
    Ok(())
}
