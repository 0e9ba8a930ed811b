//! docs/vectors.json, the wire contract as test vectors that the Python
//! client's tests load too: every frame, error, built-in reply and codec
//! edge value is checked byte for byte in both directions against
//! framerpc's own encoders and decoders.

use bytes::{Bytes, BytesMut};
use framerpc::codec::*;
use framerpc::frame::{encode_frame, Header, Kind};
use serde_json::Value as Json;

fn vectors() -> Json {
    serde_json::from_str(include_str!("../docs/vectors.json")).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// JSON (as the vectors write values) to a Rust value.
trait FromJson: Sized {
    fn from_json(j: &Json) -> Self;
}

macro_rules! int_from_json {
    ($($t:ty),*) => {$(
        impl FromJson for $t {
            fn from_json(j: &Json) -> Self {
                if let Some(v) = j.as_u64() { return <$t>::try_from(v).unwrap(); }
                <$t>::try_from(j.as_i64().unwrap()).unwrap()
            }
        }
    )*};
}
int_from_json!(u8, u16, u32, u64, i8, i16, i32, i64);

fn float(j: &Json) -> f64 {
    match j.as_str() {
        Some("nan") => f64::NAN,
        Some("inf") => f64::INFINITY,
        Some("-inf") => f64::NEG_INFINITY,
        Some(other) => panic!("float {other:?}"),
        None => j.as_f64().unwrap(),
    }
}

impl FromJson for f64 {
    fn from_json(j: &Json) -> Self {
        float(j)
    }
}
impl FromJson for f32 {
    fn from_json(j: &Json) -> Self {
        float(j) as f32
    }
}
impl FromJson for bool {
    fn from_json(j: &Json) -> Self {
        j.as_bool().unwrap()
    }
}
impl FromJson for String {
    fn from_json(j: &Json) -> Self {
        j.as_str().unwrap().to_owned()
    }
}
impl FromJson for Bytes {
    fn from_json(j: &Json) -> Self {
        let s = j.as_str().unwrap();
        let hex = s.strip_suffix("(hex)").unwrap_or(s).trim();
        Bytes::from(unhex(hex))
    }
}
impl FromJson for () {
    fn from_json(j: &Json) -> Self {
        assert!(j.is_null());
    }
}
impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(j: &Json) -> Self {
        j.as_array().unwrap().iter().map(T::from_json).collect()
    }
}
impl<T: FromJson> FromJson for Option<T> {
    fn from_json(j: &Json) -> Self {
        (!j.is_null()).then(|| T::from_json(j))
    }
}
macro_rules! tuple_from_json {
    ($($n:ident $i:tt),+) => {
        impl<$($n: FromJson),+> FromJson for ($($n,)+) {
            fn from_json(j: &Json) -> Self {
                let a = j.as_array().unwrap();
                ($($n::from_json(&a[$i]),)+)
            }
        }
    };
}
tuple_from_json!(A 0);
tuple_from_json!(A 0, B 1);
tuple_from_json!(A 0, B 1, C 2);
tuple_from_json!(A 0, B 1, C 2, D 3);

/// Value -> bytes must give the vector; bytes -> value -> bytes must too
/// (compared as bytes, so NaN payloads count).
fn check<C: Codec>(c: &C, case: &Json)
where
    C::Value: FromJson,
{
    let hex = unhex(case["hex"].as_str().unwrap());
    assert_eq!(c.schema_string(), case["codec"].as_str().unwrap());
    let value = C::Value::from_json(&case["value"]);
    assert_eq!(encode_to_vec(c, &value), hex, "encode {case}");
    let back =
        decode_all(c, Bytes::from(hex.clone())).unwrap_or_else(|e| panic!("decode {case}: {e}"));
    assert_eq!(encode_to_vec(c, &back), hex, "decode {case}");
}

/// Named user types (`Map::named`), with tuples as their Rust values.
const POS: Map<(F64Codec, F64Codec), (f64, f64)> =
    Map::new((F64, F64), Ok, |p| *p).named("Pos", &["x", "y"]);
const POS_TUPLE: Map<(F64Codec, F64Codec), (f64, f64)> =
    Map::new((F64, F64), Ok, |p| *p).named("Pos", &[]);
const MODE: Map<U8Codec, u8> = Map::new(U8, Ok, |m| *m).named("Mode", &[]);
type FrameParts = (
    U32Codec,
    VecOf<StrCodec>,
    OptionOf<Map<(F64Codec, F64Codec), (f64, f64)>>,
);
type FrameValue = (u32, Vec<String>, Option<(f64, f64)>);
const FRAME: Map<FrameParts, FrameValue> =
    Map::new((U32, VecOf(STR), OptionOf(POS)), Ok, |f: &FrameValue| {
        f.clone()
    })
    .named("Frame", &["id", "tags", "at"]);

/// Dispatches a vector to the framerpc codec with that schema.
fn check_schema(case: &Json) -> bool {
    macro_rules! schemas {
        ($($s:literal => $c:expr),* $(,)?) => {
            match case["codec"].as_str().unwrap() {
                $($s => check(&$c, case),)*
                _ => return false,
            }
        };
    }
    schemas! {
        "u8" => U8, "u16" => U16, "u32" => U32, "u64" => U64,
        "i8" => I8, "i16" => I16, "i32" => I32, "i64" => I64,
        "f32" => F32, "f64" => F64,
        "u16_be" => U16_BE, "u32_be" => U32_BE, "u64_be" => U64_BE,
        "i16_be" => I16_BE, "i32_be" => I32_BE, "i64_be" => I64_BE,
        "f32_be" => F32_BE, "f64_be" => F64_BE,
        "bool" => BOOL, "str" => STR, "bytes" => BYTES, "unit" => UNIT,
        "vec<u8>" => VecOf(U8), "vec<u32>" => VecOf(U32), "vec<i64>" => VecOf(I64),
        "vec<f32>" => VecOf(F32), "vec<bool>" => VecOf(BOOL), "vec<str>" => VecOf(STR),
        "vec<bytes>" => VecOf(BYTES), "vec<unit>" => VecOf(UNIT),
        "vec<option<u8>>" => VecOf(OptionOf(U8)), "vec<vec<u16>>" => VecOf(VecOf(U16)),
        "option<str>" => OptionOf(STR), "option<u64>" => OptionOf(U64),
        "option<bytes>" => OptionOf(BYTES), "option<vec<u8>>" => OptionOf(VecOf(U8)),
        "option<(u8,u8)>" => OptionOf((U8, U8)),
        "(u8)" => (U8,), "(u32,u32)" => (U32, U32), "(u16_be,u16)" => (U16_BE, U16),
        "(str,bool,u8)" => (STR, BOOL, U8),
        "(f64,f32,i8,u64_be)" => (F64, F32, I8, U64_BE),
        "(bool,(str,unit),vec<u8>)" => (BOOL, (STR, UNIT), VecOf(U8)),
        "Pos{x:f64,y:f64}" => POS, "Pos(f64,f64)" => POS_TUPLE, "Mode(u8)" => MODE,
        "Frame{id:u32,tags:vec<str>,at:option<Pos{x:f64,y:f64}>}" => FRAME,
    }
    true
}

#[test]
fn codec_values_and_edges() {
    let v = vectors();
    let mut n = 0;
    for section in ["codecs", "codec_edges"] {
        for case in v[section].as_array().unwrap() {
            assert!(
                check_schema(case),
                "no Rust codec for {}: add it to this test",
                case["codec"]
            );
            n += 1;
        }
    }
    assert!(n >= 140, "{n} codec vectors");
}

#[test]
fn invalid_requests_fail_to_decode() {
    let v = vectors();
    for case in v["invalid_requests"].as_array().unwrap() {
        let b = Bytes::from(unhex(case["hex"].as_str().unwrap()));
        let failed = match case["codec"].as_str().unwrap() {
            "(u32,u32)" => decode_all(&(U32, U32), b).is_err(),
            "bool" => decode_all(&BOOL, b).is_err(),
            "str" => decode_all(&STR, b).is_err(),
            "vec<u64>" => decode_all(&VecOf(U64), b).is_err(),
            "option<str>" => decode_all(&OptionOf(STR), b).is_err(),
            other => panic!("no codec for {other}"),
        };
        assert!(failed, "{case}");
    }
}

/// Header fields agree, and re-encoding header + payload gives the bytes.
fn check_frame(case: &Json) -> (Header, Vec<u8>) {
    let hex = unhex(case["hex"].as_str().unwrap());
    let h = Header::parse(hex[..12].try_into().unwrap()).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(h.kind as u64, case["kind"].as_u64().unwrap());
    assert_eq!(u64::from(h.cmd), case["cmd"].as_u64().unwrap());
    assert_eq!(u64::from(h.id), case["id"].as_u64().unwrap());
    assert_eq!(h.len as usize, hex.len() - 12);
    assert_eq!(encode_frame(h.kind, h.cmd, h.id, &hex[12..]), hex);
    (h, hex[12..].to_vec())
}

#[test]
fn frames_errors_and_builtin_replies() {
    let v = vectors();
    for case in v["frames"].as_array().unwrap() {
        check_frame(case);
    }
    for case in v["errors"].as_array().unwrap() {
        let (h, p) = check_frame(case);
        assert_eq!(h.kind, Kind::Error);
        let code = case["code"].as_u64().unwrap() as u16;
        let msg = case["message"].as_str().unwrap();
        let mut built = BytesMut::new();
        framerpc::frame::error_payload(code, msg, &mut built);
        assert_eq!(&built[..], &p[..], "{}", case["name"]);
    }
    for case in v["builtin_replies"].as_array().unwrap() {
        let (h, p) = check_frame(case);
        match (h.kind, h.cmd) {
            (Kind::Reply, 0xFF01) => {
                let table = framerpc::decode_list(Bytes::from(p.clone())).unwrap();
                let mut built = BytesMut::new();
                U16.encode(&(table.len() as u16), &mut built);
                for c in &table {
                    (U16, STR, STR, STR).encode(
                        &(
                            c.id,
                            c.name.clone(),
                            c.request_schema.clone(),
                            c.response_schema.clone(),
                        ),
                        &mut built,
                    );
                }
                assert_eq!(&built[..], &p[..]);
            }
            (Kind::Reply, 0xFF03) => {
                let (a, m, w) = decode_all(&(U32, U32, U32), Bytes::from(p)).unwrap();
                assert!(a <= m || m == 0, "{a} {m} {w}");
            }
            (Kind::Reply, 0xFF08) => {
                // shared: u16 count, then u16 ids.
                let ids = decode_all(&framerpc::codec::VecOf(U16), {
                    // Same bytes as a vec<u16> but with a u16 count.
                    let mut b = BytesMut::new();
                    b.extend_from_slice(&u32::from(u16::from_le_bytes([p[0], p[1]])).to_le_bytes());
                    b.extend_from_slice(&p[2..]);
                    b.freeze()
                })
                .unwrap();
                let want: Vec<u16> = case["value"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u16)
                    .collect();
                assert_eq!(ids, want);
            }
            (Kind::Call, 0xFF05) => {
                let ms = decode_all(&U32, Bytes::from(p)).unwrap();
                assert_eq!(u64::from(ms), case["value"]["wait_ms"].as_u64().unwrap());
            }
            (Kind::Call | Kind::Notify, 0xFF07) | (Kind::Reply, 0xFF04) => {
                assert_eq!(
                    std::str::from_utf8(&p).unwrap(),
                    case["value"].as_str().unwrap()
                );
            }
            (Kind::Error, 0xFF05) => assert_eq!(u16::from_le_bytes([p[0], p[1]]), 5),
            (Kind::Call | Kind::Reply, 0xFF00..=0xFF08) => {}
            other => panic!("builtin vector {other:?} not covered"),
        }
    }
}

/// The greet server's `list` reply in the vectors is what framerpc sends.
#[test]
fn greet_list_reply_matches_the_greet_router() {
    #[path = "../examples/common/greet.rs"]
    mod greet;
    let v = vectors();
    let case = v["builtin_replies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains("greet server"))
        .expect("the greet server's list reply");
    let (_, p) = check_frame(case);
    let table = framerpc::decode_list(Bytes::from(p)).unwrap();
    assert_eq!(table, greet::router().commands());
}

/// The dynamic section: every request decodes as the server reads it and
/// re-encodes to the same bytes; every REPLY is one msgpack value (the
/// envelope, ext 3, holding `[refusals, unlisted, value]`); every ERROR is
/// code + message. (python/tests/test_sim.py replays the whole section
/// against examples/sim_server.)
#[cfg(feature = "msgpack")]
#[test]
fn dynamic_requests_and_replies() {
    use framerpc::dynamic::wire::{Message, EXT_ENVELOPE};
    use framerpc::dynamic::Value;
    let v = vectors();
    let mut kinds = [0usize; 5];
    for case in v["dynamic"].as_array().unwrap() {
        let (h, p) = check_frame(case);
        assert_eq!(h.cmd, 0xFF10);
        kinds[h.kind as usize] += 1;
        match h.kind {
            Kind::Call | Kind::Notify => {
                assert_eq!(h.id == 0, h.kind == Kind::Notify, "{case}");
                let m = Message::from_value(Value::decode(Bytes::from(p.clone())).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
                let mut b = BytesMut::new();
                m.encode(&mut b);
                assert_eq!(&b[..], &p[..], "{}", case["name"]);
            }
            Kind::Reply => {
                if let Value::Ext(EXT_ENVELOPE, data) = Value::decode(Bytes::from(p)).unwrap() {
                    let Value::Array(parts) = Value::decode(data).unwrap() else {
                        panic!("envelope")
                    };
                    assert_eq!(parts.len(), 3);
                    let Value::Array(records) = &parts[0] else {
                        panic!("records")
                    };
                    for rec in records {
                        for key in ["request", "calls", "slots", "code", "message"] {
                            assert!(rec.get(key).is_some(), "{key} in {rec}");
                        }
                    }
                }
            }
            Kind::Error => {
                let msg = case["message"].as_str().unwrap();
                let mut built = BytesMut::new();
                framerpc::frame::error_payload(
                    case["code"].as_u64().unwrap() as u16,
                    msg,
                    &mut built,
                );
                assert_eq!(&built[..], &p[..]);
            }
            other => panic!("{other:?}"),
        }
    }
    // Every CALL is answered.
    assert_eq!(kinds[1], kinds[2] + kinds[3], "{kinds:?}");
}
