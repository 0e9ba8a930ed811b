//! # framerpc
//!
//! Blocking RPC over length-prefixed frames with 16-bit command ids, on raw
//! TCP (and WebSocket with the `ws` feature). Commands are specs defined in
//! code that server and client share, payloads are encoded by composable
//! codecs, and a server admits at most N users at once, down to exclusive
//! access for a device.
//!
//! ```
//! use framerpc::codec::{STR, U32};
//! use framerpc::{Client, Command, ErrorCode, HandlerError, Router, Server};
//!
//! // One module that server and client both import.
//! const HELLO: Command<String, String> = Command::new(1, "hello", &STR, &STR);
//! const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
//!
//! let router = Router::new()
//!     .handle(&HELLO, |name| Ok(format!("hello {name}")))
//!     .handle(&ADD, |(a, b)| match a.checked_add(b) {
//!         Some(sum) => Ok(sum),
//!         None => Err(HandlerError::with_code(1000, "overflow")),
//!     });
//! let server = Server::bind("127.0.0.1:0", router)?;
//!
//! let client = Client::connect_checked(server.local_addr(), &[&HELLO, &ADD])?;
//! assert_eq!(client.call(&HELLO, &"bob".to_string())?, "hello bob");
//! assert_eq!(client.call(&ADD, &(2, 3))?, 5);
//! let err = client.call(&ADD, &(u32::MAX, 1)).unwrap_err();
//! assert_eq!(err.code(), Some(ErrorCode(1000)));
//!
//! server.shutdown();
//! # Ok::<(), framerpc::Error>(())
//! ```
//!
//! The wire format is documented in `docs/PROTOCOL.md`.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod admission;
mod client;
pub mod codec;
mod command;
mod conn;
#[cfg(feature = "msgpack")]
pub mod dynamic;
mod error;
pub mod frame;
#[cfg(feature = "ndarray")]
pub mod ndarray;
mod peer;
mod pool;
mod proxy;
mod router;
mod server;
mod stall;
mod tcp;
#[cfg(feature = "tls")]
mod tls;
mod worker;
#[cfg(feature = "ws")]
mod ws;

pub use admission::{Holder, ReleaseReason, Released, Status, WhenFull};
pub use client::{decode_list, Client, ClientBuilder, Hold, Outage, Reconnect};
pub use command::{Command, CommandInfo, Spec};
pub use error::{DecodeError, Error, ErrorCode, HandlerError, Mismatch, ProtocolError, Side};
pub use frame::Limits;
pub use peer::Peer;
pub use router::{Ctx, Router};
pub use server::{Server, ServerBuilder, ServerHandle};
#[cfg(feature = "tls")]
pub use tls::TlsConfig;
#[cfg(feature = "ws")]
pub use ws::{WsConfig, TOKEN_ENV};

/// The library's reserved command ids.
pub mod reserved {
    /// `auth`: token bytes in, empty reply (raw TCP, first frame).
    pub const AUTH: u16 = 0xFF00;
    /// `list`: the command table.
    pub const LIST: u16 = 0xFF01;
    /// `ping`: echoes its payload.
    pub const PING: u16 = 0xFF02;
    /// `status`: `u32 active, u32 max, u32 waiting`.
    pub const STATUS: u16 = 0xFF03;
    /// `queue`: where this connection stands, in words (UTF-8): admitted,
    /// or its place in the queue and who holds the device for how long.
    pub const QUEUE: u16 = 0xFF04;
    /// `acquire`: `u32` longest wait in ms; empty reply once the device is
    /// held, BUSY when the wait runs out.
    pub const ACQUIRE: u16 = 0xFF05;
    /// `release`: the device goes back now; empty reply.
    pub const RELEASE: u16 = 0xFF06;
    /// `identify`: a UTF-8 label (1 to 64 printable bytes) that names the
    /// connection in messages; empty reply.
    pub const IDENTIFY: u16 = 0xFF07;
    /// `shared`: `u16 count`, then the `u16` ids of the commands that run
    /// without the device.
    pub const SHARED: u16 = 0xFF08;
}
