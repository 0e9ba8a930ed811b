//! The client side: `tls://host:port`, trust from a PEM of roots, the
//! server name checked, an optional client certificate.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore};

use super::session::{handshake, HsError, Session, TlsRead, TlsReader, TlsWriter};
use super::{certs_from_pem, config, describe, provider, read_file, root_store};
use crate::client::{connect_tcp, Client, ClientBuilder, Target, Transport};
use crate::error::Error;
use crate::frame::{FrameReader, Header, HEADER_LEN};
use crate::tcp::tune;

/// A client's TLS settings (set through [`ClientBuilder`]).
#[derive(Clone, Default)]
pub(crate) struct TlsClient {
    roots: Option<Arc<RootCertStore>>,
    cert: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    server_name: Option<String>,
    /// Built on first use and kept, so reconnects resume sessions.
    built: Option<Arc<ClientConfig>>,
}

impl TlsClient {
    fn config(&self) -> Result<Arc<ClientConfig>, Error> {
        if let Some(c) = &self.built {
            return Ok(Arc::clone(c));
        }
        let roots = self.roots.clone().ok_or_else(|| {
            config(
                "tls:// and wss:// need trusted roots: set ClientBuilder::tls_roots_pem (the \
                 server's CA, or its self-signed certificate)"
                    .into(),
            )
        })?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| config(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let cfg = match &self.cert {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| config(format!("ClientBuilder::tls_client_cert: {e}")))?,
        };
        Ok(Arc::new(cfg))
    }
}

impl ClientBuilder {
    /// Trusts the certificates in `pem` as roots for `tls://` and `wss://`:
    /// a lab's own CA, or a server's self-signed certificate. Default: no
    /// roots (a TLS connect fails, saying so).
    pub fn tls_roots_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        let roots = root_store(pem, "ClientBuilder::tls_roots_pem")?;
        let t = self.tls.get_or_insert_with(TlsClient::default);
        t.roots = Some(Arc::new(roots));
        t.built = None;
        Ok(self)
    }

    /// [`ClientBuilder::tls_roots_pem`] from a file.
    pub fn tls_roots_pem_file(self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let pem = read_file(path.as_ref(), "trusted roots")?;
        self.tls_roots_pem(&pem)
    }

    /// Presents this client certificate (chain PEM, leaf first) and key
    /// (PEM) to a server that asks for one. Default: none.
    pub fn tls_client_cert(mut self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let chain = certs_from_pem(chain_pem, "ClientBuilder::tls_client_cert: chain")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| config(format!("ClientBuilder::tls_client_cert: key: {e}")))?;
        let t = self.tls.get_or_insert_with(TlsClient::default);
        t.cert = Some((chain, Arc::new(key)));
        t.built = None;
        Ok(self)
    }

    /// [`ClientBuilder::tls_client_cert`] from two files.
    pub fn tls_client_cert_files(
        self,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let c = read_file(chain.as_ref(), "client certificate")?;
        let k = read_file(key.as_ref(), "client key")?;
        self.tls_client_cert(&c, &k)
    }

    /// The name the server's certificate must be valid for (default: the
    /// host of the address connected to). For a server reached by an IP
    /// address whose certificate names a host, or through a tunnel.
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        let t = self.tls.get_or_insert_with(TlsClient::default);
        t.server_name = Some(name.into());
        self
    }

    /// Connects with TLS to `addr`: `tls://host:port` or `host:port`. The
    /// server's certificate must chain to the roots set with
    /// [`ClientBuilder::tls_roots_pem`] and be valid for `host` (or the
    /// name set with [`ClientBuilder::tls_server_name`]). Inside TLS it is
    /// the same frame stream as [`ClientBuilder::connect`], token and all.
    /// [`ClientBuilder::connect_timeout`] bounds connect and handshake
    /// together. A failed handshake is [`Error::Handshake`] saying why
    /// (unknown CA, name mismatch, expired, not TLS, no answer in time).
    pub fn connect_tls(mut self, addr: &str) -> Result<Client, Error> {
        let hostport = addr.strip_prefix("tls://").unwrap_or(addr);
        let hostport = hostport.trim_end_matches('/');
        if hostport.contains("://") || hostport.contains('/') {
            return Err(config(format!(
                "bad tls:// address {addr:?}: expected tls://host:port"
            )));
        }
        let (host, port) = split_host_port(hostport).ok_or_else(|| {
            config(format!(
                "bad tls:// address {addr:?}: expected tls://host:port"
            ))
        })?;
        self.prepare_tls()?;
        self.connect_to(Target::Tls(host, port))
    }

    /// Builds the TLS client config now (a missing root is an error at
    /// connect), kept for reconnects so they resume sessions.
    pub(crate) fn prepare_tls(&mut self) -> Result<(), Error> {
        let t = self.tls.get_or_insert_with(TlsClient::default);
        t.built = Some(t.config()?);
        Ok(())
    }

    /// [`ClientBuilder::connect_tls`], then a check of `specs` against the
    /// server's command table.
    pub fn connect_tls_checked(
        self,
        addr: &str,
        specs: &[&dyn crate::Spec],
    ) -> Result<Client, Error> {
        let client = self.connect_tls(addr)?;
        client.check(specs)?;
        Ok(client)
    }

    /// TCP to `host:port`, then the TLS handshake; the session for a
    /// transport.
    pub(crate) fn dial_tls_session(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(Arc<Session>, Vec<u8>), Error> {
        let t = self.tls.clone().unwrap_or_default();
        let cfg = t.config()?;
        let name = t.server_name.clone().unwrap_or_else(|| host.to_owned());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| config(format!("TLS: {name:?} is not a valid server name")))?;
        let deadline = Instant::now() + self.connect_timeout;
        let stream = connect_tcp((host, port), self.connect_timeout)?;
        tune(&stream, &self.limits)?;
        let conn = ClientConnection::new(cfg, server_name)
            .map_err(|e| Error::Handshake(format!("TLS: {e}").into()))?;
        let mut tls = Connection::Client(conn);
        let who = format!("the server {host}:{port}");
        let early = handshake(&mut tls, &stream, deadline, self.limits.tick(), &[], true)
            .map_err(|e| hs_error(e, &who, self.connect_timeout))?;
        let mut early = early;
        if t.cert.is_some() && tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
            await_verdict(&mut tls, &stream, deadline, &mut early)
                .map_err(|e| hs_error(e, &who, self.connect_timeout))?;
            let _ = stream.set_read_timeout(Some(self.limits.tick()));
        }
        let sess = Session::new(tls, stream, self.limits.write_timeout, who, None);
        Ok((sess, early))
    }

    /// One `tls://` connection: the session, then frames inside it.
    pub(crate) fn dial_tls(&self, host: &str, port: u16) -> Result<Transport, Error> {
        let (sess, early) = self.dial_tls_session(host, port)?;
        let read = TlsRead::new(Arc::clone(&sess), early);
        let reader = FrameReader::new(read, self.limits.max_frame_len);
        let writer = TlsWriter::new(sess);
        let peer = crate::conn::FrameWrite::peer_addr(&writer);
        Ok((peer, Box::new(writer), Box::new(TlsReader(reader))))
    }
}

/// In TLS 1.3 the client's handshake ends before the server has checked
/// the client's certificate: its verdict is the next record (a session
/// ticket when it accepted, an alert when it refused). A client that
/// presents a certificate waits for that record (up to a second, within
/// the connect deadline), so a refusal is a handshake error at connect
/// rather than a dead connection at the first call.
fn await_verdict(
    tls: &mut Connection,
    stream: &std::net::TcpStream,
    deadline: Instant,
    early: &mut Vec<u8>,
) -> Result<(), HsError> {
    use std::io::Read;
    let end = deadline.min(Instant::now() + Duration::from_secs(1));
    let mut buf = [0u8; 4096];
    let mut s = stream;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let _ = stream.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => return Err(HsError::Closed),
            Ok(n) => {
                return super::session::feed(tls, &buf[..n], early)
                    .map(|_| ())
                    .map_err(HsError::Tls)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(()),
        }
    }
}

/// `host:port` or `[v6]:port`.
pub(crate) fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port))
}

/// Says why a client handshake failed.
pub(crate) fn hs_error(e: HsError, who: &str, timeout: Duration) -> Error {
    let msg = match e {
        HsError::Deadline => format!(
            "TLS handshake with {who} did not finish within {timeout:?} (the server stalled)"
        ),
        HsError::Closed => format!(
            "{who} closed the connection during the TLS handshake (is it a TLS port? does it \
             require a client certificate?)"
        ),
        HsError::NotTls(bytes) => {
            let said = plain_error(&bytes)
                .map(|m| format!(" It said: {m}"))
                .unwrap_or_default();
            format!(
                "{who} does not speak TLS on this port: it answered with plain bytes, not a TLS \
                 record (a plain framerpc port? connect without TLS: host:port or ws://).{said}"
            )
        }
        HsError::Tls(e) => format!("TLS handshake failed: {}", describe(&e, who)),
        HsError::Io(e) => return Error::Io(e),
    };
    Error::Handshake(msg.into())
}

/// The message of a framerpc ERROR frame, if `bytes` start with one.
fn plain_error(bytes: &[u8]) -> Option<String> {
    let head: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    let h = Header::parse(head).ok()?;
    let payload = bytes.get(HEADER_LEN..HEADER_LEN + h.len as usize)?;
    let msg = payload.get(2..)?;
    Some(String::from_utf8_lossy(msg).into_owned())
}

impl Client {
    /// Connects with TLS (`tls://host:port`), trusting the roots in
    /// `roots_pem` (see [`ClientBuilder::connect_tls`]).
    ///
    /// ```no_run
    /// let ca = std::fs::read("lab-ca.pem")?;
    /// let client = framerpc::Client::connect_tls("tls://device.lab:9000", &ca)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_tls(addr: &str, roots_pem: &[u8]) -> Result<Self, Error> {
        ClientBuilder::default()
            .tls_roots_pem(roots_pem)?
            .connect_tls(addr)
    }
}
