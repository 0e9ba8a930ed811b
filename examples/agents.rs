//! An orchestrator and two worker agents over framerpc, in one process:
//! the orchestrator (a server) calls each worker (a client with handlers)
//! over the worker's own connection, and the workers report progress back
//! by calling the orchestrator while they work.
//!
//! ```text
//! cargo run --example agents
//! ```

use std::time::Duration;

use crossbeam_channel::unbounded;
use framerpc::codec::{STR, U32, UNIT};
use framerpc::{Client, Command, Peer, Router, Server};

/// Worker -> orchestrator: "I am NAME".
const HELLO: Command<String, ()> = Command::new(1, "hello", &STR, &UNIT);
/// Worker -> orchestrator: progress of a task, in percent.
const PROGRESS: Command<(String, u32), ()> = Command::new(2, "progress", &(STR, U32), &UNIT);
/// Orchestrator -> worker: sum the numbers 1..=n, slowly.
const WORK: Command<u32, u32> = Command::new(10, "work", &U32, &U32);

fn worker(
    name: &'static str,
    orchestrator: std::net::SocketAddr,
) -> Result<Client, framerpc::Error> {
    let router = Router::new().handle_with(&WORK, move |ctx, n| {
        let boss = ctx.peer(); // the orchestrator, on this same connection
        let mut sum = 0u32;
        for i in 1..=n {
            sum += i;
            if i % (n / 4).max(1) == 0 {
                boss.call(&PROGRESS, &(name.to_string(), i * 100 / n))?;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(sum)
    });
    let client = Client::builder().handlers(router).connect(orchestrator)?;
    client.call(&HELLO, &name.to_string())?;
    Ok(client)
}

fn main() -> Result<(), framerpc::Error> {
    let (arrived_tx, arrived) = unbounded::<(String, Peer)>();
    let orchestrator = Router::new()
        .handle_with(&HELLO, move |ctx, name| {
            println!(
                "orchestrator: worker {name:?} joined from {:?}",
                ctx.peer_addr()
            );
            arrived_tx
                .send((name, ctx.peer()))
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .handle(&PROGRESS, |(name, pct)| {
            println!("orchestrator: {name} is {pct}% done");
            Ok(())
        });
    let server = Server::bind("127.0.0.1:0", orchestrator)?;
    println!("listening on {}", server.local_addr());

    let _a = worker("alice", server.local_addr())?;
    let _b = worker("bob", server.local_addr())?;

    let workers: Vec<(String, Peer)> = (0..2).map(|_| arrived.recv().expect("a worker")).collect();
    let jobs: Vec<_> = workers
        .into_iter()
        .zip([40, 60])
        .map(|((name, peer), n)| {
            std::thread::spawn(move || {
                let sum = peer.call(&WORK, &n)?;
                println!("orchestrator: {name} says 1 + ... + {n} = {sum}");
                Ok::<_, framerpc::Error>(sum)
            })
        })
        .collect();
    for j in jobs {
        j.join().expect("job thread")?;
    }
    server.shutdown();
    Ok(())
}
