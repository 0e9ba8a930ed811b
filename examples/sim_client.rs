//! Drives `sim_server` through lazy proxies: calls return at once, only
//! `materialize` waits.
//!
//! Run: `cargo run --example sim_client --features msgpack,ndarray -- 127.0.0.1:7878`
use framerpc::dynamic::{Args, Session, Value};
use framerpc::ndarray::RawArray;
use framerpc::Client;
use ndarray::{array, Array1};

fn main() -> Result<(), framerpc::Error> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let client = Client::connect(addr)?;
    let s = Session::new(&client);

    let sim = s.root("sim");
    let env = sim.method("make", ("pendulum",)); // no network wait
    let obs: Array1<f32> = env
        .method("reset", Args::new().kw("seed", 1))
        .materialize()?;
    println!("reset: {obs}");
    let mut result = env.method("step", (array![0.5f32],));
    for _ in 0..9 {
        result = env.method("step", (array![0.5f32],)); // pipelined: no waits
    }
    let reward: f64 = result.index(1).materialize()?; // only the reward crosses
    println!("reward after 10 steps: {reward:.4}");
    let (obs, reward, done, truncated, info): (Array1<f32>, f64, bool, bool, Value) =
        result.materialize()?;
    println!("step: obs {obs} reward {reward:.4} done {done} truncated {truncated} info {info}");
    println!(
        "instruction: {}",
        env.method("get_language_instruction", ())
            .materialize::<String>()?
    );
    println!("env is remote: {}", env.materialize::<Value>()?.is_proxy());
    let image: RawArray = env.method("render", ()).materialize()?; // no copy of the pixels
    println!("render: {}", image.describe());
    let d = env.describe()?;
    println!(
        "{} object {}: {}",
        d.class.unwrap_or_default(),
        d.name,
        d.doc.unwrap_or_default()
    );
    for m in &d.members {
        println!(
            "  {m}{}",
            m.doc
                .as_deref()
                .map(|d| format!("  # {d}"))
                .unwrap_or_default()
        );
    }

    println!(
        "math.pow(3, 2) = {}",
        s.root("math").method("pow", (3, 2)).materialize::<f64>()?
    );
    println!(
        "os.path.sep = {:?}",
        s.root("os")
            .attr("path")
            .attr("sep")
            .materialize::<String>()?
    );
    match sim
        .method("make", ("unicycle",))
        .method("reset", ())
        .materialize::<Value>()
    {
        Err(e) => println!("expected error: {e}"),
        Ok(v) => println!("unexpected: {v}"),
    }
    Ok(())
}
