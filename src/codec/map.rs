//! `Map`: a codec for the user's own types, built on a codec of their parts.

use bytes::{Bytes, BytesMut};

use super::Codec;
use crate::error::DecodeError;

/// Converts between a user type `T` and the value of an inner codec `C`.
///
/// The wire bytes are the inner codec's. `from_wire` may refuse a value
/// (an unknown enum tag, say) with a short static reason, which the peer
/// sees as BAD_PAYLOAD.
///
/// The schema is the inner codec's, unless the map is
/// [named](Map::named): then it carries the type's name and its field
/// names, `Pos{x:f64,y:f64}`, so the connect-time check
/// ([`Client::connect_checked`](crate::Client::connect_checked)) catches
/// a struct whose fields were reordered or renamed on one side only. The
/// bytes are the same either way.
///
/// The type parameter `C` is the codec's *type* (`F64Codec`), while the
/// value passed to [`Map::new`] is the constant (`F64`): see the table in
/// the [module docs](crate::codec).
///
/// ```
/// use framerpc::codec::{self, Codec, Map, F64, F64Codec};
///
/// #[derive(Debug, PartialEq)]
/// struct Pos { x: f64, y: f64 }
///
/// const POS: Map<(F64Codec, F64Codec), Pos> = Map::new(
///     (F64, F64),
///     |(x, y)| Ok(Pos { x, y }),
///     |p| (p.x, p.y),
/// )
/// .named("Pos", &["x", "y"]);
/// let bytes = codec::encode_to_vec(&POS, &Pos { x: 1.0, y: 2.0 });
/// assert_eq!(codec::decode_all(&POS, bytes.into()).unwrap(), Pos { x: 1.0, y: 2.0 });
/// assert_eq!(POS.schema_string(), "Pos{x:f64,y:f64}");
/// ```
pub struct Map<C: Codec, T> {
    inner: C,
    from_wire: fn(C::Value) -> Result<T, &'static str>,
    to_wire: fn(&T) -> C::Value,
    name: Option<&'static str>,
    fields: &'static [&'static str],
}

impl<C: Codec, T> Map<C, T> {
    /// A codec for `T` through `inner`; its schema is `inner`'s.
    pub const fn new(
        inner: C,
        from_wire: fn(C::Value) -> Result<T, &'static str>,
        to_wire: fn(&T) -> C::Value,
    ) -> Self {
        Self {
            inner,
            from_wire,
            to_wire,
            name: None,
            fields: &[],
        }
    }

    /// Names the type and its fields in the schema (the bytes do not
    /// change): `Pos{x:f64,y:f64}` for the fields `["x", "y"]` of an inner
    /// `(F64, F64)`, or `Mode(u8)` / `Pos(f64,f64)` with no field names.
    /// Names are identifiers (letters, digits, `_`).
    ///
    /// # Panics
    /// When the schema is computed (at [`Router::handle`](crate::Router::handle)
    /// or [`Client::check`](crate::Client::check)), if there are field names
    /// but not one for each part of the inner tuple.
    ///
    /// ```
    /// use framerpc::codec::{Codec, Map, U8, U8Codec};
    /// #[derive(Clone, Copy)]
    /// enum Mode { Idle, Run }
    /// const MODE: Map<U8Codec, Mode> = Map::new(
    ///     U8,
    ///     |b| match b { 0 => Ok(Mode::Idle), 1 => Ok(Mode::Run), _ => Err("unknown mode") },
    ///     |m| *m as u8,
    /// )
    /// .named("Mode", &[]);
    /// assert_eq!(MODE.schema_string(), "Mode(u8)");
    /// ```
    pub const fn named(mut self, name: &'static str, fields: &'static [&'static str]) -> Self {
        self.name = Some(name);
        self.fields = fields;
        self
    }
}

/// The top-level parts of a tuple schema `(a,b,…)`; any other schema is
/// one part.
fn parts(schema: &str) -> Vec<&str> {
    let Some(inside) = schema.strip_prefix('(').and_then(|s| s.strip_suffix(')')) else {
        return vec![schema];
    };
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in inside.char_indices() {
        match c {
            '(' | '<' | '{' => depth += 1,
            ')' | '>' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&inside[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&inside[start..]);
    out
}

impl<C: Codec + std::fmt::Debug, T> std::fmt::Debug for Map<C, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Map")
            .field(&self.inner)
            .field(&self.name)
            .finish()
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
        let Some(name) = self.name else {
            return self.inner.schema(out);
        };
        let inner = self.inner.schema_string();
        out.push_str(name);
        if self.fields.is_empty() {
            if inner.starts_with('(') {
                out.push_str(&inner);
            } else {
                out.push('(');
                out.push_str(&inner);
                out.push(')');
            }
            return;
        }
        let parts = parts(&inner);
        assert!(
            parts.len() == self.fields.len(),
            "Map::named({name:?}): {} field names for the {} parts of {inner}",
            self.fields.len(),
            parts.len()
        );
        out.push('{');
        for (i, (field, part)) in self.fields.iter().zip(parts).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(field);
            out.push(':');
            out.push_str(part);
        }
        out.push('}');
    }
    fn min_len(&self) -> usize {
        self.inner.min_len()
    }
}
