//! framerpc over TLS beside plain TCP, in one run: a small call round trip
//! over `tcp`, `tls://` and `wss://`, a 16 MiB echo over `tcp` and
//! `tls://`, and the cost of a TLS connect (TCP + handshake + first call;
//! for `wss://` also the upgrade) beside a plain connect.
//! Certificates are generated at start (rcgen); rustls with `ring`.
//!
//! ```text
//! taskset -c 0 cargo bench --features tls,ws --bench tls
//! cargo bench --features tls,ws --bench tls
//! ```

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use framerpc::codec::{BYTES, U32};
use framerpc::{Client, Command, Router, Server, TlsConfig, WsConfig};

const ADD: Command<(u32, u32), u32> = Command::new(3, "add_2_words", &(U32, U32), &U32);
const ECHO: Command<Bytes, Bytes> = Command::new(13, "echo", &BYTES, &BYTES);

const BIG: usize = 16 << 20;

fn router() -> Router {
    Router::new()
        .handle(&ADD, |(a, b)| Ok(a.wrapping_add(b)))
        .handle(&ECHO, Ok)
}

struct Setup {
    plain: Server,
    tls: Server,
    ca: String,
}

fn setup() -> Setup {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let plain = Server::bind("127.0.0.1:0", router()).unwrap();
    let tls = Server::builder()
        .tls(TlsConfig::from_pem(cert.as_bytes(), key.as_bytes()).unwrap())
        .token("bench")
        .ws(WsConfig::new().mount("/bench", router()))
        .bind("127.0.0.1:0", router())
        .unwrap();
    Setup {
        plain,
        tls,
        ca: cert,
    }
}

impl Setup {
    fn connect(&self, which: &str) -> Client {
        match which {
            "tcp" => Client::builder()
                .timeout(Duration::from_secs(60))
                .connect(self.plain.local_addr())
                .unwrap(),
            "wss" => Client::builder()
                .timeout(Duration::from_secs(60))
                .token("bench")
                .tls_roots_pem(self.ca.as_bytes())
                .unwrap()
                .connect_ws(&format!(
                    "wss://localhost:{}/bench",
                    self.tls.local_addr().port()
                ))
                .unwrap(),
            _ => Client::builder()
                .timeout(Duration::from_secs(60))
                .token("bench")
                .tls_roots_pem(self.ca.as_bytes())
                .unwrap()
                .connect_tls(&format!("tls://localhost:{}", self.tls.local_addr().port()))
                .unwrap(),
        }
    }
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("small_call");
    g.sample_size(30).measurement_time(Duration::from_secs(3));
    for which in ["tcp", "tls", "wss"] {
        let client = s.connect(which);
        g.bench_function(BenchmarkId::from_parameter(which), |b| {
            b.iter(|| client.call(&ADD, &(2, 3)).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("echo_16MiB");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Bytes(BIG as u64));
    let data = Bytes::from(vec![0x5au8; BIG]);
    for which in ["tcp", "tls"] {
        let client = s.connect(which);
        g.bench_function(BenchmarkId::from_parameter(which), |b| {
            b.iter(|| assert_eq!(client.call(&ECHO, &data).unwrap().len(), BIG))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("connect_and_first_call");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    for which in ["tcp", "tls", "wss"] {
        g.bench_function(BenchmarkId::from_parameter(which), |b| {
            b.iter(|| {
                let client = s.connect(which);
                client.call(&ADD, &(2, 3)).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
