//! Replays the fuzz corpus: every file under `tests/fuzz_corpus/<target>/`
//! goes through the same body as the cargo-fuzz target of that name
//! (`fuzz/common/targets.rs`), and none may panic. The corpus holds the
//! seeds the fuzzers start from (`fuzz/seeds.py`, from docs/vectors.json)
//! and every input a fuzzer found that crashed or hung, so a bug found
//! once stays found. Runs in the normal suite; no cargo-fuzz needed.

#[path = "../fuzz/common/targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    let files = corpus(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| body(&data))).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} corpus files panic: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn every_target_has_a_corpus_folder() {
    for (name, _) in targets::all() {
        assert!(
            !corpus(name).is_empty(),
            "tests/fuzz_corpus/{name} is empty"
        );
    }
}

#[test]
fn corpus_frame_reader() {
    replay("frame_reader", targets::frame_reader);
}

#[test]
fn corpus_codecs() {
    replay("codecs", targets::codecs);
}

#[cfg(feature = "msgpack")]
#[test]
fn corpus_msgpack_value() {
    replay("msgpack_value", targets::msgpack_value);
}

#[cfg(feature = "msgpack")]
#[test]
fn corpus_dynamic_request() {
    replay("dynamic_request", targets::dynamic_request);
}

#[cfg(feature = "msgpack")]
#[test]
fn corpus_describe() {
    replay("describe", targets::describe);
}

#[cfg(feature = "ndarray")]
#[test]
fn corpus_ndarray() {
    replay("ndarray", targets::ndarray);
}
