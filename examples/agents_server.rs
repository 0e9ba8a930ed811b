//! An orchestrator serving workers that connect from anywhere (another
//! process, another language): both sides call each other on one
//! connection, and the server broadcasts news to every connected client.
//!
//! ```text
//! cargo run --example agents_server -- 127.0.0.1:7880
//! ```
//! Prints `listening on ADDR` once it accepts connections (port 0 picks a
//! free port). A worker calls `hello(name, n)`; the orchestrator then calls
//! the worker's `work(n)` over the worker's own connection (the worker may
//! report `progress` meanwhile), prints the answer and broadcasts
//! `news("NAME: 1 + ... + N = SUM")` to every client. `shout(text)`
//! broadcasts `news(text)` and answers how many clients it reached.

use std::io::Write;

use crossbeam_channel::unbounded;
use framerpc::codec::{STR, U32, UNIT};
use framerpc::{Command, Peer, Router, Server};

/// Worker -> orchestrator: "I am NAME, give me a job of size N".
const HELLO: Command<(String, u32), ()> = Command::new(1, "hello", &(STR, U32), &UNIT);
/// Worker -> orchestrator: progress of a job, in percent.
const PROGRESS: Command<(String, u32), ()> = Command::new(2, "progress", &(STR, U32), &UNIT);
/// Any client -> orchestrator: broadcast `news(text)`; answers how many clients got it.
const SHOUT: Command<String, u32> = Command::new(3, "shout", &STR, &U32);
/// Orchestrator -> worker: sum the numbers 1..=n.
const WORK: Command<u32, u32> = Command::new(10, "work", &U32, &U32);
/// Orchestrator -> every client, one way (NOTIFY).
const NEWS: Command<String, ()> = Command::new(11, "news", &STR, &UNIT);

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> Result<(), framerpc::Error> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7880".into());
    let (jobs_tx, jobs) = unbounded::<(String, u32, Peer)>();
    let (shouts_tx, shouts) = unbounded::<(String, crossbeam_channel::Sender<u32>)>();
    let router = Router::new()
        .handle_with(&HELLO, move |ctx, (name, n)| {
            say(&format!("hello from {name} ({:?})", ctx.peer_addr()));
            jobs_tx
                .send((name, n, ctx.peer()))
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .handle(&PROGRESS, |(name, pct)| {
            say(&format!("progress {name} {pct}%"));
            Ok(())
        })
        .handle(&SHOUT, move |text| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            shouts_tx.send((text, tx)).map_err(|e| e.to_string())?;
            rx.recv().map_err(|e| e.to_string().into())
        });
    let server = Server::bind(addr.as_str(), router)?;
    say(&format!("listening on {}", server.local_addr()));

    // Broadcasts need the server's handle, which exists once it is bound.
    let handle = server.handle();
    std::thread::spawn(move || {
        for (text, answer) in shouts {
            let reached = handle.broadcast(&NEWS, &text);
            let _ = answer.send(u32::try_from(reached).unwrap_or(u32::MAX));
        }
    });
    let handle = server.handle();
    for (name, n, peer) in jobs {
        let handle = handle.clone();
        std::thread::spawn(move || match peer.call(&WORK, &n) {
            Ok(sum) => {
                let news = format!("{name}: 1 + ... + {n} = {sum}");
                say(&format!("result {news}"));
                handle.broadcast(&NEWS, &news);
            }
            Err(e) => say(&format!("work for {name} failed: {e}")),
        });
    }
    Ok(())
}
