//! Dynamic layer: pipelined calls vs one round trip each, and a 1000x1000
//! f32 ndarray round trip vs the same bytes through a typed `bytes` command.
//! After criterion's figures, the same two round trips alternate in one
//! loop and the ratio of their medians is printed (same run, same
//! conditions): `dynamic/typed throughput ratio`.
//!
//! `taskset -c 0 cargo bench --features msgpack,ndarray --bench dynamic`
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use framerpc::codec::BYTES;
use framerpc::dynamic::{Module, Params, Session, Space, Value};
use framerpc::ndarray::{RawArray, ARRAY_F32, NDARRAY};
use framerpc::{Client, Command, Router, Server};
use ndarray::{ArrayD, IxDyn};

const ECHO_BYTES: Command<Bytes, Bytes> = Command::new(1, "echo_bytes", &BYTES, &BYTES);
const ECHO_F32: Command<ArrayD<f32>, ArrayD<f32>> =
    Command::new(2, "echo_f32", &ARRAY_F32, &ARRAY_F32);
const ECHO_RAW: Command<RawArray, RawArray> = Command::new(3, "echo_raw", &NDARRAY, &NDARRAY);

fn bench(c: &mut Criterion) {
    let m = Module::new()
        .function(
            "inc",
            Params::new().req("x"),
            |a| Ok(a.get::<i64>("x")? + 1),
        )
        .function("echo", Params::new().req("x"), |a| {
            Ok(a.value("x").cloned().unwrap_or_default())
        });
    let space = Space::builder().root("m", m).build();
    let router = space
        .install(Router::new())
        .unwrap()
        .handle(&ECHO_BYTES, Ok)
        .handle(&ECHO_F32, Ok)
        .handle(&ECHO_RAW, Ok);
    let server = Server::bind("127.0.0.1:0", router).unwrap();
    let client = Client::connect(server.local_addr()).unwrap();
    let s = Session::new(&client);
    let m = s.root("m");

    let mut g = c.benchmark_group("calls");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.bench_function("10 chained + 1 materialize", |b| {
        b.iter(|| {
            let mut x = m.method("inc", (0,));
            for _ in 1..10 {
                x = m.method("inc", (&x,));
            }
            assert_eq!(x.materialize::<i64>().unwrap(), 10);
        })
    });
    g.bench_function("10 calls each materialized", |b| {
        b.iter(|| {
            let mut x = 0i64;
            for _ in 0..10 {
                x = m.method("inc", (x,)).materialize::<i64>().unwrap();
            }
            assert_eq!(x, 10);
        })
    });
    g.finish();

    let a = ArrayD::from_shape_fn(IxDyn(&[1000, 1000]), |d| (d[0] * 1000 + d[1]) as f32);
    let raw = Bytes::from(a.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
    let mut g = c.benchmark_group("1000x1000 f32 round trip");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("typed bytes command", |b| {
        b.iter(|| assert_eq!(client.call(&ECHO_BYTES, &raw).unwrap().len(), raw.len()))
    });
    let ra = RawArray::from_array(&a);
    g.bench_function("typed ndarray command (RawArray, zero-copy decode)", |b| {
        b.iter(|| assert_eq!(client.call(&ECHO_RAW, &ra).unwrap().len(), ra.len()))
    });
    g.bench_function("typed ndarray<float32> command", |b| {
        b.iter(|| assert_eq!(client.call(&ECHO_F32, &a).unwrap().len(), a.len()))
    });
    g.bench_function("dynamic echo (msgpack-numpy, RawArray both ends)", |b| {
        b.iter(|| {
            let back: RawArray = m.method("echo", (ra.clone(),)).materialize().unwrap();
            assert_eq!(back.len(), ra.len());
        })
    });
    g.bench_function("dynamic echo (msgpack-numpy, ArrayD<f32> both ends)", |b| {
        b.iter(|| {
            let back: ArrayD<f32> = m.method("echo", (Value::from(&a),)).materialize().unwrap();
            assert_eq!(back.len(), a.len());
        })
    });
    g.finish();

    // The ratio from one run: the two round trips alternate, medians compared.
    let typed = || {
        let t = Instant::now();
        assert_eq!(client.call(&ECHO_BYTES, &raw).unwrap().len(), raw.len());
        t.elapsed()
    };
    let dynamic = || {
        let t = Instant::now();
        let back: RawArray = m.method("echo", (ra.clone(),)).materialize().unwrap();
        assert_eq!(back.len(), ra.len());
        t.elapsed()
    };
    let (mut tt, mut dt) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        tt.push(typed());
        dt.push(dynamic());
    }
    tt.sort();
    dt.sort();
    let (tm, dm) = (tt[tt.len() / 2], dt[dt.len() / 2]);
    let mb = raw.len() as f64 / 1e6;
    println!(
        "1000x1000 f32 round trip, 200 alternating pairs: typed bytes median {tm:?} \
         ({:.0} MB/s), dynamic msgpack-numpy median {dm:?} ({:.0} MB/s); \
         dynamic/typed throughput ratio {:.2}",
        mb / tm.as_secs_f64(),
        mb / dm.as_secs_f64(),
        tm.as_secs_f64() / dm.as_secs_f64()
    );
    drop(s);
    server.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
