//! Fixed-width numbers (little-endian, and `_BE` big-endian) and bool.

use bytes::{BufMut, Bytes, BytesMut};

use super::{take_array, Codec};
use crate::error::DecodeError;

macro_rules! number_codec {
    ($(#[$doc:meta] $codec:ident $konst:ident $ty:ty, $to:ident, $from:ident, $name:literal;)*) => {$(
        #[$doc]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $codec;

        #[$doc]
        pub const $konst: $codec = $codec;

        impl Codec for $codec {
            type Value = $ty;
            fn encode(&self, v: &$ty, dst: &mut BytesMut) {
                dst.put_slice(&v.$to());
            }
            fn decode(&self, src: &mut Bytes) -> Result<$ty, DecodeError> {
                Ok(<$ty>::$from(take_array(src)?))
            }
            fn schema(&self, out: &mut String) {
                out.push_str($name);
            }
            fn min_len(&self) -> usize {
                std::mem::size_of::<$ty>()
            }
        }
    )*};
}

number_codec! {
    /// `u8`, one byte.
    U8Codec U8 u8, to_le_bytes, from_le_bytes, "u8";
    /// `i8`, one byte.
    I8Codec I8 i8, to_le_bytes, from_le_bytes, "i8";
    /// `u16`, little-endian.
    U16Codec U16 u16, to_le_bytes, from_le_bytes, "u16";
    /// `i16`, little-endian.
    I16Codec I16 i16, to_le_bytes, from_le_bytes, "i16";
    /// `u32`, little-endian.
    U32Codec U32 u32, to_le_bytes, from_le_bytes, "u32";
    /// `i32`, little-endian.
    I32Codec I32 i32, to_le_bytes, from_le_bytes, "i32";
    /// `u64`, little-endian.
    U64Codec U64 u64, to_le_bytes, from_le_bytes, "u64";
    /// `i64`, little-endian.
    I64Codec I64 i64, to_le_bytes, from_le_bytes, "i64";
    /// `f32`, little-endian IEEE 754.
    F32Codec F32 f32, to_le_bytes, from_le_bytes, "f32";
    /// `f64`, little-endian IEEE 754.
    F64Codec F64 f64, to_le_bytes, from_le_bytes, "f64";
    /// `u16`, big-endian.
    U16BeCodec U16_BE u16, to_be_bytes, from_be_bytes, "u16_be";
    /// `i16`, big-endian.
    I16BeCodec I16_BE i16, to_be_bytes, from_be_bytes, "i16_be";
    /// `u32`, big-endian.
    U32BeCodec U32_BE u32, to_be_bytes, from_be_bytes, "u32_be";
    /// `i32`, big-endian.
    I32BeCodec I32_BE i32, to_be_bytes, from_be_bytes, "i32_be";
    /// `u64`, big-endian.
    U64BeCodec U64_BE u64, to_be_bytes, from_be_bytes, "u64_be";
    /// `i64`, big-endian.
    I64BeCodec I64_BE i64, to_be_bytes, from_be_bytes, "i64_be";
    /// `f32`, big-endian IEEE 754.
    F32BeCodec F32_BE f32, to_be_bytes, from_be_bytes, "f32_be";
    /// `f64`, big-endian IEEE 754.
    F64BeCodec F64_BE f64, to_be_bytes, from_be_bytes, "f64_be";
}

/// `bool`: one byte, 0 or 1; any other byte is a decode error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BoolCodec;

/// `bool`: one byte, 0 or 1.
pub const BOOL: BoolCodec = BoolCodec;

impl Codec for BoolCodec {
    type Value = bool;
    fn encode(&self, v: &bool, dst: &mut BytesMut) {
        dst.put_u8(u8::from(*v));
    }
    fn decode(&self, src: &mut Bytes) -> Result<bool, DecodeError> {
        match take_array::<1>(src)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::InvalidBool(b)),
        }
    }
    fn schema(&self, out: &mut String) {
        out.push_str("bool");
    }
    fn min_len(&self) -> usize {
        1
    }
}
