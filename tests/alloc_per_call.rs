//! The server allocates nothing per small call in steady state: a counting
//! global allocator watches 10,000 calls from a raw client that itself
//! allocates nothing.

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use framerpc::frame::{encode_frame, Kind};
use support::*;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn small_calls_do_not_allocate_on_the_server() {
    let srv = serve(greet::router());
    let mut s = raw(srv.addr());
    let call = encode_frame(Kind::Call, 3, 7, &[2, 0, 0, 0, 3, 0, 0, 0]);
    let mut reply = [0u8; 16];
    let mut round_trip = |s: &mut std::net::TcpStream| {
        s.write_all(&call).unwrap();
        s.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[12..], &[5, 0, 0, 0]);
    };
    for _ in 0..1_000 {
        round_trip(&mut s);
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    let n = 10_000u64;
    for _ in 0..n {
        round_trip(&mut s);
    }
    let allocs = ALLOCS.load(Ordering::SeqCst) - before;
    println!("{allocs} allocations in {n} calls");
    assert!(
        allocs * 100 < n,
        "{allocs} allocations in {n} calls: the server allocates per call"
    );
}
