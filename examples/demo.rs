//! The main demo: starts a server on 127.0.0.1, calls it from several
//! threads, shows an application error and a handler panic reported as
//! errors, and measures the round-trip time of a small call.
//!
//! ```text
//! cargo run --release --example demo
//! ```

#[path = "common/greet.rs"]
mod greet;

use std::time::Instant;

use framerpc::codec::U32;
use framerpc::{Client, Command, HandlerError, Server};
use greet::{ADD_2_WORDS, HELLO};

const DIVIDE: Command<(u32, u32), u32> = Command::new(10, "divide", &(U32, U32), &U32);
const EXPLODE: Command<u32, u32> = Command::new(11, "explode", &U32, &U32);

fn main() -> Result<(), framerpc::Error> {
    let router = greet::router()
        .handle(&DIVIDE, |(a, b)| {
            a.checked_div(b)
                .ok_or_else(|| HandlerError::with_code(1001, format!("cannot divide {a} by zero")))
        })
        .handle(&EXPLODE, |n| -> Result<u32, HandlerError> {
            panic!("explode({n}) always panics")
        });
    let server = Server::bind("127.0.0.1:0", router)?;
    println!("listening on {}", server.local_addr());

    let client = Client::connect_checked(
        server.local_addr(),
        &[&HELLO, &ADD_2_WORDS, &DIVIDE, &EXPLODE],
    )?;
    println!("{}", client.call(&HELLO, &"framerpc".to_string())?);

    // Several threads share one client; their calls are pipelined.
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let c = client.clone();
            std::thread::spawn(move || -> Result<u32, framerpc::Error> {
                let mut sum = 0u32;
                for i in 0..1000 {
                    sum = sum.wrapping_add(c.call(&ADD_2_WORDS, &(t, i))?);
                }
                Ok(sum)
            })
        })
        .collect();
    for (t, h) in threads.into_iter().enumerate() {
        println!("thread {t}: 1000 calls, sum {}", h.join().expect("thread")?);
    }

    match client.call(&DIVIDE, &(1, 0)) {
        Err(e) => println!("application error, as expected: {e}"),
        Ok(v) => println!("unexpected: {v}"),
    }
    // The default panic message goes to stderr; the caller gets an error.
    std::panic::set_hook(Box::new(|_| {}));
    match client.call(&EXPLODE, &7) {
        Err(e) => println!("handler panic, as expected: {e}"),
        Ok(v) => println!("unexpected: {v}"),
    }
    println!(
        "the connection still works: 40 + 2 = {}",
        client.call(&ADD_2_WORDS, &(40, 2))?
    );

    let n = 20_000;
    let start = Instant::now();
    for i in 0..n {
        client.call(&ADD_2_WORDS, &(i, 1))?;
    }
    let per = start.elapsed() / n;
    println!(
        "round trip of a small call: {:.1} us (mean of {n})",
        per.as_secs_f64() * 1e6
    );
    println!("status: {:?}", client.status()?);
    drop(client);
    let clean = server.shutdown();
    println!("server shut down (clean: {clean})");
    Ok(())
}
