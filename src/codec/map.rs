//! `Map`: a codec for the user's own types, built on a codec of their parts.

use bytes::{Bytes, BytesMut};

use super::Codec;
use crate::error::DecodeError;

/// Converts between a user type `T` and the value of an inner codec `C`.
///
/// The wire bytes and the schema are the inner codec's. `from_wire` may
/// refuse a value (an unknown enum tag, say) with a short static reason,
/// which the peer sees as BAD_PAYLOAD.
///
/// ```
/// use framerpc::codec::{self, Codec, Map, F64, F64Codec};
///
/// #[derive(Debug, PartialEq)]
/// struct Point { x: f64, y: f64 }
///
/// const POINT: Map<(F64Codec, F64Codec), Point> = Map::new(
///     (F64, F64),
///     |(x, y)| Ok(Point { x, y }),
///     |p| (p.x, p.y),
/// );
/// let bytes = codec::encode_to_vec(&POINT, &Point { x: 1.0, y: 2.0 });
/// assert_eq!(codec::decode_all(&POINT, bytes.into()).unwrap(), Point { x: 1.0, y: 2.0 });
/// assert_eq!(POINT.schema_string(), "(f64,f64)");
/// ```
pub struct Map<C: Codec, T> {
    inner: C,
    from_wire: fn(C::Value) -> Result<T, &'static str>,
    to_wire: fn(&T) -> C::Value,
}

impl<C: Codec, T> Map<C, T> {
    /// A codec for `T` through `inner`.
    pub const fn new(
        inner: C,
        from_wire: fn(C::Value) -> Result<T, &'static str>,
        to_wire: fn(&T) -> C::Value,
    ) -> Self {
        Self {
            inner,
            from_wire,
            to_wire,
        }
    }
}

impl<C: Codec + std::fmt::Debug, T> std::fmt::Debug for Map<C, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Map").field(&self.inner).finish()
    }
}

impl<C: Codec, T: 'static> Codec for Map<C, T> {
    type Value = T;
    fn encode(&self, v: &T, dst: &mut BytesMut) {
        self.inner.encode(&(self.to_wire)(v), dst);
    }
    fn encode_tail(&self, v: &T, dst: &mut BytesMut) -> Option<Bytes> {
        self.inner.encode_tail(&(self.to_wire)(v), dst)
    }
    fn decode(&self, src: &mut Bytes) -> Result<T, DecodeError> {
        (self.from_wire)(self.inner.decode(src)?).map_err(DecodeError::Invalid)
    }
    fn schema(&self, out: &mut String) {
        self.inner.schema(out);
    }
    fn min_len(&self) -> usize {
        self.inner.min_len()
    }
}
