//! # framerpc
//!
//! Blocking RPC over length-prefixed frames with 16-bit command ids, on raw
//! TCP (and WebSocket with the `ws` feature). Commands are specs defined in
//! code that server and client share, payloads are encoded by composable
//! codecs, and a server admits at most N users at once, down to exclusive
//! access for a device.
//!
//! ## A tour
//!
//! Define commands once, in a module both sides import. A spec takes codec
//! *values* (`U32`, `VecOf(F64)`); where a *type* is needed (a `Map`, a
//! `const` of your own) use the codec types (`U32Codec`): the table is in
//! [`codec`].
//!
//! ```
//! use framerpc::codec::{VecOf, F64, STR, U32};
//! use framerpc::{Client, Command, ErrorCode, HandlerError, Router, Server};
//!
//! // One module that server and client both import.
//! const HELLO: Command<String, String> = Command::new(1, "hello", &STR, &STR);
//! const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
//! const MEAN: Command<Vec<f64>, f64> = Command::new(5, "mean", &VecOf(F64), &F64);
//!
//! // Serve them.
//! let router = Router::new()
//!     .handle(&HELLO, |name| Ok(format!("hello {name}")))
//!     .handle(&ADD, |(a, b)| match a.checked_add(b) {
//!         Some(sum) => Ok(sum),
//!         None => Err(HandlerError::with_code(1000, "overflow")),
//!     })
//!     .handle_with(&MEAN, |ctx, xs| {
//!         if xs.is_empty() {
//!             return Err(HandlerError::with_code(1001, "mean of nothing"));
//!         }
//!         println!("call from {:?}", ctx.peer_addr());
//!         Ok(xs.iter().sum::<f64>() / xs.len() as f64)
//!     });
//! let server = Server::bind("127.0.0.1:0", router)?; // port 0: a free port
//!
//! // Call them from any number of threads through one client; the
//! // connect-time check compares the server's table with these specs.
//! let client = Client::connect_checked(server.local_addr(), &[&HELLO, &ADD, &MEAN])?;
//! assert_eq!(client.call(&HELLO, &"bob".to_string())?, "hello bob");
//! assert_eq!(client.call(&ADD, &(2, 3))?, 5);
//! let c2 = client.clone(); // the same connection
//! std::thread::spawn(move || c2.call(&HELLO, &"ann".into())).join().unwrap()?;
//! client.call_timeout(&MEAN, &vec![1.0, 2.0], std::time::Duration::from_secs(1))?;
//! client.notify(&HELLO, &"quiet".into())?; // one way, no reply
//!
//! // Every failure is a typed Error that names its cause.
//! let err = client.call(&ADD, &(u32::MAX, 1)).unwrap_err();
//! assert_eq!(err.code(), Some(ErrorCode(1000)));
//! assert_eq!(err.to_string(), "remote error code 1000: overflow");
//!
//! server.shutdown(); // or server.handle().shutdown() from another thread
//! # Ok::<(), framerpc::Error>(())
//! ```
//!
//! Errors: [`Error`] (match it: the example there), with
//! [`Disconnect`] saying why a connection ended and [`Timeout`] the one
//! shape of every deadline. `Debug` prints the message, so `main` can
//! return `Result<(), framerpc::Error>`.
//!
//! ## Exclusive access: device servers
//!
//! ```
//! use std::time::Duration;
//! use framerpc::codec::F64;
//! use framerpc::{Client, Command, Error, ErrorCode, Router, Server, WhenFull};
//! const MOVE_TO: Command<f64, f64> = Command::new(1, "move_to", &F64, &F64);
//!
//! let server = Server::builder()
//!     .max_users(1)                   // one user at a time
//!     .when_full(WhenFull::Refuse)    // or WhenFull::Queue { max_wait }
//!     .on_release(|r| println!("{:?} left after {:?}: motor stopped", r.peer, r.held_for))
//!     .bind("127.0.0.1:0", Router::new().handle(&MOVE_TO, |x| Ok(x)))?;
//!
//! let alice = Client::connect(server.local_addr())?;
//! let bob = Client::connect(server.local_addr())?;
//! assert_eq!(alice.call(&MOVE_TO, &1.0)?, 1.0); // alice now holds the device
//! match bob.call(&MOVE_TO, &2.0) {
//!     Err(Error::Remote { code, message }) if code == ErrorCode::BUSY => {
//!         println!("{message}"); // names the holder and for how long
//!     }
//!     other => panic!("{other:?}"),
//! }
//! drop(alice); // the permit comes back the moment the connection ends
//! # let mut n = 0;
//! # let answer = loop {
//! #     match bob.call(&MOVE_TO, &2.0) {
//! #         Err(e) if e.code() == Some(ErrorCode::BUSY) && n < 1000 => {
//! #             n += 1;
//! #             std::thread::sleep(Duration::from_millis(5));
//! #         }
//! #         other => break other,
//! #     }
//! # };
//! assert_eq!(answer?, 2.0);
//! # Ok::<(), framerpc::Error>(())
//! ```
//!
//! The permit is asked for at a connection's first call that needs the
//! device (or by [`Client::acquire`]); commands registered with
//! [`Router::shared`] run for anyone, and `status`, `ping` and `list` are
//! answered before admission. See [`ServerBuilder`] and [`WhenFull`].
//!
//! ## WebSocket (feature `ws`)
//!
//! The same frames inside binary messages, one namespace ([`Router`]) per
//! path, a token checked at the upgrade (HTTP 401 before any frame), and
//! `Origin`/`Host` checks for browsers: see `WsConfig` (with its
//! example) and `Client::connect_ws`. One binary message carries exactly
//! one whole frame; a text message closes the connection with 1003, a bad
//! frame or `len` with 1002, a message over the limit with 1009.
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

/// The byte string type of [`codec::BYTES`] (re-exported from the `bytes`
/// crate, so a `bytes` command needs no extra dependency).
pub use bytes::Bytes;

pub use admission::{Holder, ReleaseReason, Released, Status, WhenFull};
pub use client::{decode_list, Client, ClientBuilder, Hold, Outage, Reconnect};
pub use command::{Command, CommandInfo, Spec};
pub use error::{
    DecodeError, Disconnect, Error, ErrorCode, HandlerError, Mismatch, ProtocolError, Side, Stage,
    Timeout,
};
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
