//! Shared helpers: a server on 127.0.0.1:0 that stops on drop, raw sockets
//! with 5 s timeouts, and frame helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use framerpc::frame::{encode_frame, Header, Kind};
use framerpc::{Client, ClientBuilder, Error, Router, Server, ServerBuilder};

#[cfg(feature = "tls")]
#[path = "../tls_support/mod.rs"]
pub mod tls_certs;

/// `FRAMERPC_TEST_TLS=1` (with feature `tls`): the suites that serve and
/// connect through these helpers run over `tls://` instead of plain TCP.
pub fn over_tls() -> bool {
    cfg!(feature = "tls") && std::env::var_os("FRAMERPC_TEST_TLS").is_some_and(|v| v == "1")
}

/// Connects `builder` to `srv` over plain TCP, or `tls://` under
/// [`over_tls`].
pub trait ConnectTest {
    fn connect_srv(self, srv: &TestServer) -> Result<Client, Error>;
}

impl ConnectTest for ClientBuilder {
    fn connect_srv(self, srv: &TestServer) -> Result<Client, Error> {
        #[cfg(feature = "tls")]
        if over_tls() {
            return self
                .tls_roots_pem(tls_certs::lab().ca.pem.cert.as_bytes())?
                .connect_tls(&tls_certs::tls_url(srv.addr()));
        }
        self.connect(srv.addr())
    }
}

pub const T: Duration = Duration::from_secs(5);

/// A server on a free port that shuts down when dropped.
pub struct TestServer(pub Option<Server>);

impl TestServer {
    pub fn addr(&self) -> SocketAddr {
        self.0.as_ref().unwrap().local_addr()
    }
    pub fn server(&self) -> &Server {
        self.0.as_ref().unwrap()
    }
    pub fn client(&self) -> Client {
        Client::builder().timeout(T).connect_srv(self).unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.shutdown();
        }
    }
}

pub fn serve(router: Router) -> TestServer {
    serve_with(Server::builder(), router)
}

pub fn serve_with(builder: ServerBuilder, router: Router) -> TestServer {
    #[cfg(feature = "tls")]
    let builder = if over_tls() {
        builder.tls(tls_certs::server_tls())
    } else {
        builder
    };
    TestServer(Some(builder.bind("127.0.0.1:0", router).unwrap()))
}

/// A raw TCP socket with 5 s read and write timeouts.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, T).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

pub fn send(s: &mut TcpStream, kind: Kind, cmd: u16, id: u32, payload: &[u8]) {
    s.write_all(&encode_frame(kind, cmd, id, payload)).unwrap();
}

/// Reads one frame; None on EOF or error.
pub fn recv(s: &mut TcpStream) -> Option<(Header, Vec<u8>)> {
    let mut h = [0u8; 12];
    s.read_exact(&mut h).ok()?;
    let header = Header::parse(&h).expect("valid header from the server");
    let mut p = vec![0u8; header.len as usize];
    s.read_exact(&mut p).ok()?;
    Some((header, p))
}

/// Reads one frame and asserts it is an ERROR with `code`; returns the message.
#[track_caller]
pub fn expect_error(s: &mut TcpStream, code: u16) -> String {
    let (h, p) = recv(s).expect("an ERROR frame");
    assert_eq!(h.kind, Kind::Error, "expected ERROR, got {h:?}");
    assert_eq!(
        u16::from_le_bytes([p[0], p[1]]),
        code,
        "message: {}",
        String::from_utf8_lossy(&p[2..])
    );
    String::from_utf8_lossy(&p[2..]).into_owned()
}

/// True once the peer has closed (EOF or reset) within the timeout.
pub fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Number of threads of this process (Linux).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of this process in KiB (Linux).
pub fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits (bounded) until `f` holds; polls because the state is remote.
#[track_caller]
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
