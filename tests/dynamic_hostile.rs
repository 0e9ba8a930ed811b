//! The dynamic layer's wire format byte by byte over a raw socket, and
//! hostile requests: malformed msgpack, deep nesting and length claims get
//! BAD_PAYLOAD without a stack overflow or a large allocation.
#![cfg(feature = "msgpack")]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use framerpc::dynamic::{Module, Params, Space};
use framerpc::frame::Kind;
use framerpc::Router;
use support::{expect_error, raw, recv, send, serve_with, TestServer};

/// Records the largest single allocation, to show that length claims
/// never turn into allocations.
struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LARGEST.fetch_max(n, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DYN: u16 = 0xFF10;
const BAD_PAYLOAD: u16 = 2;

fn server() -> TestServer {
    // Handler threads with the smallest stack the server allows: refusing
    // deep input must not depend on the stack.
    server_with_stack(64 * 1024)
}

fn server_with_stack(stack: usize) -> TestServer {
    let math = Module::new().function("pow", Params::new().req("x").req("y"), |a| {
        Ok(a.get::<f64>("x")?.powf(a.get::<f64>("y")?))
    });
    let t = Module::new()
        .function("echo", Params::new().req("x"), |a| {
            Ok(a.value("x").cloned().unwrap_or_default())
        })
        .function("range", Params::new().req("n"), |a| {
            Ok((0..a.get::<i64>("n")?).collect::<Vec<_>>())
        });
    let space = Space::builder().root("math", math).root("t", t).build();
    let builder = framerpc::Server::builder().stack_size(stack);
    serve_with(builder, space.install(Router::new()).unwrap())
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn documented_example_request_and_reply() {
    // docs/DYNAMIC.md: math.pow(3, 2) into handle 1, fetch handle 1.
    let s = server();
    let mut sock = raw(s.addr());
    let frame = hex("18 00 00 00 01 00 10 ff 01 00 00 00 \
         93 90 91 95 01 01 92 a4 6d 61 74 68 92 00 a3 70 6f 77 92 03 02 80 91 01");
    std::io::Write::write_all(&mut sock, &frame).unwrap();
    let (h, p) = recv(&mut sock).unwrap();
    let mut got = h.to_bytes().to_vec();
    got.extend(&p);
    assert_eq!(
        got,
        hex("09 00 00 00 02 00 10 ff 01 00 00 00 cb 40 22 00 00 00 00 00 00")
    );
}

#[test]
fn partial_fetch_sends_only_that_part() {
    let s = server();
    let mut sock = raw(s.addr());
    // NOTIFY: [[], [[1, 1, ["t", [0, "range"]], [1000], {}]], nil]
    let call = hex("93 90 91 95 01 01 92 a1 74 92 00 a5 72 61 6e 67 65 91 cd 03 e8 80 c0");
    send(&mut sock, Kind::Notify, DYN, 0, &call);
    // CALL: [[], [], [1, [1, 7]]]  -> handle 1, index 7
    send(
        &mut sock,
        Kind::Call,
        DYN,
        9,
        &hex("93 90 90 92 01 92 01 07"),
    );
    let (h, p) = recv(&mut sock).unwrap();
    assert_eq!((h.kind, h.id), (Kind::Reply, 9));
    assert_eq!(p, [0x07], "one element, not the array of 1000");
}

#[test]
fn hostile_requests_get_bad_payload_and_the_connection_lives() {
    let s = server();
    let mut sock = raw(s.addr());
    let mut deep = vec![0x91u8; 10_000];
    deep.push(0xc0);
    let mut deep_arg = hex("93 90 91 95 01 01 92 a4 6d 61 74 68 92 00 a3 70 6f 77 91");
    deep_arg.extend(&deep);
    deep_arg.extend(hex("80 c0"));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved marker", vec![0xc1]),
        ("truncated", hex("93 90")),
        ("not a request", hex("92 01 02")),
        ("array32 claims 4 billion items", hex("dd ff ff ff ff")),
        ("map32 claims 4 billion pairs", hex("df ff ff ff ff 01")),
        ("bin32 claims 2 GiB", hex("c6 7f ff ff ff 00")),
        ("str32 claims 4 GiB", hex("db ff ff ff ff 61")),
        ("ext32 claims 4 GiB", hex("c9 ff ff ff ff 01")),
        ("10,000 levels of nesting", deep),
        ("10,000 levels inside an argument", deep_arg),
        ("trailing bytes", hex("93 90 90 c0 c0")),
        (
            "slot out of range",
            hex("93 90 91 95 01 00 91 a1 74 90 80 c0"),
        ),
    ];
    LARGEST.store(0, Ordering::Relaxed);
    for (i, (what, payload)) in cases.iter().enumerate() {
        send(&mut sock, Kind::Call, DYN, i as u32 + 1, payload);
        let msg = expect_error(&mut sock, BAD_PAYLOAD);
        assert!(msg.contains("bad dynamic request"), "{what}: {msg}");
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
    // Still serving.
    send(&mut sock, Kind::Call, 0xFF02, 99, b"alive");
    assert_eq!(recv(&mut sock).unwrap().1, b"alive");
}

#[test]
fn a_refused_one_way_request_is_reported_alongside_the_next_reply() {
    let s = server();
    let mut sock = raw(s.addr());
    send(&mut sock, Kind::Notify, DYN, 0, &[0xc1]);
    send(&mut sock, Kind::Call, DYN, 1, &hex("93 90 90 c0"));
    let (h, p) = recv(&mut sock).unwrap();
    assert_eq!(h.kind, Kind::Reply, "the CALL's own answer is not replaced");
    // ext 32, type 3: [[{request: 1, ...}], 0, nil]
    assert_eq!(p[0], 0xc9);
    assert_eq!(
        u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize,
        p.len() - 6
    );
    assert_eq!((p[5], p[6], p[7]), (3, 0x93, 0x91));
    assert!(String::from_utf8_lossy(&p).contains("bad dynamic request"));
    assert_eq!(&p[p.len() - 2..], [0x00, 0xc0], "unlisted 0, value nil");
    // Reported once.
    send(&mut sock, Kind::Call, DYN, 2, &hex("93 90 90 c0"));
    let (h, p) = recv(&mut sock).unwrap();
    assert_eq!((h.kind, p), (Kind::Reply, vec![0xc0]));
}

#[test]
fn the_deepest_accepted_value_round_trips_at_the_default_stack_size() {
    // The server's default handler stack (256 KiB), debug or release.
    let s = server_with_stack(256 * 1024);
    let mut sock = raw(s.addr());
    // [[], [[1, 1, ["t", [0, "echo"]], [x], {}]], [1]] with x nested 124 deep
    // (the request adds 4 levels: 128 in all).
    let mut x = vec![0x91u8; 124];
    x.push(0x07);
    let mut p = hex("93 90 91 95 01 01 92 a1 74 92 00 a4 65 63 68 6f 91");
    p.extend(&x);
    p.extend(hex("80 91 01"));
    send(&mut sock, Kind::Call, DYN, 1, &p);
    let (h, reply) = recv(&mut sock).unwrap();
    assert_eq!(h.kind, Kind::Reply, "{}", String::from_utf8_lossy(&reply));
    assert_eq!(reply, x);
}
