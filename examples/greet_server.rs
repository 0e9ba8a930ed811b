//! Serves the greet commands over raw TCP, or with `--ws` over WebSocket
//! too (same port) at `ws://ADDR/greet`; with `--tls CERT KEY` (feature
//! `tls`) the port speaks TLS: `tls://ADDR` and, with `--ws`,
//! `wss://ADDR/greet`.
//!
//! ```text
//! cargo run --example greet_server -- 127.0.0.1:7878
//! cargo run --example greet_server --features ws -- --ws 127.0.0.1:7878
//! cargo run --example greet_server --features tls,ws -- --ws --tls server.pem server.key 127.0.0.1:7878
//! ```
//! Prints `listening on ADDR` (with `--ws`: `listening on ws://ADDR/greet`,
//! or `wss://` with `--tls`, and then `token: T`, the generated token
//! clients must present; with `--tls` alone: `listening on tls://ADDR`)
//! once it accepts connections. `--client-ca PEM` (with `--tls`): clients
//! must present a certificate from this CA. `--trust-proxy IP` (repeatable): a reverse
//! proxy whose word on the client address is taken (see docs/DEPLOY.md).

#[path = "common/greet.rs"]
mod greet;

use std::io::Write;

fn main() -> Result<(), framerpc::Error> {
    let mut args = std::env::args().skip(1);
    let (mut ws, mut tls, mut addr, mut client_ca) = (false, None, None, None::<String>);
    let mut proxies: Vec<std::net::IpAddr> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ws" => ws = true,
            "--tls" => match (args.next(), args.next()) {
                (Some(cert), Some(key)) => tls = Some((cert, key)),
                _ => {
                    eprintln!("--tls needs a certificate chain and a key (PEM files)");
                    std::process::exit(2);
                }
            },
            "--client-ca" => client_ca = args.next(),
            "--trust-proxy" => {
                proxies.extend(args.next().and_then(|v| v.parse::<std::net::IpAddr>().ok()))
            }
            other if other.starts_with("--") => eprintln!("ignoring unknown argument {other:?}"),
            other => addr = Some(other.to_owned()),
        }
    }
    let addr = addr.unwrap_or_else(|| "127.0.0.1:7878".into());
    #[allow(unused_mut)]
    let mut builder = framerpc::Server::builder().trusted_proxies(proxies);
    if let Some((_cert, _key)) = &tls {
        #[cfg(feature = "tls")]
        {
            let mut cfg = framerpc::TlsConfig::from_pem_files(_cert, _key)?;
            if let Some(ca) = &client_ca {
                let pem = std::fs::read(ca)
                    .map_err(|e| framerpc::Error::Config(format!("reading {ca}: {e}").into()))?;
                cfg = cfg.client_auth(&pem)?;
            }
            builder = builder.tls(cfg);
        }
        #[cfg(not(feature = "tls"))]
        {
            eprintln!("--tls needs the `tls` feature: cargo run --example greet_server --features tls -- --tls CERT KEY");
            std::process::exit(2);
        }
    }
    let mut out = std::io::stdout().lock();
    if ws {
        #[cfg(feature = "ws")]
        {
            let server = builder
                .ws(framerpc::WsConfig::new().mount("/greet", greet::router()))
                .bind(addr.as_str(), greet::router())?;
            let url = server.ws_url("/greet");
            let url = match &tls {
                Some(_) => url.replacen("ws://", "wss://", 1),
                None => url,
            };
            writeln!(out, "listening on {url}")?;
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
    let server = builder.bind(addr.as_str(), greet::router())?;
    match &tls {
        Some(_) => writeln!(out, "listening on tls://{}", server.local_addr())?,
        None => writeln!(out, "listening on {}", server.local_addr())?,
    }
    out.flush()?;
    drop(out);
    loop {
        std::thread::park();
    }
}
