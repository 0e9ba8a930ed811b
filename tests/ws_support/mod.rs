//! Helpers for the WebSocket tests: a server on 127.0.0.1:0 that stops on
//! drop, and tungstenite clients with bounded timeouts.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use framerpc::{Client, Router, Server, ServerBuilder, WsConfig};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::WebSocket;

pub const T: Duration = Duration::from_secs(5);

/// A server on a free port that shuts down when dropped.
pub struct WsServer(pub Option<Server>);

impl WsServer {
    pub fn server(&self) -> &Server {
        self.0.as_ref().unwrap()
    }
    pub fn addr(&self) -> SocketAddr {
        self.server().local_addr()
    }
    pub fn token(&self) -> String {
        self.server().token().unwrap().to_owned()
    }
    pub fn url(&self, path: &str) -> String {
        self.server().ws_url(path)
    }
    /// A framerpc client over WebSocket with the server's token.
    pub fn client(&self, path: &str) -> Client {
        Client::builder()
            .timeout(T)
            .token(self.token())
            .connect_ws(&self.url(path))
            .unwrap()
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.shutdown();
        }
    }
}

/// Serves `router` at `path` over WebSocket (and raw TCP on the same port).
pub fn serve_ws(path: &str, router: Router) -> WsServer {
    serve_ws_with(Server::builder(), WsConfig::new().mount(path, router))
}

pub fn serve_ws_with(builder: ServerBuilder, config: WsConfig) -> WsServer {
    WsServer(Some(
        builder
            .ws(config)
            .bind("127.0.0.1:0", Router::new())
            .unwrap(),
    ))
}

/// A TCP socket with 5 s timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, T).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A plain tungstenite client (not framerpc's), with a Bearer token if given.
pub fn tung(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    match tungstenite::client(req, tcp(addr)) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("blocking handshake interrupted")
        }
    }
}

/// The HTTP status of a refused upgrade.
pub fn refused_status(r: Result<WebSocket<TcpStream>, tungstenite::Error>) -> u16 {
    match r {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
    }
}
