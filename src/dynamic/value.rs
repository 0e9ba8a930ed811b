//! A msgpack [`Value`], its encoder, and a decoder that cannot be made to
//! overflow the stack or allocate from a length claim.
//!
//! The decoder stops at a nesting depth (128 by default), checks every
//! length and count against the bytes that remain before it reads, and
//! never reserves capacity from a count: a 6-byte payload claiming a
//! 4-billion-element array fails at once with `Truncated`.
//!
//! ```
//! use framerpc::dynamic::Value;
//! let v = Value::Array(vec![Value::from(1), Value::from("a")]);
//! let bytes = v.to_bytes();
//! assert_eq!(&bytes[..], [0x92, 0x01, 0xa1, b'a']);
//! assert_eq!(Value::decode(bytes.into()).unwrap(), v);
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rmp::Marker;

use super::proxy::Proxy;
use crate::codec::take;
use crate::error::DecodeError;

/// Default nesting limit of the decoder.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// A msgpack value, plus [`Value::Proxy`] for a remote object received by a
/// client.
///
/// Integers decode to `Int` when they fit an `i64` and to `UInt` above.
/// `Bin` is a slice of the received frame (no copy).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// `nil`.
    #[default]
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// A UTF-8 string.
    Str(String),
    /// Raw bytes.
    Bin(Bytes),
    /// An array.
    Array(Vec<Value>),
    /// A map, in wire order (keys may be any value).
    Map(Vec<(Value, Value)>),
    /// An extension value (type, data).
    Ext(i8, Bytes),
    /// A remote object (client side only): it stays on the server and is
    /// reached through this proxy. Encodes as a reference (ext type 1).
    Proxy(Proxy),
}

impl Value {
    /// True for [`Value::Proxy`]: a remote object, not plain data.
    pub fn is_proxy(&self) -> bool {
        matches!(self, Self::Proxy(_))
    }

    /// The proxy, for [`Value::Proxy`].
    pub fn as_proxy(&self) -> Option<&Proxy> {
        match self {
            Self::Proxy(p) => Some(p),
            _ => None,
        }
    }

    /// The string, for [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as `i64`, for integers in range.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::Int(i) => Some(i),
            Self::UInt(u) => i64::try_from(u).ok(),
            _ => None,
        }
    }

    /// The number as `f64`, for floats and integers.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(f) => Some(f64::from(f)),
            Self::F64(f) => Some(f),
            Self::Int(i) => Some(i as f64),
            Self::UInt(u) => Some(u as f64),
            _ => None,
        }
    }

    /// The entry with string (or bin) key `key`, for maps.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Map(m) => m.iter().find(|(k, _)| k.key_is(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// True if this is a str or bin equal to `key`.
    pub(crate) fn key_is(&self, key: &str) -> bool {
        match self {
            Self::Str(s) => s == key,
            Self::Bin(b) => &b[..] == key.as_bytes(),
            _ => false,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Nil => "nil",
            Self::Bool(_) => "bool",
            Self::Int(_) | Self::UInt(_) => "int",
            Self::F32(_) | Self::F64(_) => "float",
            Self::Str(_) => "str",
            Self::Bin(_) => "bin",
            Self::Array(_) => "array",
            Self::Map(_) => "map",
            Self::Ext(..) => "ext",
            Self::Proxy(_) => "proxy",
        }
    }

    /// Appends the msgpack encoding to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Self::Nil => dst.put_u8(Marker::Null.to_u8()),
            Self::Bool(b) => dst.put_u8(if *b { 0xc3 } else { 0xc2 }),
            Self::Int(i) => put_int(dst, *i),
            Self::UInt(u) => put_uint(dst, *u),
            Self::F32(f) => {
                dst.put_u8(0xca);
                dst.put_f32(*f);
            }
            Self::F64(f) => {
                dst.put_u8(0xcb);
                dst.put_f64(*f);
            }
            Self::Str(s) => put_str(dst, s),
            Self::Bin(b) => put_bin(dst, b),
            Self::Array(a) => {
                put_array_len(dst, a.len());
                for v in a {
                    v.encode(dst);
                }
            }
            Self::Map(m) => {
                put_map_len(dst, m.len());
                for (k, v) in m {
                    k.encode(dst);
                    v.encode(dst);
                }
            }
            Self::Ext(t, data) => put_ext(dst, *t, data),
            Self::Proxy(p) => p.encode_ref_ext(dst),
        }
    }

    /// The msgpack encoding as a new buffer.
    pub fn to_bytes(&self) -> BytesMut {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b
    }

    /// Decodes one value that uses every byte, with the default depth limit.
    pub fn decode(src: Bytes) -> Result<Value, DecodeError> {
        Self::decode_with_depth(src, DEFAULT_MAX_DEPTH)
    }

    /// Decodes one value that uses every byte, nesting at most `max_depth`
    /// arrays and maps deep.
    pub fn decode_with_depth(mut src: Bytes, max_depth: usize) -> Result<Value, DecodeError> {
        let v = read_value(&mut src, max_depth)?;
        if !src.is_empty() {
            return Err(DecodeError::TrailingBytes(src.len()));
        }
        Ok(v)
    }
}

/// Shows nested arrays and maps only this deep (labels in error messages
/// stay short, and formatting never recurses far).
const SHOW_DEPTH: usize = 3;

impl Value {
    fn show(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        match self {
            Self::Nil => f.write_str("nil"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::UInt(u) => write!(f, "{u}"),
            Self::F32(x) => write!(f, "{x}"),
            Self::F64(x) => write!(f, "{x}"),
            Self::Str(s) if s.len() > 64 => write!(f, "<str of {} bytes>", s.len()),
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Bin(b) => write!(f, "<{} bytes>", b.len()),
            Self::Array(a) if depth >= SHOW_DEPTH || a.len() > 8 => {
                write!(f, "[<{} items>]", a.len())
            }
            Self::Map(m) if depth >= SHOW_DEPTH || m.len() > 8 => {
                write!(f, "{{<{} entries>}}", m.len())
            }
            Self::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    v.show(f, depth + 1)?;
                }
                f.write_str("]")
            }
            Self::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    k.show(f, depth + 1)?;
                    f.write_str(": ")?;
                    v.show(f, depth + 1)?;
                }
                f.write_str("}")
            }
            Self::Ext(t, d) => write!(f, "<ext {t}, {} bytes>", d.len()),
            Self::Proxy(p) => write!(f, "<proxy {}>", p.label()),
        }
    }
}

/// A short rendering: long strings, big and deep containers are
/// summarized.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.show(f, 0)
    }
}

pub(crate) fn put_int(dst: &mut BytesMut, i: i64) {
    if i >= 0 {
        put_uint(dst, i as u64);
    } else if i >= -32 {
        dst.put_i8(i as i8);
    } else if i >= i64::from(i8::MIN) {
        dst.put_u8(0xd0);
        dst.put_i8(i as i8);
    } else if i >= i64::from(i16::MIN) {
        dst.put_u8(0xd1);
        dst.put_i16(i as i16);
    } else if i >= i64::from(i32::MIN) {
        dst.put_u8(0xd2);
        dst.put_i32(i as i32);
    } else {
        dst.put_u8(0xd3);
        dst.put_i64(i);
    }
}

pub(crate) fn put_uint(dst: &mut BytesMut, u: u64) {
    if u < 128 {
        dst.put_u8(u as u8);
    } else if u <= u64::from(u8::MAX) {
        dst.put_u8(0xcc);
        dst.put_u8(u as u8);
    } else if u <= u64::from(u16::MAX) {
        dst.put_u8(0xcd);
        dst.put_u16(u as u16);
    } else if u <= u64::from(u32::MAX) {
        dst.put_u8(0xce);
        dst.put_u32(u as u32);
    } else {
        dst.put_u8(0xcf);
        dst.put_u64(u);
    }
}

pub(crate) fn put_str(dst: &mut BytesMut, s: &str) {
    let n = s.len();
    if n < 32 {
        dst.put_u8(0xa0 | n as u8);
    } else if n <= 0xff {
        dst.put_u8(0xd9);
        dst.put_u8(n as u8);
    } else if n <= 0xffff {
        dst.put_u8(0xda);
        dst.put_u16(n as u16);
    } else {
        dst.put_u8(0xdb);
        dst.put_u32(n as u32);
    }
    dst.put_slice(s.as_bytes());
}

/// Writes a bin header for `n` bytes (the caller writes the bytes).
pub(crate) fn put_bin_len(dst: &mut BytesMut, n: usize) {
    if n <= 0xff {
        dst.put_u8(0xc4);
        dst.put_u8(n as u8);
    } else if n <= 0xffff {
        dst.put_u8(0xc5);
        dst.put_u16(n as u16);
    } else {
        dst.put_u8(0xc6);
        dst.put_u32(n as u32);
    }
}

pub(crate) fn put_bin(dst: &mut BytesMut, b: &[u8]) {
    put_bin_len(dst, b.len());
    dst.put_slice(b);
}

pub(crate) fn put_array_len(dst: &mut BytesMut, n: usize) {
    if n < 16 {
        dst.put_u8(0x90 | n as u8);
    } else if n <= 0xffff {
        dst.put_u8(0xdc);
        dst.put_u16(n as u16);
    } else {
        dst.put_u8(0xdd);
        dst.put_u32(n as u32);
    }
}

pub(crate) fn put_map_len(dst: &mut BytesMut, n: usize) {
    if n < 16 {
        dst.put_u8(0x80 | n as u8);
    } else if n <= 0xffff {
        dst.put_u8(0xde);
        dst.put_u16(n as u16);
    } else {
        dst.put_u8(0xdf);
        dst.put_u32(n as u32);
    }
}

pub(crate) fn put_ext(dst: &mut BytesMut, t: i8, data: &[u8]) {
    match data.len() {
        1 => dst.put_u8(0xd4),
        2 => dst.put_u8(0xd5),
        4 => dst.put_u8(0xd6),
        8 => dst.put_u8(0xd7),
        16 => dst.put_u8(0xd8),
        n if n <= 0xff => {
            dst.put_u8(0xc7);
            dst.put_u8(n as u8);
        }
        n if n <= 0xffff => {
            dst.put_u8(0xc8);
            dst.put_u16(n as u16);
        }
        n => {
            dst.put_u8(0xc9);
            dst.put_u32(n as u32);
        }
    }
    dst.put_i8(t);
    dst.put_slice(data);
}

fn need(src: &Bytes, n: usize) -> Result<(), DecodeError> {
    if src.len() < n {
        return Err(DecodeError::Truncated {
            needed: n as u64,
            remaining: src.len() as u64,
        });
    }
    Ok(())
}

fn read_u8(src: &mut Bytes) -> Result<u8, DecodeError> {
    need(src, 1)?;
    Ok(src.get_u8())
}
fn read_u16(src: &mut Bytes) -> Result<u16, DecodeError> {
    need(src, 2)?;
    Ok(src.get_u16())
}
fn read_u32(src: &mut Bytes) -> Result<u32, DecodeError> {
    need(src, 4)?;
    Ok(src.get_u32())
}
fn read_u64(src: &mut Bytes) -> Result<u64, DecodeError> {
    need(src, 8)?;
    Ok(src.get_u64())
}

/// Checks that `count` items of at least `min` bytes each can fit in what
/// remains, before anything is allocated.
fn check_count(src: &Bytes, count: u64, min: u64) -> Result<(), DecodeError> {
    let needed = count.saturating_mul(min);
    if needed > src.len() as u64 {
        return Err(DecodeError::Truncated {
            needed,
            remaining: src.len() as u64,
        });
    }
    Ok(())
}

fn read_str(src: &mut Bytes, n: u64) -> Result<Value, DecodeError> {
    let raw = take(src, n)?;
    let s = std::str::from_utf8(&raw).map_err(|_| DecodeError::InvalidUtf8)?;
    Ok(Value::Str(s.to_owned()))
}

fn read_ext(src: &mut Bytes, n: u64) -> Result<Value, DecodeError> {
    let t = read_u8(src)? as i8;
    Ok(Value::Ext(t, take(src, n)?))
}

/// A container being filled by the decoder.
enum Open {
    Array(Vec<Value>, u64),
    Map(Vec<(Value, Value)>, Option<Value>, u64),
}

/// What one marker starts: a finished value or a container of `n` items.
enum Start {
    Done(Value),
    Array(u64),
    Map(u64),
}

/// Decodes iteratively with an explicit stack, so neither the depth limit
/// nor the thread's stack size bounds the other: a handler thread with a
/// small stack decodes 128 levels in debug builds too.
fn read_value(src: &mut Bytes, max: usize) -> Result<Value, DecodeError> {
    let mut stack: Vec<Open> = Vec::new();
    loop {
        let mut v = match read_start(src)? {
            Start::Done(v) => v,
            Start::Array(_) | Start::Map(_) if stack.len() >= max => {
                return Err(DecodeError::TooDeep(max));
            }
            Start::Array(n) => {
                check_count(src, n, 1)?;
                if n > 0 {
                    stack.push(Open::Array(Vec::with_capacity((n as usize).min(4096)), n));
                    continue;
                }
                Value::Array(Vec::new())
            }
            Start::Map(n) => {
                check_count(src, n, 2)?;
                if n > 0 {
                    stack.push(Open::Map(
                        Vec::with_capacity((n as usize).min(2048)),
                        None,
                        n,
                    ));
                    continue;
                }
                Value::Map(Vec::new())
            }
        };
        // Attach `v` to the innermost open container; close full ones.
        loop {
            match stack.last_mut() {
                None => return Ok(v),
                Some(Open::Array(items, left)) => {
                    items.push(v);
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    let Some(Open::Array(items, _)) = stack.pop() else {
                        unreachable!()
                    };
                    v = Value::Array(items);
                }
                Some(Open::Map(pairs, key, left)) => {
                    let Some(k) = key.take() else {
                        *key = Some(v);
                        break;
                    };
                    pairs.push((k, v));
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    let Some(Open::Map(pairs, ..)) = stack.pop() else {
                        unreachable!()
                    };
                    v = Value::Map(pairs);
                }
            }
        }
    }
}

fn read_start(src: &mut Bytes) -> Result<Start, DecodeError> {
    let m = read_u8(src)?;
    Ok(Start::Done(match Marker::from_u8(m) {
        Marker::FixPos(v) => Value::Int(i64::from(v)),
        Marker::FixNeg(v) => Value::Int(i64::from(v)),
        Marker::Null => Value::Nil,
        Marker::True => Value::Bool(true),
        Marker::False => Value::Bool(false),
        Marker::U8 => Value::Int(i64::from(read_u8(src)?)),
        Marker::U16 => Value::Int(i64::from(read_u16(src)?)),
        Marker::U32 => Value::Int(i64::from(read_u32(src)?)),
        Marker::U64 => {
            let u = read_u64(src)?;
            i64::try_from(u).map_or(Value::UInt(u), Value::Int)
        }
        Marker::I8 => Value::Int(i64::from(read_u8(src)? as i8)),
        Marker::I16 => Value::Int(i64::from(read_u16(src)? as i16)),
        Marker::I32 => Value::Int(i64::from(read_u32(src)? as i32)),
        Marker::I64 => Value::Int(read_u64(src)? as i64),
        Marker::F32 => Value::F32(f32::from_bits(read_u32(src)?)),
        Marker::F64 => Value::F64(f64::from_bits(read_u64(src)?)),
        Marker::FixStr(n) => read_str(src, u64::from(n))?,
        Marker::Str8 => {
            let n = read_u8(src)?;
            read_str(src, u64::from(n))?
        }
        Marker::Str16 => {
            let n = read_u16(src)?;
            read_str(src, u64::from(n))?
        }
        Marker::Str32 => {
            let n = read_u32(src)?;
            read_str(src, u64::from(n))?
        }
        Marker::Bin8 => {
            let n = read_u8(src)?;
            Value::Bin(take(src, u64::from(n))?)
        }
        Marker::Bin16 => {
            let n = read_u16(src)?;
            Value::Bin(take(src, u64::from(n))?)
        }
        Marker::Bin32 => {
            let n = read_u32(src)?;
            Value::Bin(take(src, u64::from(n))?)
        }
        Marker::FixArray(n) => return Ok(Start::Array(u64::from(n))),
        Marker::Array16 => return Ok(Start::Array(u64::from(read_u16(src)?))),
        Marker::Array32 => return Ok(Start::Array(u64::from(read_u32(src)?))),
        Marker::FixMap(n) => return Ok(Start::Map(u64::from(n))),
        Marker::Map16 => return Ok(Start::Map(u64::from(read_u16(src)?))),
        Marker::Map32 => return Ok(Start::Map(u64::from(read_u32(src)?))),
        Marker::FixExt1 => read_ext(src, 1)?,
        Marker::FixExt2 => read_ext(src, 2)?,
        Marker::FixExt4 => read_ext(src, 4)?,
        Marker::FixExt8 => read_ext(src, 8)?,
        Marker::FixExt16 => read_ext(src, 16)?,
        Marker::Ext8 => {
            let n = read_u8(src)?;
            read_ext(src, u64::from(n))?
        }
        Marker::Ext16 => {
            let n = read_u16(src)?;
            read_ext(src, u64::from(n))?
        }
        Marker::Ext32 => {
            let n = read_u32(src)?;
            read_ext(src, u64::from(n))?
        }
        Marker::Reserved => return Err(DecodeError::Invalid("msgpack marker 0xc1 is never used")),
    }))
}

// ---------------------------------------------------------------- From

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        i64::try_from(v).map_or(Value::UInt(v), Value::Int)
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::from(v as u64)
    }
}
impl From<isize> for Value {
    fn from(v: isize) -> Self {
        Value::Int(v as i64)
    }
}
/// `From<$t>` for each type, by an expression of `v`.
macro_rules! from_with {
    ($($t:ty => |$v:ident| $e:expr;)*) => {$(
        impl From<$t> for Value {
            fn from($v: $t) -> Self {
                $e
            }
        }
    )*};
}
from_with! {
    bool => |v| Value::Bool(v);
    f32 => |v| Value::F32(v);
    f64 => |v| Value::F64(v);
    &str => |v| Value::Str(v.to_owned());
    String => |v| Value::Str(v);
    &String => |v| Value::Str(v.clone());
    Bytes => |v| Value::Bin(v);
    &[u8] => |v| Value::Bin(Bytes::copy_from_slice(v));
    () => |_v| Value::Nil;
    Proxy => |v| Value::Proxy(v);
    &Proxy => |v| Value::Proxy(v.clone());
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Nil, Into::into)
    }
}
impl<K: Into<Value>, V: Into<Value>> From<BTreeMap<K, V>> for Value {
    fn from(m: BTreeMap<K, V>) -> Self {
        Value::Map(m.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}
impl<K: Into<Value>, V: Into<Value>, S> From<HashMap<K, V, S>> for Value {
    fn from(m: HashMap<K, V, S>) -> Self {
        Value::Map(m.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}
macro_rules! from_tuple {
    ($($n:tt $t:ident),+) => {
        impl<$($t: Into<Value>),+> From<($($t,)+)> for Value {
            fn from(t: ($($t,)+)) -> Self {
                Value::Array(vec![$(t.$n.into()),+])
            }
        }
    };
}
from_tuple!(0 A);
from_tuple!(0 A, 1 B);
from_tuple!(0 A, 1 B, 2 C);
from_tuple!(0 A, 1 B, 2 C, 3 D);
from_tuple!(0 A, 1 B, 2 C, 3 D, 4 E);
from_tuple!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F);

// ---------------------------------------------------------------- FromValue

/// Why a [`Value`] did not convert to the type asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeMismatch {
    /// What the conversion wanted (`str`, `float32 array of 1 dimension`).
    pub expected: Cow<'static, str>,
    /// What the value was (`int`, `float64 array of shape (1, 1)`).
    pub found: Cow<'static, str>,
}

impl TypeMismatch {
    /// A mismatch: what was expected and what was found.
    pub fn new(
        expected: impl Into<Cow<'static, str>>,
        found: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            expected: expected.into(),
            found: found.into(),
        }
    }
}

impl fmt::Display for TypeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, found {}", self.expected, self.found)
    }
}

impl std::error::Error for TypeMismatch {}

impl From<TypeMismatch> for DecodeError {
    fn from(e: TypeMismatch) -> Self {
        DecodeError::Invalid(match e.expected {
            Cow::Borrowed(s) => s,
            Cow::Owned(_) => "a value of the type asked for",
        })
    }
}

/// Conversion from a [`Value`]: what `materialize` and server-side
/// argument access return.
pub trait FromValue: Sized {
    /// Converts, or says what was expected and what was found.
    fn from_value(v: Value) -> Result<Self, TypeMismatch>;
}

fn mismatch<T>(expected: &'static str, v: &Value) -> Result<T, TypeMismatch> {
    Err(TypeMismatch::new(expected, v.kind_name()))
}

impl FromValue for Value {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        Ok(v)
    }
}

impl FromValue for Proxy {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        match v {
            Value::Proxy(p) => Ok(p),
            other => mismatch("a remote object", &other),
        }
    }
}

impl FromValue for () {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        match v {
            Value::Nil => Ok(()),
            other => mismatch("nil", &other),
        }
    }
}

impl FromValue for bool {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        match scalar(v) {
            Value::Bool(b) => Ok(b),
            other => mismatch("bool", &other),
        }
    }
}

/// A numpy scalar (`{nd: false, ...}`) becomes a plain value; anything
/// else is returned as is.
fn scalar(v: Value) -> Value {
    #[cfg(feature = "ndarray")]
    if let Value::Map(_) = &v {
        if let Some(s) = crate::ndarray::scalar_value(&v) {
            return s;
        }
    }
    v
}

macro_rules! from_value_int {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: Value) -> Result<Self, TypeMismatch> {
                let v = scalar(v);
                let r = match v {
                    Value::Int(i) => <$t>::try_from(i).ok(),
                    Value::UInt(u) => <$t>::try_from(u).ok(),
                    _ => None,
                };
                r.map_or_else(|| mismatch(concat!("an integer in the range of ", stringify!($t)), &v), Ok)
            }
        }
    )*};
}
from_value_int!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl FromValue for f64 {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        let v = scalar(v);
        v.as_f64().map_or_else(|| mismatch("a number", &v), Ok)
    }
}

impl FromValue for f32 {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        let v = scalar(v);
        match v {
            Value::F32(f) => Ok(f),
            ref other => other
                .as_f64()
                .map_or_else(|| mismatch("a number", other), |f| Ok(f as f32)),
        }
    }
}

impl FromValue for String {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        match v {
            Value::Str(s) => Ok(s),
            other => mismatch("str", &other),
        }
    }
}

impl FromValue for Bytes {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        match v {
            Value::Bin(b) => Ok(b),
            Value::Str(s) => Ok(Bytes::from(s.into_bytes())),
            other => mismatch("bin", &other),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        match v {
            Value::Nil => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// From an array, or from bin (each byte converted: so `Vec<u8>` takes bin).
impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        match v {
            Value::Array(a) => a.into_iter().map(T::from_value).collect(),
            Value::Bin(b) => b
                .iter()
                .map(|&x| T::from_value(Value::Int(i64::from(x))))
                .collect(),
            other => mismatch("array", &other),
        }
    }
}

impl<K: FromValue + Ord, V: FromValue> FromValue for BTreeMap<K, V> {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        match v {
            Value::Map(m) => m
                .into_iter()
                .map(|(k, v)| Ok((K::from_value(k)?, V::from_value(v)?)))
                .collect(),
            other => mismatch("map", &other),
        }
    }
}

impl<K: FromValue + Eq + std::hash::Hash, V: FromValue> FromValue for HashMap<K, V> {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        match v {
            Value::Map(m) => m
                .into_iter()
                .map(|(k, v)| Ok((K::from_value(k)?, V::from_value(v)?)))
                .collect(),
            other => mismatch("map", &other),
        }
    }
}

macro_rules! from_value_tuple {
    ($len:literal; $($t:ident),+) => {
        impl<$($t: FromValue),+> FromValue for ($($t,)+) {
            fn from_value(v: Value) -> Result<Self, TypeMismatch> {
                match v {
                    Value::Array(a) if a.len() == $len => {
                        let mut it = a.into_iter();
                        Ok(($($t::from_value(it.next().unwrap_or_default())?,)+))
                    }
                    other => mismatch(concat!("an array of ", stringify!($len)), &other),
                }
            }
        }
    };
}
from_value_tuple!(1; A);
from_value_tuple!(2; A, B);
from_value_tuple!(3; A, B, C);
from_value_tuple!(4; A, B, C, D);
from_value_tuple!(5; A, B, C, D, E);
from_value_tuple!(6; A, B, C, D, E, F);

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(b: &[u8]) -> Result<Value, DecodeError> {
        Value::decode(Bytes::copy_from_slice(b))
    }

    #[test]
    fn round_trip_every_kind() {
        let v = Value::Map(vec![
            (
                Value::from("i"),
                Value::Array(vec![
                    0.into(),
                    (-1).into(),
                    (-33).into(),
                    200.into(),
                    70000.into(),
                    (-70000).into(),
                    i64::MIN.into(),
                    u64::MAX.into(),
                ]),
            ),
            (
                Value::from("f"),
                Value::Array(vec![1.5f32.into(), 2.25f64.into()]),
            ),
            (Value::Bin(Bytes::from_static(&[1, 2, 3])), Value::Nil),
            (Value::from(true), Value::Ext(5, Bytes::from_static(b"abc"))),
            (Value::from("long"), Value::from("x".repeat(300))),
        ]);
        assert_eq!(Value::decode(v.to_bytes().freeze()).unwrap(), v);
    }

    #[test]
    fn decode_array_count_exceeds_remaining() {
        // array32 claiming 4 billion items, 0 bytes follow
        let e = dec(&[0xdd, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(
            e,
            DecodeError::Truncated {
                needed: 4294967295,
                remaining: 0
            }
        ));
        let e = dec(&[0xdf, 0xff, 0xff, 0xff, 0xff, 1, 2]).unwrap_err();
        assert!(matches!(e, DecodeError::Truncated { .. }));
    }

    #[test]
    fn decode_bin_length_exceeds_remaining() {
        let e = dec(&[0xc6, 0x7f, 0xff, 0xff, 0xff, 1]).unwrap_err();
        assert!(matches!(e, DecodeError::Truncated { remaining: 1, .. }));
    }

    #[test]
    fn decode_deep_nesting_is_refused() {
        let mut b = vec![0x91u8; 10_000];
        b.push(0xc0);
        assert_eq!(dec(&b).unwrap_err(), DecodeError::TooDeep(128));
        let mut ok = vec![0x91u8; 128];
        ok.push(0xc0);
        assert!(dec(&ok).is_ok());
    }

    #[test]
    fn decode_reserved_marker_and_bad_utf8() {
        assert!(dec(&[0xc1]).is_err());
        assert_eq!(dec(&[0xa1, 0xff]).unwrap_err(), DecodeError::InvalidUtf8);
        assert_eq!(
            dec(&[0xc0, 0xc0]).unwrap_err(),
            DecodeError::TrailingBytes(1)
        );
    }

    #[test]
    fn conversions() {
        assert_eq!(i32::from_value(Value::Int(5)).unwrap(), 5);
        assert!(u8::from_value(Value::Int(300)).is_err());
        assert_eq!(f64::from_value(Value::Int(3)).unwrap(), 3.0);
        assert_eq!(
            Vec::<u8>::from_value(Value::Bin(Bytes::from_static(&[1, 2]))).unwrap(),
            vec![1, 2]
        );
        let t: (i64, String) = FromValue::from_value(Value::from((1, "a"))).unwrap();
        assert_eq!(t, (1, "a".to_owned()));
        let e = String::from_value(Value::Int(1)).unwrap_err();
        assert_eq!(e.to_string(), "expected str, found int");
    }
}
