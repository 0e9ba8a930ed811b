//! A bounded, seeded random-input test over the same decoders as the fuzz
//! targets (`fuzz/common/targets.rs`): per target, 20,000 inputs (a third
//! pure random bytes, the rest mutations of the corpus seeds in
//! `tests/fuzz_corpus/<target>/`: bit flips, byte and length-field
//! overwrites with edge values, inserts, deletes, truncation and splices).
//! Runs in the normal suite in a few seconds and needs no cargo-fuzz; a
//! failure prints the seed, the input index and the input in hex.
//! `FRAMERPC_RANDOM_INPUTS=n` changes the count per target.

#[path = "../fuzz/common/targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x5eed_f4a3_e7c0_0001;

fn count() -> usize {
    std::env::var("FRAMERPC_RANDOM_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Values that sit on the edges length checks care about.
const EDGES: [u32; 10] = [0, 1, 2, 7, 8, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff];

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = v.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = rng.random();
            }
            2 if len > 0 => {
                // A length or count field overwritten with an edge value.
                let i = rng.random_range(0..len);
                let e = EDGES[rng.random_range(0..EDGES.len())];
                let bytes = if rng.random() {
                    e.to_le_bytes()
                } else {
                    e.to_be_bytes()
                };
                for (k, b) in bytes.iter().enumerate() {
                    if let Some(slot) = v.get_mut(i + k) {
                        *slot = *b;
                    }
                }
            }
            3 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..=16);
                let b: u8 = rng.random();
                v.splice(i..i, std::iter::repeat(b).take(n));
            }
            4 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(16));
                v.drain(i..i + n);
            }
            5 if len > 0 => v.truncate(rng.random_range(0..len)),
            6 => {
                // Splice in a piece of another seed.
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let a = rng.random_range(0..other.len());
                    let b = rng.random_range(a..=other.len());
                    let i = rng.random_range(0..=len);
                    v.splice(i..i, other[a..b].iter().copied());
                }
            }
            _ => {
                let i = rng.random_range(0..=len);
                v.insert(i, rng.random());
            }
        }
    }
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run(target: &str, body: fn(&[u8])) {
    let seeds = seeds(target);
    assert!(!seeds.is_empty(), "no seeds for {target}");
    // One stream per target, so adding a target changes no other's inputs.
    let salt = target
        .bytes()
        .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
    let mut rng = StdRng::seed_from_u64(SEED ^ salt);
    let n = count();
    for i in 0..n {
        let input = if i % 3 == 0 {
            let len = rng.random_range(0..=256);
            (0..len).map(|_| rng.random()).collect()
        } else {
            mutate(&mut rng, &seeds)
        };
        if catch_unwind(AssertUnwindSafe(|| body(&input))).is_err() {
            panic!(
                "{target}: input {i} of seed {SEED:#x} panicked (save it under \
                 tests/fuzz_corpus/{target}/): {}",
                hex(&input)
            );
        }
    }
    // The seeds themselves too.
    for s in &seeds {
        body(s);
    }
}

#[test]
fn random_frame_reader() {
    run("frame_reader", targets::frame_reader);
}

#[test]
fn random_codecs() {
    run("codecs", targets::codecs);
}

#[cfg(feature = "msgpack")]
#[test]
fn random_msgpack_value() {
    run("msgpack_value", targets::msgpack_value);
}

#[cfg(feature = "msgpack")]
#[test]
fn random_dynamic_request() {
    run("dynamic_request", targets::dynamic_request);
}

#[cfg(feature = "msgpack")]
#[test]
fn random_describe() {
    run("describe", targets::describe);
}

#[cfg(feature = "ndarray")]
#[test]
fn random_ndarray() {
    run("ndarray", targets::ndarray);
}
