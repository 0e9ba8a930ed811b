//! Every codec round-trips random values (seeded), and every decoder
//! rejects truncated input and trailing bytes without allocating the
//! claimed size.

use bytes::Bytes;
use framerpc::codec::*;
use framerpc::DecodeError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn round_trip<C: Codec>(c: &C, v: C::Value)
where
    C::Value: PartialEq + std::fmt::Debug,
{
    let bytes = encode_to_vec(c, &v);
    assert!(bytes.len() >= c.min_len(), "{} min_len", c.schema_string());
    assert_eq!(
        decode_all(c, Bytes::from(bytes.clone())).unwrap(),
        v,
        "{}",
        c.schema_string()
    );
    // Every strict prefix is refused, and so is one trailing byte.
    for cut in 0..bytes.len() {
        assert!(
            decode_all(c, Bytes::copy_from_slice(&bytes[..cut])).is_err(),
            "{} prefix {cut}",
            c.schema_string()
        );
    }
    let mut longer = bytes;
    longer.push(0);
    assert_eq!(
        decode_all(c, Bytes::from(longer)),
        Err(DecodeError::TrailingBytes(1))
    );
}

fn text(rng: &mut StdRng) -> String {
    let n = rng.random_range(0..12);
    (0..n)
        .map(|_| ['a', 'é', 'ß', '€', '😀', 'z'][rng.random_range(0..6)])
        .collect()
}

#[test]
fn every_codec_round_trips_random_values() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for _ in 0..200 {
        round_trip(&U8, rng.random());
        round_trip(&I8, rng.random());
        round_trip(&U16, rng.random());
        round_trip(&I16, rng.random());
        round_trip(&U32, rng.random());
        round_trip(&I32, rng.random());
        round_trip(&U64, rng.random());
        round_trip(&I64, rng.random());
        round_trip(&F32, rng.random());
        round_trip(&F64, rng.random());
        round_trip(&U16_BE, rng.random());
        round_trip(&I16_BE, rng.random());
        round_trip(&U32_BE, rng.random());
        round_trip(&I32_BE, rng.random());
        round_trip(&U64_BE, rng.random());
        round_trip(&I64_BE, rng.random());
        round_trip(&F32_BE, rng.random());
        round_trip(&F64_BE, rng.random());
        round_trip(&BOOL, rng.random());
        round_trip(&STR, text(&mut rng));
        let raw: Vec<u8> = (0..rng.random_range(0..40)).map(|_| rng.random()).collect();
        round_trip(&BYTES, Bytes::from(raw));
        let v: Vec<f64> = (0..rng.random_range(0..10)).map(|_| rng.random()).collect();
        round_trip(&VecOf(F64), v);
        let v: Vec<String> = (0..rng.random_range(0..5))
            .map(|_| text(&mut rng))
            .collect();
        round_trip(&VecOf(STR), v);
        let o = rng.random::<bool>().then(|| text(&mut rng));
        round_trip(&OptionOf(STR), o);
        round_trip(
            &(U8, I16, U32, I64, F32, F64, BOOL, STR),
            (
                rng.random(),
                rng.random(),
                rng.random(),
                rng.random(),
                rng.random(),
                rng.random(),
                rng.random(),
                text(&mut rng),
            ),
        );
        let nested: Vec<Option<(u32, Vec<u8>)>> = (0..rng.random_range(0..4))
            .map(|_| {
                rng.random::<bool>().then(|| {
                    (
                        rng.random(),
                        (0..rng.random_range(0..4)).map(|_| rng.random()).collect(),
                    )
                })
            })
            .collect();
        round_trip(&VecOf(OptionOf((U32, VecOf(U8)))), nested);
    }
    round_trip(&UNIT, ());
}

#[test]
fn schemas_name_themselves() {
    assert_eq!((U32, U32).schema_string(), "(u32,u32)");
    assert_eq!(VecOf(F64).schema_string(), "vec<f64>");
    assert_eq!(OptionOf(STR).schema_string(), "option<str>");
    assert_eq!(VecOf((STR, U16_BE)).schema_string(), "vec<(str,u16_be)>");
    assert_eq!(UNIT.schema_string(), "unit");
}

#[test]
fn decode_vec_count_exceeds_remaining_without_allocating() {
    let e = decode_all(&VecOf(U64), Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])).unwrap_err();
    assert_eq!(
        e,
        DecodeError::Truncated {
            needed: 0xffff_ffff * 8,
            remaining: 0
        }
    );
    // Zero-byte items are capped, whatever follows the vec.
    let e = decode_all(&VecOf(UNIT), Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])).unwrap_err();
    assert!(matches!(e, DecodeError::Invalid(_)));
    let three = encode_to_vec(&VecOf(UNIT), &vec![(); 3]);
    assert_eq!(
        decode_all(&VecOf(UNIT), Bytes::from(three)).unwrap(),
        vec![(); 3]
    );
    let max = encode_to_vec(&VecOf(UNIT), &vec![(); MAX_EMPTY_ITEMS as usize]);
    assert_eq!(
        decode_all(&VecOf(UNIT), Bytes::from(max)).unwrap().len(),
        65_536
    );
}

#[test]
fn decode_str_and_bytes_length_claims() {
    let e = decode_all(&STR, Bytes::from_static(&[0xe8, 3, 0, 0, b'a', b'b'])).unwrap_err();
    assert_eq!(
        e,
        DecodeError::Truncated {
            needed: 1000,
            remaining: 2
        }
    );
    let e = decode_all(&BYTES, Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])).unwrap_err();
    assert_eq!(
        e,
        DecodeError::Truncated {
            needed: u64::from(u32::MAX),
            remaining: 0
        }
    );
    assert_eq!(
        decode_all(&STR, Bytes::from_static(&[2, 0, 0, 0, 0xff, 0xfe])),
        Err(DecodeError::InvalidUtf8)
    );
    assert_eq!(
        decode_all(&BOOL, Bytes::from_static(&[2])),
        Err(DecodeError::InvalidBool(2))
    );
    assert_eq!(
        decode_all(&OptionOf(STR), Bytes::from_static(&[2])),
        Err(DecodeError::InvalidOptionTag(2))
    );
}

#[test]
fn bytes_decode_does_not_copy() {
    let frame = Bytes::from(vec![3, 0, 0, 0, 7, 8, 9]);
    let base = frame.as_ptr() as usize;
    let v = decode_all(&BYTES, frame).unwrap();
    assert_eq!(v.as_ptr() as usize, base + 4);
}

#[derive(Debug, PartialEq, Clone)]
enum Mode {
    Idle,
    Move { x: f64, y: f64 },
}

const MODE: Map<(U8Codec, F64Codec, F64Codec), Mode> = Map::new(
    (U8, F64, F64),
    |(tag, x, y)| match tag {
        0 => Ok(Mode::Idle),
        1 => Ok(Mode::Move { x, y }),
        _ => Err("unknown mode tag"),
    },
    |m| match *m {
        Mode::Idle => (0, 0.0, 0.0),
        Mode::Move { x, y } => (1, x, y),
    },
);

#[test]
fn map_converts_user_enums() {
    round_trip(&MODE, Mode::Idle);
    round_trip(&MODE, Mode::Move { x: 1.5, y: -2.0 });
    let mut bad = encode_to_vec(&MODE, &Mode::Idle);
    bad[0] = 9;
    assert_eq!(
        decode_all(&MODE, Bytes::from(bad)),
        Err(DecodeError::Invalid("unknown mode tag"))
    );
    assert_eq!(VecOf(MODE).schema_string(), "vec<(u8,f64,f64)>");
}
