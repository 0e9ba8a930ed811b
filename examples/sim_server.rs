//! A small simulator behind the dynamic layer: `sim.make(name)` returns an
//! environment object that stays on the server; `math` and `os` roots too.
//!
//! Run: `cargo run --example sim_server --features msgpack,ndarray -- 127.0.0.1:0`
use std::io::Write;

use framerpc::dynamic::{Class, Module, Params, Space, Value};
use framerpc::{HandlerError, Router, Server};
use ndarray::Array1;

struct Env {
    name: String,
    state: Array1<f32>,
    steps: u32,
}

impl Env {
    fn observation(&self) -> Value {
        Value::from(&self.state)
    }
}

fn env_class() -> Class<Env> {
    Class::<Env>::builder("Env")
        .attr("name", |e: &Env| e.name.clone())
        .method(
            "reset",
            Params::new().opt("seed", Value::Nil),
            |e: &mut Env, a| {
                let seed = a.get::<Option<u64>>("seed")?.unwrap_or(0);
                e.state = Array1::from_shape_fn(e.state.len(), |i| {
                    ((seed as usize + i) % 7) as f32 * 0.1
                });
                e.steps = 0;
                Ok(e.observation())
            },
        )
        .method("step", Params::new().req("action"), |e: &mut Env, a| {
            let action: Array1<f32> = a.get("action")?;
            if action.len() != 1 {
                return Err(HandlerError::with_code(
                    1000,
                    format!("action must have 1 element, got {}", action.len()),
                ));
            }
            e.state.mapv_inplace(|x| x + 0.05 * action[0]);
            e.steps += 1;
            let reward = -(e.state.mapv(|x| x * x).sum() as f64);
            let info = Value::Map(vec![("steps".into(), e.steps.into())]);
            Ok(Value::from((
                e.observation(),
                reward,
                false,
                e.steps >= 200,
                info,
            )))
        })
        .method(
            "get_language_instruction",
            Params::new(),
            |e: &mut Env, _| Ok(format!("keep the {} upright", e.name)),
        )
        .build()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let env = env_class();
    let sim = Module::new().function("make", Params::new().req("name"), move |a| {
        let name: String = a.get("name")?;
        let dims = match name.as_str() {
            "pendulum" => 3,
            "cartpole" => 4,
            "reacher" => 6,
            other => return Err(format!("unknown environment {other:?}").into()),
        };
        Ok(env.instance(Env {
            name,
            state: Array1::zeros(dims),
            steps: 0,
        }))
    });
    let math = Module::new().constant("pi", std::f64::consts::PI).function(
        "pow",
        Params::new().req("x").req("y"),
        |a| Ok(a.get::<f64>("x")?.powf(a.get("y")?)),
    );
    let os = Module::new()
        .constant("name", "posix")
        .module("path", Module::new().constant("sep", "/"));
    let space = Space::builder()
        .root("sim", sim)
        .root("math", math)
        .root("os", os)
        .build();
    let server = Server::bind(addr, space.install(Router::new())?)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", server.local_addr())?;
    out.flush()?;
    drop(out);
    loop {
        std::thread::park();
    }
}
