//! A small simulator behind the dynamic layer: `sim.make(name)` returns an
//! environment object that stays on the server; `math` and `os` roots too.
//! `env.render()` returns a 480x640x3 uint8 image and `sim.echo(x)` returns
//! its argument, so clients in any language can measure array throughput
//! against a Rust server. `describe` lists all of it with signatures.
//!
//! Run: `cargo run --example sim_server --features msgpack,ndarray -- 127.0.0.1:0`
use std::io::Write;

use framerpc::dynamic::{Class, Module, Params, Space, Value};
use framerpc::{HandlerError, Router, Server};
use ndarray::{Array1, Array3, Ix1};

/// The height, width and channels of `render()`'s image.
const IMAGE: (usize, usize, usize) = (480, 640, 3);

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
        .doc("A simulated environment; its state stays on the server.")
        .attr("name", |e: &Env| e.name.clone())
        .method(
            "reset",
            Params::new()
                .opt("seed", Value::Nil)
                .doc("Starts an episode; returns the observation (float32 array)."),
            |e: &mut Env, a| {
                let seed = a.get::<Option<u64>>("seed")?.unwrap_or(0);
                e.state = Array1::from_shape_fn(e.state.len(), |i| {
                    ((seed as usize + i) % 7) as f32 * 0.1
                });
                e.steps = 0;
                Ok(e.observation())
            },
        )
        .method(
            "step",
            Params::new().req("action").doc(
                "Applies an action (float32 array of shape (1,)); returns \
                 (observation, reward, terminated, truncated, info).",
            ),
            |e: &mut Env, a| {
                // Error code 1000: the application's own, kept by the client.
                let action = a
                    .array::<f32, Ix1>("action", &[1])
                    .map_err(|err| HandlerError::with_code(1000, err.message()))?;
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
            },
        )
        .method(
            "render",
            Params::new().doc("The camera image: uint8 array of shape (480, 640, 3)."),
            |e: &mut Env, _| {
                let (h, w, c) = IMAGE;
                let shade = (e.steps % 256) as u8;
                let img = Array3::from_shape_fn((h, w, c), |(y, x, k)| {
                    (y as u8) ^ (x as u8) ^ (k as u8 * 85) ^ shade
                });
                // An owned u8 array in C order is handed over without a copy.
                Ok(Value::from(img))
            },
        )
        .method(
            "get_language_instruction",
            Params::new().doc("What the agent should do, in words."),
            |e: &mut Env, _| Ok(format!("keep the {} upright", e.name)),
        )
        .build()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let env = env_class();
    let sim = Module::new()
        .doc("Simulated environments: make(name) with name pendulum, cartpole or reacher.")
        .function(
            "echo",
            Params::new()
                .req("x")
                .doc("Returns x unchanged (arrays too: for throughput tests)."),
            |a| Ok(a.value("x").cloned().unwrap_or_default()),
        )
        .function(
            "make",
            Params::new()
                .req("name")
                .doc("A new environment, private to this connection."),
            move |a| {
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
            },
        );
    let math = Module::new().constant("pi", std::f64::consts::PI).function(
        "pow",
        Params::new()
            .req("x")
            .req("y")
            .doc("x to the power y, as a float."),
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
