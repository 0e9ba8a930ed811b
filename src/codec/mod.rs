//! Codecs: values that encode and decode one Rust type to the wire, and
//! combinators that build bigger codecs from smaller ones.
//!
//! A codec is a value (usually a `const`), a tuple of codecs is a codec, and
//! every codec names itself with a schema string that the `list` command
//! reports, so a client can check at connect time that both sides agree.
//!
//! ```
//! use framerpc::codec::{self, Codec, OptionOf, VecOf, STR, U32, F64};
//! const REQ: (U32Codec, VecOf<F64Codec>) = (U32, VecOf(F64));
//! # use framerpc::codec::{U32Codec, F64Codec};
//! assert_eq!(REQ.schema_string(), "(u32,vec<f64>)");
//! let bytes = codec::encode_to_vec(&REQ, &(7, vec![0.5]));
//! assert_eq!(bytes, [7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f]);
//! assert_eq!(codec::decode_all(&REQ, bytes.into()).unwrap(), (7, vec![0.5]));
//! assert_eq!(OptionOf(STR).schema_string(), "option<str>");
//! ```
//!
//! Decoders check every length against the bytes that remain before they
//! allocate, and [`decode_all`] refuses bytes left over after the value.
//!
//! # Constants and their types
//!
//! A command spec takes codec *values* (`&(U32, U32)`); a `Map`, a `const`
//! of your own or a struct field names codec *types* (`(U32Codec,
//! U32Codec)`). Writing the constant where a type goes fails with
//! "expected type, found constant": use the type in the second column.
//!
//! | value (constant) | type | Rust value | schema |
//! | --- | --- | --- | --- |
//! | [`U8`] [`I8`] | [`U8Codec`] [`I8Codec`] | `u8` `i8` | `u8` `i8` |
//! | [`U16`] [`I16`] … [`U64`] [`I64`] | [`U16Codec`] [`I16Codec`] … [`U64Codec`] [`I64Codec`] | `u16` … `i64` | `u16` … `i64` |
//! | [`F32`] [`F64`] | [`F32Codec`] [`F64Codec`] | `f32` `f64` | `f32` `f64` |
//! | [`U16_BE`] … [`F64_BE`] | [`U16BeCodec`] … [`F64BeCodec`] | big-endian numbers | `u16_be` … `f64_be` |
//! | [`BOOL`] | [`BoolCodec`] | `bool` | `bool` |
//! | [`STR`] | [`StrCodec`] | `String` | `str` |
//! | [`BYTES`] | [`BytesCodec`] | [`Bytes`](crate::Bytes) (re-exported: no `bytes` dependency needed) | `bytes` |
//! | [`UNIT`] | [`UnitCodec`] | `()` | `unit` |
//! | `VecOf(c)` | [`VecOf<C>`] | `Vec<T>` | `vec<T>` |
//! | `OptionOf(c)` | [`OptionOf<C>`] | `Option<T>` | `option<T>` |
//! | `(a, b, …)` (1 to 12) | `(A, B, …)` | `(T1, T2, …)` | `(a,b,…)` |
//! | `Map::new(c, from, to)` | [`Map<C, T>`] | your `T` | `c`'s, or `Name{f:a,…}` with [`Map::named`] |
//!
//! ```
//! use framerpc::codec::{Map, OptionOf, VecOf, F64, F64Codec, STR, StrCodec, U16, U16Codec};
//! use framerpc::{Bytes, Command};
//!
//! #[derive(Debug, Clone, Copy, PartialEq)]
//! pub struct Pos { pub x: f64, pub y: f64 }
//!
//! // Types in the type, constants in the value.
//! pub const POS: Map<(F64Codec, F64Codec), Pos> =
//!     Map::new((F64, F64), |(x, y)| Ok(Pos { x, y }), |p| (p.x, p.y)).named("Pos", &["x", "y"]);
//! pub const LABELS: VecOf<StrCodec> = VecOf(STR);
//! pub const MAYBE_PORT: OptionOf<U16Codec> = OptionOf(U16);
//!
//! pub const MOVE_TO: Command<Pos, Pos> = Command::new(1, "move_to", &POS, &POS);
//! pub const CAPTURE: Command<(u16, u16), Bytes> =
//!     Command::new(2, "capture", &(U16, U16), &framerpc::codec::BYTES);
//! ```

mod map;
mod prim;
mod seq;
mod tuple;

pub use map::Map;
pub use prim::*;
pub use seq::{
    BytesCodec, OptionOf, StrCodec, UnitCodec, VecOf, BYTES, MAX_EMPTY_ITEMS, STR, UNIT,
};

use bytes::{Bytes, BytesMut};

use crate::error::DecodeError;

/// Encodes and decodes one type, and describes its bytes as a schema.
pub trait Codec: Send + Sync + 'static {
    /// The Rust type this codec reads and writes.
    type Value;

    /// Appends the encoding of `v` to `dst`.
    fn encode(&self, v: &Self::Value, dst: &mut BytesMut);

    /// Appends the encoding of `v` to `dst`, except that a large byte
    /// string at its very end may be returned instead of copied: the
    /// caller then sends `dst` followed by that tail (a vectored write), so
    /// a big `bytes` reply goes out without a copy. The default appends
    /// everything and returns `None`.
    fn encode_tail(&self, v: &Self::Value, dst: &mut BytesMut) -> Option<Bytes> {
        self.encode(v, dst);
        None
    }

    /// Reads one value from the front of `src`, advancing it.
    fn decode(&self, src: &mut Bytes) -> Result<Self::Value, DecodeError>;

    /// Appends the schema string (`u32`, `vec<f64>`, `(str,bool)`) to `out`.
    fn schema(&self, out: &mut String);

    /// The fewest bytes any value can take; lets `VecOf` reject an
    /// impossible count before it allocates.
    fn min_len(&self) -> usize {
        0
    }

    /// The schema as a new `String`.
    fn schema_string(&self) -> String {
        let mut s = String::new();
        self.schema(&mut s);
        s
    }
}

/// Decodes one value that must use every byte of `src`.
pub fn decode_all<C: Codec + ?Sized>(codec: &C, mut src: Bytes) -> Result<C::Value, DecodeError> {
    let v = codec.decode(&mut src)?;
    if !src.is_empty() {
        return Err(DecodeError::TrailingBytes(src.len()));
    }
    Ok(v)
}

/// Encodes one value into a new `Vec<u8>`.
pub fn encode_to_vec<C: Codec + ?Sized>(codec: &C, v: &C::Value) -> Vec<u8> {
    let mut b = BytesMut::new();
    codec.encode(v, &mut b);
    b.to_vec()
}

/// Splits `n` bytes off the front of `src`, or says how many were missing.
pub(crate) fn take(src: &mut Bytes, n: u64) -> Result<Bytes, DecodeError> {
    if n > src.len() as u64 {
        return Err(DecodeError::Truncated {
            needed: n,
            remaining: src.len() as u64,
        });
    }
    Ok(src.split_to(n as usize))
}

/// Reads a fixed-size array off the front of `src`.
pub(crate) fn take_array<const N: usize>(src: &mut Bytes) -> Result<[u8; N], DecodeError> {
    if src.len() < N {
        return Err(DecodeError::Truncated {
            needed: N as u64,
            remaining: src.len() as u64,
        });
    }
    let mut a = [0u8; N];
    a.copy_from_slice(&src[..N]);
    bytes::Buf::advance(src, N);
    Ok(a)
}
