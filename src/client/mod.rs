//! The blocking client: one connection, shareable across threads, with
//! pipelined calls matched by call id.
//!
//! # About threads and cloning
//!
//! A `Client` is an `Arc` inside: `clone()` is cheap and every clone uses
//! the same connection. Calls from many threads are pipelined: each call
//! takes an id, writes its frame under a short lock, and waits on its own
//! channel; one reader thread routes replies by id. The connection closes
//! when the last clone is dropped (or on [`Client::close`]).

use std::fmt;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use bytes::Bytes;

use crate::admission::Status;
use crate::codec::{Codec, STR, U16};
use crate::command::{Command, CommandInfo, Spec};
use crate::conn::{run_keeper, Conn, Services};
use crate::error::{DecodeError, Disconnect, Error, Mismatch};
use crate::frame::{FrameReader, Limits};
use crate::peer::Peer;
use crate::router::{builtin, Router};
use crate::tcp::{tune, Socket, TcpReader, TcpWriter};

mod hold;
mod reconnect;

pub use hold::Hold;
pub use reconnect::{Outage, Reconnect};

static CLIENT_IDS: AtomicU64 = AtomicU64::new(1);

/// Settings for a [`Client`]; every setter states its default.
///
/// ```
/// use std::time::Duration;
/// use framerpc::codec::U32;
/// use framerpc::{Client, Command, Limits, Reconnect, Router, Server};
/// const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
///
/// let server = Server::builder()
///     .token("s3cret")
///     .bind("127.0.0.1:0", Router::new().handle(&ADD, |(a, b)| Ok(a + b)))?;
/// let client = Client::builder()
///     .token("s3cret")                                  // the server requires it
///     .timeout(Duration::from_secs(5))                  // calls without their own timeout
///     .connect_timeout(Duration::from_secs(2))
///     .limits(Limits::default().max_frame_len(1 << 20)) // replies over 1 MiB: Error::TooLarge
///     .reconnect(Reconnect::default())                  // dial again after a break
///     .name("stage-ui")                                 // how BUSY messages name this client
///     .connect_checked(server.local_addr(), &[&ADD])?;  // and compare the specs
/// assert_eq!(client.call(&ADD, &(2, 3))?, 5);
/// # Ok::<(), framerpc::Error>(())
/// ```
#[must_use]
#[derive(Clone)]
pub struct ClientBuilder {
    pub(crate) limits: Limits,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) token: Option<Vec<u8>>,
    pub(crate) router: Option<Arc<Router>>,
    pub(crate) reconnect: Option<Reconnect>,
    /// Sent with `identify` on every (re)connection.
    pub(crate) name: Option<String>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsClient>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("limits", &self.limits)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("token", &self.token.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            token: None,
            router: None,
            reconnect: None,
            name: hold::default_name(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ClientBuilder {
    /// Size and time limits (default [`Limits::default`]: 64 MiB frames,
    /// heartbeat after 30 s of silence, drop after 40 s).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The timeout of calls made without one (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long to wait for the TCP connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The token to present (default none). Raw TCP sends it in the `auth`
    /// frame first; WebSocket sends it as a Bearer header.
    pub fn token(mut self, token: impl Into<Vec<u8>>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Handlers for calls the server makes to this client (default none:
    /// such calls get UNKNOWN_COMMAND).
    pub fn handlers(mut self, router: Router) -> Self {
        self.router = Some(Arc::new(router));
        self
    }

    /// Reconnects after the connection breaks, with exponential backoff
    /// and jitter (default: off, a broken client stays broken). Calls in
    /// flight when it breaks fail with [`Error::Disconnected`] and are
    /// never replayed; the token is sent again on every new connection.
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// The name this connection gives the server (`identify`): BUSY and
    /// `queue` messages, and the server's list of holders, name it as
    /// `name (address)`. 1 to 64 bytes of printable text; checked when
    /// connecting. Default: `user@host` from the environment. Never used
    /// for authorization.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Connects over raw TCP to `host:port` (anything
    /// [`ToSocketAddrs`] takes). A failure names the address:
    /// [`Error::Connect`], or [`Error::Timeout`] after
    /// [`ClientBuilder::connect_timeout`].
    pub fn connect(self, addr: impl ToSocketAddrs + fmt::Debug) -> Result<Client, Error> {
        let addrs = resolve(&addr)?;
        self.connect_to(Target::Tcp(addrs))
    }

    /// Opens one raw TCP connection to `addrs`.
    fn dial_tcp(&self, addrs: &[SocketAddr]) -> Result<Transport, Error> {
        let stream = connect_tcp(addrs, self.connect_timeout)?;
        tune(&stream, &self.limits)?;
        let peer = stream.peer_addr().ok();
        let socket = Socket::new(stream);
        let writer = TcpWriter::new(&socket, &self.limits);
        let reader = FrameReader::new(socket, self.limits.max_frame_len);
        Ok((peer, Box::new(writer), Box::new(TcpReader(reader))))
    }

    fn dial(&self, target: &Target) -> Result<Transport, Error> {
        match target {
            Target::Tcp(addrs) => self.dial_tcp(addrs),
            #[cfg(feature = "ws")]
            Target::Ws(url) => self.dial_ws(url),
            #[cfg(feature = "tls")]
            Target::Tls(host, port) => self.dial_tls(host, *port),
        }
    }

    /// Dials `target`, starts the connection and authenticates on raw TCP.
    fn open(&self, target: &Target) -> Result<(Peer, JoinHandle<()>), Error> {
        if let Some(name) = &self.name {
            crate::admission::check_label(name.as_bytes())
                .map_err(|why| Error::Config(format!("ClientBuilder::name: {why}").into()))?;
        }
        let (peer_addr, writer, reader) = self.dial(target)?;
        let (peer, reader) = self.open_conn(peer_addr, writer, reader)?;
        if let (true, Some(token)) = (target.sends_auth(), &self.token) {
            if let Err(e) = peer.call_raw(builtin::AUTH, token, None) {
                peer.close();
                return Err(e);
            }
        }
        if let Some(name) = &self.name {
            // One way: no round trip at connect (an older server ignores it).
            let _ = peer.notify_raw(builtin::IDENTIFY, name.as_bytes());
        }
        Ok((peer, reader))
    }

    pub(crate) fn connect_to(self, target: Target) -> Result<Client, Error> {
        let (peer, reader) = self.open(&target)?;
        Ok(self.into_client(peer, reader, target))
    }

    /// Connects over raw TCP, then checks the server's command table
    /// against `specs` (see [`Client::check`]).
    pub fn connect_checked(
        self,
        addr: impl ToSocketAddrs + fmt::Debug,
        specs: &[&dyn Spec],
    ) -> Result<Client, Error> {
        let client = self.connect(addr)?;
        client.check(specs)?;
        Ok(client)
    }

    /// Starts a connection over an already connected transport.
    pub(crate) fn open_conn(
        &self,
        _peer: Option<SocketAddr>,
        writer: Box<dyn crate::conn::FrameWrite>,
        reader: Box<dyn crate::conn::FrameRead>,
    ) -> Result<(Peer, JoinHandle<()>), Error> {
        let services = Services {
            router: self.router.clone(),
            ..Services::default()
        };
        let id = CLIENT_IDS.fetch_add(1, Ordering::Relaxed);
        let conn = Conn::new(id, self.limits, services, self.timeout, writer);
        let c = Arc::clone(&conn);
        let router = self.router.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("framerpc-client-{id}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                // Handlers never run on the reading thread of a client.
                let worker = router.and_then(|router| {
                    let c = Arc::clone(&c);
                    std::thread::Builder::new()
                        .name(format!("framerpc-client-{id}-handlers"))
                        .spawn(move || {
                            crate::worker::serve(&c, &router, None, crate::worker::Part::Home)
                        })
                        .ok()
                });
                run_keeper(&c, reader);
                if let Some(w) = worker {
                    let _ = w.join();
                }
            });
        match spawned {
            Ok(handle) => Ok((Peer::from_conn(conn), handle)),
            Err(e) => {
                conn.close();
                Err(e.into())
            }
        }
    }

    fn into_client(self, peer: Peer, reader: JoinHandle<()>, target: Target) -> Client {
        let inner = Arc::new(ClientInner {
            current: Mutex::new(peer),
            changed: Condvar::new(),
            generation: AtomicU64::new(0),
            gave_up: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            outage: self.reconnect.map(|r| r.during_outage),
            timeout: self.timeout,
        });
        if let Some(policy) = self.reconnect {
            let weak = Arc::downgrade(&inner);
            let spawned = std::thread::Builder::new()
                .name("framerpc-client-reconnect".into())
                .stack_size(128 * 1024)
                .spawn(move || reconnect::supervise(&weak, &self, &target, policy, reader));
            if spawned.is_err() {
                inner.gave_up.store(true, Ordering::Release);
            }
        }
        Client { inner }
    }
}

/// What a dial returns: the peer address and the two halves.
pub(crate) type Transport = (
    Option<SocketAddr>,
    Box<dyn crate::conn::FrameWrite>,
    Box<dyn crate::conn::FrameRead>,
);

/// Where a client connects (and reconnects) to.
pub(crate) enum Target {
    Tcp(Vec<SocketAddr>),
    #[cfg(feature = "ws")]
    Ws(String),
    /// `tls://host:port`: raw frames inside TLS.
    #[cfg(feature = "tls")]
    Tls(String, u16),
}

impl Target {
    /// Whether the token goes in an `auth` frame (raw frames; WebSocket
    /// sends it at the upgrade).
    fn sends_auth(&self) -> bool {
        match self {
            Self::Tcp(_) => true,
            #[cfg(feature = "ws")]
            Self::Ws(_) => false,
            #[cfg(feature = "tls")]
            Self::Tls(..) => true,
        }
    }
}

pub(crate) fn connect_tcp(
    addr: impl ToSocketAddrs + fmt::Debug,
    timeout: Duration,
) -> Result<TcpStream, Error> {
    let addrs = resolve(&addr)?;
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some((a, e)),
        }
    }
    Err(match last {
        Some((a, e)) => Error::connect(a.to_string(), e, timeout),
        None => Error::Connect {
            addr: addr_text(&addr).into(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the name resolved to no address",
            ),
        },
    })
}

/// Resolves `addr`; an error names it (and says what to do with a URL).
fn resolve(addr: &(impl ToSocketAddrs + fmt::Debug)) -> Result<Vec<SocketAddr>, Error> {
    match addr.to_socket_addrs() {
        Ok(a) => Ok(a.collect()),
        Err(source) => Err(Error::Connect {
            addr: addr_text(addr).into(),
            source,
        }),
    }
}

/// An address as the user wrote it (a string without its quotes).
fn addr_text(addr: &dyn fmt::Debug) -> String {
    let s = format!("{addr:?}");
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.to_owned(),
        None => s,
    }
}

struct ClientInner {
    /// The connection in use; replaced by the reconnect thread.
    current: Mutex<Peer>,
    changed: Condvar,
    generation: AtomicU64,
    gave_up: AtomicBool,
    closed: AtomicBool,
    outage: Option<Outage>,
    /// The timeout of calls made without one (every connection's default).
    timeout: Duration,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.current.get_mut().close();
    }
}

/// A blocking client over one connection. `Clone + Send + Sync`.
///
/// ```no_run
/// use framerpc::codec::U32;
/// use framerpc::{Client, Command};
/// const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
/// let client = Client::connect_checked("127.0.0.1:7878", &[&ADD])?;
/// assert_eq!(client.call(&ADD, &(2, 3))?, 5);
/// # Ok::<(), framerpc::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("peer", &*self.inner.current.lock())
            .field("generation", &self.generation())
            .finish()
    }
}

impl Client {
    /// Settings for a new client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects over raw TCP with default settings.
    pub fn connect(addr: impl ToSocketAddrs + fmt::Debug) -> Result<Self, Error> {
        ClientBuilder::default().connect(addr)
    }

    /// Connects over raw TCP and checks `specs` against the server's table.
    pub fn connect_checked(
        addr: impl ToSocketAddrs + fmt::Debug,
        specs: &[&dyn Spec],
    ) -> Result<Self, Error> {
        ClientBuilder::default().connect_checked(addr, specs)
    }

    /// The current connection as a [`Peer`] handle (after a reconnect,
    /// the old handle stays bound to the old, closed connection).
    pub fn peer(&self) -> Peer {
        self.inner.current.lock().clone()
    }

    /// How many times the client has reconnected.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The connection to use now. While a reconnecting client is down it
    /// fails at once ([`Outage::FailFast`]) or waits up to `wait`
    /// ([`Outage::Wait`]); returns what is left of `wait`.
    fn conn(&self, wait: Duration) -> Result<(Peer, Duration), Error> {
        let start = Instant::now();
        let mut cur = self.inner.current.lock();
        loop {
            if cur.is_connected() || self.inner.outage.is_none() {
                return Ok((cur.clone(), wait.saturating_sub(start.elapsed())));
            }
            if self.inner.closed.load(Ordering::Acquire) {
                return Err(Error::disconnected(Disconnect::Closed));
            }
            if self.inner.gave_up.load(Ordering::Acquire) {
                return Err(Error::disconnected(Disconnect::GaveUp));
            }
            let left = wait.saturating_sub(start.elapsed());
            if self.inner.outage == Some(Outage::FailFast) || left.is_zero() {
                return Err(Error::disconnected(Disconnect::Reconnecting));
            }
            self.inner.changed.wait_for(&mut cur, left);
        }
    }

    /// Calls `cmd` and waits for its reply, up to the default timeout.
    pub fn call<Req, Resp>(&self, cmd: &Command<Req, Resp>, req: &Req) -> Result<Resp, Error> {
        let (peer, _) = self.conn(self.timeout())?;
        peer.call(cmd, req)
    }

    /// Calls `cmd` and waits up to `timeout`; on timeout the server is sent
    /// CANCEL and a late reply is dropped.
    pub fn call_timeout<Req, Resp>(
        &self,
        cmd: &Command<Req, Resp>,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, Error> {
        let (peer, left) = self.conn(timeout)?;
        peer.call_timeout(cmd, req, left)
    }

    /// Sends `cmd` one way (NOTIFY): no reply, not even an error.
    pub fn notify<Req, Resp>(&self, cmd: &Command<Req, Resp>, req: &Req) -> Result<(), Error> {
        self.conn(self.timeout())?.0.notify(cmd, req)
    }

    /// An untyped call: request payload in, reply payload out.
    pub fn call_raw(
        &self,
        cmd: u16,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Bytes, Error> {
        let (peer, left) = self.conn(timeout.unwrap_or_else(|| self.timeout()))?;
        peer.call_raw(cmd, payload, Some(left))
    }

    /// An untyped one-way call.
    pub fn notify_raw(&self, cmd: u16, payload: &[u8]) -> Result<(), Error> {
        self.conn(self.timeout())?.0.notify_raw(cmd, payload)
    }

    /// The built-in `ping`: the server echoes `data`.
    pub fn ping(&self, data: &[u8]) -> Result<Bytes, Error> {
        self.conn(self.timeout())?.0.ping(data)
    }

    /// The built-in `status`: active, max and waiting users.
    pub fn status(&self) -> Result<Status, Error> {
        self.conn(self.timeout())?.0.status()
    }

    fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The built-in `list`: the server's command table.
    pub fn list(&self) -> Result<Vec<CommandInfo>, Error> {
        let payload = self.call_raw(builtin::LIST, &[], None)?;
        Ok(decode_list(payload)?)
    }

    /// Compares the server's table with `specs`; the error names the first
    /// command that is missing or whose name or schemas differ.
    pub fn check(&self, specs: &[&dyn Spec]) -> Result<(), Error> {
        let table = self.list()?;
        for spec in specs {
            let want = spec.info();
            let mismatch = |detail: String| {
                Error::SchemaMismatch(Box::new(Mismatch::new(want.name.clone(), want.id, detail)))
            };
            let Some(have) = table.iter().find(|c| c.id == want.id) else {
                let by_name = table.iter().find(|c| c.name == want.name);
                return Err(mismatch(match by_name {
                    Some(c) => format!("the server has it as id {}, not {}", c.id, want.id),
                    None => format!("the server has no command with id {}", want.id),
                }));
            };
            if have.name != want.name {
                return Err(mismatch(format!(
                    "the server calls id {} {:?}",
                    want.id, have.name
                )));
            }
            if have.request_schema != want.request_schema {
                return Err(mismatch(format!(
                    "request schema differs: client {}, server {}",
                    want.request_schema, have.request_schema
                )));
            }
            if have.response_schema != want.response_schema {
                return Err(mismatch(format!(
                    "response schema differs: client {}, server {}",
                    want.response_schema, have.response_schema
                )));
            }
        }
        Ok(())
    }

    /// False while the connection is down (for good, without reconnect).
    pub fn is_connected(&self) -> bool {
        self.inner.current.lock().is_connected()
    }

    /// Closes the connection for good (no reconnect); pending calls fail
    /// with `Disconnected`.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.current.lock().close();
        self.inner.changed.notify_all();
    }
}

/// Decodes a `list` reply: `u16 count`, then `u16 id, str, str, str` each.
pub fn decode_list(mut p: Bytes) -> Result<Vec<CommandInfo>, DecodeError> {
    let count = U16.decode(&mut p)?;
    let row = (U16, STR, STR, STR);
    let mut out = Vec::with_capacity(usize::from(count).min(p.len() / 14));
    for _ in 0..count {
        let (id, name, request_schema, response_schema) = row.decode(&mut p)?;
        out.push(CommandInfo {
            id,
            name,
            request_schema,
            response_schema,
        });
    }
    if !p.is_empty() {
        return Err(DecodeError::TrailingBytes(p.len()));
    }
    Ok(out)
}
