//! Serves the greet commands over raw TCP, or with `--ws` over WebSocket
//! too (same port) at `ws://ADDR/greet`.
//!
//! ```text
//! cargo run --example greet_server -- 127.0.0.1:7878
//! cargo run --example greet_server --features ws -- --ws 127.0.0.1:7878
//! ```
//! Prints `listening on ADDR` (with `--ws`: `listening on ws://ADDR/greet`
//! and then `token: T`, the generated token clients must present) once it
//! accepts connections.

#[path = "common/greet.rs"]
mod greet;

use std::io::Write;

fn main() -> Result<(), framerpc::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ws = args.iter().any(|a| a == "--ws");
    let addr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let mut out = std::io::stdout().lock();
    if ws {
        #[cfg(feature = "ws")]
        {
            let server = framerpc::Server::builder()
                .ws(framerpc::WsConfig::new().mount("/greet", greet::router()))
                .bind(addr.as_str(), greet::router())?;
            writeln!(out, "listening on {}", server.ws_url("/greet"))?;
            writeln!(out, "token: {}", server.token().unwrap_or_default())?;
            out.flush()?;
            drop(out);
            loop {
                std::thread::park();
            }
        }
        #[cfg(not(feature = "ws"))]
        {
            eprintln!("--ws needs the `ws` feature: cargo run --example greet_server --features ws -- --ws");
            std::process::exit(2);
        }
    }
    let server = framerpc::Server::bind(addr.as_str(), greet::router())?;
    writeln!(out, "listening on {}", server.local_addr())?;
    out.flush()?;
    drop(out);
    loop {
        std::thread::park();
    }
}
