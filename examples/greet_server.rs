//! Serves the greet commands.
//!
//! ```text
//! cargo run --example greet_server -- 127.0.0.1:7878
//! ```
//! Prints `listening on ADDR` once it accepts connections.

#[path = "common/greet.rs"]
mod greet;

use std::io::Write;

fn main() -> Result<(), framerpc::Error> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7878".into());
    let server = framerpc::Server::bind(addr.as_str(), greet::router())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", server.local_addr())?;
    out.flush()?;
    drop(out);
    loop {
        std::thread::park();
    }
}
