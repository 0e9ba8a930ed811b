//! Length-prefixed and tagged codecs: str, bytes, vec, option, and unit.

use bytes::{BufMut, Bytes, BytesMut};

use super::{take, take_array, Codec};
use crate::error::DecodeError;

/// Never preallocate more than this from a count read off the wire.
const PREALLOC_MAX: usize = 64 * 1024;

/// The most items a `vec` of zero-byte items (`vec<unit>`) may hold.
pub const MAX_EMPTY_ITEMS: u64 = 65_536;

fn put_len(dst: &mut BytesMut, n: usize) {
    // Frames are limited to u32 payloads, so a longer item cannot be sent.
    dst.put_u32_le(u32::try_from(n).unwrap_or(u32::MAX));
}

fn read_len(src: &mut Bytes) -> Result<u64, DecodeError> {
    Ok(u64::from(u32::from_le_bytes(take_array(src)?)))
}

/// `str`: `u32` byte length, then UTF-8. Decodes to `String`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrCodec;

/// `str`: `u32` byte length, then UTF-8.
pub const STR: StrCodec = StrCodec;

impl Codec for StrCodec {
    type Value = String;
    fn encode(&self, v: &String, dst: &mut BytesMut) {
        put_len(dst, v.len());
        dst.put_slice(v.as_bytes());
    }
    fn decode(&self, src: &mut Bytes) -> Result<String, DecodeError> {
        let n = read_len(src)?;
        let raw = take(src, n)?;
        let s = std::str::from_utf8(&raw).map_err(|_| DecodeError::InvalidUtf8)?;
        Ok(s.to_owned())
    }
    fn schema(&self, out: &mut String) {
        out.push_str("str");
    }
    fn min_len(&self) -> usize {
        4
    }
}

/// A `bytes` value at least this long is sent from where it lies (see
/// [`Codec::encode_tail`]); a shorter one is copied next to its header.
const TAIL_MIN: usize = 64 * 1024;

/// `bytes`: `u32` length, then raw bytes. Decoding does not copy: the value
/// is a slice of the received frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BytesCodec;

/// `bytes`: `u32` length, then raw bytes.
pub const BYTES: BytesCodec = BytesCodec;

impl Codec for BytesCodec {
    type Value = Bytes;
    fn encode(&self, v: &Bytes, dst: &mut BytesMut) {
        put_len(dst, v.len());
        dst.put_slice(v);
    }
    fn encode_tail(&self, v: &Bytes, dst: &mut BytesMut) -> Option<Bytes> {
        if v.len() < TAIL_MIN {
            self.encode(v, dst);
            return None;
        }
        put_len(dst, v.len());
        Some(v.clone())
    }
    fn decode(&self, src: &mut Bytes) -> Result<Bytes, DecodeError> {
        let n = read_len(src)?;
        take(src, n)
    }
    fn schema(&self, out: &mut String) {
        out.push_str("bytes");
    }
    fn min_len(&self) -> usize {
        4
    }
}

/// `unit`: no bytes at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitCodec;

/// `unit`: no bytes at all.
pub const UNIT: UnitCodec = UnitCodec;

impl Codec for UnitCodec {
    type Value = ();
    fn encode(&self, _: &(), _: &mut BytesMut) {}
    fn decode(&self, _: &mut Bytes) -> Result<(), DecodeError> {
        Ok(())
    }
    fn schema(&self, out: &mut String) {
        out.push_str("unit");
    }
}

/// `vec<C>`: `u32` count, then the items.
///
/// A count is refused before any allocation when `count * C::min_len()`
/// exceeds the bytes that remain, and capacity is clamped. Items that can
/// take no bytes at all (`vec<unit>`) are capped at [`MAX_EMPTY_ITEMS`],
/// whatever follows the vec, so decoding never depends on context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VecOf<C>(pub C);

impl<C: Codec> Codec for VecOf<C> {
    type Value = Vec<C::Value>;
    fn encode(&self, v: &Vec<C::Value>, dst: &mut BytesMut) {
        put_len(dst, v.len());
        for item in v {
            self.0.encode(item, dst);
        }
    }
    fn decode(&self, src: &mut Bytes) -> Result<Vec<C::Value>, DecodeError> {
        let count = read_len(src)?;
        let item_min = self.0.min_len() as u64;
        if item_min == 0 {
            if count > MAX_EMPTY_ITEMS {
                return Err(DecodeError::Invalid("too many zero-byte items in a vec"));
            }
        } else {
            let needed = count.saturating_mul(item_min);
            if needed > src.len() as u64 {
                return Err(DecodeError::Truncated {
                    needed,
                    remaining: src.len() as u64,
                });
            }
        }
        let item_size = std::mem::size_of::<C::Value>().max(1);
        let cap = (count as usize).min(PREALLOC_MAX / item_size);
        let mut out = Vec::with_capacity(cap);
        for _ in 0..count {
            out.push(self.0.decode(src)?);
        }
        Ok(out)
    }
    fn schema(&self, out: &mut String) {
        out.push_str("vec<");
        self.0.schema(out);
        out.push('>');
    }
    fn min_len(&self) -> usize {
        4
    }
}

/// `option<C>`: one byte 0 (none) or 1 (some), then the item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionOf<C>(pub C);

impl<C: Codec> Codec for OptionOf<C> {
    type Value = Option<C::Value>;
    fn encode(&self, v: &Option<C::Value>, dst: &mut BytesMut) {
        match v {
            None => dst.put_u8(0),
            Some(item) => {
                dst.put_u8(1);
                self.0.encode(item, dst);
            }
        }
    }
    fn decode(&self, src: &mut Bytes) -> Result<Option<C::Value>, DecodeError> {
        match take_array::<1>(src)?[0] {
            0 => Ok(None),
            1 => Ok(Some(self.0.decode(src)?)),
            t => Err(DecodeError::InvalidOptionTag(t)),
        }
    }
    fn schema(&self, out: &mut String) {
        out.push_str("option<");
        self.0.schema(out);
        out.push('>');
    }
    fn min_len(&self) -> usize {
        1
    }
}
