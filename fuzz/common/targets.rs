//! The body of every fuzz target, shared by the cargo-fuzz crate
//! (`fuzz/fuzz_targets/*.rs`) and the normal test suite
//! (`tests/fuzz_regressions.rs`, `tests/random_inputs.rs`), which include
//! this file with `#[path]`.
//!
//! Each function takes arbitrary bytes and must never panic: a panic here is
//! a bug in framerpc (or an oracle below that is wrong). Besides "no panic",
//! each target checks what it can about whatever decodes: it re-encodes and
//! compares, and the frame reader must give the same frames however the
//! bytes are split up.
#![allow(dead_code)]

use std::io::{self, Read};

use bytes::Bytes;
use framerpc::codec::{self, Codec, F64Codec, Map, OptionOf, VecOf};
use framerpc::codec::{
    BOOL, BYTES, F32, F32_BE, F64, F64_BE, I16, I16_BE, I32, I32_BE, I64, I64_BE, I8, STR, U16,
    U16_BE, U32, U32_BE, U64, U64_BE, U8, UNIT,
};
use framerpc::frame::{Frame, FrameReader, HEADER_LEN};
use framerpc::Error;

/// A target: its name (the folder under `tests/fuzz_corpus/`) and body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub fn all() -> Vec<Target> {
    #[cfg_attr(not(feature = "msgpack"), allow(unused_mut))]
    let mut v: Vec<Target> = vec![("frame_reader", frame_reader), ("codecs", codecs)];
    #[cfg(feature = "msgpack")]
    v.extend([
        ("msgpack_value", msgpack_value as fn(&[u8])),
        ("dynamic_request", dynamic_request),
        ("describe", describe),
    ]);
    #[cfg(feature = "ndarray")]
    v.push(("ndarray", ndarray));
    v
}

// ------------------------------------------------------------ frame_reader

/// Limits the frame reader is run with, picked by the input's first byte:
/// tiny ones, one either side of the 256 KiB "big frame" path, the default.
const LIMITS: [u32; 8] = [0, 1, 64, 300, 4096, 300_000, 1 << 20, 64 << 20];

/// A stream that hands out the bytes in chunks whose sizes come from the
/// input, with `WouldBlock` (a read timeout) and `Interrupted` between them.
struct Chunks<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    i: usize,
    stalled: bool,
}

impl Read for Chunks<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let s = if self.sizes.is_empty() {
            7
        } else {
            self.sizes[self.i % self.sizes.len()]
        };
        self.i += 1;
        // Never two stalls in a row, so every other read makes progress.
        if !std::mem::take(&mut self.stalled) && s & 0x80 != 0 {
            self.stalled = true;
            return Err(if s & 0x40 != 0 {
                io::ErrorKind::Interrupted.into()
            } else {
                io::ErrorKind::WouldBlock.into()
            });
        }
        let n = (usize::from(s & 0x3f) + 1)
            .min(out.len())
            .min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What a reader made of a stream: the frames, then how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    /// `None` for a clean end of stream, else the error's message.
    end: Option<String>,
}

/// `stream_len` bytes in all, `from_reader` of them read from the stream
/// (the rest were handed over as a prefix).
fn drain<R: Read>(
    mut r: FrameReader<R>,
    stream_len: usize,
    from_reader: usize,
    limit: u32,
) -> Outcome {
    let mut frames = Vec::new();
    // Every call either returns a frame, ends, or reads; reads never
    // stall twice in a row, so this bound is generous.
    for _ in 0..4 * stream_len + 64 {
        match r.read_frame() {
            Ok(Some(f)) => {
                assert_eq!(f.payload.len(), f.header.len as usize);
                assert!(
                    f.header.len <= limit,
                    "frame over the limit: {:?}",
                    f.header
                );
                frames.push(f);
            }
            Ok(None) => {
                let used: usize = frames.iter().map(|f| HEADER_LEN + f.payload.len()).sum();
                assert_eq!(used, stream_len, "clean end but bytes unaccounted for");
                assert_eq!(r.received(), from_reader as u64);
                assert!(r.pending_header().is_none());
                return Outcome { frames, end: None };
            }
            Err(Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                let _ = r.pending_header();
            }
            Err(e) => {
                let _ = r.pending_header();
                assert!(r.received() <= from_reader as u64);
                return Outcome {
                    frames,
                    end: Some(e.to_string()),
                };
            }
        }
    }
    panic!("FrameReader made no progress on a {stream_len}-byte stream");
}

/// `FrameReader` over the input: byte 0 picks the limit and where a
/// `with_prefix` split goes, byte 1 how many of the next bytes are chunk
/// sizes; the rest is the stream. Read whole, in chunks (with read
/// timeouts between them) and with a prefix, it must give the same frames
/// and end the same way.
pub fn frame_reader(data: &[u8]) {
    let (ctl, rest) = match data {
        [a, b, rest @ ..] => ((*a, *b), rest),
        _ => ((0, 0), data),
    };
    let limit = LIMITS[usize::from(ctl.0 & 7)];
    let k = usize::from(ctl.1 & 15).min(rest.len());
    let (sizes, stream) = rest.split_at(k);

    let whole = drain(
        FrameReader::new(stream, limit),
        stream.len(),
        stream.len(),
        limit,
    );
    let chunked = drain(
        FrameReader::new(
            Chunks {
                data: stream,
                sizes,
                i: 0,
                stalled: false,
            },
            limit,
        ),
        stream.len(),
        stream.len(),
        limit,
    );
    assert_eq!(whole, chunked, "chunking changed what was read");
    let split = usize::from(ctl.0 >> 3).min(stream.len());
    let (prefix, tail) = stream.split_at(split);
    let prefixed = drain(
        FrameReader::with_prefix(tail, limit, prefix),
        stream.len(),
        tail.len(),
        limit,
    );
    // `received` counts only what came from the stream, so compare frames
    // and ends only.
    assert_eq!(whole, prefixed, "a prefix changed what was read");
}

// ------------------------------------------------------------------ codecs

/// Decodes a value off the front of the input with `c`; whatever decodes
/// must re-encode to exactly the bytes it used (every codec's encoding is
/// canonical), and `decode_all` must agree with `decode`.
fn round_trip<C: Codec>(c: &C, data: &[u8]) {
    let all = Bytes::copy_from_slice(data);
    let mut src = all.clone();
    let whole = codec::decode_all(c, all.clone());
    match c.decode(&mut src) {
        Ok(v) => {
            let used = data.len() - src.len();
            let again = codec::encode_to_vec(c, &v);
            assert_eq!(
                again,
                &data[..used],
                "{} does not re-encode to the bytes it decoded",
                c.schema_string()
            );
            let exact = codec::decode_all(c, all.slice(..used)).unwrap_or_else(|e| {
                panic!("{}: decode_all of the used bytes: {e}", c.schema_string())
            });
            assert_eq!(codec::encode_to_vec(c, &exact), again);
            assert_eq!(whole.is_ok(), used == data.len(), "{}", c.schema_string());
        }
        Err(e) => {
            assert!(
                whole.is_err(),
                "{}: decode failed ({e}) but decode_all did not",
                c.schema_string()
            );
            let _ = e.to_string();
        }
    }
}

#[derive(Debug, PartialEq)]
struct Point {
    x: f64,
    y: f64,
    name: String,
}

const POINT: Map<(F64Codec, F64Codec, codec::StrCodec), Point> = Map::new(
    (F64, F64, STR),
    |(x, y, name)| Ok(Point { x, y, name }),
    |p| (p.x, p.y, p.name.clone()),
);

#[derive(Debug, PartialEq)]
enum Shape {
    Circle(u32),
    Rect(u16, u16),
    Named(String),
}

/// An enum as `(u8 tag, option<u32>, option<(u16,u16)>, option<str>)`:
/// unknown tags and tags without their payload are refused.
type ShapeParts = (
    codec::U8Codec,
    OptionOf<codec::U32Codec>,
    OptionOf<(codec::U16Codec, codec::U16Codec)>,
    OptionOf<codec::StrCodec>,
);

const SHAPE: Map<ShapeParts, Shape> = Map::new(
    (U8, OptionOf(U32), OptionOf((U16, U16)), OptionOf(STR)),
    |t| match t {
        (0, Some(r), None, None) => Ok(Shape::Circle(r)),
        (1, None, Some((w, h)), None) => Ok(Shape::Rect(w, h)),
        (2, None, None, Some(s)) => Ok(Shape::Named(s)),
        _ => Err("unknown shape"),
    },
    |s| match s {
        Shape::Circle(r) => (0, Some(*r), None, None),
        Shape::Rect(w, h) => (1, None, Some((*w, *h)), None),
        Shape::Named(n) => (2, None, None, Some(n.clone())),
    },
);

/// Every codec decoder over the same bytes: all primitives, str, bytes,
/// unit, vec, option, nested tuples (up to 12) and `Map`.
pub fn codecs(data: &[u8]) {
    // Primitives.
    round_trip(&U8, data);
    round_trip(&I8, data);
    round_trip(&U16, data);
    round_trip(&I16, data);
    round_trip(&U32, data);
    round_trip(&I32, data);
    round_trip(&U64, data);
    round_trip(&I64, data);
    round_trip(&F32, data);
    round_trip(&F64, data);
    round_trip(&U16_BE, data);
    round_trip(&I16_BE, data);
    round_trip(&U32_BE, data);
    round_trip(&I32_BE, data);
    round_trip(&U64_BE, data);
    round_trip(&I64_BE, data);
    round_trip(&F32_BE, data);
    round_trip(&F64_BE, data);
    round_trip(&BOOL, data);
    round_trip(&UNIT, data);
    round_trip(&STR, data);
    round_trip(&BYTES, data);
    // Sequences and options.
    round_trip(&VecOf(U8), data);
    round_trip(&VecOf(U32), data);
    round_trip(&VecOf(F64_BE), data);
    round_trip(&VecOf(BOOL), data);
    round_trip(&VecOf(UNIT), data);
    round_trip(&VecOf(STR), data);
    round_trip(&VecOf(BYTES), data);
    round_trip(&VecOf(VecOf(U16)), data);
    round_trip(&OptionOf(STR), data);
    round_trip(&OptionOf(OptionOf(U64)), data);
    round_trip(&OptionOf(VecOf(OptionOf(I16_BE))), data);
    // Tuples, nested.
    round_trip(&(U8,), data);
    round_trip(&(U32, U32), data);
    round_trip(&(STR, BOOL, U8), data);
    round_trip(&(U8, (STR, (BOOL, OptionOf(U32)))), data);
    round_trip(&VecOf((U32, OptionOf(BYTES))), data);
    round_trip(
        &(U8, I8, U16, I16, U32, I32, U64, I64, F32, F64, BOOL, STR),
        data,
    );
    round_trip(&(VecOf((STR, U16_BE)), OptionOf((UNIT, VecOf(BOOL)))), data);
    // User types.
    round_trip(&POINT, data);
    round_trip(&SHAPE, data);
    round_trip(&VecOf(SHAPE), data);
    round_trip(&OptionOf((POINT, VecOf(POINT))), data);
}

// ------------------------------------------------------------ msgpack

#[cfg(feature = "msgpack")]
use framerpc::dynamic::{Value, DEFAULT_MAX_DEPTH};

/// Nesting depth of arrays and maps (keys included); a scalar is 0, an
/// empty array 1. The decoder's bound counts the same way.
#[cfg(feature = "msgpack")]
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Map(m) => {
            1 + m
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// Structural equality with floats compared by bits (NaN == NaN).
#[cfg(feature = "msgpack")]
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb))
        }
        (a, b) => a == b,
    }
}

/// The msgpack `Value` decoder: whatever decodes re-encodes to bytes that
/// decode to the same value (and encode the same again); its depth is
/// within the bound, and the bound is exact (it decodes with a limit of its
/// depth and fails with `TooDeep` one below). Byte 0 also picks a small
/// limit to decode with.
#[cfg(feature = "msgpack")]
pub fn msgpack_value(data: &[u8]) {
    use framerpc::DecodeError;
    let b = Bytes::copy_from_slice(data);
    if let Ok(v) = Value::decode(b.clone()) {
        let d = depth(&v);
        assert!(d <= DEFAULT_MAX_DEPTH, "depth {d} past the bound");
        let _ = v.to_string();
        let enc = v.to_bytes().freeze();
        let v2 = Value::decode(enc.clone())
            .unwrap_or_else(|e| panic!("re-encoded value does not decode: {e}"));
        assert!(same(&v, &v2), "round trip changed the value: {v} vs {v2}");
        assert_eq!(v2.to_bytes().freeze(), enc, "encoding is not stable");
        assert!(
            Value::decode_with_depth(b.clone(), d).is_ok(),
            "does not decode at its own depth {d}"
        );
        if d > 0 {
            assert!(
                matches!(
                    Value::decode_with_depth(b.clone(), d - 1),
                    Err(DecodeError::TooDeep(_))
                ),
                "decodes below its depth {d}"
            );
        }
    }
    let small = usize::from(data.first().copied().unwrap_or(0) % 8);
    if let Ok(v) = Value::decode_with_depth(b, small) {
        assert!(depth(&v) <= small);
    }
}

// ---------------------------------------------------- dynamic_request

/// The dynamic layer's request decoder as the server runs it
/// (`Value::decode_with_depth` then `Message::from_value`), and the ext-1
/// reference arguments it resolves. A request that decodes re-encodes to a
/// request that decodes to the same encoding, and its slots are in range.
#[cfg(feature = "msgpack")]
pub fn dynamic_request(data: &[u8]) {
    use bytes::BytesMut;
    use framerpc::dynamic::wire::{Message, EXT_REF, SERVER_HANDLES};

    fn request(b: Bytes) -> Result<Message, String> {
        Value::decode_with_depth(b, DEFAULT_MAX_DEPTH)
            .map_err(|e| e.to_string())
            .and_then(Message::from_value)
    }
    fn encode(m: &Message) -> Bytes {
        let mut b = BytesMut::new();
        m.encode(&mut b);
        b.freeze()
    }

    let m = match request(Bytes::copy_from_slice(data)) {
        Ok(m) => m,
        Err(why) => {
            assert!(!why.is_empty());
            return;
        }
    };
    for c in &m.calls {
        assert!((1..SERVER_HANDLES).contains(&c.slot), "slot {}", c.slot);
    }
    let enc = encode(&m);
    let m2 = request(enc.clone()).unwrap_or_else(|e| panic!("re-encoded request refused: {e}"));
    assert_eq!(encode(&m2), enc, "request encoding is not stable");
    // Reference arguments: the server decodes their data as a ref.
    for c in &m.calls {
        for a in c.args.iter().chain(c.kwargs.iter().map(|(_, v)| v)) {
            if let Value::Ext(EXT_REF, d) = a {
                if let Ok(r) = Value::decode_with_depth(d.clone(), DEFAULT_MAX_DEPTH) {
                    let wrapped = Value::Array(vec![Value::Array(vec![]), Value::Array(vec![]), r]);
                    let _ = Message::from_value(wrapped);
                }
            }
        }
    }
}

// ------------------------------------------------------------ describe

/// A space with one of each kind (module, submodule, constant, function
/// with keyword-only and `**kwargs` parameters, object, method, attribute)
/// and the names it declares: a description may name nothing else.
#[cfg(feature = "msgpack")]
fn describe_space() -> &'static (framerpc::dynamic::Space, Vec<&'static str>) {
    use framerpc::dynamic::{Class, Module, Params, Space};
    static SPACE: std::sync::OnceLock<(Space, Vec<&'static str>)> = std::sync::OnceLock::new();
    SPACE.get_or_init(|| {
        let env = Class::<i64>::builder("Env")
            .doc("an env")
            .attr("t", |t: &i64| *t)
            .method(
                "step",
                Params::new().req("a").kw_opt("render", false).doc("steps"),
                |t: &mut i64, _| {
                    *t += 1;
                    Ok(*t)
                },
            )
            .build();
        let shared = env.instance(0);
        let sim = Module::new()
            .doc("sims")
            .constant("version", "1.0")
            .function(
                "make",
                Params::new()
                    .req("name")
                    .opt("seed", ())
                    .kw("mode")
                    .var_kwargs(),
                move |_| Ok(env.instance(0)),
            )
            .item("shared", shared)
            .module("path", Module::new().constant("sep", "/"));
        let names = vec![
            "sim", "version", "make", "shared", "path", "sep", "t", "step", "name", "seed", "mode",
            "kwargs", "a", "render",
        ];
        (
            Space::builder().root("sim", sim).max_handles(16).build(),
            names,
        )
    })
}

/// Every `name` in a description (and its members and parameters) is a
/// declared name or the label it was reached by; kinds are the documented
/// ones.
#[cfg(feature = "msgpack")]
fn check_description(d: &Value, names: &[&str]) {
    const KINDS: [&str; 7] = [
        "module",
        "object",
        "function",
        "method",
        "value",
        "constant",
        "attribute",
    ];
    let kind = d.get("kind").and_then(Value::as_str).unwrap_or("");
    assert!(KINDS.contains(&kind), "kind {kind:?}");
    let Value::Map(m) = d else {
        panic!("not a map")
    };
    for (k, v) in m {
        match k.as_str().unwrap_or("") {
            "members" | "params" => {
                let Value::Array(items) = v else {
                    panic!("{k} not an array")
                };
                for item in items {
                    let n = item.get("name").and_then(Value::as_str).unwrap_or("");
                    assert!(names.contains(&n), "undeclared name {n:?}");
                    if k.as_str() == Some("members") {
                        check_description(item, names);
                    }
                }
            }
            "kind" | "name" | "doc" | "class" | "type" => {}
            other => panic!("unexpected key {other:?}"),
        }
    }
}

/// `describe` requests through the whole server path (`Space::serve`): the
/// input is either a whole request (first byte even) or the steps of a ref
/// (first byte odd) described after a call made an object in slot 1. Never
/// panics; a description reveals only declared names.
#[cfg(feature = "msgpack")]
pub fn describe(data: &[u8]) {
    use bytes::BytesMut;
    use framerpc::dynamic::wire::{Base, CallOp, Message, Ref, Step};
    static CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let (space, names) = describe_space();
    let conn = CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut out = BytesMut::new();
    if mode % 2 == 0 {
        let _ = space.serve(conn, mode % 4 == 0, Bytes::copy_from_slice(rest), &mut out);
        if !out.is_empty() {
            Value::decode(out.freeze()).expect("a reply decodes");
        }
        space.end_connection(conn);
        return;
    }
    // Slot 1: sim.make("x", mode=1), an object.
    let make = Message {
        calls: vec![CallOp {
            slot: 1,
            target: Ref {
                base: Base::Root("sim".into()),
                steps: vec![Step::Attr("make".into())],
            },
            args: vec!["x".into()],
            kwargs: vec![("mode".into(), 1.into())],
        }],
        ..Message::default()
    };
    let mut b = BytesMut::new();
    make.encode(&mut b);
    space
        .serve(conn, false, b.freeze(), &mut out)
        .expect("setup");
    // The ref: a base chosen by the input, then the input's steps (if it
    // is a msgpack array of steps), then describe.
    let base = match mode >> 1 & 3 {
        0 => Value::from("sim"),
        1 => Value::from(1),
        2 => Value::from("nope"),
        _ => Value::from(7),
    };
    let steps = match Value::decode_with_depth(Bytes::copy_from_slice(rest), 16) {
        Ok(Value::Array(steps)) => steps,
        _ => Vec::new(),
    };
    let mut r = vec![base];
    r.extend(steps);
    r.push(Value::Array(vec![2.into(), Value::Nil]));
    let payload = Value::Array(vec![
        Value::Array(vec![]),
        Value::Array(vec![]),
        Value::Array(r),
    ])
    .to_bytes()
    .freeze();
    match space.serve(conn, true, payload, &mut out) {
        Ok(()) => {
            let d = Value::decode(out.freeze()).expect("a reply decodes");
            // Steps after describe index into the description: only a
            // description itself is checked.
            if d.get("kind").is_some() && d.get("name").is_some() {
                check_description(&d, names);
            }
        }
        Err(e) => assert!(!e.message().is_empty()),
    }
    space.end_connection(conn);
}

// ------------------------------------------------------------ ndarray

#[cfg(feature = "ndarray")]
fn array_codec<T: framerpc::ndarray::Element>(c: &framerpc::ndarray::ArrayCodec<T>, data: &[u8]) {
    if let Ok(a) = codec::decode_all(c, Bytes::copy_from_slice(data)) {
        let enc = codec::encode_to_vec(c, &a);
        let b = codec::decode_all(c, enc.clone().into())
            .unwrap_or_else(|e| panic!("re-encoded ndarray refused: {e}"));
        assert_eq!(codec::encode_to_vec(c, &b), enc);
    }
}

#[cfg(feature = "ndarray")]
fn to_array<T: framerpc::ndarray::Element>(raw: &framerpc::ndarray::RawArray) {
    if let Ok(a) = raw.to_array::<T>() {
        assert_eq!(a.len(), raw.len());
    }
}

/// msgpack-numpy decoding (`RawArray::from_value` and `FromValue` for
/// `ArrayD<T>`) and the binary ndarray codec (`NDARRAY`, `ArrayCodec<T>`).
/// A decoded array's data length matches dtype and shape, and it survives
/// both encodings.
#[cfg(feature = "ndarray")]
pub fn ndarray(data: &[u8]) {
    use framerpc::dynamic::FromValue;
    use framerpc::ndarray::{
        ArrayCodec, DType, RawArray, ARRAY_BOOL, ARRAY_F32, ARRAY_F64, ARRAY_I32, ARRAY_I64,
        ARRAY_U8, MAX_DIMS, NDARRAY,
    };

    fn check_raw(raw: &RawArray) {
        assert!(raw.shape.len() <= MAX_DIMS);
        let n = raw
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_mul(raw.dtype.size()));
        assert_eq!(n, Some(raw.data.len()), "data length vs dtype and shape");
        // KNOWN BUG (found by this target, reported, reproducer
        // tests/fuzz_corpus/ndarray/crash-empty-array-with-dim-over-i64-max):
        let back = RawArray::from_value(&raw.to_value())
            .unwrap_or_else(|e| panic!("to_value does not decode: {e}"));
        assert_eq!(&back, raw);
        let enc = codec::encode_to_vec(&NDARRAY, raw);
        let back = codec::decode_all(&NDARRAY, enc.into())
            .unwrap_or_else(|e| panic!("NDARRAY re-encoding refused: {e}"));
        assert_eq!(&back, raw);
        match raw.dtype {
            DType::Bool => to_array::<bool>(raw),
            DType::I8 => to_array::<i8>(raw),
            DType::U8 => to_array::<u8>(raw),
            DType::I16 => to_array::<i16>(raw),
            DType::U16 => to_array::<u16>(raw),
            DType::I32 => to_array::<i32>(raw),
            DType::U32 => to_array::<u32>(raw),
            DType::I64 => to_array::<i64>(raw),
            DType::U64 => to_array::<u64>(raw),
            DType::F32 => to_array::<f32>(raw),
            DType::F64 => to_array::<f64>(raw),
        }
    }
    fn from_value<T: framerpc::ndarray::Element>(v: &Value)
    where
        <ArrayCodec<T> as Codec>::Value: FromValue,
    {
        let _ = <<ArrayCodec<T> as Codec>::Value as FromValue>::from_value(v.clone());
    }

    let b = Bytes::copy_from_slice(data);
    if let Ok(v) = Value::decode(b.clone()) {
        if let Ok(raw) = RawArray::from_value(&v) {
            check_raw(&raw);
        }
        from_value::<f32>(&v);
        from_value::<u8>(&v);
        from_value::<bool>(&v);
        from_value::<i64>(&v);
    }
    let mut src = b.clone();
    if let Ok(raw) = NDARRAY.decode(&mut src) {
        check_raw(&raw);
    }
    let _ = codec::decode_all(&NDARRAY, b);
    array_codec(&ARRAY_F32, data);
    array_codec(&ARRAY_F64, data);
    array_codec(&ARRAY_U8, data);
    array_codec(&ARRAY_I32, data);
    array_codec(&ARRAY_I64, data);
    array_codec(&ARRAY_BOOL, data);
}
