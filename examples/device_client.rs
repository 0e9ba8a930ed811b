//! Drives the simulated device. Start two at once to see the queue: the
//! second one prints its place while it waits, then gets the device when
//! the first one leaves.
//!
//! ```text
//! cargo run --example device_client -- 127.0.0.1:7879 [HOLD_SECS]
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
    let hold: f64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(2.0);
    let client = Client::builder()
        .timeout(Duration::from_secs(120))
        .connect(addr.as_str())?;

    // `status` is answered before admission: show where we stand.
    let s = client.status()?;
    println!(
        "status on arrival: {} of {} users active, {} waiting",
        s.active, s.max, s.waiting
    );
    let admitted = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (c, admitted) = (client.clone(), admitted.clone());
        std::thread::spawn(move || {
            // Polls while the first call waits for the device.
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
    let pos = client.call(&POSITION, &())?;
    admitted.store(true, Ordering::Relaxed);
    println!(
        "admitted after {:.1}s; motor at {pos} mm",
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
    std::thread::sleep(Duration::from_secs_f64(hold));
    client.call(&STOP, &())?;
    println!("done; releasing the device");
    Ok(())
}
