//! The dynamic layer over real sockets: exactly-once order, pipelining,
//! poisoning, errors, handles and their release.
#![cfg(feature = "msgpack")]

mod dynamic_support;

use std::collections::BTreeMap;

use dynamic_support::*;
use framerpc::dynamic::{materialize, Args, Proxy, Space, Value};
use framerpc::{Error, ErrorCode};

#[track_caller]
fn remote_err(r: Result<impl std::fmt::Debug, Error>) -> (ErrorCode, String) {
    match r {
        Err(Error::Remote { code, message }) => (code, message.to_string()),
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[test]
fn every_call_runs_exactly_once_in_client_order() {
    let f = fixture();
    let (_c, s) = f.session();
    let t = s.root("t");
    let mut results: Vec<Proxy> = Vec::new();
    for i in 0..50 {
        results.push(t.method("record", (i,)));
    }
    // Materialize some, some twice, some never: nothing runs again.
    assert_eq!(results[10].materialize::<i64>().unwrap(), 10);
    assert_eq!(results[10].materialize::<i64>().unwrap(), 10);
    assert_eq!(materialize::<i64>(&results[49]).unwrap(), 49);
    s.sync().unwrap();
    assert_eq!(*f.log.lock(), (0..50).collect::<Vec<_>>());
    assert_eq!(results[3].materialize::<i64>().unwrap(), 3);
    assert_eq!(f.log.lock().len(), 50);
}

#[test]
fn twenty_chained_calls_and_one_materialize_cost_one_round_trip() {
    let f = fixture();
    let (_c, s) = f.session();
    let t = s.root("t");
    let before = f.space.stats();
    let mut x = t.method("inc", (0,));
    for _ in 1..20 {
        x = t.method("inc", (&x,));
    }
    assert_eq!(x.materialize::<i64>().unwrap(), 20);
    let after = f.space.stats();
    assert_eq!(after.round_trips - before.round_trips, 1);
    assert_eq!(after.calls - before.calls, 20);
    assert_eq!(
        after.messages - before.messages,
        21,
        "20 one-way calls and one CALL"
    );
}

#[test]
fn dropping_proxies_costs_no_message_of_its_own() {
    let f = fixture();
    let (c, s) = f.session();
    let t = s.root("t");
    let many: Vec<Proxy> = (0..10).map(|i| t.method("inc", (i,))).collect();
    s.sync().unwrap();
    assert_eq!(f.space.handle_count(), 10);
    let before = f.space.stats();
    drop(many);
    assert_eq!(s.pending_releases(), 10);
    c.ping(b"barrier").unwrap(); // anything sent would have arrived by now
    assert_eq!(f.space.stats(), before, "drops sent nothing");
    assert_eq!(f.space.handle_count(), 10);
    // The releases ride on the next request.
    assert_eq!(t.method("inc", (1,)).materialize::<i64>().unwrap(), 2);
    let after = f.space.stats();
    assert_eq!(after.messages - before.messages, 2);
    assert_eq!(after.released - before.released, 10);
    assert_eq!(s.pending_releases(), 1);
    s.sync().unwrap();
    assert_eq!(f.space.handle_count(), 0);
}

#[test]
fn a_failed_call_poisons_its_dependents_with_the_original_error() {
    let f = fixture();
    let (_c, s) = f.session();
    let t = s.root("t");
    let bad = t.method("fail", ("boom",));
    let d1 = t.method("inc", (&bad,));
    let d2 = t.method("pair", (1, &d1));
    let d3 = d2.index(0).attr("x");
    let d4 = bad.method("anything", ());
    let ok = t.method("inc", (1,));
    for p in [&bad, &d1, &d2, &d3, &d4] {
        let (code, msg) = remote_err(p.materialize::<Value>());
        assert_eq!(code, ErrorCode(1001), "{msg}");
        assert!(msg.contains("t.fail()") && msg.contains("boom"), "{msg}");
    }
    assert_eq!(
        ok.materialize::<i64>().unwrap(),
        2,
        "unrelated calls are unaffected"
    );
    s.sync().unwrap();
}

#[test]
fn clear_errors_for_every_mistake() {
    let f = fixture();
    let (_c, s) = f.session();
    let t = s.root("t");
    let cases: Vec<(Proxy, &str)> = vec![
        (
            t.method("inc", (1, 2)),
            "wrong arity: t.inc() takes 1 positional argument but 2 were given",
        ),
        (t.method("inc", ()), "missing required argument 'x'"),
        (
            t.method("inc", Args::new().kw("y", 1)),
            "unexpected keyword argument 'y'",
        ),
        (
            t.method("inc", Args::new().arg(1).kw("x", 1)),
            "multiple values for argument 'x'",
        ),
        (t.method("nope", ()), "unknown attribute 'nope' on t"),
        (t.attr("nope"), "unknown attribute 'nope' on t"),
        (s.root("secret"), "unknown root 'secret'"),
        (
            t.method("value", ()),
            "not callable: t.value is a int value",
        ),
        (t.method("inc", ("x",)), "argument 'x': expected an integer"),
        (
            t.method("counter", ()).method("explode", ()),
            "motor stalled",
        ),
        (
            t.method("counter", ()).method("add", ("a",)),
            "argument 'k'",
        ),
        (t.method("range", (3,)).index(7), "index 7 out of range"),
        (
            t.method("counter", ()).attr("__class__"),
            "unknown attribute '__class__'",
        ),
    ];
    for (p, want) in cases {
        let (_, msg) = remote_err(p.materialize::<Value>());
        assert!(msg.contains(want), "{msg:?} should contain {want:?}");
    }
    let (code, msg) = remote_err(
        t.method("counter", ())
            .method("explode", ())
            .materialize::<i64>(),
    );
    assert_eq!(
        code,
        ErrorCode(1002),
        "the method's own code is kept: {msg}"
    );
    let (code, msg) = remote_err(t.method("boom", ()).materialize::<i64>());
    assert_eq!(code, ErrorCode::PANIC);
    assert!(msg.contains("kaboom"), "{msg}");
    // The connection and the space carry on.
    assert_eq!(t.method("inc", (1,)).materialize::<i64>().unwrap(), 2);
}

#[test]
fn parameters_defaults_and_keywords() {
    let f = fixture();
    let (_c, s) = f.session();
    let t = s.root("t");
    assert_eq!(
        t.method("pair", (1,)).materialize::<(i64, i64)>().unwrap(),
        (1, 10)
    );
    let p = t.method("pair", Args::new().kw("b", 2).kw("a", 1));
    assert_eq!(p.materialize::<Vec<i64>>().unwrap(), vec![1, 2]);
    let m: BTreeMap<String, i64> = t
        .method("kw", Args::new().arg(1).kw("x", 2).kw("y", 3))
        .materialize()
        .unwrap();
    assert_eq!(
        m,
        BTreeMap::from([("a".into(), 1), ("x".into(), 2), ("y".into(), 3)])
    );
    assert_eq!(t.attr("value").materialize::<i64>().unwrap(), 42);
    assert_eq!(
        t.attr("path").attr("sep").materialize::<String>().unwrap(),
        "/"
    );
    let echo: Option<String> = t.method("echo", (Value::Nil,)).materialize().unwrap();
    assert_eq!(echo, None);
}

#[test]
fn proxies_as_arguments_and_objects_stay_remote() {
    let f = fixture();
    let (_c, s) = f.session();
    let t = s.root("t");
    let c = t.method("counter", (5,));
    c.method("add", (2,));
    assert_eq!(
        t.method("read_counter", (&c,))
            .materialize::<i64>()
            .unwrap(),
        7
    );
    assert_eq!(
        t.method("inc", (t.attr("value"),))
            .materialize::<i64>()
            .unwrap(),
        43
    );
    assert_eq!(c.attr("n").materialize::<i64>().unwrap(), 7);
    // Materializing an object gives a proxy, usable like any other.
    let v = c.method("child", ()).materialize::<Value>().unwrap();
    assert!(v.is_proxy());
    let child = v.as_proxy().unwrap();
    assert_eq!(child.method("add", (1,)).materialize::<i64>().unwrap(), 71);
    let p: Proxy = c.materialize().unwrap();
    assert_eq!(p.attr("n").materialize::<i64>().unwrap(), 7);
    assert!(!t
        .method("inc", (1,))
        .materialize::<Value>()
        .unwrap()
        .is_proxy());
}

#[test]
fn partial_materialization_fetches_one_part() {
    let f = fixture();
    let (_c, s) = f.session();
    let r = s.root("t").method("range", (1000,));
    assert_eq!(r.index(1).materialize::<i64>().unwrap(), 1);
    assert_eq!(r.index(-1).materialize::<i64>().unwrap(), 999);
    assert_eq!(r.materialize::<Vec<i64>>().unwrap().len(), 1000);
}

#[test]
fn handles_are_released_on_drop_and_on_disconnect() {
    let f = fixture();
    let (c, s) = f.session();
    let t = s.root("t");
    let a = t.method("counter", ());
    let b = a.method("child", ());
    let obj = b.materialize::<Proxy>().unwrap(); // a server-made handle
    s.sync().unwrap();
    assert_eq!(f.space.handle_count(), 3);
    drop((a, b, obj));
    s.sync().unwrap();
    assert_eq!(f.space.handle_count(), 0);

    let keep: Vec<Proxy> = (0..5).map(|i| t.method("inc", (i,))).collect();
    s.sync().unwrap();
    assert_eq!(f.space.handle_count(), 5);
    c.close();
    assert!(
        f.space.wait_no_connections(T),
        "the table is freed at disconnect"
    );
    assert_eq!(f.space.handle_count(), 0);
    drop(keep);
}

#[test]
fn the_handle_table_has_a_bound() {
    let f = fixture_with(Space::builder().max_handles(8));
    let (_c, s) = f.session();
    let t = s.root("t");
    let kept: Vec<Proxy> = (0..8).map(|i| t.method("inc", (i,))).collect();
    let over = t.method("inc", (100,));
    let (_, msg) = remote_err(over.materialize::<i64>());
    assert!(
        msg.contains("handle table full") && msg.contains("8 handles"),
        "{msg}"
    );
    let dependent = t.method("inc", (&over,));
    assert!(remote_err(dependent.materialize::<i64>())
        .1
        .contains("handle table full"));
    // A call past the bound is not run at all: no side effect.
    let refused = t.method("record", (777,));
    let (_, msg) = remote_err(refused.materialize::<i64>());
    assert!(msg.contains("not run"), "{msg}");
    assert!(!f.log.lock().contains(&777), "a refused call ran");
    drop((kept, over, dependent, refused));
    assert_eq!(t.method("inc", (1,)).materialize::<i64>().unwrap(), 2);
}

#[test]
fn connections_have_private_tables() {
    let f = fixture();
    let (_c1, s1) = f.session();
    let (_c2, s2) = f.session();
    let a = s1.root("t").method("counter", (1,));
    let b = s2.root("t").method("counter", (2,));
    // Both are handle 1 on their own connection.
    assert_eq!(a.attr("n").materialize::<i64>().unwrap(), 1);
    assert_eq!(b.attr("n").materialize::<i64>().unwrap(), 2);
    assert_eq!(f.space.connection_count(), 2);
}
