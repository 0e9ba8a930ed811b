//! TLS (feature `tls`): `tls://` (framerpc frames inside TLS) and `wss://`
//! (the WebSocket upgrade inside TLS) on rustls with the `ring` provider.
//!
//! ```
//! # fn main() -> Result<(), framerpc::Error> {
//! # let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
//! # let (cert_pem, key_pem) = (ck.cert.pem(), ck.signing_key.serialize_pem());
//! use framerpc::codec::U32;
//! use framerpc::{Client, Command, Router, Server, TlsConfig};
//! const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
//!
//! let router = Router::new().handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)));
//! let server = Server::builder()
//!     .tls(TlsConfig::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?)
//!     .bind("127.0.0.1:0", router)?;
//! // A self-signed certificate is its own root.
//! let client = Client::builder()
//!     .tls_roots_pem(cert_pem.as_bytes())?
//!     .connect_tls(&format!("tls://localhost:{}", server.local_addr().port()))?;
//! assert_eq!(client.call(&ADD, &(2, 3))?, 5);
//! # Ok(())
//! # }
//! ```
//!
//! Full duplex: see [`session`] for how one rustls connection is shared
//! by a blocked reader and the writers without either waiting for the
//! other.

mod accept;
mod dial;
pub(crate) mod session;
mod subject;
#[cfg(feature = "ws")]
mod wss;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::error::Error;
use crate::server::ServerBuilder;

pub(crate) use accept::serve;
pub(crate) use dial::TlsClient;

/// The crypto provider: rustls's `ring` backend, nothing from the system,
/// with AES-128-GCM preferred over AES-256-GCM (four fewer AES rounds per
/// block: bulk transfers cost less CPU; both are strong; Go's TLS prefers
/// the same). The server picks by its own order, so a peer that lists
/// AES-256 first (OpenSSL) gets AES-128 too. ChaCha20-Poly1305 stays
/// offered.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite as S;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            S::TLS13_AES_128_GCM_SHA256
                | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(p)
}

/// A server's TLS settings: its certificate chain and key, and optionally
/// the roots that client certificates must chain to. Pass it to
/// [`ServerBuilder::tls`]. Every setter states its default.
#[derive(Clone)]
#[must_use]
pub struct TlsConfig {
    pub(crate) server: Arc<ServerConfig>,
    chain: Arc<[CertificateDer<'static>]>,
    key: Arc<PrivateKeyDer<'static>>,
    client_roots: Option<(Arc<RootCertStore>, bool)>,
    pub(crate) handshake_timeout: Duration,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("chain_len", &self.chain.len())
            .field(
                "client_auth",
                &self.client_roots.as_ref().map(|(r, required)| {
                    format!(
                        "{} roots, {}",
                        r.len(),
                        if *required { "required" } else { "optional" }
                    )
                }),
            )
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl TlsConfig {
    /// The server's certificate chain (PEM, leaf first) and private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1). No client certificates asked for.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let chain = certs_from_pem(cert_chain_pem, "TlsConfig::from_pem: certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| config(format!("TlsConfig::from_pem: private key: {e}")))?;
        Self::build(chain.into(), Arc::new(key), None)
    }

    /// [`TlsConfig::from_pem`] reading two files.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let chain = read_file(cert_chain.as_ref(), "certificate chain")?;
        let key = read_file(key.as_ref(), "private key")?;
        Self::from_pem(&chain, &key)
    }

    /// Requires every client to present a certificate that chains to one
    /// of `roots_pem` (PEM; a lab's own CA). A client without one, or with
    /// one from another CA, fails the handshake (the client is told by a
    /// TLS alert). The verified certificate's subject (its common name, or
    /// the whole subject when it has none) names the connection in BUSY
    /// and `queue` messages and in [`ServerHandle::holders`](crate::ServerHandle::holders),
    /// in place of an `identify` label. Default: no client certificates.
    pub fn client_auth(self, roots_pem: &[u8]) -> Result<Self, Error> {
        self.with_client_roots(roots_pem, true)
    }

    /// Like [`TlsConfig::client_auth`], but a client may also come without
    /// a certificate (it is then named by its address and label as on
    /// plain TCP); one that presents a certificate must present a valid one.
    pub fn client_auth_optional(self, roots_pem: &[u8]) -> Result<Self, Error> {
        self.with_client_roots(roots_pem, false)
    }

    /// The whole TLS handshake must end within this time from the
    /// connection's first byte, or the connection is dropped (default
    /// 10 s). With [`ServerBuilder::ws`], the WebSocket handshake's own
    /// timeout applies instead, and covers TLS and the upgrade together.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    fn with_client_roots(self, roots_pem: &[u8], required: bool) -> Result<Self, Error> {
        let roots = root_store(roots_pem, "TlsConfig::client_auth")?;
        let mut c = Self::build(self.chain, self.key, Some((Arc::new(roots), required)))?;
        c.handshake_timeout = self.handshake_timeout;
        Ok(c)
    }

    fn build(
        chain: Arc<[CertificateDer<'static>]>,
        key: Arc<PrivateKeyDer<'static>>,
        client_roots: Option<(Arc<RootCertStore>, bool)>,
    ) -> Result<Self, Error> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| config(format!("TLS: {e}")))?;
        let builder = match &client_roots {
            None => builder.with_no_client_auth(),
            Some((roots, required)) => {
                let mut v = WebPkiClientVerifier::builder_with_provider(
                    Arc::clone(roots),
                    Arc::clone(&provider),
                );
                if !required {
                    v = v.allow_unauthenticated();
                }
                let v = v
                    .build()
                    .map_err(|e| config(format!("TlsConfig::client_auth: {e}")))?;
                builder.with_client_cert_verifier(v)
            }
        };
        let mut server = builder
            .with_single_cert(chain.to_vec(), key.clone_key())
            .map_err(|e| config(format!("TlsConfig: certificate and key: {e}")))?;
        // Our cipher order (see `provider`), whatever the client lists first.
        server.ignore_client_order = true;
        Ok(Self {
            server: Arc::new(server),
            chain,
            key,
            client_roots,
            handshake_timeout: Duration::from_secs(10),
        })
    }
}

pub(crate) fn config(msg: String) -> Error {
    Error::Config(msg.into())
}

pub(crate) fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| config(format!("reading the {what} {}: {e}", path.display())))
}

/// Every certificate in a PEM text (at least one).
pub(crate) fn certs_from_pem(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(config(format!("{what}: no CERTIFICATE in the PEM text")));
    }
    Ok(certs)
}

/// A root store from every certificate in a PEM text.
pub(crate) fn root_store(pem: &[u8], what: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(pem, what)? {
        roots
            .add(cert)
            .map_err(|e| config(format!("{what}: not a usable root certificate: {e}")))?;
    }
    Ok(roots)
}

impl ServerBuilder {
    /// Makes the port speak TLS: inside it, raw framerpc frames
    /// (`tls://host:port`) and, with [`ServerBuilder::ws`], the WebSocket
    /// upgrade (`wss://host:port/path`), with the same token rules as
    /// without TLS. A plain client on this port gets a clear error (a
    /// PROTOCOL error frame, or HTTP 400 for a plain `GET`) and is closed.
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }
}

/// Says what a rustls error means for the side that sees it; `peer` names
/// the other end.
pub(crate) fn describe(e: &rustls::Error, peer: &str) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let cert = |c: &C| -> String {
        match c {
            C::UnknownIssuer => format!(
                "{peer}'s certificate is signed by an unknown certificate authority \
                 (not in the trusted roots; pass the CA or self-signed certificate as roots)"
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                let detail = match c {
                    C::NotValidForNameContext {
                        expected,
                        presented,
                    } => format!(
                        ": expected {expected:?}, the certificate is for {}",
                        presented.join(", ")
                    ),
                    _ => String::new(),
                };
                format!("{peer}'s certificate is not valid for the name connected to (name mismatch{detail})")
            }
            C::Expired | C::ExpiredContext { .. } => {
                format!("{peer}'s certificate has expired")
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("{peer}'s certificate is not valid yet (check the clocks)")
            }
            C::BadSignature => format!("{peer}'s certificate has a bad signature"),
            other => format!("{peer}'s certificate was refused: {other:?}"),
        }
    };
    match e {
        E::InvalidCertificate(c) => cert(c),
        E::NoCertificatesPresented => {
            format!("{peer} presented no certificate, and this side requires one")
        }
        E::AlertReceived(a) => {
            let why = match a {
                A::UnknownCA => "it does not trust our certificate's issuer (unknown CA)",
                A::BadCertificate => "it refused our certificate",
                A::CertificateExpired => "it says our certificate has expired",
                A::CertificateRequired => {
                    "it requires a client certificate (set ClientBuilder::tls_client_cert)"
                }
                A::HandshakeFailure => "no common TLS parameters",
                A::ProtocolVersion => "no common TLS version",
                A::DecodeError | A::UnexpectedMessage => "it could not parse our TLS messages",
                _ => "it sent a TLS alert",
            };
            format!("{peer} ended the TLS handshake: {why} (alert {a:?})")
        }
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            format!("{peer} broke the TLS protocol ({e}); does it speak TLS on this port?")
        }
        E::DecryptError => format!(
            "{peer} sent a TLS record this side cannot decrypt; right after a TLS 1.3 handshake \
             this is how a server's refusal of our client certificate arrives (none was sent, \
             or the server does not trust it: see ClientBuilder::tls_client_cert)"
        ),
        other => format!("TLS error with {peer}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that lists AES-256 first (rustls's and OpenSSL's default
    /// order) gets AES-128-GCM: the server's order wins.
    #[test]
    fn the_server_picks_aes_128_gcm() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
        let server = TlsConfig::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(root_store(cert.as_bytes(), "test").unwrap())
        .with_no_client_auth();
        let mut c =
            rustls::ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap())
                .unwrap();
        let mut s = rustls::ServerConnection::new(Arc::clone(&server.server)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets().unwrap();
            buf.clear();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        assert_eq!(
            s.negotiated_cipher_suite().map(|x| x.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
    }

    #[test]
    fn bad_pem_is_named() {
        let e = TlsConfig::from_pem(b"nothing here", b"").unwrap_err();
        assert!(e.to_string().contains("certificate chain"), "{e}");
        let e = root_store(b"", "roots").unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    }
}
