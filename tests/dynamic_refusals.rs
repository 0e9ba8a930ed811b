//! Refused requests over a real socket: a refused request runs none of its
//! calls, an accepted one runs all of them; a CALL's refusal is its own
//! ERROR, a NOTIFY's rides alongside the next REPLY (ext type 3 envelope)
//! without replacing that reply's value; each is reported exactly once.
#![cfg(feature = "msgpack")]

mod dynamic_support;
mod support;

use std::net::TcpStream;

use bytes::{Bytes, BytesMut};
use dynamic_support::*;
use framerpc::dynamic::wire::{Base, CallOp, Message, Ref, Step, EXT_ENVELOPE};
use framerpc::dynamic::{Args, Session, Value};
use framerpc::frame::Kind;
use framerpc::{Error, ErrorCode};
use support::{expect_error, recv, send};

const DYN: u16 = 0xFF10;

fn call(slot: u64, f: &str, args: Vec<Value>) -> CallOp {
    CallOp {
        slot,
        target: Ref {
            base: Base::Root("t".into()),
            steps: vec![Step::Attr(f.into())],
        },
        args,
        kwargs: vec![],
    }
}

fn slot(n: u64) -> Ref {
    Ref {
        base: Base::Handle(n),
        steps: vec![],
    }
}

fn bytes(m: &Message) -> Vec<u8> {
    let mut b = BytesMut::new();
    m.encode(&mut b);
    b.to_vec()
}

fn notify(s: &mut TcpStream, releases: Vec<u64>, calls: Vec<CallOp>) {
    let m = Message {
        releases,
        calls,
        fetch: None,
    };
    send(s, Kind::Notify, DYN, 0, &bytes(&m));
}

/// A CALL; returns the REPLY payload decoded, or panics.
fn fetch(s: &mut TcpStream, id: u32, fetch: Option<Ref>) -> Value {
    let m = Message {
        fetch,
        ..Message::default()
    };
    send(s, Kind::Call, DYN, id, &bytes(&m));
    let (h, p) = recv(s).expect("a reply");
    assert_eq!(
        (h.kind, h.id),
        (Kind::Reply, id),
        "{}",
        String::from_utf8_lossy(&p)
    );
    Value::decode(Bytes::from(p)).unwrap()
}

/// Splits a reply into (refusal records, unlisted, value).
fn open(v: Value) -> (Vec<Value>, i64, Value) {
    match v {
        Value::Ext(EXT_ENVELOPE, data) => {
            let Value::Array(p) = Value::decode(data).unwrap() else {
                panic!("envelope")
            };
            let [r, n, v]: [Value; 3] = p.try_into().unwrap();
            let Value::Array(r) = r else {
                panic!("refusals")
            };
            (r, n.as_i64().unwrap(), v)
        }
        v => (vec![], 0, v),
    }
}

fn sock(f: &Fixture) -> TcpStream {
    support::raw(f.server.as_ref().unwrap().local_addr())
}

#[test]
fn a_notify_that_reuses_a_slot_runs_none_of_its_calls_and_is_reported_once() {
    let f = fixture();
    let mut s = sock(&f);
    notify(&mut s, vec![], vec![call(1, "record", vec![1.into()])]);
    // Its first call reuses slot 1; the two others are fine on their own.
    notify(
        &mut s,
        vec![],
        vec![
            call(1, "record", vec![2.into()]),
            call(2, "record", vec![3.into()]),
            call(3, "record", vec![4.into()]),
        ],
    );
    let (refusals, unlisted, v) = open(fetch(&mut s, 1, Some(slot(1))));
    assert_eq!(v, Value::from(1), "the CALL's own value is not replaced");
    assert_eq!((refusals.len(), unlisted), (1, 0));
    let r = &refusals[0];
    assert_eq!(r.get("request").unwrap().as_i64(), Some(2));
    assert_eq!(r.get("calls").unwrap().as_i64(), Some(3));
    assert_eq!(r.get("slots").unwrap(), &Value::from(vec![1, 2, 3]));
    assert_eq!(r.get("code").unwrap().as_i64(), Some(2));
    let msg = r.get("message").unwrap().as_str().unwrap();
    assert!(
        msg.contains("slot 1 is in use")
            && msg.contains("free slot")
            && msg.contains("none of its 3 calls ran"),
        "{msg}"
    );
    assert_eq!(*f.log.lock(), vec![1], "none of the refused calls ran");
    // The free slots it named hold the refusal; the reused one keeps its value.
    send(
        &mut s,
        Kind::Call,
        DYN,
        2,
        &bytes(&Message {
            fetch: Some(slot(2)),
            ..Message::default()
        }),
    );
    let e = expect_error(&mut s, 2);
    assert!(
        e.contains("(handle 2) not run") && e.contains("slot 1 is in use"),
        "{e}"
    );
    // Reported once: the next reply is the bare value.
    assert_eq!(fetch(&mut s, 3, Some(slot(1))), Value::from(1));
    // A retry into new slots runs every call, once.
    notify(
        &mut s,
        vec![],
        vec![
            call(4, "record", vec![2.into()]),
            call(5, "record", vec![3.into()]),
        ],
    );
    assert_eq!(fetch(&mut s, 4, Some(slot(5))), Value::from(3));
    assert_eq!(*f.log.lock(), vec![1, 2, 3]);
}

#[test]
fn a_call_that_reuses_a_slot_is_refused_with_its_own_error() {
    let f = fixture();
    let mut s = sock(&f);
    notify(&mut s, vec![], vec![call(1, "record", vec![1.into()])]);
    let m = Message {
        releases: vec![],
        calls: vec![
            call(2, "record", vec![2.into()]),
            call(1, "record", vec![3.into()]),
        ],
        fetch: Some(slot(2)),
    };
    send(&mut s, Kind::Call, DYN, 1, &bytes(&m));
    let e = expect_error(&mut s, 2);
    assert!(
        e.contains("slot 1 is in use (it holds t.record())")
            && e.contains("none of its 2 calls ran")
            && !e.contains("one-way"),
        "{e}"
    );
    assert_eq!(*f.log.lock(), vec![1]);
    // Nothing is pending: the next reply is bare.
    assert_eq!(fetch(&mut s, 2, Some(slot(1))), Value::from(1));
    // Two calls naming one slot: refused too.
    let m = Message {
        releases: vec![],
        calls: vec![
            call(7, "record", vec![7.into()]),
            call(7, "record", vec![8.into()]),
        ],
        fetch: None,
    };
    send(&mut s, Kind::Call, DYN, 3, &bytes(&m));
    let e = expect_error(&mut s, 2);
    assert!(e.contains("slot 7 is named by two calls"), "{e}");
    assert_eq!(*f.log.lock(), vec![1]);
}

#[test]
fn a_slot_released_may_be_used_again_even_by_the_same_request() {
    let f = fixture();
    let mut s = sock(&f);
    notify(&mut s, vec![], vec![call(1, "record", vec![1.into()])]);
    notify(&mut s, vec![1], vec![call(1, "record", vec![2.into()])]);
    assert_eq!(open(fetch(&mut s, 1, Some(slot(1)))), (vec![], 0, 2.into()));
    notify(&mut s, vec![1], vec![]);
    notify(&mut s, vec![], vec![call(1, "record", vec![3.into()])]);
    assert_eq!(open(fetch(&mut s, 2, Some(slot(1)))), (vec![], 0, 3.into()));
    assert_eq!(*f.log.lock(), vec![1, 2, 3]);
}

#[test]
fn every_refused_notify_is_reported_once_in_order() {
    let f = fixture();
    let mut s = sock(&f);
    send(&mut s, Kind::Notify, DYN, 0, &[0xc1]); // not msgpack
    notify(&mut s, vec![], vec![call(1, "record", vec![1.into()])]);
    notify(&mut s, vec![], vec![call(1, "record", vec![2.into()])]); // reuse
    let with_fetch = Message {
        fetch: Some(slot(1)),
        ..Message::default()
    };
    send(&mut s, Kind::Notify, DYN, 0, &bytes(&with_fetch));
    let (r, unlisted, v) = open(fetch(&mut s, 1, None));
    assert_eq!((v, unlisted), (Value::Nil, 0));
    let requests: Vec<i64> = r
        .iter()
        .map(|x| x.get("request").unwrap().as_i64().unwrap())
        .collect();
    assert_eq!(requests, [1, 3, 4]);
    let msgs: Vec<&str> = r
        .iter()
        .map(|x| x.get("message").unwrap().as_str().unwrap())
        .collect();
    assert!(msgs[0].starts_with("bad dynamic request"), "{}", msgs[0]);
    assert!(msgs[1].contains("slot 1 is in use"), "{}", msgs[1]);
    assert!(msgs[2].contains("cannot fetch"), "{}", msgs[2]);
    assert_eq!(open(fetch(&mut s, 2, None)), (vec![], 0, Value::Nil));
    // Past 64 pending refusals the rest are counted.
    for _ in 0..70 {
        send(&mut s, Kind::Notify, DYN, 0, &[0xc1]);
    }
    let (r, unlisted, _) = open(fetch(&mut s, 3, None));
    assert_eq!((r.len(), unlisted), (64, 6));
}

#[test]
fn a_refusal_waits_for_a_reply_not_an_error() {
    let f = fixture();
    let mut s = sock(&f);
    send(&mut s, Kind::Notify, DYN, 0, &[0xc1]);
    // This CALL fails on its own (unknown handle): ERROR, refusal kept.
    send(
        &mut s,
        Kind::Call,
        DYN,
        1,
        &bytes(&Message {
            fetch: Some(slot(9)),
            ..Message::default()
        }),
    );
    let e = expect_error(&mut s, 3);
    assert!(e.contains("unknown handle 9"), "{e}");
    let (r, _, v) = open(fetch(&mut s, 2, None));
    assert_eq!((r.len(), v), (1, Value::Nil));
}

#[test]
fn an_ext_3_value_is_always_enveloped() {
    let f = fixture();
    let mut s = sock(&f);
    let ext = Value::Ext(3, Bytes::from_static(b"abc"));
    notify(&mut s, vec![], vec![call(1, "echo", vec![ext.clone()])]);
    assert_eq!(open(fetch(&mut s, 1, Some(slot(1)))), (vec![], 0, ext));
}

#[test]
fn the_rust_session_reports_refusals_once() {
    let f = fixture();
    let (c, s) = f.session();
    let t = s.root("t");
    let a = t.method("record", (1,));
    // Another writer on the same connection reuses slot 1 (the session's).
    let m = Message {
        releases: vec![],
        calls: vec![call(1, "record", vec![9.into()])],
        fetch: None,
    };
    c.peer().notify_raw(DYN, &bytes(&m)).unwrap();
    assert_eq!(
        a.materialize::<i64>().unwrap(),
        1,
        "the value is not replaced"
    );
    let r = s.take_refusals();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].request, r[0].calls, &r[0].slots[..]),
        (2, 1, &[1][..])
    );
    assert_eq!(r[0].code, ErrorCode::BAD_PAYLOAD);
    assert!(
        r[0].message.contains("slot 1 is in use"),
        "{}",
        r[0].message
    );
    assert!(s.take_refusals().is_empty());
    s.sync().unwrap();
    // sync reports what was not taken, once.
    c.peer().notify_raw(DYN, &[0xc1]).unwrap();
    match s.sync() {
        Err(Error::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::BAD_PAYLOAD);
            assert!(
                message.contains("1 one-way request was refused") && message.contains("request 5"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    s.sync().unwrap();
    assert_eq!(*f.log.lock(), vec![1]);
}

#[test]
fn a_full_table_refuses_the_whole_request() {
    let f = fixture_with(framerpc::dynamic::Space::builder().max_handles(4));
    let (_c, s) = f.session();
    let t = s.root("t");
    let kept: Vec<_> = (0..3).map(|i| t.method("record", (i,))).collect();
    s.sync().unwrap();
    // One request of two calls: one would fit, the request does not.
    let m = Message {
        releases: vec![],
        calls: vec![
            call(100, "record", vec![100.into()]),
            call(101, "record", vec![101.into()]),
        ],
        fetch: None,
    };
    _c.peer().notify_raw(DYN, &bytes(&m)).unwrap();
    let r = s.take_refusals();
    assert!(r.is_empty(), "not yet: no reply since");
    s.sync().unwrap_err();
    assert_eq!(*f.log.lock(), vec![0, 1, 2], "neither call ran");
    drop(kept);
    let ok = t.method("record", Args::new().arg(5));
    assert_eq!(ok.materialize::<i64>().unwrap(), 5);
    let _ = Session::sync(&s);
}
