//! Test certificates made at test time (no key is committed): a lab CA, a
//! server certificate for `localhost` and `127.0.0.1`, client certificates,
//! and the bad ones (another CA, a wrong name, expired).
#![allow(dead_code)]

use std::sync::OnceLock;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A certificate and its key, both PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

pub struct Ca {
    pub pem: Pem,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Self {
            pem,
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf for `names` (DNS names or IP addresses) with common name `cn`.
    pub fn leaf(&self, cn: &str, names: &[&str]) -> Pem {
        self.leaf_with(cn, names, |_| {})
    }

    pub fn leaf_with(
        &self,
        cn: &str,
        names: &[&str],
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> Pem {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        tweak(&mut p);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// The certificates every TLS test shares (made once per test binary).
pub struct Lab {
    pub ca: Ca,
    pub server: Pem,
    pub alice: Pem,
    pub other_ca: Ca,
    pub wrong_name: Pem,
    pub expired: Pem,
    pub stranger: Pem,
}

pub fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let ca = Ca::new("framerpc test lab CA");
        let other_ca = Ca::new("someone else's CA");
        let server = ca.leaf("device-server", &["localhost", "127.0.0.1"]);
        let alice = ca.leaf("alice@bench-3", &[]);
        let wrong_name = ca.leaf("elsewhere", &["elsewhere.example"]);
        let expired = ca.leaf_with("old", &["localhost", "127.0.0.1"], |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
        let stranger = other_ca.leaf("stranger", &["localhost", "127.0.0.1"]);
        Lab {
            ca,
            server,
            alice,
            other_ca,
            wrong_name,
            expired,
            stranger,
        }
    })
}

/// The server's TLS settings with the lab's server certificate.
pub fn server_tls() -> framerpc::TlsConfig {
    let l = lab();
    framerpc::TlsConfig::from_pem(l.server.cert.as_bytes(), l.server.key.as_bytes()).unwrap()
}

/// A client builder that trusts the lab CA.
pub fn tls_client() -> framerpc::ClientBuilder {
    framerpc::Client::builder()
        .tls_roots_pem(lab().ca.pem.cert.as_bytes())
        .unwrap()
}

pub fn tls_url(addr: std::net::SocketAddr) -> String {
    format!("tls://localhost:{}", addr.port())
}
