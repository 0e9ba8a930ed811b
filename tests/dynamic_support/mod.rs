//! A test object space: a log that proves exactly-once, failing and
//! panicking functions, objects, and a server on 127.0.0.1:0.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use framerpc::dynamic::{Class, Item, Module, Params, Session, Space, SpaceBuilder, Value};
use framerpc::{Client, HandlerError, Router, Server};
use parking_lot::Mutex;

pub const T: Duration = Duration::from_secs(5);

pub struct Counter {
    pub n: i64,
}

pub struct Fixture {
    pub space: Space,
    pub log: Arc<Mutex<Vec<i64>>>,
    pub server: Option<Server>,
}

impl Fixture {
    pub fn client(&self) -> Client {
        Client::builder()
            .timeout(T)
            .connect(self.server.as_ref().unwrap().local_addr())
            .unwrap()
    }
    pub fn session(&self) -> (Client, Session) {
        let c = self.client();
        let s = Session::new(&c);
        (c, s)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

pub fn counter_class() -> Class<Counter> {
    Class::<Counter>::builder("Counter")
        .method("add", Params::new().req("k"), |c: &mut Counter, a| {
            c.n += a.get::<i64>("k")?;
            Ok(c.n)
        })
        .method("child", Params::new(), |c: &mut Counter, _| {
            Ok(Item::Object(
                counter_class().instance(Counter { n: c.n * 10 }),
            ))
        })
        .method(
            "explode",
            Params::new(),
            |_: &mut Counter, _| -> Result<i64, HandlerError> {
                Err(HandlerError::with_code(1002, "motor stalled"))
            },
        )
        .attr("n", |c: &Counter| c.n)
        .build()
}

pub fn test_module(log: Arc<Mutex<Vec<i64>>>) -> Module {
    let counter = counter_class();
    Module::new()
        .constant("value", 42)
        .function("record", Params::new().req("x"), move |a| {
            let x = a.get::<i64>("x")?;
            log.lock().push(x);
            Ok(x)
        })
        .function(
            "inc",
            Params::new().req("x"),
            |a| Ok(a.get::<i64>("x")? + 1),
        )
        .function("echo", Params::new().req("x"), |a| {
            Ok(a.value("x").cloned().unwrap_or_default())
        })
        .function("pair", Params::new().req("a").opt("b", 10), |a| {
            Ok(Value::Array(vec![
                a.value("a").cloned().unwrap_or_default(),
                a.value("b").cloned().unwrap_or_default(),
            ]))
        })
        .function("kw", Params::new().req("a").var_kwargs(), |a| {
            let mut m: Vec<(Value, Value)> =
                vec![("a".into(), a.value("a").cloned().unwrap_or_default())];
            for (k, v) in a.extra_kwargs() {
                if let Item::Data(v) = v {
                    m.push((k.as_str().into(), v.clone()));
                }
            }
            Ok(Value::Map(m))
        })
        .function(
            "fail",
            Params::new().req("msg"),
            |a| -> Result<i64, HandlerError> {
                Err(HandlerError::with_code(1001, a.get::<String>("msg")?))
            },
        )
        .function("boom", Params::new(), |_| -> Result<i64, HandlerError> {
            panic!("kaboom")
        })
        .function("range", Params::new().req("n"), |a| {
            Ok((0..a.get::<i64>("n")?).collect::<Vec<_>>())
        })
        .function("counter", Params::new().opt("start", 0), move |a| {
            Ok(counter.instance(Counter { n: a.get("start")? }))
        })
        .function("read_counter", Params::new().req("c"), |a| {
            a.with_object("c", |c: &mut Counter| c.n)
        })
        .module("path", Module::new().constant("sep", "/"))
}

pub fn fixture_with(builder: SpaceBuilder) -> Fixture {
    let log = Arc::new(Mutex::new(Vec::new()));
    let space = builder.root("t", test_module(Arc::clone(&log))).build();
    let router = space.install(Router::new()).unwrap();
    let server = Server::bind("127.0.0.1:0", router).unwrap();
    Fixture {
        space,
        log,
        server: Some(server),
    }
}

pub fn fixture() -> Fixture {
    fixture_with(Space::builder())
}
