//! `Peer`: a handle to the other end of one connection, for calls and
//! notifications in either direction.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::admission::Status;
use crate::command::Command;
use crate::conn::{reply_payload, Conn};
use crate::error::{DecodeError, Error};
use crate::frame::Kind;
use crate::router::builtin;

/// A handle to one connection's far end. Cheap to clone; it does not keep
/// the connection open (the connection lives while its owner does and the
/// peer stays).
///
/// A server gets one per client from
/// [`ServerBuilder::on_connect`](crate::ServerBuilder::on_connect) or
/// [`Ctx::peer`](crate::Ctx::peer), to call the client back:
///
/// ```
/// use framerpc::codec::{STR, U32};
/// use framerpc::{ClientBuilder, Command, Router, Server};
/// const ASK: Command<String, String> = Command::new(1, "ask", &STR, &STR);     // served by the client
/// const START: Command<u32, String> = Command::new(2, "start", &U32, &STR);    // served by the server
///
/// let server = Server::bind(
///     "127.0.0.1:0",
///     Router::new().handle_with(&START, |ctx, n| {
///         // Call the client that is calling us, over the same connection.
///         let answer = ctx.peer().call(&ASK, &format!("confirm {n}?")).map_err(|e| e.to_string())?;
///         Ok(format!("started {n}: {answer}"))
///     }),
/// )?;
/// let client = ClientBuilder::default()
///     .handlers(Router::new().handle(&ASK, |q| Ok(format!("yes to {q}"))))
///     .connect(server.local_addr())?;
/// assert_eq!(client.call(&START, &3)?, "started 3: yes to confirm 3?");
/// assert!(client.peer().is_connected());
/// # Ok::<(), framerpc::Error>(())
/// ```
#[derive(Clone)]
pub struct Peer(pub(crate) Arc<Conn>);

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("conn_id", &self.0.id)
            .field("addr", &self.0.peer)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Peer {
    pub(crate) fn from_conn(conn: Arc<Conn>) -> Self {
        Self(conn)
    }

    /// Calls `cmd` and waits for its reply, up to the default timeout.
    pub fn call<Req, Resp>(&self, cmd: &Command<Req, Resp>, req: &Req) -> Result<Resp, Error> {
        self.call_inner(cmd, req, None)
    }

    /// Calls `cmd` and waits for its reply up to `timeout`. On timeout the
    /// peer is sent CANCEL, and a late reply is dropped.
    pub fn call_timeout<Req, Resp>(
        &self,
        cmd: &Command<Req, Resp>,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, Error> {
        self.call_inner(cmd, req, Some(timeout))
    }

    fn call_inner<Req, Resp>(
        &self,
        cmd: &Command<Req, Resp>,
        req: &Req,
        timeout: Option<Duration>,
    ) -> Result<Resp, Error> {
        self.0.call(
            cmd.id(),
            cmd.name(),
            cmd.request(),
            cmd.response(),
            req,
            timeout,
        )
    }

    /// Sends `cmd` one way: no reply, not even an error.
    pub fn notify<Req, Resp>(&self, cmd: &Command<Req, Resp>, req: &Req) -> Result<(), Error> {
        self.0.send_with_tail(Kind::Notify, cmd.id(), 0, |b| {
            cmd.request().encode_tail(req, b)
        })
    }

    /// An untyped call: payload bytes in, reply payload bytes out.
    pub fn call_raw(
        &self,
        cmd: u16,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Bytes, Error> {
        // An empty name: a timeout names the command by its id.
        let frame = self
            .0
            .call_frame(cmd, "", timeout, |b| b.put_slice(payload))?;
        reply_payload(frame)
    }

    /// An untyped one-way call.
    pub fn notify_raw(&self, cmd: u16, payload: &[u8]) -> Result<(), Error> {
        self.0
            .send_with(Kind::Notify, cmd, 0, |b| b.put_slice(payload))
    }

    /// An untyped call whose payload `body` writes straight into the
    /// outgoing frame (no intermediate buffer); the reply payload is a
    /// slice of the received frame.
    #[cfg_attr(not(feature = "msgpack"), allow(dead_code))]
    pub(crate) fn call_with(
        &self,
        cmd: u16,
        timeout: Option<Duration>,
        body: impl FnOnce(&mut BytesMut),
    ) -> Result<Bytes, Error> {
        reply_payload(self.0.call_frame(cmd, "", timeout, body)?)
    }

    /// An untyped one-way call whose payload `body` writes straight into
    /// the outgoing frame.
    #[cfg_attr(not(feature = "msgpack"), allow(dead_code))]
    pub(crate) fn notify_with(
        &self,
        cmd: u16,
        body: impl FnOnce(&mut BytesMut),
    ) -> Result<(), Error> {
        self.0.send_with(Kind::Notify, cmd, 0, body)
    }

    /// The built-in `ping`: the peer echoes `data`.
    pub fn ping(&self, data: &[u8]) -> Result<Bytes, Error> {
        let frame = self
            .0
            .call_frame(builtin::PING, "ping", None, |b| b.put_slice(data))?;
        reply_payload(frame)
    }

    /// The built-in `status`: the server's admission numbers.
    pub fn status(&self) -> Result<Status, Error> {
        let p = self.call_raw(builtin::STATUS, &[], None)?;
        if p.len() != 12 {
            return Err(DecodeError::TrailingBytes(p.len().saturating_sub(12)).into());
        }
        let u = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        Ok(Status {
            active: u(0),
            max: u(4),
            waiting: u(8),
        })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.0.peer
    }

    /// The connection's number (unique within a server).
    pub fn conn_id(&self) -> u64 {
        self.0.id
    }

    /// False once the connection has ended.
    pub fn is_connected(&self) -> bool {
        !self.0.is_closed()
    }

    /// Replies that arrived for calls nobody waited for any more (late
    /// replies to timed-out calls), dropped and counted.
    pub fn stray_replies(&self) -> u64 {
        self.0
            .out
            .stray_replies
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Closes the connection; pending calls fail with `Disconnected`.
    pub fn close(&self) {
        self.0.close();
    }
}
