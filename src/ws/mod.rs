//! WebSocket transport (feature `ws`): routers mounted on paths, a token
//! checked at the upgrade, and the same frames inside binary messages.
//!
//! ```
//! use framerpc::codec::U32;
//! use framerpc::{Client, Command, Router, Server, WsConfig};
//! const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
//!
//! let router = Router::new().handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)));
//! let server = Server::builder()
//!     .ws(WsConfig::new().mount("/calc", router))
//!     .bind("127.0.0.1:0", Router::new())?;
//! // No token was configured, so the server generated one.
//! let token = server.token().expect("generated").to_owned();
//! let client = Client::connect_ws(&server.ws_url("/calc"), Some(&token))?;
//! assert_eq!(client.call(&ADD, &(2, 3))?, 5);
//! # Ok::<(), framerpc::Error>(())
//! ```
//!
//! Wire contract: one binary message carries exactly one whole frame,
//! header included, and the header's `len` is the message length minus 12.
//! A text message closes the connection with 1003, a bad frame or `len`
//! with 1002, a message over the limit with 1009. WebSocket pings are the
//! heartbeat; any byte received counts as life.
//!
//! Web pages: the upgrade checks `Origin` and `Host` before the path and
//! the token, and answers 403 to a browser origin or a `Host` it does not
//! allow; an open server allows no browser origin by default. See
//! [`WsConfig::allowed_origins`] and [`WsConfig::allowed_hosts`].

mod accept;
mod connect;
pub use connect::TOKEN_ENV;
mod origin;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::router::Router;
use crate::server::{Server, ServerBuilder};
use origin::{HostPattern, OriginPattern};

#[cfg(feature = "tls")]
pub(crate) use accept::serve_upgrade;
pub(crate) use accept::{refuse_raw, serve_if_upgrade, Sniffed};
#[cfg(feature = "tls")]
pub(crate) use stream::{Sink, Source};

/// Where and how a server accepts WebSocket upgrades; pass it to
/// [`ServerBuilder::ws`]. Every setter states its default.
///
/// ```
/// use framerpc::codec::U32;
/// use framerpc::{Client, Command, Router, Server, WsConfig};
/// const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
///
/// let calc = Router::new().handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)));
/// let server = Server::builder()
///     .token("s3cret")                          // else one is generated: server.token()
///     .ws(WsConfig::new()
///         .mount("/calc", calc)                 // one namespace per path
///         .allowed_origins(["https://app.example"]))
///     .bind("127.0.0.1:0", Router::new())?;     // raw TCP on the same port: no commands
/// let client = Client::connect_ws(&server.ws_url("/calc"), Some("s3cret"))?;
/// assert_eq!(client.call(&ADD, &(2, 3))?, 5);
/// # Ok::<(), framerpc::Error>(())
/// ```
///
/// Each mounted path is a namespace with its own [`Router`]; one router may
/// be mounted on several paths (pass clones of an `Arc<Router>`). An
/// unknown path gets HTTP 404.
#[derive(Clone)]
#[must_use]
pub struct WsConfig {
    pub(crate) mounts: HashMap<String, Arc<Router>>,
    pub(crate) open: bool,
    /// Whether raw TCP frames are also served on the same port.
    pub(crate) raw_tcp: bool,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_header_lines: usize,
    /// `None`: the default rule (see [`WsConfig::allowed_origins`]).
    pub(crate) allowed_origins: Option<Arc<[OriginPattern]>>,
    /// `None`: the default rule (see [`WsConfig::allowed_hosts`]).
    pub(crate) allowed_hosts: Option<Arc<[HostPattern]>>,
}

impl fmt::Debug for WsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut paths: Vec<&str> = self.mounts.keys().map(String::as_str).collect();
        paths.sort_unstable();
        f.debug_struct("WsConfig")
            .field("paths", &paths)
            .field("open", &self.open)
            .field("raw_tcp", &self.raw_tcp)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_header_lines", &self.max_header_lines)
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            mounts: HashMap::new(),
            open: false,
            raw_tcp: true,
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_header_lines: 100,
            allowed_origins: None,
            allowed_hosts: None,
        }
    }
}

impl WsConfig {
    /// No paths yet, a token required, raw TCP served on the same port.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `router` at `path` (e.g. `"/greet"`; a missing leading `/` is
    /// added). Mounting again on the same path replaces the router.
    pub fn mount(mut self, path: &str, router: impl Into<Arc<Router>>) -> Self {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self.mounts.insert(path, router.into());
        self
    }

    /// Accepts upgrades without a token, unless one is set with
    /// [`ServerBuilder::token`] (default: a token is required, and one is
    /// generated when none is set).
    ///
    /// **Warning:** without a token, anything that can reach the port can
    /// list and call every command and hold an admission permit, and a web
    /// page in a browser on the same machine can reach `127.0.0.1`. So an
    /// open server refuses every upgrade that carries an `Origin` header
    /// (browsers always send one) unless that origin is listed with
    /// [`allowed_origins`](Self::allowed_origins), and refuses a `Host`
    /// header that does not name a loopback address, `localhost`, the
    /// address the connection arrived on, or an entry of
    /// [`allowed_hosts`](Self::allowed_hosts) (DNS rebinding). Both get
    /// HTTP 403. Clients that send no `Origin` (framerpc's, Python
    /// `websockets`, tungstenite, websocat) are not affected by the first
    /// rule. Raw TCP on the same port is open too.
    pub fn open(mut self) -> Self {
        self.open = true;
        self
    }

    /// The browser origins allowed to upgrade, checked before the path and
    /// the token: a request whose `Origin` header is on no entry gets HTTP
    /// 403 and no frame is processed. A request without `Origin` (a
    /// non-browser client) is not affected. Replaces any earlier list; an
    /// empty list refuses every browser.
    ///
    /// Default (no list): with a token every origin is allowed (the token
    /// protects); an open server (no token) refuses every origin.
    ///
    /// Each entry is one of:
    /// - `scheme://host[:port]`, e.g. `https://app.example` or
    ///   `http://localhost:3000`: scheme and host compared ASCII
    ///   case-insensitively, the port exactly, a missing port meaning the
    ///   scheme's default (80 for `http`/`ws`, 443 for `https`/`wss`). No
    ///   path, not even a trailing `/`. IPv6 hosts in brackets.
    /// - a port of `*`: any port, e.g. `http://localhost:*`.
    /// - a host of `*.name`: any host that ends with `.name` (at least one
    ///   more label; not `name` itself), e.g. `https://*.lab.example`. `*`
    ///   is allowed only as the whole first label.
    /// - `null`: the opaque origin that `file://` pages and sandboxed
    ///   frames send. Allow it only if you mean it: any local HTML file
    ///   has it.
    /// - `*`: any origin except `null`.
    ///
    /// # Panics
    ///
    /// On an entry that is none of these, with a message naming it; see
    /// [`try_allowed_origins`](Self::try_allowed_origins) for origins read
    /// at run time.
    pub fn allowed_origins<I, S>(self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.try_allowed_origins(origins)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`allowed_origins`](Self::allowed_origins) that returns
    /// [`Error::Config`] naming a malformed entry instead of panicking.
    pub fn try_allowed_origins<I, S>(mut self, origins: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = origins
            .into_iter()
            .map(|o| OriginPattern::parse(o.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("WsConfig::allowed_origins: {e}").into()))?;
        self.allowed_origins = Some(list.into());
        Ok(self)
    }

    /// Host names (or addresses) that a `Host` header may name besides the
    /// ones always accepted: a loopback address (`127.0.0.0/8`, `[::1]`),
    /// `localhost`, and the IP address the connection arrived on. A `Host`
    /// that names none of them, or a missing, repeated or malformed `Host`,
    /// gets HTTP 403. This refuses DNS rebinding, where a page at
    /// `evil.example` whose name now resolves to this machine connects with
    /// `Host: evil.example`.
    ///
    /// Default (no list): checked only on an open server (no token); with
    /// a token the `Host` is not looked at. Setting a list (replacing any
    /// earlier one) turns the check on with or without a token.
    ///
    /// Each entry is a host name (`device.lab.example`, compared ASCII
    /// case-insensitively), an IP address (`10.0.0.7`, `fe80::1` or
    /// `[fe80::1]`), `*.name` (any host ending with `.name`, not `name`
    /// itself) or `*` (any `Host`: the check is off). Entries carry no port
    /// and the port of a `Host` header is not compared.
    ///
    /// # Panics
    ///
    /// On an entry that is none of these; see
    /// [`try_allowed_hosts`](Self::try_allowed_hosts).
    pub fn allowed_hosts<I, S>(self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.try_allowed_hosts(hosts)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`allowed_hosts`](Self::allowed_hosts) that returns
    /// [`Error::Config`] naming a malformed entry instead of panicking.
    pub fn try_allowed_hosts<I, S>(mut self, hosts: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = hosts
            .into_iter()
            .map(|h| HostPattern::parse(h.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("WsConfig::allowed_hosts: {e}").into()))?;
        self.allowed_hosts = Some(list.into());
        Ok(self)
    }

    /// What raw TCP on a port that serves no raw commands is told.
    pub(crate) fn raw_hint(&self, addr: std::net::SocketAddr) -> String {
        let mut paths: Vec<&str> = self.mounts.keys().map(String::as_str).collect();
        paths.sort_unstable();
        let first = paths.first().copied().unwrap_or("/");
        format!(
            "this server serves its commands over WebSocket (paths {}): connect with \
             Client::connect_ws(\"ws://{addr}{first}\", ..)",
            paths.join(", ")
        )
    }

    /// Whether connections that do not start with `GET ` are served as raw
    /// TCP frames on the same port (default true).
    pub fn raw_tcp(mut self, yes: bool) -> Self {
        self.raw_tcp = yes;
        self
    }

    /// The whole HTTP upgrade must arrive within this time from its first
    /// byte, or the connection is dropped (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Largest HTTP head accepted, in bytes; more gets HTTP 431 (default
    /// 16 KiB).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.max(256);
        self
    }

    /// Most header lines accepted; more gets HTTP 431 (default 100).
    pub fn max_header_lines(mut self, lines: usize) -> Self {
        self.max_header_lines = lines.max(8);
        self
    }
}

/// A fresh random token: 32 bytes from the OS-seeded CSPRNG, hex encoded.
pub(crate) fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl ServerBuilder {
    /// Also accepts WebSocket upgrades on the same port, for the paths in
    /// `config` (the router passed to `bind` serves raw TCP).
    ///
    /// Unless `config` is [`open`](WsConfig::open) or a token is set with
    /// [`ServerBuilder::token`], a random token is generated here (32 bytes,
    /// hex): read it with [`Server::token`] and hand it to clients. The
    /// token guards raw TCP on the same port too (the `auth` frame). The
    /// library never logs it.
    pub fn ws(mut self, config: WsConfig) -> Self {
        if !config.open && self.token.is_none() {
            self.token = Some(generate_token().into_bytes().into());
        }
        self.ws = Some(config);
        self
    }
}

impl Server {
    /// `ws://ADDR/path` for this server (the address as bound).
    pub fn ws_url(&self, path: &str) -> String {
        let sep = if path.starts_with('/') { "" } else { "/" };
        format!("ws://{}{sep}{path}", self.local_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_chars_and_differ() {
        let a = generate_token();
        let b = generate_token();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn mount_adds_leading_slash() {
        let c = WsConfig::new().mount("greet", Router::new());
        assert!(c.mounts.contains_key("/greet"));
    }
}
