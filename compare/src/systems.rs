//! The six systems under test: what each one's server and client are.
//!
//! Every system serves the same two calls: `add(u32, u32) -> u32` and
//! `echo(bytes) -> bytes`. Sockets are on 127.0.0.1 with `TCP_NODELAY`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use bytes::Bytes;
use framerpc::codec::{BYTES, U32};
use framerpc::{Command, Router, Server, WsConfig};
use tungstenite::{Message, WebSocket};

/// Largest message any system is allowed here (default limits that are
/// lower are raised to this, and the report says which).
pub const MAX_MSG: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    RawTcp,
    Tungstenite,
    FramerpcTcp,
    FramerpcWs,
    Tarpc,
    Jsonrpsee,
}

pub const ALL: [System; 6] = [
    System::RawTcp,
    System::Tungstenite,
    System::FramerpcTcp,
    System::FramerpcWs,
    System::Tarpc,
    System::Jsonrpsee,
];

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::RawTcp => "raw-tcp",
            System::Tungstenite => "tungstenite",
            System::FramerpcTcp => "framerpc-tcp",
            System::FramerpcWs => "framerpc-ws",
            System::Tarpc => "tarpc",
            System::Jsonrpsee => "jsonrpsee",
        }
    }

    /// The label in the report's table.
    pub fn label(self) -> &'static str {
        match self {
            System::RawTcp => "plain TCP ping-pong, 4-byte length prefix (the limit)",
            System::Tungstenite => "plain tungstenite binary ping-pong",
            System::FramerpcTcp => "framerpc, TCP",
            System::FramerpcWs => "framerpc, WebSocket",
            System::Tarpc => "tarpc, TCP, bincode",
            System::Jsonrpsee => "jsonrpsee, WebSocket, JSON (echo as base64)",
        }
    }

    pub fn from_name(s: &str) -> Option<System> {
        ALL.into_iter().find(|x| x.name() == s)
    }

    /// Async peers: client tasks on a tokio runtime instead of threads.
    pub fn is_async(self) -> bool {
        matches!(self, System::Tarpc | System::Jsonrpsee)
    }
}

// ---------------------------------------------------------------- framerpc

pub const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
pub const ECHO: Command<Bytes, Bytes> = Command::new(13, "echo", &BYTES, &BYTES);

fn framerpc_router() -> Router {
    Router::new()
        .handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)))
        .handle(&ECHO, Ok)
}

// ---------------------------------------------------------------- tarpc

#[tarpc::service]
pub trait Bench {
    async fn add(a: u32, b: u32) -> u32;
    async fn echo(data: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf;
}

#[derive(Clone)]
struct BenchServer;

impl Bench for BenchServer {
    async fn add(self, _: tarpc::context::Context, a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }

    async fn echo(
        self,
        _: tarpc::context::Context,
        data: serde_bytes::ByteBuf,
    ) -> serde_bytes::ByteBuf {
        data
    }
}

/// tarpc's length-delimited framing with the limit raised from 8 MiB.
fn tarpc_codec() -> tarpc::tokio_util::codec::LengthDelimitedCodec {
    tarpc::tokio_util::codec::LengthDelimitedCodec::builder()
        .max_frame_length(MAX_MSG)
        .new_codec()
}

// ---------------------------------------------------------------- servers

/// Starts `sys`'s server on 127.0.0.1:0 in this process and returns the
/// line the parent reads: `ADDR` or `ADDR TOKEN`. The server runs on its
/// own threads (or runtime) until the process exits.
pub fn start_server(sys: System) -> String {
    match sys {
        System::RawTcp => raw_server().to_string(),
        System::Tungstenite => tungstenite_server().to_string(),
        System::FramerpcTcp => {
            let server = Server::bind("127.0.0.1:0", framerpc_router()).expect("bind");
            let line = server.local_addr().to_string();
            // The server lives until the process exits.
            Box::leak(Box::new(server));
            line
        }
        System::FramerpcWs => {
            let server = Server::builder()
                .ws(WsConfig::new().mount("/bench", framerpc_router()))
                .bind("127.0.0.1:0", Router::new())
                .expect("bind");
            let token = server.token().expect("generated token").to_owned();
            let line = format!("{} {token}", server.local_addr());
            Box::leak(Box::new(server));
            line
        }
        System::Tarpc => tarpc_server(),
        System::Jsonrpsee => jsonrpsee_server(),
    }
}

/// The plain-socket limit: thread per connection; a request of 8 bytes is
/// summed as two u32 (reply 4 bytes), any other is echoed.
fn raw_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                s.set_nodelay(true).unwrap();
                let mut buf = Vec::new();
                let mut out = Vec::new();
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).is_err() {
                        return;
                    }
                    let n = u32::from_le_bytes(len) as usize;
                    buf.resize(n, 0);
                    if s.read_exact(&mut buf).is_err() {
                        return;
                    }
                    out.clear();
                    if n == 8 {
                        let a = u32::from_le_bytes(buf[0..4].try_into().unwrap());
                        let b = u32::from_le_bytes(buf[4..8].try_into().unwrap());
                        out.extend_from_slice(&4u32.to_le_bytes());
                        out.extend_from_slice(&a.wrapping_add(b).to_le_bytes());
                    } else {
                        out.extend_from_slice(&len);
                        out.extend_from_slice(&buf);
                    }
                    if s.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn ws_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MSG))
        .max_frame_size(Some(MAX_MSG))
}

/// Plain tungstenite, thread per connection: an 8-byte binary message is
/// summed as two u32 (reply 4 bytes), any other is sent straight back.
fn tungstenite_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || {
                s.set_nodelay(true).unwrap();
                let Ok(mut ws) = tungstenite::accept_with_config(s, Some(ws_config())) else {
                    return;
                };
                while let Ok(m) = ws.read() {
                    if let Message::Binary(b) = m {
                        let reply = if b.len() == 8 {
                            let a = u32::from_le_bytes(b[0..4].try_into().unwrap());
                            let c = u32::from_le_bytes(b[4..8].try_into().unwrap());
                            Bytes::copy_from_slice(&a.wrapping_add(c).to_le_bytes())
                        } else {
                            b
                        };
                        if ws.send(Message::Binary(reply)).is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn server_runtime() -> tokio::runtime::Runtime {
    // The defaults a tokio server gets from #[tokio::main]: one worker per
    // core this process may run on.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// tarpc: a tokio TCP listener (TCP_NODELAY set on each accepted socket),
/// length-delimited bincode frames with the limit raised from 8 MiB to
/// 64 MiB, one task per connection and one per request, as in tarpc's
/// examples (without their cap of 10 connections).
fn tarpc_server() -> String {
    use futures::StreamExt;
    use tarpc::server::{BaseChannel, Channel};
    use tarpc::tokio_serde::formats::Bincode;

    let rt = Box::leak(Box::new(server_runtime()));
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                s.set_nodelay(true).unwrap();
                let framed = tarpc::tokio_util::codec::Framed::new(s, tarpc_codec());
                let transport = tarpc::serde_transport::new(framed, Bincode::default());
                let channel = BaseChannel::with_defaults(transport);
                tokio::spawn(channel.execute(BenchServer.serve()).for_each(|f| async {
                    tokio::spawn(f);
                }));
            }
        });
        addr.to_string()
    })
}

/// jsonrpsee: its server with default settings (WebSocket and HTTP on one
/// port, TCP_NODELAY) except the request and response limits, raised from
/// 10 MiB to 64 MiB so that a 16 MiB echo fits once base64 encoded.
fn jsonrpsee_server() -> String {
    use base64::Engine;
    use jsonrpsee::server::{RpcModule, Server as JServer, ServerConfig};
    use jsonrpsee::types::ErrorObjectOwned;

    let rt = Box::leak(Box::new(server_runtime()));
    rt.block_on(async {
        let cfg = ServerConfig::builder()
            .max_request_body_size(MAX_MSG as u32)
            .max_response_body_size(MAX_MSG as u32)
            .build();
        let server = JServer::builder()
            .set_config(cfg)
            .build("127.0.0.1:0")
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let mut module = RpcModule::new(());
        module
            .register_method("add", |params, _, _| {
                let (a, b): (u32, u32) = params.parse()?;
                Ok::<u32, ErrorObjectOwned>(a.wrapping_add(b))
            })
            .unwrap();
        module
            .register_method("echo", |params, _, _| {
                let (s,): (String,) = params.parse()?;
                let engine = base64::engine::general_purpose::STANDARD;
                let bytes = engine
                    .decode(s)
                    .map_err(|e| ErrorObjectOwned::owned(-32602, e.to_string(), None::<()>))?;
                Ok::<String, ErrorObjectOwned>(engine.encode(bytes))
            })
            .unwrap();
        let handle = server.start(module);
        // Runs until the process exits.
        std::mem::forget(handle);
        addr.to_string()
    })
}

// ---------------------------------------------------------------- clients

/// A blocking client: one connection, one call at a time.
pub trait SyncClient: Send {
    fn add(&mut self, a: u32, b: u32) -> u32;
    /// Echoes `data`; returns the length of the reply.
    fn echo(&mut self, data: &Bytes) -> usize;
}

/// Connects a blocking client of `sys` to the server whose line is `line`.
pub fn connect_sync(sys: System, line: &str) -> Box<dyn SyncClient> {
    try_connect_sync(sys, line).unwrap_or_else(|e| panic!("{} connect: {e}", sys.name()))
}

/// [`connect_sync`] that reports a failure (out of descriptors, refused)
/// instead of panicking.
pub fn try_connect_sync(sys: System, line: &str) -> Result<Box<dyn SyncClient>, String> {
    let (addr, _) = split_line(line);
    Ok(match sys {
        System::RawTcp => Box::new(RawClient::connect(addr).map_err(|e| e.to_string())?),
        System::Tungstenite => {
            Box::new(TungsteniteClient::connect(addr).map_err(|e| e.to_string())?)
        }
        System::FramerpcTcp | System::FramerpcWs => {
            Box::new(FramerpcClient(connect_framerpc(sys, line)?))
        }
        System::Tarpc | System::Jsonrpsee => unreachable!("async system"),
    })
}

/// One framerpc client (a `Client` is shareable: clones use the same
/// connection).
pub fn connect_framerpc(sys: System, line: &str) -> Result<framerpc::Client, String> {
    let (addr, token) = split_line(line);
    match sys {
        System::FramerpcTcp => framerpc::Client::connect(addr).map_err(|e| e.to_string()),
        System::FramerpcWs => framerpc::Client::connect_ws(&format!("ws://{addr}/bench"), token)
            .map_err(|e| e.to_string()),
        _ => unreachable!("not a framerpc system"),
    }
}

/// A small call through a (possibly shared) framerpc client.
pub fn framerpc_add(c: &framerpc::Client, a: u32, b: u32) -> u32 {
    c.call(&ADD, &(a, b)).expect("framerpc add")
}

pub fn split_line(line: &str) -> (SocketAddr, Option<&str>) {
    let mut it = line.split_whitespace();
    let addr = it.next().expect("addr").parse().expect("socket addr");
    (addr, it.next())
}

struct RawClient {
    s: TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl RawClient {
    fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Self {
            s,
            out: Vec::new(),
            buf: Vec::new(),
        })
    }
}

impl SyncClient for RawClient {
    fn add(&mut self, a: u32, b: u32) -> u32 {
        self.out.clear();
        self.out.extend_from_slice(&8u32.to_le_bytes());
        self.out.extend_from_slice(&a.to_le_bytes());
        self.out.extend_from_slice(&b.to_le_bytes());
        self.s.write_all(&self.out).unwrap();
        let mut r = [0u8; 8];
        self.s.read_exact(&mut r).unwrap();
        u32::from_le_bytes(r[4..8].try_into().unwrap())
    }

    fn echo(&mut self, data: &Bytes) -> usize {
        self.out.clear();
        self.out
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.out.extend_from_slice(data);
        self.s.write_all(&self.out).unwrap();
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).unwrap();
        self.buf.resize(u32::from_le_bytes(len) as usize, 0);
        self.s.read_exact(&mut self.buf).unwrap();
        self.buf.len()
    }
}

struct TungsteniteClient(WebSocket<TcpStream>);

impl TungsteniteClient {
    fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let (ws, _) =
            tungstenite::client::client_with_config(format!("ws://{addr}/"), s, Some(ws_config()))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self(ws))
    }

    fn round_trip(&mut self, msg: Bytes) -> Bytes {
        self.0.send(Message::Binary(msg)).unwrap();
        loop {
            if let Message::Binary(b) = self.0.read().unwrap() {
                return b;
            }
        }
    }
}

impl SyncClient for TungsteniteClient {
    fn add(&mut self, a: u32, b: u32) -> u32 {
        let mut m = [0u8; 8];
        m[0..4].copy_from_slice(&a.to_le_bytes());
        m[4..8].copy_from_slice(&b.to_le_bytes());
        let r = self.round_trip(Bytes::copy_from_slice(&m));
        u32::from_le_bytes(r[0..4].try_into().unwrap())
    }

    fn echo(&mut self, data: &Bytes) -> usize {
        self.round_trip(data.clone()).len()
    }
}

struct FramerpcClient(framerpc::Client);

impl SyncClient for FramerpcClient {
    fn add(&mut self, a: u32, b: u32) -> u32 {
        framerpc_add(&self.0, a, b)
    }

    fn echo(&mut self, data: &Bytes) -> usize {
        self.0.call(&ECHO, data).expect("framerpc echo").len()
    }
}

/// An async client: one connection; calls are awaited one at a time.
pub enum AsyncClient {
    Tarpc(BenchClient),
    Jsonrpsee(jsonrpsee_ws_client::WsClient),
}

impl AsyncClient {
    pub async fn connect(sys: System, line: &str) -> AsyncClient {
        AsyncClient::try_connect(sys, line)
            .await
            .unwrap_or_else(|e| panic!("{} connect: {e}", sys.name()))
    }

    pub async fn try_connect(sys: System, line: &str) -> Result<AsyncClient, String> {
        let (addr, _) = split_line(line);
        match sys {
            System::Tarpc => {
                use tarpc::tokio_serde::formats::Bincode;
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| e.to_string())?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                let framed = tarpc::tokio_util::codec::Framed::new(s, tarpc_codec());
                let transport = tarpc::serde_transport::new(framed, Bincode::default());
                Ok(AsyncClient::Tarpc(
                    BenchClient::new(tarpc::client::Config::default(), transport).spawn(),
                ))
            }
            System::Jsonrpsee => {
                let c = jsonrpsee_ws_client::WsClientBuilder::default()
                    .max_request_size(MAX_MSG as u32)
                    .max_response_size(MAX_MSG as u32)
                    .build(format!("ws://{addr}"))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(AsyncClient::Jsonrpsee(c))
            }
            _ => unreachable!("sync system"),
        }
    }

    pub async fn add(&self, a: u32, b: u32) -> u32 {
        match self {
            AsyncClient::Tarpc(c) => c
                .add(tarpc::context::current(), a, b)
                .await
                .expect("tarpc add"),
            AsyncClient::Jsonrpsee(c) => {
                use jsonrpsee::core::client::ClientT;
                c.request("add", jsonrpsee::rpc_params![a, b])
                    .await
                    .expect("jsonrpsee add")
            }
        }
    }

    pub async fn echo(&self, data: &Bytes) -> usize {
        match self {
            AsyncClient::Tarpc(c) => c
                .echo(
                    tarpc::context::current(),
                    serde_bytes::ByteBuf::from(data.to_vec()),
                )
                .await
                .expect("tarpc echo")
                .len(),
            AsyncClient::Jsonrpsee(c) => {
                use base64::Engine;
                use jsonrpsee::core::client::ClientT;
                let engine = base64::engine::general_purpose::STANDARD;
                let reply: String = c
                    .request("echo", jsonrpsee::rpc_params![engine.encode(data)])
                    .await
                    .expect("jsonrpsee echo");
                engine.decode(reply).expect("base64 reply").len()
            }
        }
    }
}
