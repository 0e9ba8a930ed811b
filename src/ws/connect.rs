//! The client side: `ws://` and `wss://` URLs, token as a Bearer header,
//! tungstenite's client handshake over the byte stream (the socket, or a
//! TLS session), bytes read past the 101 answer kept for the reader.

use std::sync::Arc;
use std::time::Instant;

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{header, HeaderValue, Uri};

use super::stream::{ws_config, Out, Sink, Source, WsReader, WsStream, WsWriter};
use crate::client::{connect_tcp, Client, ClientBuilder, Target, Transport};
use crate::command::Spec;
use crate::error::{Error, Stage, Timeout};
use crate::tcp::tune;

/// The environment variable the client reads its token from when none is
/// given.
pub const TOKEN_ENV: &str = "FRAMERPC_TOKEN";

impl ClientBuilder {
    /// Connects over WebSocket to `url` (`ws://host:port/path`, or
    /// `wss://host:port/path` inside TLS with feature `tls`; the path
    /// selects the server's namespace). The token set with
    /// [`ClientBuilder::token`], else the `FRAMERPC_TOKEN` environment
    /// variable, goes in an `Authorization: Bearer` header. A refused
    /// upgrade is [`Error::Handshake`] naming the HTTP status (never the
    /// token). [`ClientBuilder::connect_timeout`] bounds connect and
    /// handshake together. `wss://` checks the server's certificate as
    /// [`ClientBuilder::connect_tls`] does (roots from
    /// `ClientBuilder::tls_roots_pem`).
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    pub fn connect_ws(mut self, url: &str) -> Result<Client, Error> {
        #[cfg(feature = "tls")]
        if url.starts_with("wss://") {
            self.prepare_tls()?;
        }
        self.connect_to(Target::Ws(url.to_owned()))
    }

    /// Opens one WebSocket connection: TCP, then the upgrade.
    pub(crate) fn dial_ws(&self, url: &str) -> Result<Transport, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::Config(format!("bad WebSocket URL: {e}").into()))?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            #[cfg(feature = "tls")]
            Some("wss") => true,
            #[cfg(not(feature = "tls"))]
            Some("wss") => {
                return Err(Error::Config(
                    "wss:// needs framerpc's `tls` feature; use ws://, or enable it".into(),
                ))
            }
            _ => {
                return Err(Error::Config(
                    "a WebSocket URL starts with ws:// or wss://".into(),
                ))
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| Error::Config("WebSocket URL without a host".into()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let deadline = Instant::now() + self.connect_timeout;
        let (source, sink) = self.dial_stream(&host, port, tls)?;
        let peer = sink.peer_addr();

        let mut request = uri
            .into_client_request()
            .map_err(|e| Error::Config(format!("bad WebSocket URL: {e}").into()))?;
        let token = self
            .token
            .clone()
            .or_else(|| std::env::var(TOKEN_ENV).ok().map(String::into_bytes));
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            let mut value = b"Bearer ".to_vec();
            value.extend_from_slice(&token);
            let value = HeaderValue::from_bytes(&value).map_err(|_| {
                Error::Config("the token has bytes not allowed in an HTTP header".into())
            })?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }

        let out = Out::shared(sink, true);
        let mut st = WsStream::new(source, Arc::clone(&out), Vec::new(), true);
        st.record_reads();
        let mut round =
            tungstenite::client::client_with_config(request, st, Some(ws_config(&self.limits)));
        let socket = loop {
            match round {
                Ok((socket, _response)) => break socket,
                Err(HandshakeError::Interrupted(mid)) => {
                    if Instant::now() >= deadline {
                        let what = url_shown(url);
                        let t = Timeout::new(Stage::Handshake, what, self.connect_timeout);
                        return Err(t.into());
                    }
                    round = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(handshake_error(e, url)),
            }
        };
        // tungstenite may have read frames past the 101 answer along with
        // it: they are the reader's first bytes.
        let mut st = socket.into_inner();
        let tail = st.tail_after_head();
        st.serve(tail);
        let reader = WsReader::from_stream(st, self.limits.max_frame_len);
        Ok((peer, Box::new(WsWriter::new(out, peer)), Box::new(reader)))
    }

    /// The byte stream under a WebSocket connection: TCP, or TCP and the
    /// TLS handshake (one socket handle either way).
    fn dial_stream(&self, host: &str, port: u16, tls: bool) -> Result<(Source, Sink), Error> {
        #[cfg(feature = "tls")]
        if tls {
            let (sess, early) = self.dial_tls_session(host, port)?;
            let read = crate::tls::session::TlsRead::new(Arc::clone(&sess), early);
            return Ok((Source::Tls(read), Sink::Tls(sess)));
        }
        let _ = tls;
        let stream = connect_tcp((host, port), self.connect_timeout)?;
        tune(&stream, &self.limits)?;
        let socket = Arc::new(stream);
        Ok((Source::Tcp(Arc::clone(&socket)), Sink::Tcp(socket)))
    }

    /// Connects over WebSocket, then checks the server's command table
    /// against `specs` (see [`Client::check`]).
    pub fn connect_ws_checked(self, url: &str, specs: &[&dyn Spec]) -> Result<Client, Error> {
        let client = self.connect_ws(url)?;
        client.check(specs)?;
        Ok(client)
    }
}

/// Describes a failed upgrade without echoing the request (it may hold the
/// token in its query).
fn handshake_error(e: tungstenite::Error, url: &str) -> Error {
    match e {
        tungstenite::Error::Io(io) => Error::Io(io),
        tungstenite::Error::Http(resp) => {
            let status = resp.status();
            let why = match status.as_u16() {
                401 => {
                    "missing or wrong token: pass it with ClientBuilder::token or \
                     Client::connect_ws(url, Some(token)), or set FRAMERPC_TOKEN"
                }
                403 => "the server refused this Origin or Host (WsConfig::allowed_origins, allowed_hosts)",
                404 => "the server has no namespace at this path (WsConfig::mount)",
                431 => "request headers too large",
                _ => "the server refused the upgrade",
            };
            let url = url_shown(url);
            Error::Handshake(format!("HTTP {} from {url}: {why}", status.as_u16()).into())
        }
        tungstenite::Error::Protocol(p) => {
            Error::Handshake(format!("bad upgrade answer: {p}").into())
        }
        other => {
            Error::Handshake(format!("WebSocket handshake failed: {}", kind_of(&other)).into())
        }
    }
}

/// The URL without its query (which may carry the token).
fn url_shown(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

fn kind_of(e: &tungstenite::Error) -> &'static str {
    match e {
        tungstenite::Error::Url(_) => "bad URL",
        tungstenite::Error::HttpFormat(_) => "bad HTTP",
        tungstenite::Error::Capacity(_) => "answer too large",
        _ => "unexpected error",
    }
}

impl Client {
    /// Connects over WebSocket with default settings; `token` `None` reads
    /// `FRAMERPC_TOKEN` from the environment (see
    /// [`ClientBuilder::connect_ws`]).
    ///
    /// ```no_run
    /// let client = framerpc::Client::connect_ws("ws://127.0.0.1:9000/greet", None)?;
    /// # Ok::<(), framerpc::Error>(())
    /// ```
    pub fn connect_ws(url: &str, token: Option<&str>) -> Result<Self, Error> {
        let mut b = ClientBuilder::default();
        if let Some(t) = token {
            b = b.token(t);
        }
        b.connect_ws(url)
    }

    /// [`Client::connect_ws`], then a check of `specs` against the server's
    /// command table.
    pub fn connect_ws_checked(
        url: &str,
        token: Option<&str>,
        specs: &[&dyn Spec],
    ) -> Result<Self, Error> {
        let client = Self::connect_ws(url, token)?;
        client.check(specs)?;
        Ok(client)
    }
}
