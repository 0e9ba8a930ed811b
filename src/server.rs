//! The server: a listener, one thread per connection (plus spare threads
//! while calls run long), admission, and graceful shutdown.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use parking_lot::Mutex;

use crate::admission::{Admission, Holder, ReleaseHook, Released, Status, WhenFull};
use crate::command::Command;
use crate::conn::{Conn, FrameRead, FrameWrite, Helpers, Role, Services, DEFAULT_GRACE};
use crate::error::{Error, ErrorCode};
use crate::frame::{FrameReader, Limits};
use crate::peer::Peer;
use crate::pool::Pool;
use crate::router::Router;
use crate::stall::{Watch, STALL};
use crate::tcp::{tune, Socket, TcpReader, TcpWriter};
use crate::worker::Part;

/// Settings for a [`Server`]; every setter states its default. The entry
/// to exclusive access: [`max_users`](ServerBuilder::max_users),
/// [`when_full`](ServerBuilder::when_full) and
/// [`on_release`](ServerBuilder::on_release).
///
/// ```
/// use std::time::Duration;
/// use framerpc::codec::F64;
/// use framerpc::{Client, Command, Router, Server, WhenFull};
/// const MOVE_TO: Command<f64, f64> = Command::new(1, "move_to", &F64, &F64);
///
/// let router = Router::new().handle(&MOVE_TO, |x| Ok(x));
/// let server = Server::builder()
///     .max_users(1)                                        // one user at a time
///     .when_full(WhenFull::Queue { max_wait: Duration::from_secs(60) })
///     .on_release(|r| println!("{:?} left after {:?}: motor stopped", r.peer, r.held_for))
///     .grace(Duration::from_secs(1))                       // shutdown waits this long
///     .bind("127.0.0.1:0", router)?;
///
/// let client = Client::connect(server.local_addr())?;
/// assert_eq!(client.call(&MOVE_TO, &2.5)?, 2.5);           // this connection holds the device
/// assert_eq!(server.status().active, 1);
/// drop(client);                                            // and gives it back: on_release runs
/// server.shutdown();
/// # Ok::<(), framerpc::Error>(())
/// ```
#[must_use]
pub struct ServerBuilder {
    pub(crate) limits: Limits,
    max_users: u32,
    when_full: WhenFull,
    hold_idle: Option<Duration>,
    on_release: Option<ReleaseHook>,
    state: Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) token: Option<Arc<[u8]>>,
    stack_size: usize,
    max_connections: usize,
    grace: Duration,
    on_connect: Option<PeerHook>,
    on_disconnect: Option<PeerHook>,
    /// See [`ServerBuilder::trusted_proxies`].
    pub(crate) trusted_proxies: Arc<[std::net::IpAddr]>,
    #[cfg(feature = "ws")]
    pub(crate) ws: Option<crate::ws::WsConfig>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsConfig>,
}

type PeerHook = Arc<dyn Fn(&Peer) + Send + Sync>;

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("limits", &self.limits)
            .field("max_users", &self.max_users)
            .field("when_full", &self.when_full)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_users: u32::MAX,
            when_full: WhenFull::default(),
            hold_idle: None,
            on_release: None,
            state: None,
            token: None,
            stack_size: 256 * 1024,
            max_connections: 1024,
            grace: DEFAULT_GRACE,
            on_connect: None,
            on_disconnect: None,
            trusted_proxies: Arc::from([]),
            #[cfg(feature = "ws")]
            ws: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ServerBuilder {
    /// Size and time limits (default [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// At most `n` users (connections) admitted at once; 1 is exclusive
    /// access. Default: no limit.
    pub fn max_users(mut self, n: u32) -> Self {
        self.max_users = n.max(1);
        self
    }

    /// What happens beyond `max_users` (default: queue for up to 30 s).
    pub fn when_full(mut self, policy: WhenFull) -> Self {
        self.when_full = policy;
        self
    }

    /// Lets a hold lapse after `idle` without a call that needs the device
    /// (default: off, a hold lasts until `release` or the connection ends).
    /// The lapsed connection stays open; `on_release` runs, the next waiter
    /// is admitted, and the lapsed connection's next such call queues again
    /// at the back, told that its hold lapsed. Checked when someone waits
    /// (at once) and on the holder's quiet read ticks (within a second).
    ///
    /// ```
    /// use std::time::Duration;
    /// use framerpc::Server;
    /// let builder = Server::builder()
    ///     .max_users(1)
    ///     .hold_idle(Duration::from_secs(120)); // the operator walked away
    /// # let _ = builder;
    /// ```
    pub fn hold_idle(mut self, idle: Duration) -> Self {
        self.hold_idle = Some(idle);
        self
    }

    /// Runs every time a hold ends, whatever the reason (close, `release`,
    /// lapse, the administrator), before the next user is admitted: stop
    /// the motor here.
    pub fn on_release(mut self, hook: impl Fn(&Released) + Send + Sync + 'static) -> Self {
        self.on_release = Some(Arc::new(hook));
        self
    }

    /// Application state that handlers reach with [`Ctx::state`](crate::Ctx::state).
    pub fn state<T: Any + Send + Sync>(mut self, state: T) -> Self {
        self.state = Some(Arc::new(state));
        self
    }

    /// Requires this token: raw TCP connections must send it in an `auth`
    /// frame first (default: no token on raw TCP).
    pub fn token(mut self, token: impl Into<Vec<u8>>) -> Self {
        self.token = Some(token.into().into());
        self
    }

    /// Stack size of each connection's thread and of the spare threads that
    /// run calls (default 256 KiB). Raise it for handlers with deep
    /// recursion.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes.max(64 * 1024);
        self
    }

    /// Connections served at once; more are closed at accept (default 1024).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Runs for each new connection before any of its calls (on a spare
    /// thread, while the connection is already read: `ping` and `status`
    /// are answered meanwhile), with a handle to the peer that stays usable
    /// from other threads: keep it to call or notify that client later.
    /// Default: none.
    pub fn on_connect(mut self, hook: impl Fn(&Peer) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Arc::new(hook));
        self
    }

    /// Runs once a connection has ended and its last handler has returned.
    /// Default: none.
    pub fn on_disconnect(mut self, hook: impl Fn(&Peer) + Send + Sync + 'static) -> Self {
        self.on_disconnect = Some(Arc::new(hook));
        self
    }

    /// How long shutdown waits for calls in flight (default 5 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Binds `addr` (port 0 picks a free port) and starts serving `router`.
    pub fn bind(self, addr: impl ToSocketAddrs, router: Router) -> Result<Server, Error> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let admission = Arc::new(Admission::new(
            self.max_users,
            self.when_full,
            self.hold_idle,
            self.on_release.clone(),
        ));
        let watch = Arc::new(Watch::default());
        #[cfg(feature = "ws")]
        let unknown_hint = match &self.ws {
            Some(ws) if router.commands().is_empty() => {
                let hint = ws.raw_hint(local_addr);
                Some(format!(": raw TCP on this port serves no commands; {hint}").into())
            }
            _ => None,
        };
        #[cfg(not(feature = "ws"))]
        let unknown_hint = None;
        let services = Services {
            router: Some(Arc::new(router)),
            admission: Some(admission),
            state: self.state.clone(),
            token: self.token.clone(),
            helpers: Some(Helpers {
                pool: Pool::new("framerpc-spare", self.stack_size),
                watch: Arc::clone(&watch),
                serve: crate::worker::spare,
            }),
            hooked: self.on_connect.is_some(),
            unknown_hint,
        };
        let shared = Arc::new(Shared {
            local_addr,
            stop: AtomicBool::new(false),
            watch,
            next_conn: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            services,
            config: self,
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("framerpc-accept".into())
            .spawn(move || accept_loop(&s, listener))?;
        let s = Arc::clone(&shared);
        let watchdog = std::thread::Builder::new()
            .name("framerpc-watchdog".into())
            .stack_size(64 * 1024)
            .spawn(move || s.watch.run(|| s.check_stalled()))?;
        Ok(Server {
            shared,
            accept: Some(accept),
            watchdog: Some(watchdog),
        })
    }
}

struct Live {
    conn: Option<Arc<Conn>>,
    done: Receiver<()>,
}

pub(crate) struct Shared {
    local_addr: SocketAddr,
    stop: AtomicBool,
    watch: Arc<Watch>,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, Live>>,
    pub(crate) services: Services,
    pub(crate) config: ServerBuilder,
}

/// A running server. Dropping it shuts it down (see [`Server::shutdown`]).
///
/// ```
/// use framerpc::codec::U32;
/// use framerpc::{Client, Command, Router, Server};
/// const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
///
/// let router = Router::new().handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)));
/// let server = Server::bind("127.0.0.1:0", router)?;
/// let client = Client::connect(server.local_addr())?;
/// assert_eq!(client.call(&ADD, &(2, 3))?, 5);
/// server.shutdown();
/// # Ok::<(), framerpc::Error>(())
/// ```
pub struct Server {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    watchdog: Option<JoinHandle<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.shared.local_addr)
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl Server {
    /// Settings for a new server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Binds with default settings and starts serving `router`.
    pub fn bind(addr: impl ToSocketAddrs, router: Router) -> Result<Self, Error> {
        ServerBuilder::default().bind(addr, router)
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// A handle for other threads (and handlers): peers, broadcast,
    /// status, shutdown.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle(Arc::clone(&self.shared))
    }

    /// The token clients must present (raw TCP `auth` frame, WebSocket
    /// Bearer header), e.g. the one generated for a WebSocket server; `None`
    /// for an open server or a token that is not UTF-8.
    pub fn token(&self) -> Option<&str> {
        let token = self.shared.services.token.as_deref()?;
        std::str::from_utf8(token).ok()
    }

    /// Admission numbers right now.
    pub fn status(&self) -> Status {
        self.shared
            .services
            .admission
            .as_ref()
            .map(|a| a.status())
            .unwrap_or_default()
    }

    /// Who holds the device now (see [`ServerHandle::holders`]).
    pub fn holders(&self) -> Vec<Holder> {
        self.shared.holders()
    }

    /// Connections open right now.
    pub fn connection_count(&self) -> usize {
        self.shared.conns.lock().len()
    }

    /// Handles to every connected peer, to call or notify them.
    pub fn peers(&self) -> Vec<Peer> {
        self.shared.peers()
    }

    /// Sends `cmd` as a NOTIFY to every connected peer; returns how many it
    /// reached. A peer that has gone is skipped.
    pub fn broadcast<Req, Resp>(&self, cmd: &Command<Req, Resp>, req: &Req) -> usize {
        self.shared.broadcast(cmd, req)
    }

    /// Stops accepting, answers new calls with SHUTTING_DOWN, lets calls in
    /// flight finish within the grace period, closes every connection (so
    /// waiting callers get an error, never a hang) and joins the threads.
    /// Returns true if every thread ended in time.
    pub fn shutdown(mut self) -> bool {
        self.stop()
    }

    fn stop(&mut self) -> bool {
        let clean = self.shared.shutdown();
        // The watchdog serves connections until shutdown is over: a call in
        // flight during the grace period still has its connection read.
        self.shared.watch.stop();
        for t in [self.accept.take(), self.watchdog.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
        clean
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.stop();
        }
    }
}

/// A [`Server`]'s handle for other threads: cheap to clone, usable from
/// handlers (to broadcast, or reach another client) and from anywhere else.
///
/// ```
/// use framerpc::codec::STR;
/// use framerpc::{Client, ClientBuilder, Command, Router, Server};
/// const NEWS: Command<String, ()> = Command::new(9, "news", &STR, &framerpc::codec::UNIT);
///
/// let server = Server::bind("127.0.0.1:0", Router::new())?;
/// let handle = server.handle();
/// let (tx, rx) = std::sync::mpsc::channel();
/// let _client = ClientBuilder::default()
///     .handlers(Router::new().handle(&NEWS, move |text| Ok(tx.send(text).unwrap())))
///     .connect(server.local_addr())?;
/// // From any thread: notify every connected client.
/// std::thread::spawn(move || {
///     while handle.broadcast(&NEWS, &"hello all".to_string()) == 0 {
///         std::thread::yield_now(); // until the client is counted
///     }
/// });
/// assert_eq!(rx.recv().unwrap(), "hello all");
/// server.shutdown();
/// # Ok::<(), framerpc::Error>(())
/// ```
#[derive(Clone)]
pub struct ServerHandle(Arc<Shared>);

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServerHandle")
            .field(&self.0.local_addr)
            .finish()
    }
}

impl ServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr
    }

    /// Handles to every connected peer.
    pub fn peers(&self) -> Vec<Peer> {
        self.0.peers()
    }

    /// Sends `cmd` as a NOTIFY to every connected peer; returns how many it
    /// reached.
    pub fn broadcast<Req, Resp>(&self, cmd: &Command<Req, Resp>, req: &Req) -> usize {
        self.0.broadcast(cmd, req)
    }

    /// Who holds the device now: name, address, held for, idle for, and
    /// how many wait behind.
    pub fn holders(&self) -> Vec<Holder> {
        self.0.holders()
    }

    /// Forces connection `conn_id` (see [`Holder::conn_id`]) to give the
    /// device back: at once, or when its call that needs the device ends.
    /// `on_release` runs and the next waiter is admitted; the connection
    /// stays open, and its next call that needs the device queues again,
    /// told that the server released it. False if it holds nothing.
    ///
    /// ```
    /// # use framerpc::{Router, Server};
    /// let server = Server::builder().max_users(1).bind("127.0.0.1:0", Router::new())?;
    /// let admin = server.handle();
    /// for h in admin.holders() {
    ///     if h.idle_for > std::time::Duration::from_secs(600) {
    ///         admin.release(h.conn_id);
    ///     }
    /// }
    /// # Ok::<(), framerpc::Error>(())
    /// ```
    pub fn release(&self, conn_id: u64) -> bool {
        self.0
            .services
            .admission
            .as_ref()
            .is_some_and(|a| a.force(conn_id))
    }

    /// Shuts the server down as [`Server::shutdown`] does (the accept
    /// thread is joined when the `Server` is dropped).
    pub fn shutdown(&self) -> bool {
        self.0.shutdown()
    }
}

impl Shared {
    fn peers(&self) -> Vec<Peer> {
        self.conns
            .lock()
            .values()
            .filter_map(|l| l.conn.clone())
            .filter(|c| !c.is_closed())
            .map(Peer::from_conn)
            .collect()
    }

    fn holders(&self) -> Vec<Holder> {
        self.services
            .admission
            .as_ref()
            .map(|a| a.holders())
            .unwrap_or_default()
    }

    fn broadcast<Req, Resp>(&self, cmd: &Command<Req, Resp>, req: &Req) -> usize {
        self.peers()
            .iter()
            .filter(|p| p.notify(cmd, req).is_ok())
            .count()
    }

    /// True once shutdown has begun.
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The bound port (for messages).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn local_port(&self) -> u16 {
        self.local_addr.port()
    }

    fn shutdown(&self) -> bool {
        if self.stop.swap(true, Ordering::AcqRel) {
            return true;
        }
        // Wake the blocked accept().
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let deadline = Instant::now() + self.config.grace;
        let conns: Vec<Arc<Conn>> = self
            .conns
            .lock()
            .values()
            .filter_map(|l| l.conn.clone())
            .collect();
        for c in &conns {
            c.shutting_down.store(true, Ordering::Relaxed);
        }
        // Close each connection as soon as it has no call in flight; after
        // the grace period, close the rest.
        loop {
            let mut busy = false;
            for c in &conns {
                if c.calls_in_flight() == 0 {
                    c.close_saying(ErrorCode::SHUTTING_DOWN, SHUTDOWN_NOTICE);
                } else {
                    busy |= !c.is_closed();
                }
            }
            if !busy || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for c in &conns {
            c.close_saying(ErrorCode::SHUTTING_DOWN, SHUTDOWN_NOTICE);
        }
        let waits: Vec<Receiver<()>> = self.conns.lock().values().map(|l| l.done.clone()).collect();
        let mut clean = true;
        let join_deadline = Instant::now().max(deadline) + JOIN_BOUND;
        for done in waits {
            let left = join_deadline.saturating_duration_since(Instant::now());
            if let Err(RecvTimeoutError::Timeout) = done.recv_timeout(left) {
                clean = false;
            }
        }
        clean
    }

    /// The watchdog's look at every connection: one whose calls have run
    /// unread past [`STALL`] gets another thread to read it. Under the lock
    /// and without collecting: nothing allocates, and `check_stalled` only
    /// try-locks, so this never waits on a handler.
    fn check_stalled(&self) -> bool {
        let mut running = false;
        for c in self.conns.lock().values().filter_map(|l| l.conn.as_ref()) {
            running |= c.check_stalled(STALL);
        }
        running
    }

    fn register(&self, id: u64, done: Receiver<()>) {
        self.conns.lock().insert(id, Live { conn: None, done });
    }

    fn attach(&self, id: u64, conn: &Arc<Conn>) {
        if let Some(l) = self.conns.lock().get_mut(&id) {
            l.conn = Some(Arc::clone(conn));
        }
        if self.stop.load(Ordering::Acquire) {
            conn.shutting_down.store(true, Ordering::Relaxed);
            conn.close();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let mut backoff = AcceptBackoff::default();
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let stream = match stream {
            Ok(s) => {
                backoff.ok();
                s
            }
            Err(e) => {
                // EMFILE and friends: say so once, then back off instead
                // of spinning until accepting works again.
                backoff.failed(&e, shared);
                continue;
            }
        };
        if shared.conns.lock().len() >= shared.config.max_connections {
            drop(stream);
            continue;
        }
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let (done_tx, done_rx) = bounded::<()>(0);
        shared.register(id, done_rx);
        let s = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name(format!("framerpc-conn-{id}"))
            .stack_size(shared.config.stack_size)
            .spawn(move || {
                let _done = done_tx; // dropped when this thread ends
                serve_stream(&s, id, stream);
                s.conns.lock().remove(&id);
            });
        if spawned.is_err() {
            shared.conns.lock().remove(&id);
        }
    }
}

/// What a connection is told when the server closes it at shutdown.
const SHUTDOWN_NOTICE: &str = "the server is shutting down";

/// How long shutdown waits, after the grace period, for a connection's
/// threads to end once it is cut (a handler that never returns is left
/// running, and shutdown reports it was not clean).
const JOIN_BOUND: Duration = Duration::from_millis(250);

/// Accept errors: reported once per run of failures, retried after a
/// pause that doubles up to a second.
#[derive(Default)]
struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    fn ok(&mut self) {
        self.failures = 0;
    }

    fn failed(&mut self, e: &std::io::Error, shared: &Shared) {
        if self.failures == 0 {
            eprintln!(
                "framerpc: accepting on {} failed: {}; retrying with backoff",
                shared.local_addr,
                accept_error_text(e, shared.conns.lock().len())
            );
        }
        self.failures = self.failures.saturating_add(1);
        let pause = Duration::from_millis(5 << self.failures.min(8)).min(Duration::from_secs(1));
        std::thread::sleep(pause);
    }
}

/// Says what an accept error means, naming the open-file limit when the
/// process or the system ran out of file descriptors.
pub(crate) fn accept_error_text(e: &std::io::Error, open_conns: usize) -> String {
    // EMFILE (24): this process's limit; ENFILE (23): the system's.
    match e.raw_os_error() {
        Some(24) => format!(
            "{e}: the process's open-file limit ({}) is reached with {open_conns} connections \
             open; each connection takes {FDS_PER_CONN} file descriptor (TCP, WebSocket and \
             TLS alike); raise the limit (ulimit -n) or lower ServerBuilder::max_connections",
            open_file_limit().map_or_else(|| "unknown".into(), |n| n.to_string()),
        ),
        Some(23) => format!("{e}: the system-wide open-file limit is reached"),
        _ => e.to_string(),
    }
}

/// File descriptors a connection takes, on every transport.
const FDS_PER_CONN: u32 = 1;

/// The soft open-file limit (`ulimit -n`), read from /proc on Linux.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves one accepted stream until it closes.
fn serve_stream(shared: &Arc<Shared>, id: u64, stream: TcpStream) {
    let limits = shared.config.limits;
    if tune(&stream, &limits).is_err() {
        return;
    }
    // A trusted proxy's PROXY line names the real client.
    let Ok(forwarded) = crate::proxy::accept(shared, &stream) else {
        return;
    };
    #[cfg(feature = "tls")]
    if shared.config.tls.is_some() {
        crate::tls::serve(shared, id, stream, forwarded);
        return;
    }
    // One handle of the socket for both halves and the closer, whatever
    // the transport: one file descriptor per connection.
    let socket = Socket(Arc::new(stream));
    // Bytes already read while telling a WebSocket upgrade from raw frames.
    #[cfg(feature = "ws")]
    let prefix = match &shared.config.ws {
        Some(ws) => match crate::ws::serve_if_upgrade(shared, ws, id, &socket.0, forwarded) {
            crate::ws::Sniffed::Raw(bytes) if ws.raw_tcp => bytes,
            crate::ws::Sniffed::Raw(_) => {
                crate::ws::refuse_raw(&socket.0, ws, shared.local_addr);
                return;
            }
            _ => return,
        },
        None => Vec::new(),
    };
    #[cfg(not(feature = "ws"))]
    let prefix: Vec<u8> = Vec::new();
    let mut writer = TcpWriter::new(&socket, &limits);
    if forwarded.is_some() {
        writer.peer = forwarded;
    }
    let reader = FrameReader::with_prefix(socket, limits.max_frame_len, &prefix);
    run_conn(
        shared,
        id,
        Box::new(writer),
        Box::new(TcpReader(reader)),
        shared.services.clone(),
    );
}

/// Runs one connection over any transport, on the calling thread (the
/// connection's own), until it ends and every handler has returned.
pub(crate) fn run_conn(
    shared: &Arc<Shared>,
    id: u64,
    writer: Box<dyn FrameWrite>,
    reader: Box<dyn FrameRead>,
    services: Services,
) {
    let conn = Conn::new(
        id,
        shared.config.limits,
        services,
        Duration::from_secs(30),
        writer,
    );
    shared.attach(id, &conn);
    let Some(router) = conn.services.router.clone() else {
        return;
    };
    let on_connect = shared.config.on_connect.clone().map(|hook| {
        move |c: &Arc<Conn>| {
            let peer = Peer::from_conn(Arc::clone(c));
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&peer)));
        }
    });
    crate::worker::start(&conn, on_connect);
    crate::worker::serve(&conn, &router, Some(Role::new(reader)), Part::Home);
    // Spare threads may still run a call: "ended" means every handler has
    // returned. Then the permit goes back.
    conn.inbox.wait_idle();
    router.disconnected(conn.id);
    conn.leave_seat();
    if let Some(hook) = &shared.config.on_disconnect {
        let peer = Peer::from_conn(conn);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&peer)));
    }
}
