//! A server for client benchmarks (python/bench.py): `add_2_words` for
//! small calls and `array(n)`, which answers a float32 ndarray of `n`
//! elements (built once per size, so a fetch costs the server a frame
//! write and no more).
//!
//! ```text
//! cargo run --release --example bench_server --features ndarray -- 127.0.0.1:0
//! ```
//! Prints `listening on ADDR` once it accepts connections.

#[cfg(feature = "ndarray")]
fn main() -> Result<(), framerpc::Error> {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::Arc;

    use framerpc::codec::U32;
    use framerpc::ndarray::{DType, RawArray, NDARRAY};
    use framerpc::{Command, Router, Server};
    use parking_lot::Mutex;

    const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
    const ARRAY: Command<u32, RawArray> = Command::new(20, "array", &U32, &NDARRAY);

    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7881".into());
    let cache: Arc<Mutex<HashMap<u32, RawArray>>> = Arc::default();
    let router = Router::new()
        .handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)))
        .handle(&ARRAY, move |n| {
            let mut cache = cache.lock();
            let a = cache.entry(n).or_insert_with(|| {
                let data: Vec<u8> = (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect();
                RawArray {
                    dtype: DType::F32,
                    shape: vec![n as usize],
                    data: data.into(),
                }
            });
            Ok(a.clone()) // the data is shared, not copied
        });
    let server = Server::bind(addr.as_str(), router)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", server.local_addr())?;
    out.flush()?;
    drop(out);
    loop {
        std::thread::park();
    }
}

#[cfg(not(feature = "ndarray"))]
fn main() {
    eprintln!("bench_server needs the `ndarray` feature: cargo run --example bench_server --features ndarray");
    std::process::exit(2);
}
