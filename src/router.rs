//! The `Router`: a table of handlers by command id, and the handler context.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::codec::decode_all;
use crate::command::{Command, CommandInfo};
use crate::conn::Conn;
use crate::error::{Error, ErrorCode, HandlerError};
use crate::frame::Header;
use crate::peer::Peer;

type Handler =
    Arc<dyn Fn(&Ctx<'_>, Bytes, &mut BytesMut) -> Result<(), HandlerError> + Send + Sync>;

/// What the table keeps: a handler that appends the reply to `out` and may
/// leave a large tail of it to be sent from where it lies.
type TailHandler = Arc<
    dyn Fn(&Ctx<'_>, Bytes, &mut BytesMut) -> Result<Option<Bytes>, HandlerError> + Send + Sync,
>;

struct Entry {
    info: CommandInfo,
    handler: TailHandler,
    /// Runs without the device (an observer's read), for any connection.
    shared: bool,
}

/// A table of command handlers, shared by every connection of a server.
///
/// ```
/// use framerpc::codec::{STR, U32};
/// use framerpc::{Command, Router};
/// const HELLO: Command<String, String> = Command::new(1, "hello", &STR, &STR);
/// const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
/// let router = Router::new()
///     .handle(&HELLO, |name| Ok(format!("hello {name}")))
///     .handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)));
/// assert_eq!(router.commands().len(), 2);
/// ```
pub struct Router {
    entries: BTreeMap<u16, Entry>,
    concurrency: usize,
    on_disconnect: Vec<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("commands", &self.commands())
            .finish()
    }
}

impl Default for Router {
    /// The same as [`Router::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    /// An empty router whose handlers run one at a time per connection.
    pub fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
            concurrency: 1,
            on_disconnect: Vec::new(),
        }
    }

    /// Adds a hook that runs with the connection's id ([`Ctx::conn_id`])
    /// once a connection has ended and its last handler has returned: the
    /// place to free per-connection state.
    #[must_use]
    pub fn on_disconnect(mut self, hook: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.on_disconnect.push(Arc::new(hook));
        self
    }

    pub(crate) fn disconnected(&self, conn_id: u64) {
        for hook in &self.on_disconnect {
            hook(conn_id);
        }
    }

    /// Adds a handler that needs only the request.
    ///
    /// # Panics
    /// If a command with the same id or name is already registered (see
    /// [`Router::try_handle_with`] for the non-panicking form).
    #[must_use]
    pub fn handle<Req: 'static, Resp: 'static>(
        self,
        cmd: &Command<Req, Resp>,
        f: impl Fn(Req) -> Result<Resp, HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.handle_with(cmd, move |_, req| f(req))
    }

    /// Adds a handler that also gets the [`Ctx`] (peer, state, cancel flag).
    ///
    /// # Panics
    /// If a command with the same id or name is already registered.
    #[must_use]
    pub fn handle_with<Req: 'static, Resp: 'static>(
        self,
        cmd: &Command<Req, Resp>,
        f: impl Fn(&Ctx<'_>, Req) -> Result<Resp, HandlerError> + Send + Sync + 'static,
    ) -> Self {
        match self.try_handle_with(cmd, f) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// Adds a handler, or says why it cannot (duplicate id or name).
    pub fn try_handle_with<Req: 'static, Resp: 'static>(
        self,
        cmd: &Command<Req, Resp>,
        f: impl Fn(&Ctx<'_>, Req) -> Result<Resp, HandlerError> + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let (req, resp) = (cmd.request(), cmd.response());
        let (name, id) = (cmd.name(), cmd.id());
        self.insert(
            cmd.info(),
            Arc::new(move |ctx, payload, out| {
                let value = decode_all(req, payload).map_err(|e| {
                    let msg = format!(
                        "the request to {name:?} (id {id}) does not decode as {}: {e}",
                        req.schema_string()
                    );
                    HandlerError::library(ErrorCode::BAD_PAYLOAD, msg)
                })?;
                Ok(resp.encode_tail(&f(ctx, value)?, out))
            }),
        )
    }

    /// Adds an untyped handler: it gets the request payload and appends the
    /// reply payload to `out`. The schemas are what `list` reports.
    pub fn try_handle_raw(self, info: CommandInfo, handler: Handler) -> Result<Self, Error> {
        self.insert(
            info,
            Arc::new(move |ctx, payload, out| handler(ctx, payload, out).map(|()| None)),
        )
    }

    /// Adds a *shared* handler: it runs without the device, for any
    /// connection, also while another one holds it (an observer reading a
    /// position). Calling it never makes a connection a user of a server
    /// with `max_users`. Shared commands are listed by the `shared`
    /// built-in ([`Client::shared_commands`](crate::Client::shared_commands)).
    ///
    /// ```
    /// use framerpc::codec::{F64, UNIT};
    /// use framerpc::{Command, Router, Server};
    /// const POSITION: Command<(), f64> = Command::new(2, "position", &UNIT, &F64);
    /// const MOVE_TO: Command<f64, f64> = Command::new(1, "move_to", &F64, &F64);
    /// let router = Router::new()
    ///     .handle(&MOVE_TO, |x| Ok(x))          // needs the device
    ///     .handle_shared(&POSITION, |()| Ok(0.0)); // anyone may read
    /// let server = Server::builder().max_users(1).bind("127.0.0.1:0", router)?;
    /// # Ok::<(), framerpc::Error>(())
    /// ```
    ///
    /// # Panics
    /// If a command with the same id or name is already registered.
    #[must_use]
    pub fn handle_shared<Req: 'static, Resp: 'static>(
        self,
        cmd: &Command<Req, Resp>,
        f: impl Fn(Req) -> Result<Resp, HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.handle_shared_with(cmd, move |_, req| f(req))
    }

    /// [`Router::handle_shared`] with the [`Ctx`].
    ///
    /// # Panics
    /// If a command with the same id or name is already registered.
    #[must_use]
    pub fn handle_shared_with<Req: 'static, Resp: 'static>(
        self,
        cmd: &Command<Req, Resp>,
        f: impl Fn(&Ctx<'_>, Req) -> Result<Resp, HandlerError> + Send + Sync + 'static,
    ) -> Self {
        let id = cmd.id();
        let mut r = self.handle_with(cmd, f);
        if let Some(e) = r.entries.get_mut(&id) {
            e.shared = true;
        }
        r
    }

    /// Marks already registered commands as shared (see
    /// [`Router::handle_shared`]); for handlers added by other means, such
    /// as the dynamic layer's.
    ///
    /// # Panics
    /// If `id` is not registered.
    #[must_use]
    pub fn shared(mut self, id: u16) -> Self {
        match self.entries.get_mut(&id) {
            Some(e) => e.shared = true,
            None => panic!("command id {id} is not registered"),
        }
        self
    }

    pub(crate) fn is_shared(&self, id: u16) -> bool {
        self.entries.get(&id).is_some_and(|e| e.shared)
    }

    fn insert(mut self, info: CommandInfo, handler: TailHandler) -> Result<Self, Error> {
        if let Some(e) = self.entries.get(&info.id) {
            return Err(Error::Config(
                format!(
                    "command id {} is registered twice ({:?} and {:?})",
                    info.id, e.info.name, info.name
                )
                .into(),
            ));
        }
        if let Some(e) = self.entries.values().find(|e| e.info.name == info.name) {
            return Err(Error::Config(
                format!(
                    "command name {:?} is registered twice (ids {} and {})",
                    info.name, e.info.id, info.id
                )
                .into(),
            ));
        }
        self.entries.insert(
            info.id,
            Entry {
                info,
                handler,
                shared: false,
            },
        );
        Ok(self)
    }

    /// Lets up to `n` handlers of one connection run at once (default 1:
    /// strictly in arrival order).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How many handlers of one connection may run at once.
    pub fn max_concurrency(&self) -> usize {
        self.concurrency
    }

    /// The command table, ordered by id.
    pub fn commands(&self) -> Vec<CommandInfo> {
        self.entries.values().map(|e| e.info.clone()).collect()
    }

    pub(crate) fn contains(&self, id: u16) -> bool {
        self.entries.contains_key(&id)
    }

    pub(crate) fn dispatch(
        &self,
        ctx: &Ctx<'_>,
        payload: Bytes,
        out: &mut BytesMut,
    ) -> Result<Option<Bytes>, HandlerError> {
        match self.entries.get(&ctx.header.cmd) {
            Some(e) => (e.handler)(ctx, payload, out),
            None => Err(HandlerError::library(
                ErrorCode::UNKNOWN_COMMAND,
                format!("unknown command {}", ctx.header.cmd),
            )),
        }
    }
}

/// What a handler knows about the call it is running: who called, the
/// server's state, whether the caller gave up, and a [`Peer`] to call back.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use framerpc::codec::{U32, UNIT};
/// use framerpc::{Client, Command, Router, Server};
/// const COUNT: Command<(), u64> = Command::new(1, "count", &UNIT, &framerpc::codec::U64);
/// const WORK: Command<u32, u32> = Command::new(2, "work", &U32, &U32);
///
/// let router = Router::new()
///     .handle_with(&COUNT, |ctx, ()| {
///         let calls = ctx.state::<AtomicU64>().expect("set with ServerBuilder::state");
///         println!("call {} from {:?}", ctx.call_id(), ctx.peer_addr());
///         Ok(calls.fetch_add(1, Ordering::Relaxed) + 1)
///     })
///     .handle_with(&WORK, |ctx, steps| {
///         for done in 0..steps {
///             if ctx.is_cancelled() || ctx.is_shutting_down() {
///                 return Ok(done); // the caller gave up, or the server stops
///             }
///         }
///         Ok(steps)
///     });
/// let server = Server::builder().state(AtomicU64::new(0)).bind("127.0.0.1:0", router)?;
/// let client = Client::connect(server.local_addr())?;
/// assert_eq!(client.call(&COUNT, &())?, 1);
/// assert_eq!(client.call(&WORK, &10)?, 10);
/// # Ok::<(), framerpc::Error>(())
/// ```
pub struct Ctx<'a> {
    pub(crate) conn: &'a Arc<Conn>,
    pub(crate) header: Header,
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("conn_id", &self.conn_id())
            .field("peer", &self.peer_addr())
            .field("cmd", &self.header.cmd)
            .field("call_id", &self.header.id)
            .finish()
    }
}

impl Ctx<'_> {
    /// The connection's number, unique within the server.
    pub fn conn_id(&self) -> u64 {
        self.conn.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.conn.peer
    }

    /// The command id being run.
    pub fn command_id(&self) -> u16 {
        self.header.cmd
    }

    /// The caller's call id (0 for a NOTIFY).
    pub fn call_id(&self) -> u32 {
        self.header.id
    }

    /// The application state given to the server, if it is a `T`.
    pub fn state<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.conn.services.state.as_deref()?.downcast_ref()
    }

    /// True once the caller has sent CANCEL for this call (it gave up).
    pub fn is_cancelled(&self) -> bool {
        self.header.id != 0 && self.conn.is_cancelled(self.header.id)
    }

    /// True once the server has begun shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.conn
            .shutting_down
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A handle to the calling peer, to call back into it (even before this
    /// handler returns) or to keep for later.
    pub fn peer(&self) -> Peer {
        Peer::from_conn(Arc::clone(self.conn))
    }
}

/// The library's own commands (`0xFF00..`), answered by the reader.
pub(crate) mod builtin {
    use bytes::{BufMut, BytesMut};

    use super::Router;

    pub const AUTH: u16 = 0xFF00;
    pub const LIST: u16 = 0xFF01;
    pub const PING: u16 = 0xFF02;
    pub const STATUS: u16 = 0xFF03;
    pub const QUEUE: u16 = 0xFF04;
    pub const ACQUIRE: u16 = 0xFF05;
    pub const RELEASE: u16 = 0xFF06;
    pub const IDENTIFY: u16 = 0xFF07;
    pub const SHARED: u16 = 0xFF08;

    /// Built-ins the reader answers at once (`release` too, when nothing
    /// of its connection runs or waits; otherwise it takes its turn).
    pub fn answered_by_reader(cmd: u16) -> bool {
        matches!(
            cmd,
            AUTH | LIST | PING | STATUS | QUEUE | ACQUIRE | IDENTIFY | SHARED
        )
    }

    /// `u16 count`, then the `u16` id of each shared command.
    pub fn encode_shared(router: Option<&Router>, b: &mut BytesMut) {
        let ids: Vec<u16> = router.map_or_else(Vec::new, |r| {
            r.entries
                .values()
                .filter(|e| e.shared)
                .map(|e| e.info.id)
                .collect()
        });
        b.put_u16_le(ids.len() as u16);
        for id in ids {
            b.put_u16_le(id);
        }
    }

    fn put_str(b: &mut BytesMut, s: &str) {
        b.put_u32_le(s.len() as u32);
        b.put_slice(s.as_bytes());
    }

    /// `u16 count`, then per command `u16 id, str name, str req, str resp`.
    pub fn encode_list(router: Option<&Router>, b: &mut BytesMut) {
        let Some(r) = router else {
            b.put_u16_le(0);
            return;
        };
        b.put_u16_le(r.entries.len() as u16);
        for e in r.entries.values() {
            b.put_u16_le(e.info.id);
            put_str(b, &e.info.name);
            put_str(b, &e.info.request_schema);
            put_str(b, &e.info.response_schema);
        }
    }
}
