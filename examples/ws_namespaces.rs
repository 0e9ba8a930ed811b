//! Two namespaces on one WebSocket server, `server_a` and `server_b`, with
//! one function registered on both, and a client that calls each.
//!
//! ```text
//! cargo run --example ws_namespaces --features ws
//! ```

use std::sync::Arc;

use framerpc::codec::{STR, U32};
use framerpc::{Client, Command, Router, Server, WsConfig};

/// Registered on both namespaces.
const WHOAMI: Command<(), String> = Command::new(1, "whoami", &framerpc::codec::UNIT, &STR);
/// Only on `server_a`.
const DOUBLE: Command<u32, u32> = Command::new(2, "double", &U32, &U32);
/// Only on `server_b`.
const SQUARE: Command<u32, u32> = Command::new(3, "square", &U32, &U32);

fn main() -> Result<(), framerpc::Error> {
    let a = Router::new()
        .handle(&WHOAMI, |()| Ok("server_a".to_string()))
        .handle(&DOUBLE, |x| Ok(x.wrapping_mul(2)));
    let b = Router::new()
        .handle(&WHOAMI, |()| Ok("server_b".to_string()))
        .handle(&SQUARE, |x| Ok(x.wrapping_mul(x)));
    // One router may also be mounted on several paths.
    let a = Arc::new(a);
    let server = Server::builder()
        .ws(WsConfig::new()
            .mount("/server_a", Arc::clone(&a))
            .mount("/a", a)
            .mount("/server_b", b))
        .bind("127.0.0.1:0", Router::new())?;
    let token = server.token().unwrap_or_default().to_owned();
    println!(
        "listening on {} and {}",
        server.ws_url("/server_a"),
        server.ws_url("/server_b")
    );
    println!("token: {token}");

    let ca = Client::connect_ws_checked(
        &server.ws_url("/server_a"),
        Some(&token),
        &[&WHOAMI, &DOUBLE],
    )?;
    let cb = Client::connect_ws_checked(
        &server.ws_url("/server_b"),
        Some(&token),
        &[&WHOAMI, &SQUARE],
    )?;
    println!(
        "server_a: whoami -> {}, double(21) -> {}",
        ca.call(&WHOAMI, &())?,
        ca.call(&DOUBLE, &21)?
    );
    println!(
        "server_b: whoami -> {}, square(12) -> {}",
        cb.call(&WHOAMI, &())?,
        cb.call(&SQUARE, &12)?
    );
    // `square` is not in server_a's namespace.
    match ca.call(&SQUARE, &3) {
        Err(e) => println!("server_a: square -> {e}"),
        Ok(v) => println!("server_a: square -> {v} (unexpected)"),
    }
    let alias = Client::connect_ws(&server.ws_url("/a"), Some(&token))?;
    println!("/a: whoami -> {}", alias.call(&WHOAMI, &())?);
    server.shutdown();
    Ok(())
}
