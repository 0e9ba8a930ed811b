//! `describe` over a real socket, one test per kind: a root (module), a
//! nested module, an object, a function, a bound method, a value; only
//! what the space declares is revealed, and nothing runs.
#![cfg(feature = "msgpack")]

mod dynamic_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dynamic_support::T;
use framerpc::dynamic::{
    Args, Class, Description, Module, ParamInfo, ParamKind, Params, Session, Space, Value,
};
use framerpc::{Client, Error, Router, Server};

struct Env {
    t: i64,
}

struct Fx {
    server: Server,
    getter_runs: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

fn setup() -> Fx {
    let getter_runs = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let g = Arc::clone(&getter_runs);
    let env = Class::<Env>::builder("Env")
        .doc("A pendulum.")
        .attr("t", move |e: &Env| {
            g.fetch_add(1, Ordering::Relaxed);
            e.t
        })
        .method(
            "step",
            Params::new()
                .req("action")
                .kw_opt("render", false)
                .doc("Advances one step."),
            |e: &mut Env, _| {
                e.t += 1;
                Ok(e.t)
            },
        )
        .build();
    let c = Arc::clone(&calls);
    let sim = Module::new()
        .doc("Simulators.")
        .constant("version", "1.0")
        .function(
            "make",
            Params::new()
                .req("name")
                .opt("seed", Value::Nil)
                .kw("mode")
                .var_kwargs()
                .doc("Makes an environment."),
            move |_| {
                c.fetch_add(1, Ordering::Relaxed);
                Ok(env.instance(Env { t: 0 }))
            },
        )
        .module("path", Module::new().constant("sep", "/"));
    let space = Space::builder().root("sim", sim).build();
    let server = Server::bind("127.0.0.1:0", space.install(Router::new()).unwrap()).unwrap();
    Fx {
        server,
        getter_runs,
        calls,
    }
}

fn session(f: &Fx) -> (Client, Session) {
    let c = Client::builder()
        .timeout(T)
        .connect(f.server.local_addr())
        .unwrap();
    let s = Session::new(&c);
    (c, s)
}

fn param(name: &str, kind: ParamKind, default: Option<Value>) -> ParamInfo {
    ParamInfo {
        name: name.into(),
        kind,
        default,
    }
}

#[test]
fn a_root_lists_its_members_with_signatures() {
    let f = setup();
    let (_c, s) = session(&f);
    let d = s.root("sim").describe().unwrap();
    assert_eq!(
        (d.kind.as_str(), d.name.as_str(), d.doc.as_deref()),
        ("module", "sim", Some("Simulators."))
    );
    assert_eq!(d.member_names(), ["make", "path", "version"]);
    let make = d.member("make").unwrap();
    assert_eq!(make.kind, "function");
    assert_eq!(make.doc.as_deref(), Some("Makes an environment."));
    assert_eq!(
        make.params,
        [
            param("name", ParamKind::PositionalOrKeyword, None),
            param("seed", ParamKind::PositionalOrKeyword, Some(Value::Nil)),
            param("mode", ParamKind::KeywordOnly, None),
            param("kwargs", ParamKind::VarKeyword, None),
        ]
    );
    assert_eq!(make.to_string(), "make(name, seed=nil, *, mode, **kwargs)");
    let version = d.member("version").unwrap();
    assert_eq!(
        (version.kind.as_str(), version.value_type.as_deref()),
        ("constant", Some("str"))
    );
    assert_eq!(d.member("path").unwrap().kind, "module");
    assert_eq!(f.calls.load(Ordering::Relaxed), 0, "nothing ran");
}

#[test]
fn a_nested_module() {
    let f = setup();
    let (_c, s) = session(&f);
    let d = s.root("sim").attr("path").describe().unwrap();
    assert_eq!((d.kind.as_str(), d.name.as_str()), ("module", "sim.path"));
    assert_eq!(d.member_names(), ["sep"]);
    assert_eq!(d.doc, None);
}

#[test]
fn an_object_lists_attributes_and_methods_without_running_getters() {
    let f = setup();
    let (_c, s) = session(&f);
    let env = s
        .root("sim")
        .method("make", Args::new().arg("pendulum").kw("mode", "fast"));
    let d = env.describe().unwrap();
    assert_eq!(
        (d.kind.as_str(), d.class.as_deref(), d.doc.as_deref()),
        ("object", Some("Env"), Some("A pendulum."))
    );
    assert_eq!(d.name, "sim.make()");
    assert_eq!(d.member_names(), ["step", "t"]);
    assert_eq!(d.member("t").unwrap().kind, "attribute");
    let step = d.member("step").unwrap();
    assert_eq!(
        (step.kind.as_str(), step.to_string().as_str()),
        ("method", "step(action, *, render=false)")
    );
    assert_eq!(f.getter_runs.load(Ordering::Relaxed), 0);
    // An object handed out as a handle describes the same.
    let h: framerpc::dynamic::Proxy = env.materialize().unwrap();
    assert_eq!(h.describe().unwrap().members, d.members);
}

#[test]
fn a_function() {
    let f = setup();
    let (_c, s) = session(&f);
    let d = s.root("sim").attr("make").describe().unwrap();
    assert_eq!((d.kind.as_str(), d.name.as_str()), ("function", "sim.make"));
    assert_eq!(d.params.len(), 4);
    assert!(d.members.is_empty());
    assert_eq!(f.calls.load(Ordering::Relaxed), 0);
}

#[test]
fn a_bound_method() {
    let f = setup();
    let (_c, s) = session(&f);
    let env = s
        .root("sim")
        .method("make", Args::new().arg("x").kw("mode", "m"));
    let d = env.attr("step").describe().unwrap();
    assert_eq!(
        (d.kind.as_str(), d.class.as_deref(), d.doc.as_deref()),
        ("method", Some("Env"), Some("Advances one step."))
    );
    assert_eq!(
        d.params[1],
        param("render", ParamKind::KeywordOnly, Some(false.into()))
    );
    // Keyword-only is enforced when called.
    let r = env.method("step", (1, true)).materialize::<i64>();
    let Err(Error::Remote { message, .. }) = r else {
        panic!("{r:?}")
    };
    assert!(
        message.contains("takes 1 positional argument but 2"),
        "{message}"
    );
    let ok = env.method("step", Args::new().arg(1).kw("render", true));
    assert_eq!(ok.materialize::<i64>().unwrap(), 1);
    let r = s.root("sim").method("make", ("x",)).materialize::<Value>();
    let Err(Error::Remote { message, .. }) = r else {
        panic!("{r:?}")
    };
    assert!(
        message.contains("missing required keyword-only argument 'mode'"),
        "{message}"
    );
}

#[test]
fn a_value_names_only_its_type() {
    let f = setup();
    let (_c, s) = session(&f);
    let d = s.root("sim").attr("version").describe().unwrap();
    assert_eq!(
        d,
        Description {
            kind: "value".into(),
            name: "sim.version".into(),
            value_type: Some("str".into()),
            ..Description::default()
        }
    );
}

#[test]
fn describe_reaches_nothing_undeclared_and_reports_failures() {
    let f = setup();
    let (_c, s) = session(&f);
    for p in [
        s.root("os"),
        s.root("sim").attr("__class__"),
        s.root("sim").attr("make").attr("__globals__"),
    ] {
        let r = p.describe();
        let Err(Error::Remote { message, .. }) = r else {
            panic!("{r:?}")
        };
        assert!(message.contains("unknown"), "{message}");
    }
    // A failed call: describe reports its error, as materialize does.
    let bad = s.root("sim").method("make", ());
    let r = bad.describe();
    let Err(Error::Remote { message, .. }) = r else {
        panic!("{r:?}")
    };
    assert!(
        message.contains("missing required argument 'name'"),
        "{message}"
    );
}
