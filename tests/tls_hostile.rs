//! Hostile peers on a TLS port: garbage after the handshake (raw bytes in
//! place of records, and well-encrypted bytes that are not frames), a
//! flood of TLS records, and a silent TLS peer found by the heartbeat
//! (its admission permit freed). Each costs its own connection only.
#![cfg(feature = "tls")]

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use framerpc::codec::{Codec, STR};
use framerpc::frame::{encode_frame, Header, Kind};
use framerpc::{Limits, Server, WhenFull};
use rustls::pki_types::pem::PemObject;
use support::tls_certs::*;
use support::*;

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn server() -> TestServer {
    let limits = Limits::default()
        .max_frame_len(1 << 20)
        .heartbeat(Some((
            Duration::from_millis(100),
            Duration::from_millis(400),
        )))
        .write_timeout(Some(Duration::from_millis(500)));
    serve_with(
        Server::builder()
            .tls(server_tls())
            .limits(limits)
            .max_users(1)
            .when_full(WhenFull::Queue {
                max_wait: Duration::from_secs(5),
            }),
        greet::router(),
    )
}

/// A TLS connection made by rustls directly (not framerpc's client), its
/// handshake completed.
fn tls_conn(addr: SocketAddr) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(lab().ca.pem.cert.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    let sock = raw(addr);
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

fn hello(id: u32) -> Vec<u8> {
    let mut p = BytesMut::new();
    STR.encode(&"x".to_owned(), &mut p);
    encode_frame(Kind::Call, greet::HELLO.id(), id, &p)
}

fn read_frame(s: &mut Tls) -> Option<(Header, Vec<u8>)> {
    let mut h = [0u8; 12];
    s.read_exact(&mut h).ok()?;
    let header = Header::parse(&h).ok()?;
    let mut p = vec![0u8; header.len as usize];
    s.read_exact(&mut p).ok()?;
    Some((header, p))
}

/// True once the server has ended the connection (EOF, close_notify, an
/// alert or a reset), reading at most `limit`.
fn ended_within(sock: &TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 16 * 1024];
    let mut s = sock;
    while Instant::now() < deadline {
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

fn still_serves(srv: &TestServer) {
    let c = tls_client()
        .timeout(T)
        .connect_tls(&tls_url(srv.addr()))
        .unwrap();
    assert_eq!(c.call(&greet::HELLO, &"ok".into()).unwrap(), "hello ok");
}

#[test]
fn raw_garbage_after_the_handshake_costs_one_connection() {
    let srv = server();
    let mut s = tls_conn(srv.addr());
    // Plain bytes where TLS records belong: an invalid record.
    s.sock.write_all(&[0x42; 4096]).unwrap();
    assert!(
        ended_within(&s.sock, T),
        "the server kept a broken TLS stream"
    );
    // A record with a valid header but a body that does not decrypt.
    let mut s = tls_conn(srv.addr());
    let mut rec = vec![0x17, 0x03, 0x03, 0x01, 0x00];
    rec.extend_from_slice(&[0x99; 256]);
    s.sock.write_all(&rec).unwrap();
    assert!(ended_within(&s.sock, T));
    still_serves(&srv);
}

#[test]
fn encrypted_garbage_is_a_protocol_error() {
    let srv = server();
    let mut s = tls_conn(srv.addr());
    // Well-encrypted bytes that are not a framerpc frame (kind 0x99).
    s.write_all(&[0x01, 0, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    s.flush().unwrap();
    let (h, p) = read_frame(&mut s).expect("an ERROR frame before the close");
    assert_eq!(h.kind, Kind::Error);
    assert_eq!(u16::from_le_bytes([p[0], p[1]]), 10, "PROTOCOL");
    assert!(ended_within(&s.sock, T));
    // A header claiming more than the limit: TOO_LARGE, without reading it.
    let mut s = tls_conn(srv.addr());
    let mut head = encode_frame(Kind::Call, greet::HELLO.id(), 9, &[]);
    head[..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
    s.write_all(&head).unwrap();
    s.flush().unwrap();
    let (h, p) = read_frame(&mut s).expect("TOO_LARGE");
    assert_eq!(h.kind, Kind::Error);
    assert_eq!(u16::from_le_bytes([p[0], p[1]]), 7, "TOO_LARGE");
    still_serves(&srv);
}

#[test]
fn a_flood_of_tls_records_costs_one_connection() {
    let srv = server();
    // Thousands of tiny records, each well encrypted and carrying one byte
    // of a stream of valid calls: all answered, in order.
    let mut s = tls_conn(srv.addr());
    let frames: Vec<u8> = (0..200u32).flat_map(hello).collect();
    for b in &frames {
        s.conn.writer().write_all(std::slice::from_ref(b)).unwrap();
        // One record per byte.
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    for id in 0..200u32 {
        let (h, _) = read_frame(&mut s).expect("a reply to every call");
        assert_eq!((h.kind, h.id), (Kind::Reply, id));
    }
    // A flood of 16 KiB records that do not decrypt, written while the
    // server closes: it stops at the first, and the flooder is cut.
    let s = tls_conn(srv.addr());
    let mut rec = vec![0x17, 0x03, 0x03, 0x40, 0x00];
    rec.extend_from_slice(&[0x5a; 0x4000]);
    let mut sock = &s.sock;
    let mut sent = 0usize;
    let cut = loop {
        match sock.write_all(&rec) {
            Ok(()) => sent += rec.len(),
            Err(_) => break true,
        }
        if sent > 64 << 20 {
            break false;
        }
    };
    assert!(
        cut || ended_within(&s.sock, T),
        "the server read {sent} bytes of undecryptable records"
    );
    still_serves(&srv);
}

#[test]
fn a_silent_tls_peer_is_found_by_the_heartbeat_and_its_permit_freed() {
    let srv = server();
    let mut s = tls_conn(srv.addr());
    s.write_all(&hello(1)).unwrap();
    s.flush().unwrap();
    let (h, _) = read_frame(&mut s).unwrap();
    assert_eq!(h.kind, Kind::Reply);
    assert_eq!(srv.server().holders().len(), 1, "it holds the device");
    // From now on it neither reads nor writes (a peer that vanished
    // without a FIN): the server's pings go unanswered.
    eventually("the silent peer is dropped", || {
        srv.server().holders().is_empty()
    });
    // The next user is admitted at once.
    still_serves(&srv);
    assert!(ended_within(&s.sock, T));
}
