//! Malformed and hostile frames cost their own connection at most: the
//! server answers what it can, closes that connection, and serves the next
//! well-behaved client.

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::io::Write;

use framerpc::frame::Kind;
use greet::ADD_2_WORDS;
use support::*;

#[track_caller]
fn still_serves(srv: &TestServer) {
    assert_eq!(srv.client().call(&ADD_2_WORDS, &(2, 3)).unwrap(), 5);
}

#[test]
fn four_gib_length_prefix_gets_too_large_and_memory_stays() {
    let srv = serve(greet::router());
    still_serves(&srv);
    let before = rss_kib();
    for _ in 0..20 {
        let mut s = raw(srv.addr());
        s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 0, 3, 0, 9, 0, 0, 0])
            .unwrap();
        let msg = expect_error(&mut s, 7);
        assert!(
            msg.contains("4294967295") && msg.contains("67108864"),
            "{msg}"
        );
        assert!(closed(&mut s));
    }
    let after = rss_kib();
    assert!(
        after < before + 16 * 1024,
        "rss grew from {before} KiB to {after} KiB"
    );
    still_serves(&srv);
}

#[test]
fn length_just_over_the_limit() {
    let srv = serve_with(
        framerpc::Server::builder().limits(framerpc::Limits::default().max_frame_len(1000)),
        greet::router(),
    );
    let mut s = raw(srv.addr());
    s.write_all(&[0xe9, 0x03, 0, 0, 1, 0, 1, 0, 5, 0, 0, 0])
        .unwrap();
    let msg = expect_error(&mut s, 7);
    assert!(msg.contains("1001") && msg.contains("1000"), "{msg}");
    assert!(closed(&mut s));
    still_serves(&srv);
}

#[test]
fn truncated_frame_then_eof() {
    let srv = serve(greet::router());
    let mut s = raw(srv.addr());
    s.write_all(&[8, 0, 0, 0, 1, 0, 3, 0, 1, 0, 0, 0, 2, 0])
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed(&mut s));
    still_serves(&srv);
}

#[test]
fn unknown_kind_and_flags_are_protocol_errors() {
    let srv = serve(greet::router());
    for (kind, flags) in [(0u8, 0u8), (6, 0), (255, 0), (1, 1), (1, 0x80)] {
        let mut s = raw(srv.addr());
        s.write_all(&[0, 0, 0, 0, kind, flags, 4, 0, 1, 0, 0, 0])
            .unwrap();
        let msg = expect_error(&mut s, 10);
        assert!(msg.contains("protocol"), "{msg}");
        assert!(closed(&mut s));
    }
    still_serves(&srv);
}

#[test]
fn replies_and_cancels_for_unused_ids_are_ignored() {
    let srv = serve(greet::router());
    let mut s = raw(srv.addr());
    send(&mut s, Kind::Reply, 3, 12345, &[1, 2, 3]);
    send(&mut s, Kind::Error, 3, 999, &[1, 0]);
    send(&mut s, Kind::Cancel, 3, 4242, &[]);
    send(&mut s, Kind::Call, 3, 1, &[2, 0, 0, 0, 3, 0, 0, 0]);
    let (h, p) = recv(&mut s).unwrap();
    assert_eq!((h.kind, h.id, p), (Kind::Reply, 1, vec![5, 0, 0, 0]));
}

#[test]
fn a_flood_of_pings_is_answered_in_order() {
    let srv = serve(greet::router());
    let mut s = raw(srv.addr());
    let mut burst = Vec::new();
    for id in 1..=2000u32 {
        burst.extend_from_slice(&framerpc::frame::encode_frame(
            Kind::Call,
            0xFF02,
            id,
            &id.to_le_bytes(),
        ));
    }
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&burst).unwrap())
    };
    for id in 1..=2000u32 {
        let (h, p) = recv(&mut s).unwrap();
        assert_eq!(
            (h.kind, h.id, p),
            (Kind::Reply, id, id.to_le_bytes().to_vec())
        );
    }
    writer.join().unwrap();
    still_serves(&srv);
}

#[test]
fn hostile_connections_leave_no_threads_behind() {
    let srv = serve(greet::router());
    still_serves(&srv);
    eventually("idle", || srv.server().connection_count() == 0);
    let threads = thread_count();
    for i in 0..50u8 {
        let mut s = raw(srv.addr());
        match i % 3 {
            0 => s
                .write_all(&[0xff, 0xff, 0xff, 0xff, 1, 0, 3, 0, 9, 0, 0, 0])
                .unwrap(),
            1 => s.write_all(&[0, 0, 0, 0, 9, 0, 4, 0, 1, 0, 0, 0]).unwrap(),
            _ => s.write_all(&[8, 0, 0]).unwrap(),
        }
        drop(s);
    }
    eventually("connections closed", || {
        srv.server().connection_count() == 0
    });
    eventually("threads back", || thread_count() <= threads);
    still_serves(&srv);
}
