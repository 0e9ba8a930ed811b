//! The byte-exact examples of the wire contract (tests/fixtures/wire-vectors.json,
//! a copy of the design's vectors), checked in both directions: decoding
//! the bytes gives the value, encoding the value gives the bytes, and
//! invalid requests are refused over a real socket with BAD_PAYLOAD.

#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use bytes::{Bytes, BytesMut};
use framerpc::codec::{
    self, Codec, OptionOf, VecOf, BOOL, BYTES, F32, F64, F64_BE, I16, I32, I64, I8, STR, U16,
    U16_BE, U32, U32_BE, U64, U8, UNIT,
};
use framerpc::frame::{Header, Kind};
use framerpc::{Command, Router};
use serde_json::Value;
use support::*;

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/wire-vectors.json")).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Checks `codec` against one vector: bytes -> value and value -> bytes.
fn check<C: Codec>(c: &C, value: C::Value, hex: &[u8])
where
    C::Value: PartialEq + std::fmt::Debug,
{
    assert_eq!(
        codec::encode_to_vec(c, &value),
        hex,
        "encode {} {value:?}",
        c.schema_string()
    );
    assert_eq!(
        codec::decode_all(c, Bytes::copy_from_slice(hex)).unwrap(),
        value,
        "decode {}",
        c.schema_string()
    );
}

#[test]
fn codec_vectors_both_directions() {
    let v = vectors();
    let mut checked = 0;
    for case in v["codecs"].as_array().unwrap() {
        let hex = unhex(case["hex"].as_str().unwrap());
        let val = &case["value"];
        let int = || val.as_i64().unwrap();
        match case["codec"].as_str().unwrap() {
            "u8" => check(&U8, int() as u8, &hex),
            "i8" => check(&I8, int() as i8, &hex),
            "u16" => check(&U16, int() as u16, &hex),
            "u16_be" => check(&U16_BE, int() as u16, &hex),
            "i16" => check(&I16, int() as i16, &hex),
            "u32" => check(&U32, int() as u32, &hex),
            "u32_be" => check(&U32_BE, int() as u32, &hex),
            "i32" => check(&I32, int() as i32, &hex),
            "u64" => check(&U64, val.as_u64().unwrap(), &hex),
            "i64" => check(&I64, int(), &hex),
            "f32" => check(&F32, val.as_f64().unwrap() as f32, &hex),
            "f64" => check(&F64, val.as_f64().unwrap(), &hex),
            "f64_be" => check(&F64_BE, val.as_f64().unwrap(), &hex),
            "bool" => check(&BOOL, val.as_bool().unwrap(), &hex),
            "str" => check(&STR, val.as_str().unwrap().to_owned(), &hex),
            "bytes" => {
                let raw = unhex(val.as_str().unwrap().split(' ').next().unwrap());
                check(&BYTES, Bytes::from(raw), &hex)
            }
            "vec<u32>" => {
                let items = val
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect();
                check(&VecOf(U32), items, &hex)
            }
            "vec<str>" => {
                let items = val
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_owned())
                    .collect();
                check(&VecOf(STR), items, &hex)
            }
            "option<str>" => check(&OptionOf(STR), val.as_str().map(str::to_owned), &hex),
            "(u32,u32)" => {
                let a = val.as_array().unwrap();
                check(
                    &(U32, U32),
                    (a[0].as_u64().unwrap() as u32, a[1].as_u64().unwrap() as u32),
                    &hex,
                )
            }
            "(str,bool,u8)" => {
                let a = val.as_array().unwrap();
                let value = (
                    a[0].as_str().unwrap().to_owned(),
                    a[1].as_bool().unwrap(),
                    a[2].as_u64().unwrap() as u8,
                );
                check(&(STR, BOOL, U8), value, &hex)
            }
            "unit" => check(&UNIT, (), &hex),
            other => panic!("no codec for vector {other:?}: add it to this test"),
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} codec vectors");
}

/// Builds each vector's frame with framerpc's own encoders and compares.
#[test]
fn frame_vectors_both_directions() {
    let v = vectors();
    for case in v["frames"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let hex = unhex(case["hex"].as_str().unwrap());
        let header = Header::parse(hex[..12].try_into().unwrap()).unwrap();
        assert_eq!(header.kind as u64, case["kind"].as_u64().unwrap(), "{name}");
        assert_eq!(
            u64::from(header.cmd),
            case["cmd"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(u64::from(header.id), case["id"].as_u64().unwrap(), "{name}");
        assert_eq!(header.len as usize, hex.len() - 12, "{name}");
        let payload = &hex[12..];
        let mut built = BytesMut::new();
        match (header.kind, header.cmd) {
            (Kind::Call | Kind::Notify | Kind::Reply, 1) => STR.encode(
                &String::from_utf8(payload[4..].to_vec()).unwrap(),
                &mut built,
            ),
            (Kind::Call, 3) => (U32, U32).encode(&(2, 3), &mut built),
            (Kind::Reply, 3) => U32.encode(&5, &mut built),
            (Kind::Call, 4) | (Kind::Cancel, _) => {}
            (Kind::Error, _) => {
                framerpc::frame::error_payload(1, "unknown command 777", &mut built)
            }
            (Kind::Call, 0xFF02) => built.extend_from_slice(b"abc"),
            (Kind::Call, 0xFF00) => built.extend_from_slice(b"tok"),
            (Kind::Reply, 0xFF03) => (U32, U32, U32).encode(&(1, 1, 2), &mut built),
            (Kind::Reply, 0xFF01) => {
                let specs = vec![
                    (1u16, "hello".to_owned(), "str".to_owned(), "str".to_owned()),
                    (
                        3u16,
                        "add_2_words".to_owned(),
                        "(u32,u32)".to_owned(),
                        "u32".to_owned(),
                    ),
                ];
                U16.encode(&(specs.len() as u16), &mut built);
                for s in &specs {
                    (U16, STR, STR, STR).encode(s, &mut built);
                }
                // And the decoder the client uses agrees.
                let table = framerpc::decode_list(Bytes::copy_from_slice(payload)).unwrap();
                assert_eq!(table, vec![greet::HELLO.info(), greet::ADD_2_WORDS.info()]);
            }
            other => panic!("vector {name:?} ({other:?}) is not covered: add it to this test"),
        }
        assert_eq!(&built[..], payload, "{name}");
        let frame = framerpc::frame::encode_frame(header.kind, header.cmd, header.id, &built);
        assert_eq!(frame, hex, "{name}");
    }
}

/// The frames travel over a real socket to the greet server and back.
#[test]
fn frame_vectors_against_a_live_server() {
    let v = vectors();
    let srv = serve(greet::router());
    let mut s = raw(srv.addr());
    let find = |name: &str| -> Vec<u8> {
        let case = v["frames"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"].as_str().unwrap().starts_with(name))
            .unwrap();
        unhex(case["hex"].as_str().unwrap())
    };
    for (call, reply) in [
        ("CALL hello", "REPLY hello"),
        ("CALL add_2_words", "REPLY add_2_words"),
    ] {
        std::io::Write::write_all(&mut s, &find(call)).unwrap();
        let (h, p) = recv(&mut s).unwrap();
        let mut got = h.to_bytes().to_vec();
        got.extend_from_slice(&p);
        assert_eq!(got, find(reply));
    }
    // NOTIFY is never answered; the next call's reply is the next frame.
    std::io::Write::write_all(&mut s, &find("NOTIFY hello")).unwrap();
    std::io::Write::write_all(&mut s, &find("CALL ping")).unwrap();
    let (h, p) = recv(&mut s).unwrap();
    assert_eq!(
        (h.kind, h.cmd, h.id, &p[..]),
        (Kind::Reply, 0xFF02, 2, &b"abc"[..])
    );
    send(&mut s, Kind::Call, 777, 9, b"");
    let (h, p) = recv(&mut s).unwrap();
    let mut got = h.to_bytes().to_vec();
    got.extend_from_slice(&p);
    assert_eq!(got, find("ERROR UNKNOWN_COMMAND"));
    // The list reply of the greet server starts with hello.
    send(&mut s, Kind::Call, 0xFF01, 4, b"");
    let (_, p) = recv(&mut s).unwrap();
    let table = framerpc::decode_list(Bytes::from(p)).unwrap();
    assert_eq!(table[0], greet::HELLO.info());
}

#[test]
fn invalid_requests_refused_with_bad_payload() {
    let v = vectors();
    const C1: Command<(u32, u32), ()> = Command::new(1, "c1", &(U32, U32), &UNIT);
    const C2: Command<bool, ()> = Command::new(2, "c2", &BOOL, &UNIT);
    const C3: Command<String, ()> = Command::new(3, "c3", &STR, &UNIT);
    const C4: Command<Vec<u64>, ()> = Command::new(4, "c4", &VecOf(U64), &UNIT);
    const C5: Command<Option<String>, ()> = Command::new(5, "c5", &OptionOf(STR), &UNIT);
    let router = Router::new()
        .handle(&C1, |_| Ok(()))
        .handle(&C2, |_| Ok(()))
        .handle(&C3, |_| Ok(()))
        .handle(&C4, |_| Ok(()))
        .handle(&C5, |_| Ok(()));
    let srv = serve(router);
    let mut s = raw(srv.addr());
    for (i, case) in v["invalid_requests"].as_array().unwrap().iter().enumerate() {
        let cmd = match case["codec"].as_str().unwrap() {
            "(u32,u32)" => 1,
            "bool" => 2,
            "str" => 3,
            "vec<u64>" => 4,
            "option<str>" => 5,
            other => panic!("no command for {other}"),
        };
        let payload = unhex(case["hex"].as_str().unwrap());
        send(&mut s, Kind::Call, cmd, i as u32 + 1, &payload);
        let msg = expect_error(&mut s, 2);
        assert!(!msg.is_empty(), "{}", case["why"]);
    }
    // The same connection still serves a good call.
    send(&mut s, Kind::Call, 1, 100, &[1, 0, 0, 0, 2, 0, 0, 0]);
    let (h, _) = recv(&mut s).unwrap();
    assert_eq!((h.kind, h.id), (Kind::Reply, 100));
}
