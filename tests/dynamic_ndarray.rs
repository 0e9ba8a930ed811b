//! ndarrays: every dtype in 0 to 4 dimensions through the dynamic layer and
//! the binary codec, non-contiguous inputs, and the exact bytes numpy +
//! msgpack-numpy produce.
#![cfg(feature = "ndarray")]

mod dynamic_support;

use bytes::Bytes;
use dynamic_support::*;
use framerpc::codec::{decode_all, encode_to_vec};
use framerpc::dynamic::{FromValue, Module, Params, Space, Value};
use framerpc::ndarray::{Element, RawArray, ARRAY_F32, NDARRAY};
use framerpc::{Client, Command, Error, Router, Server};
use ndarray::{s, Array1, Array2, ArrayD, IxDyn, ShapeBuilder};

const ECHO_RAW: Command<RawArray, RawArray> = Command::new(1, "echo_raw", &NDARRAY, &NDARRAY);
const ECHO_F32: Command<ArrayD<f32>, ArrayD<f32>> =
    Command::new(2, "echo_f32", &ARRAY_F32, &ARRAY_F32);

struct Both {
    f: Fixture,
    typed: Server,
}

fn setup() -> Both {
    let np = Module::new().function("total", Params::new().req("a"), |a| {
        Ok(a.get::<ArrayD<f64>>("a")?.sum())
    });
    let f = fixture_with(Space::builder().root("np", np));
    let router = Router::new().handle(&ECHO_RAW, Ok).handle(&ECHO_F32, Ok);
    let typed = Server::bind("127.0.0.1:0", router).unwrap();
    Both { f, typed }
}

const SHAPES: [&[usize]; 6] = [&[], &[5], &[2, 3], &[2, 3, 4], &[2, 1, 3, 2], &[0, 3]];

fn check<T>(b: &Both, typed: &Client, gen: fn(usize) -> T)
where
    T: Element + PartialEq + std::fmt::Debug,
    ArrayD<T>: FromValue,
{
    let (_c, s) = b.f.session();
    let echo = s.root("t").attr("echo");
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        let a = ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(gen).collect()).unwrap();
        let back: ArrayD<T> = echo.call((&a,)).materialize().unwrap();
        assert_eq!(back, a, "dynamic {:?} {shape:?}", T::DTYPE);
        let raw = typed.call(&ECHO_RAW, &RawArray::from_array(&a)).unwrap();
        assert_eq!(
            raw.to_array::<T>().unwrap(),
            a,
            "codec {:?} {shape:?}",
            T::DTYPE
        );
    }
}

#[test]
fn every_dtype_in_zero_to_four_dimensions() {
    let b = setup();
    let typed = Client::connect(b.typed.local_addr()).unwrap();
    check(&b, &typed, |i| i % 3 == 0);
    check(&b, &typed, |i| i as i8 - 7);
    check(&b, &typed, |i| (i * 7) as u8);
    check(&b, &typed, |i| i as i16 * -300);
    check(&b, &typed, |i| i as u16 * 1000);
    check(&b, &typed, |i| i as i32 * -70_000);
    check(&b, &typed, |i| i as u32 * 3_000_000);
    check(&b, &typed, |i| i as i64 * -(1 << 40));
    check(&b, &typed, |i| u64::MAX - i as u64);
    check(&b, &typed, |i| i as f32 * 0.5 - 1.0);
    check(&b, &typed, |i| i as f64 * -1e-3);
    let a = Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32).into_dyn();
    assert_eq!(typed.call(&ECHO_F32, &a).unwrap(), a);
}

#[test]
fn non_contiguous_inputs_cross_in_c_order() {
    let b = setup();
    let (_c, s) = b.f.session();
    let echo = s.root("t").attr("echo");
    let base = Array2::from_shape_fn((4, 6), |(i, j)| (i * 6 + j) as i32);
    let transposed = base.t();
    let strided = base.slice(s![..;2, 1..;2]);
    let fortran = Array2::from_shape_vec((2, 3).f(), vec![1i32, 2, 3, 4, 5, 6]).unwrap();
    for view in [transposed.to_owned(), strided.to_owned(), fortran.clone()] {
        assert!(!view.is_standard_layout() || view == strided.to_owned());
    }
    for (name, v) in [
        ("transposed", transposed),
        ("strided", strided),
        ("fortran", fortran.view()),
    ] {
        let back: Array2<i32> = echo.call((&v,)).materialize().unwrap();
        assert_eq!(back, v, "{name}");
        let raw = RawArray::from_array(&v);
        let c_order: Vec<i32> = v.iter().copied().collect();
        let want: Vec<u8> = c_order.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(&raw.data[..], &want[..], "{name}");
        let bytes = encode_to_vec(&NDARRAY, &raw);
        assert_eq!(decode_all(&NDARRAY, bytes.into()).unwrap(), raw);
    }
}

fn hex(s: &str) -> Bytes {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect::<Vec<_>>()
        .into()
}

#[test]
fn bytes_as_numpy_and_msgpack_numpy_write_them() {
    // msgpack_numpy.packb(np.arange(6, dtype='<i2').reshape(2, 3))
    let i2 = hex(
        "85 c4 02 6e 64 c3 c4 04 74 79 70 65 a3 3c 69 32 c4 04 6b 69 6e 64 c4 00 \
         c4 05 73 68 61 70 65 92 02 03 c4 04 64 61 74 61 c4 0c 00 00 01 00 02 00 03 00 04 00 05 00",
    );
    let a: Array2<i16> = FromValue::from_value(Value::decode(i2.clone()).unwrap()).unwrap();
    assert_eq!(
        a,
        Array2::from_shape_vec((2, 3), vec![0, 1, 2, 3, 4, 5]).unwrap()
    );
    assert_eq!(
        Value::from(&a).to_bytes(),
        i2,
        "we write what msgpack-numpy writes"
    );

    // msgpack_numpy.packb(np.array([True, False, True]))
    let b1 = hex(
        "85 c4 02 6e 64 c3 c4 04 74 79 70 65 a3 7c 62 31 c4 04 6b 69 6e 64 c4 00 \
         c4 05 73 68 61 70 65 91 03 c4 04 64 61 74 61 c4 03 01 00 01",
    );
    let b: Array1<bool> = FromValue::from_value(Value::decode(b1.clone()).unwrap()).unwrap();
    assert_eq!(b.to_vec(), [true, false, true]);
    assert_eq!(Value::from(&b).to_bytes(), b1);

    // msgpack_numpy.packb(np.float64(2.5)): a numpy scalar
    let f8 = hex("83 c4 02 6e 64 c2 c4 04 74 79 70 65 a3 3c 66 38 c4 04 64 61 74 61 c4 08 00 00 00 00 00 00 04 40");
    assert_eq!(f64::from_value(Value::decode(f8).unwrap()).unwrap(), 2.5);

    // The same with str keys (msgpack-numpy decoders accept both).
    let str_keys = hex(
        "85 a2 6e 64 c3 a4 74 79 70 65 a3 3e 75 34 a4 6b 69 6e 64 a0 \
         a5 73 68 61 70 65 91 02 a4 64 61 74 61 c4 08 00 00 00 01 00 00 00 02",
    );
    let u: Array1<u32> = FromValue::from_value(Value::decode(str_keys).unwrap()).unwrap();
    assert_eq!(u.to_vec(), [1, 2], "big-endian >u4 is swapped");

    // The {__ndarray__: true, data, dtype, shape} dialect.
    let openpi = hex(
        "84 c4 0b 5f 5f 6e 64 61 72 72 61 79 5f 5f c3 c4 04 64 61 74 61 c4 08 00 00 80 3f 00 00 00 40 \
         c4 05 64 74 79 70 65 a3 3c 66 34 c4 05 73 68 61 70 65 91 02",
    );
    let f: Array1<f32> = FromValue::from_value(Value::decode(openpi).unwrap()).unwrap();
    assert_eq!(f.to_vec(), [1.0, 2.0]);
}

#[test]
fn the_server_refuses_pickled_arrays_with_a_clear_error() {
    let b = setup();
    let (_c, s) = b.f.session();
    let key = |k: &'static str| Value::Bin(Bytes::from_static(k.as_bytes()));
    let pickled = Value::Map(vec![
        (key("nd"), Value::Bool(true)),
        (key("type"), Value::from("|O")),
        (key("kind"), Value::Bin(Bytes::from_static(b"O"))),
        (key("shape"), Value::from(vec![1])),
        (key("data"), Value::Bin(Bytes::from_static(b"\x80\x04\x95"))),
    ]);
    let r = s
        .root("np")
        .method("total", (pickled,))
        .materialize::<f64>();
    let Err(Error::Remote { message, .. }) = r else {
        panic!("{r:?}")
    };
    assert!(
        message.contains("kind 'O'") && message.contains("never unpickles"),
        "{message}"
    );
    let ok = Array1::from(vec![1.0, 2.0, 3.5]);
    assert_eq!(
        s.root("np")
            .method("total", (&ok,))
            .materialize::<f64>()
            .unwrap(),
        6.5
    );
}

fn nd(dtype: &str, shape: &[usize], data: Vec<u8>) -> Value {
    let key = |k: &'static str| Value::Bin(Bytes::from_static(k.as_bytes()));
    Value::Map(vec![
        (key("nd"), Value::Bool(true)),
        (key("type"), Value::from(dtype)),
        (key("kind"), Value::Bin(Bytes::new())),
        (key("shape"), Value::from(shape.to_vec())),
        (key("data"), Value::Bin(data.into())),
    ])
}

fn scalar(dtype: &str, data: Vec<u8>) -> Value {
    let key = |k: &'static str| Value::Bin(Bytes::from_static(k.as_bytes()));
    Value::Map(vec![
        (key("nd"), Value::Bool(false)),
        (key("type"), Value::from(dtype)),
        (key("data"), Value::Bin(data.into())),
    ])
}

/// docs/DYNAMIC.md, "Arrays": exact dtype (either byte order), exact
/// number of dimensions (or exact shape), no cast, no reshaping; the
/// message names what was expected and what came.
#[test]
fn array_parameters_follow_the_written_rules() {
    use ndarray::{Array0, Ix1};
    let np = Module::new()
        .function("one", Params::new().req("a"), |a| {
            Ok(a.get::<Array1<f32>>("a")?.sum() as f64)
        })
        .function("exact", Params::new().req("a"), |a| {
            Ok(a.array::<f32, Ix1>("a", &[1])?[0] as f64)
        })
        .function("zero_d", Params::new().req("a"), |a| {
            Ok(a.get::<Array0<f32>>("a")?.into_scalar() as f64)
        })
        .function("any", Params::new().req("a"), |a| {
            Ok(a.get::<ArrayD<f32>>("a")?.ndim())
        });
    let f = fixture_with(Space::builder().root("np", np));
    let (_c, s) = f.session();
    let np = s.root("np");
    let f4 = |x: f32| x.to_le_bytes().to_vec();
    let ok: Vec<(&str, Value, f64)> = vec![
        ("one", nd("<f4", &[1], f4(0.5)), 0.5),
        ("one", nd(">f4", &[1], 0.5f32.to_be_bytes().to_vec()), 0.5),
        ("one", nd("<f4", &[0], vec![]), 0.0),
        ("exact", nd("<f4", &[1], f4(0.25)), 0.25),
        ("zero_d", nd("<f4", &[], f4(2.0)), 2.0),
        ("zero_d", scalar("<f4", f4(3.0)), 3.0),
        ("any", nd("<f4", &[1, 1], f4(1.0)), 2.0),
        ("any", nd("<f4", &[], f4(1.0)), 0.0),
    ];
    for (func, v, want) in ok {
        let got = np.method(func, (v.clone(),)).materialize::<f64>();
        assert_eq!(got.unwrap(), want, "{func}({v})");
    }
    let bad: Vec<(&str, Value, &str)> = vec![
        (
            "one",
            nd("<f8", &[1], 0.5f64.to_le_bytes().to_vec()),
            "expected float32 array of 1 dimension, found float64 array of shape (1,)",
        ),
        (
            "one",
            nd("<f4", &[], f4(0.5)),
            "expected float32 array of 1 dimension, found float32 array of shape ()",
        ),
        (
            "one",
            scalar("<f4", f4(0.5)),
            "expected float32 array of 1 dimension, found float32 array of shape ()",
        ),
        (
            "one",
            nd("<f4", &[1, 1], f4(0.5)),
            "expected float32 array of 1 dimension, found float32 array of shape (1, 1)",
        ),
        (
            "exact",
            nd("<f8", &[1, 1], 0.5f64.to_le_bytes().to_vec()),
            "expected float32 array of shape (1,), found float64 array of shape (1, 1)",
        ),
        (
            "exact",
            nd("<f4", &[2], [f4(1.0), f4(2.0)].concat()),
            "expected float32 array of shape (1,), found float32 array of shape (2,)",
        ),
        (
            "one",
            Value::from(0.5),
            "expected float32 array of 1 dimension, found float (a plain msgpack value",
        ),
        (
            "one",
            Value::from(vec![0.5]),
            "found array (a plain msgpack value",
        ),
        (
            "zero_d",
            nd("<i4", &[], 1i32.to_le_bytes().to_vec()),
            "expected float32 array of 0 dimensions, found int32 array of shape ()",
        ),
        (
            "one",
            nd("<f4", &[2], f4(1.0)),
            "an ndarray map that does not decode: ndarray data length does not match",
        ),
    ];
    for (func, v, want) in bad {
        let r = np.method(func, (v.clone(),)).materialize::<f64>();
        let Err(Error::Remote { message, .. }) = r else {
            panic!("{func}({v}): {r:?}")
        };
        assert!(
            message.contains("argument 'a': ") && message.contains(want),
            "{func}({v}): {message:?} should contain {want:?}"
        );
    }
}

#[test]
fn an_owned_u8_array_becomes_a_value_without_a_copy() {
    let img =
        ndarray::Array3::<u8>::from_shape_fn((4, 5, 3), |(i, j, k)| (i * 15 + j * 3 + k) as u8);
    let (ptr, want) = (img.as_ptr(), img.clone().into_dyn());
    let raw = RawArray::from_owned(img);
    assert_eq!(raw.data.as_ptr(), ptr, "the array's own buffer");
    assert_eq!(raw.to_array::<u8>().unwrap(), want);
    // Other layouts and dtypes are copied into C order.
    let t = Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as u8).reversed_axes();
    assert_eq!(
        RawArray::from_owned(t.clone()).to_array::<u8>().unwrap(),
        t.into_dyn()
    );
    let f = Array1::from(vec![1.0f32, 2.0]);
    assert_eq!(
        RawArray::from_owned(f.clone()).to_array::<f32>().unwrap(),
        f.into_dyn()
    );
}
