//! n-dimensional arrays (feature `ndarray`): as msgpack values in the
//! layout of msgpack-numpy 0.4.8, and as a binary codec for typed commands.
//!
//! Element types: `bool`, `i8`..`i64`, `u8`..`u64`, `f32`, `f64`; any
//! number of dimensions. Data is always C order (row-major) and
//! little-endian; a non-contiguous array (a transposed or strided view) is
//! written in C order of its logical shape.
//!
//! # As msgpack (the dynamic layer)
//! A map of 5 entries whose keys are msgpack **bin**: `nd` (true), `type` (a
//! str dtype such as `<f4`, `<i8`, `|u1`, `|b1`), `kind` (empty bin),
//! `shape` (array of ints), `data` (bin). A numpy scalar is `{nd: false,
//! type, data}`. Decoding also accepts str keys, big-endian dtypes (`>f4`),
//! and the `{__ndarray__: true, data, dtype, shape}` map used by robotics
//! policy servers. Kinds `O` (pickled objects) and `V` (structured) are
//! refused: nothing is ever unpickled.
//!
//! # As a binary codec ([`NDARRAY`], [`ArrayCodec`])
//! ```text
//! offset  size      field
//! 0       1         dtype code: 0 bool, 1 i8, 2 u8, 3 i16, 4 u16, 5 i32, 6 u32,
//!                   7 i64, 8 u64, 9 f32, 10 f64
//! 1       1         ndim (0..=32)
//! 2       1         pad: number of zero bytes before the data (0..=7)
//! 3       1         0 (reserved)
//! 4       8*ndim    shape, u64 little-endian each
//! ..      pad       zero bytes
//! ..      n         data: product(shape) * itemsize bytes, C order, little-endian
//! ```
//! The encoder picks `pad` so the data starts 8-byte aligned relative to the
//! start of the frame (the buffer framerpc builds frames in), so a receiver
//! that reads a frame into an aligned buffer finds the data aligned. A
//! decoder just skips `pad` bytes. Decoding to [`RawArray`] does not copy
//! (the data is a slice of the frame); converting to an `ndarray` array
//! copies once.
//!
//! ```
//! use framerpc::codec::{decode_all, encode_to_vec};
//! use framerpc::ndarray::{RawArray, ARRAY_F32};
//! use ndarray::array;
//! let a = array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn();
//! let bytes = encode_to_vec(&ARRAY_F32, &a);
//! assert_eq!(&bytes[..4], [9, 2, 4, 0]); // f32, 2 dims, 4 bytes of pad
//! assert_eq!(decode_all(&ARRAY_F32, bytes.into()).unwrap(), a);
//! ```

use std::marker::PhantomData;

use bytes::{BufMut, Bytes, BytesMut};
use ndarray::{Array, ArrayBase, ArrayD, Data, Dimension, IxDyn};

use crate::codec::{take, Codec};
use crate::dynamic::{FromValue, TypeMismatch, Value};
use crate::error::DecodeError;

/// Most dimensions accepted (numpy's limit).
pub const MAX_DIMS: usize = 32;

/// An element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// `bool` (`|b1`), one byte 0 or 1.
    Bool,
    /// `i8` (`|i1`).
    I8,
    /// `u8` (`|u1`).
    U8,
    /// `i16` (`<i2`).
    I16,
    /// `u16` (`<u2`).
    U16,
    /// `i32` (`<i4`).
    I32,
    /// `u32` (`<u4`).
    U32,
    /// `i64` (`<i8`).
    I64,
    /// `u64` (`<u8`).
    U64,
    /// `f32` (`<f4`).
    F32,
    /// `f64` (`<f8`).
    F64,
}

const ALL: [DType; 11] = [
    DType::Bool,
    DType::I8,
    DType::U8,
    DType::I16,
    DType::U16,
    DType::I32,
    DType::U32,
    DType::I64,
    DType::U64,
    DType::F32,
    DType::F64,
];

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::Bool | Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
        }
    }

    /// numpy's dtype string, as msgpack-numpy writes it (`<f4`, `|u1`).
    pub fn descr(self) -> &'static str {
        match self {
            Self::Bool => "|b1",
            Self::I8 => "|i1",
            Self::U8 => "|u1",
            Self::I16 => "<i2",
            Self::U16 => "<u2",
            Self::I32 => "<i4",
            Self::U32 => "<u4",
            Self::I64 => "<i8",
            Self::U64 => "<u8",
            Self::F32 => "<f4",
            Self::F64 => "<f8",
        }
    }

    /// numpy's name (`float32`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::I8 => "int8",
            Self::U8 => "uint8",
            Self::I16 => "int16",
            Self::U16 => "uint16",
            Self::I32 => "int32",
            Self::U32 => "uint32",
            Self::I64 => "int64",
            Self::U64 => "uint64",
            Self::F32 => "float32",
            Self::F64 => "float64",
        }
    }

    /// The code of the binary codec.
    pub fn code(self) -> u8 {
        ALL.iter().position(|&d| d == self).unwrap_or(0) as u8
    }

    /// The dtype of a binary-codec code.
    pub fn from_code(code: u8) -> Option<Self> {
        ALL.get(usize::from(code)).copied()
    }

    /// Parses a dtype string: `<f4`, `>i8`, `=u2`, `|b1`, or a numpy name
    /// (`float32`). Returns the dtype and whether the data is big-endian.
    pub fn parse(s: &str) -> Result<(Self, bool), &'static str> {
        if let Some(d) = ALL.iter().find(|d| d.name() == s) {
            return Ok((*d, false));
        }
        let (big, rest) = match s.as_bytes().first() {
            Some(b'<' | b'=' | b'|') => (false, &s[1..]),
            Some(b'>') => (true, &s[1..]),
            _ => (false, s),
        };
        if rest.starts_with('O') {
            return Err(
                "an ndarray that is not pickled (kind 'O' is refused: the server never unpickles)",
            );
        }
        if rest.starts_with('V') {
            return Err("an ndarray of a plain dtype (kind 'V', structured, is not supported)");
        }
        let d = ALL.iter().find(|d| &d.descr()[1..] == rest).ok_or(
            "unsupported ndarray dtype (bool, int8..int64, uint8..uint64, float32, float64)",
        )?;
        Ok((*d, big && d.size() > 1))
    }
}

mod sealed {
    pub trait Sealed {}
}

/// An element type an array can hold.
pub trait Element: Copy + Send + Sync + 'static + sealed::Sealed {
    /// Its dtype.
    const DTYPE: DType;
    /// Reads one element from `DTYPE.size()` little-endian bytes.
    fn read_le(b: &[u8]) -> Self;
    /// Writes one element as little-endian bytes.
    fn write_le(self, out: &mut [u8]);
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            #[inline]
            fn read_le(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                <$t>::from_le_bytes(a)
            }
            #[inline]
            fn write_le(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
element!(i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32, u32 => U32,
    i64 => I64, u64 => U64, f32 => F32, f64 => F64);

impl sealed::Sealed for bool {}
impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn read_le(b: &[u8]) -> Self {
        b[0] != 0
    }
    fn write_le(self, out: &mut [u8]) {
        out[0] = u8::from(self);
    }
}

/// An array of any dtype as raw bytes: dtype, shape and C-order
/// little-endian data. Decoding one does not copy the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawArray {
    /// Element type.
    pub dtype: DType,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// `product(shape) * dtype.size()` bytes, C order, little-endian.
    pub data: Bytes,
}

/// Appends the elements of `a` in C order, little-endian, through a stack
/// buffer (a contiguous array converts in tight, vectorizable loops).
fn put_elements<T: Element, S: Data<Elem = T>, D: Dimension>(
    a: &ArrayBase<S, D>,
    dst: &mut BytesMut,
) {
    const CHUNK: usize = 8192;
    let size = T::DTYPE.size();
    let per = CHUNK / size;
    let mut buf = [0u8; CHUNK];
    dst.reserve(a.len() * size);
    if let Some(s) = a.as_slice() {
        for part in s.chunks(per) {
            let n = part.len() * size;
            for (x, out) in part.iter().zip(buf[..n].chunks_exact_mut(size)) {
                x.write_le(out);
            }
            dst.put_slice(&buf[..n]);
        }
        return;
    }
    let mut n = 0;
    for x in a.iter() {
        x.write_le(&mut buf[n..n + size]);
        n += size;
        if n == per * size {
            dst.put_slice(&buf[..n]);
            n = 0;
        }
    }
    dst.put_slice(&buf[..n]);
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

impl RawArray {
    /// Copies any array (contiguous or not) into C order.
    pub fn from_array<T: Element, S: Data<Elem = T>, D: Dimension>(a: &ArrayBase<S, D>) -> Self {
        let mut b = BytesMut::new();
        put_elements(a, &mut b);
        Self {
            dtype: T::DTYPE,
            shape: a.shape().to_vec(),
            data: b.freeze(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        element_count(&self.shape).unwrap_or(0)
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the data length against dtype and shape.
    fn checked(self) -> Result<Self, &'static str> {
        if self.shape.len() > MAX_DIMS {
            return Err("ndarray with more than 32 dimensions");
        }
        if self.shape.iter().any(|&d| isize::try_from(d).is_err()) {
            return Err("ndarray dimension too large");
        }
        let n = element_count(&self.shape)
            .and_then(|n| n.checked_mul(self.dtype.size()))
            .ok_or("ndarray shape overflows")?;
        if n != self.data.len() {
            return Err("ndarray data length does not match its dtype and shape");
        }
        Ok(self)
    }

    /// Converts to an owned array of `T` (one copy); the dtype must match.
    pub fn to_array<T: Element>(&self) -> Result<ArrayD<T>, &'static str> {
        if self.dtype != T::DTYPE {
            return Err("ndarray dtype differs from the element type asked for");
        }
        let size = T::DTYPE.size();
        let v: Vec<T> = self.data.chunks_exact(size).map(T::read_le).collect();
        ArrayD::from_shape_vec(IxDyn(&self.shape), v)
            .map_err(|_| "ndarray data length does not match its shape")
    }

    /// The msgpack-numpy map (bin keys; `{nd: false, ..}` for 0 dims is
    /// not used: a 0-dim array stays an array with shape `[]`).
    pub fn to_value(&self) -> Value {
        let key = |k: &'static str| Value::Bin(Bytes::from_static(k.as_bytes()));
        Value::Map(vec![
            (key("nd"), Value::Bool(true)),
            (key("type"), Value::Str(self.dtype.descr().to_owned())),
            (key("kind"), Value::Bin(Bytes::new())),
            (
                key("shape"),
                Value::Array(self.shape.iter().map(|&d| Value::from(d)).collect()),
            ),
            (key("data"), Value::Bin(self.data.clone())),
        ])
    }

    /// Reads a msgpack-numpy map (array or scalar) or an `__ndarray__` map.
    pub fn from_value(v: &Value) -> Result<Self, &'static str> {
        let Value::Map(_) = v else {
            return Err("an ndarray map");
        };
        if v.get("__ndarray__").is_some() {
            let dtype = v.get("dtype").ok_or("an ndarray map with 'dtype'")?;
            return Self::from_parts(dtype, v.get("shape"), v.get("data"));
        }
        match v.get("nd") {
            Some(Value::Bool(true)) => {
                let kind: &[u8] = match v.get("kind") {
                    Some(Value::Bin(k)) => k,
                    Some(Value::Str(s)) => s.as_bytes(),
                    _ => b"",
                };
                if kind == b"O" {
                    return Err("an ndarray that is not pickled (kind 'O' is refused: the server never unpickles)");
                }
                if kind == b"V" {
                    return Err(
                        "an ndarray of a plain dtype (kind 'V', structured, is not supported)",
                    );
                }
                let t = v.get("type").ok_or("an ndarray map with 'type'")?;
                Self::from_parts(
                    t,
                    Some(v.get("shape").ok_or("an ndarray map with 'shape'")?),
                    v.get("data"),
                )
            }
            Some(Value::Bool(false)) => {
                let t = v.get("type").ok_or("an ndarray scalar with 'type'")?;
                Self::from_parts(t, None, v.get("data"))
            }
            _ => Err("an ndarray map (nd, type, kind, shape, data)"),
        }
    }

    fn from_parts(
        dtype: &Value,
        shape: Option<&Value>,
        data: Option<&Value>,
    ) -> Result<Self, &'static str> {
        let dtype = match dtype {
            Value::Str(s) => s.as_str(),
            Value::Bin(b) => std::str::from_utf8(b).map_err(|_| "a str dtype")?,
            Value::Array(_) => {
                return Err("an ndarray of a plain dtype (kind 'V', structured, is not supported)")
            }
            _ => return Err("a str dtype"),
        };
        let (dtype, big) = DType::parse(dtype)?;
        let shape = match shape {
            None => Vec::new(),
            Some(Value::Array(dims)) => {
                if dims.len() > MAX_DIMS {
                    return Err("ndarray with more than 32 dimensions");
                }
                dims.iter()
                    .map(|d| {
                        d.as_i64()
                            .and_then(|d| usize::try_from(d).ok())
                            .ok_or("ndarray shape of non-negative ints")
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(_) => return Err("ndarray shape as an array of ints"),
        };
        let data = match data {
            Some(Value::Bin(b)) => b.clone(),
            _ => return Err("ndarray data as bin"),
        };
        let data = if big {
            let size = dtype.size();
            let mut swapped = data.to_vec();
            swapped.chunks_exact_mut(size).for_each(<[u8]>::reverse);
            Bytes::from(swapped)
        } else {
            data
        };
        Self { dtype, shape, data }.checked()
    }

    /// The single element of a scalar (or 1-element array) as a value.
    fn scalar(&self) -> Option<Value> {
        if self.len() != 1 {
            return None;
        }
        let d = &self.data[..];
        Some(match self.dtype {
            DType::Bool => Value::Bool(d[0] != 0),
            DType::I8 => Value::from(i8::read_le(d)),
            DType::U8 => Value::from(u8::read_le(d)),
            DType::I16 => Value::from(i16::read_le(d)),
            DType::U16 => Value::from(u16::read_le(d)),
            DType::I32 => Value::from(i32::read_le(d)),
            DType::U32 => Value::from(u32::read_le(d)),
            DType::I64 => Value::from(i64::read_le(d)),
            DType::U64 => Value::from(u64::read_le(d)),
            DType::F32 => Value::from(f32::read_le(d)),
            DType::F64 => Value::from(f64::read_le(d)),
        })
    }
}

/// A numpy scalar map (`{nd: false, ..}` or `__npgeneric__`) as a plain
/// value; `None` for anything else.
pub(crate) fn scalar_value(v: &Value) -> Option<Value> {
    if v.get("__npgeneric__").is_some() {
        return v.get("data").cloned();
    }
    match v.get("nd") {
        Some(Value::Bool(false)) => RawArray::from_value(v).ok()?.scalar(),
        _ => None,
    }
}

impl<T: Element, S: Data<Elem = T>, D: Dimension> From<&ArrayBase<S, D>> for Value {
    /// Copies the array (any layout) into C order.
    fn from(a: &ArrayBase<S, D>) -> Self {
        RawArray::from_array(a).to_value()
    }
}

impl<T: Element, D: Dimension> From<ndarray::ArrayView<'_, T, D>> for Value {
    /// Copies the view into C order.
    fn from(a: ndarray::ArrayView<'_, T, D>) -> Self {
        RawArray::from_array(&a).to_value()
    }
}

impl<T: Element, D: Dimension + 'static> From<Array<T, D>> for Value {
    /// See [`RawArray::from_owned`]: a `u8` array in C order is not copied.
    fn from(a: Array<T, D>) -> Self {
        RawArray::from_owned(a).to_value()
    }
}

impl From<RawArray> for Value {
    fn from(a: RawArray) -> Self {
        a.to_value()
    }
}

impl RawArray {
    /// Takes an owned array. A `u8` array in C order gives its buffer
    /// away as the data (no copy: images cross as they are); other arrays
    /// are copied into C order once (reading their elements as bytes in
    /// place would take `unsafe`, which this crate does not use).
    pub fn from_owned<T: Element, D: Dimension + 'static>(a: Array<T, D>) -> Self {
        let mut slot = Some(a);
        let any = &mut slot as &mut dyn std::any::Any;
        if let Some(u8s) = any.downcast_mut::<Option<Array<u8, D>>>() {
            if let Some(a) = u8s.take_if(|a| a.is_standard_layout()) {
                let (shape, n) = (a.shape().to_vec(), a.len());
                let (v, offset) = a.into_raw_vec_and_offset();
                let at = offset.unwrap_or(0);
                return Self {
                    dtype: DType::U8,
                    shape,
                    data: Bytes::from(v).slice(at..at + n),
                };
            }
        }
        let mut b = BytesMut::new();
        let mut shape = Vec::new();
        if let Some(a) = &slot {
            put_elements(a, &mut b);
            shape = a.shape().to_vec();
        }
        Self {
            dtype: T::DTYPE,
            shape,
            data: b.freeze(),
        }
    }

    /// `float32 array of shape (2, 3)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} array of shape {}",
            self.dtype.name(),
            shape_str(&self.shape)
        )
    }

    /// Checks that the array is exactly `dtype` and `shape`, or says what
    /// was expected and what came: `expected float32 array of shape (1,),
    /// found float64 array of shape (1, 1)`.
    pub fn expect(&self, dtype: DType, shape: &[usize]) -> Result<(), TypeMismatch> {
        if self.dtype == dtype && self.shape == shape {
            return Ok(());
        }
        Err(TypeMismatch::new(
            format!("{} array of shape {}", dtype.name(), shape_str(shape)),
            self.describe(),
        ))
    }
}

/// numpy's way of writing a shape: `()`, `(3,)`, `(2, 3)`.
pub fn shape_str(shape: &[usize]) -> String {
    match shape {
        [] => "()".into(),
        [n] => format!("({n},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// What a value is, for a message about an array parameter.
fn found(v: &Value, why: &'static str) -> String {
    match v {
        Value::Map(_) if v.get("nd").is_some() || v.get("__ndarray__").is_some() => {
            format!("an ndarray map that does not decode: {why}")
        }
        Value::Map(_) => "a map that is not an ndarray".into(),
        other => format!(
            "{} (a plain msgpack value: arrays cross as ndarray maps)",
            other.kind_name()
        ),
    }
}

fn raw_or_mismatch(v: &Value, expected: impl Fn() -> String) -> Result<RawArray, TypeMismatch> {
    RawArray::from_value(v).map_err(|why| TypeMismatch::new(expected(), found(v, why)))
}

impl FromValue for RawArray {
    /// Any ndarray map (either dialect, any dtype and shape).
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        raw_or_mismatch(&v, || "an ndarray".into())
    }
}

fn dims_str(n: Option<usize>) -> String {
    match n {
        None => "any shape".into(),
        Some(1) => "1 dimension".into(),
        Some(n) => format!("{n} dimensions"),
    }
}

/// The conversion rules of docs/DYNAMIC.md ("Arrays"): the dtype must be
/// `T`'s exactly (either byte order; nothing is cast), and the number of
/// dimensions `D`'s (any for `IxDyn`; a 0-d array or numpy scalar is not
/// a 1-element 1-d array, nor the reverse).
impl<T: Element, D: Dimension> FromValue for Array<T, D> {
    fn from_value(v: Value) -> Result<Self, TypeMismatch> {
        let expected = || format!("{} array of {}", T::DTYPE.name(), dims_str(D::NDIM));
        let raw = raw_or_mismatch(&v, expected)?;
        if raw.dtype != T::DTYPE || D::NDIM.is_some_and(|n| n != raw.shape.len()) {
            return Err(TypeMismatch::new(expected(), raw.describe()));
        }
        raw.to_array::<T>()
            .map_err(|why| TypeMismatch::new(expected(), why))?
            .into_dimensionality::<D>()
            .map_err(|_| TypeMismatch::new(expected(), raw.describe()))
    }
}

/// Reads a `T` array of exactly `shape` (see [`RawArray::expect`]).
pub fn array_of_shape<T: Element, D: Dimension>(
    v: &Value,
    shape: &[usize],
) -> Result<Array<T, D>, TypeMismatch> {
    let expected = || format!("{} array of shape {}", T::DTYPE.name(), shape_str(shape));
    let raw = raw_or_mismatch(v, expected)?;
    raw.expect(T::DTYPE, shape)?;
    if D::NDIM.is_some_and(|n| n != shape.len()) {
        return Err(TypeMismatch::new(
            format!("{} (as {})", expected(), dims_str(D::NDIM)),
            raw.describe(),
        ));
    }
    raw.to_array::<T>()
        .map_err(|why| TypeMismatch::new(expected(), why))?
        .into_dimensionality::<D>()
        .map_err(|_| TypeMismatch::new(expected(), raw.describe()))
}

fn align_pad(pos: usize) -> usize {
    (8 - pos % 8) % 8
}

fn put_raw_header(dtype: DType, shape: &[usize], dst: &mut BytesMut) {
    let pad = align_pad(dst.len() + 4 + 8 * shape.len());
    dst.put_u8(dtype.code());
    dst.put_u8(shape.len() as u8);
    dst.put_u8(pad as u8);
    dst.put_u8(0);
    for &d in shape {
        dst.put_u64_le(d as u64);
    }
    dst.put_bytes(0, pad);
}

fn decode_raw(src: &mut Bytes) -> Result<RawArray, DecodeError> {
    let head = take(src, 4)?;
    let dtype =
        DType::from_code(head[0]).ok_or(DecodeError::Invalid("unknown ndarray dtype code"))?;
    let (ndim, pad) = (usize::from(head[1]), usize::from(head[2]));
    if ndim > MAX_DIMS || pad > 7 || head[3] != 0 {
        return Err(DecodeError::Invalid(
            "ndarray header: ndim > 32, pad > 7 or reserved byte set",
        ));
    }
    let dims = take(src, 8 * ndim as u64)?;
    let shape = dims
        .chunks_exact(8)
        .map(|c| {
            // As numpy and ndarray: a dimension fits an isize (and so an
            // i64, as the msgpack form writes it).
            isize::try_from(u64::read_le(c))
                .map(|d| d as usize)
                .map_err(|_| DecodeError::Invalid("ndarray dimension too large"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pad_bytes = take(src, pad as u64)?;
    if pad_bytes.iter().any(|&b| b != 0) {
        return Err(DecodeError::Invalid("ndarray padding is not zero"));
    }
    let n = element_count(&shape)
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or(DecodeError::Invalid("ndarray shape overflows"))?;
    let data = take(src, n as u64)?;
    Ok(RawArray { dtype, shape, data })
}

/// The binary codec for arrays of any dtype, decoding to [`RawArray`]
/// without copying. Schema `ndarray`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawArrayCodec;

/// The binary codec for arrays of any dtype.
pub const NDARRAY: RawArrayCodec = RawArrayCodec;

impl Codec for RawArrayCodec {
    type Value = RawArray;
    fn encode(&self, v: &RawArray, dst: &mut BytesMut) {
        put_raw_header(v.dtype, &v.shape, dst);
        dst.put_slice(&v.data);
    }
    fn decode(&self, src: &mut Bytes) -> Result<RawArray, DecodeError> {
        decode_raw(src)
    }
    fn schema(&self, out: &mut String) {
        out.push_str("ndarray");
    }
    fn min_len(&self) -> usize {
        4
    }
}

/// The binary codec for `ArrayD<T>`: the dtype must be `T`'s. Schema
/// `ndarray<f32>` and so on. Decoding copies the data once.
#[derive(Debug)]
pub struct ArrayCodec<T>(PhantomData<fn() -> T>);

impl<T> ArrayCodec<T> {
    /// The codec.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Clone for ArrayCodec<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ArrayCodec<T> {}
impl<T> Default for ArrayCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> Codec for ArrayCodec<T> {
    type Value = ArrayD<T>;
    fn encode(&self, v: &ArrayD<T>, dst: &mut BytesMut) {
        put_raw_header(T::DTYPE, v.shape(), dst);
        put_elements(v, dst);
    }
    fn decode(&self, src: &mut Bytes) -> Result<ArrayD<T>, DecodeError> {
        let raw = decode_raw(src)?;
        if raw.dtype != T::DTYPE {
            return Err(DecodeError::Invalid(
                "ndarray dtype differs from the command's",
            ));
        }
        raw.to_array().map_err(DecodeError::Invalid)
    }
    fn schema(&self, out: &mut String) {
        out.push_str("ndarray<");
        out.push_str(T::DTYPE.name());
        out.push('>');
    }
    fn min_len(&self) -> usize {
        4
    }
}

/// `ndarray<float32>`.
pub const ARRAY_F32: ArrayCodec<f32> = ArrayCodec::new();
/// `ndarray<float64>`.
pub const ARRAY_F64: ArrayCodec<f64> = ArrayCodec::new();
/// `ndarray<uint8>`.
pub const ARRAY_U8: ArrayCodec<u8> = ArrayCodec::new();
/// `ndarray<int32>`.
pub const ARRAY_I32: ArrayCodec<i32> = ArrayCodec::new();
/// `ndarray<int64>`.
pub const ARRAY_I64: ArrayCodec<i64> = ArrayCodec::new();
/// `ndarray<bool>`.
pub const ARRAY_BOOL: ArrayCodec<bool> = ArrayCodec::new();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_all, encode_to_vec};
    use ndarray::{array, Array2, ShapeBuilder};

    #[test]
    fn msgpack_numpy_bytes_of_a_2x2_f32() {
        // np.array([[1,2],[3,4]], dtype=np.float32) through msgpack_numpy.packb
        let mut want = vec![0x85, 0xc4, 0x02, b'n', b'd', 0xc3];
        want.extend([0xc4, 0x04, b't', b'y', b'p', b'e', 0xa3, b'<', b'f', b'4']);
        want.extend([0xc4, 0x04, b'k', b'i', b'n', b'd', 0xc4, 0x00]);
        want.extend([0xc4, 0x05, b's', b'h', b'a', b'p', b'e', 0x92, 0x02, 0x02]);
        want.extend([0xc4, 0x04, b'd', b'a', b't', b'a', 0xc4, 0x10]);
        for x in [1.0f32, 2.0, 3.0, 4.0] {
            want.extend(x.to_le_bytes());
        }
        let a = array![[1.0f32, 2.0], [3.0, 4.0]];
        assert_eq!(&Value::from(&a).to_bytes()[..], &want[..]);
        let v = Value::decode(Bytes::from(want)).unwrap();
        assert_eq!(Array2::<f32>::from_value(v).unwrap(), a);
    }

    #[test]
    fn non_contiguous_encodes_in_c_order() {
        let a = Array2::from_shape_vec((2, 3).f(), vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        let raw = RawArray::from_array(&a);
        let back = raw.to_array::<i32>().unwrap();
        assert_eq!(back, a.into_dyn());
        let t = array![[1u16, 2], [3, 4]];
        let raw = RawArray::from_array(&t.t());
        assert_eq!(&raw.data[..], [1, 0, 3, 0, 2, 0, 4, 0]);
    }

    #[test]
    fn codec_aligns_and_refuses_bad_lengths() {
        let a = ndarray::Array1::from(vec![1.0f64, 2.0]).into_dyn();
        let b = encode_to_vec(&ARRAY_F64, &a);
        // 4 + 8 = 12 bytes of header, pad 4 to reach 16.
        assert_eq!(&b[..4], [10, 1, 4, 0]);
        assert_eq!(b.len(), 16 + 16);
        assert_eq!(decode_all(&ARRAY_F64, b.clone().into()).unwrap(), a);
        assert!(decode_all(&ARRAY_F32, b.clone().into()).is_err());
        // A shape claiming 2^40 elements fails before any allocation.
        let mut huge = vec![9u8, 1, 4, 0];
        huge.extend((1u64 << 40).to_le_bytes());
        huge.extend([0; 4]);
        assert!(matches!(
            decode_all(&NDARRAY, huge.into()),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn refuses_pickled_and_structured_kinds() {
        let key = |k: &'static str| Value::Bin(Bytes::from_static(k.as_bytes()));
        let mut m = vec![
            (key("nd"), Value::Bool(true)),
            (key("type"), Value::from("|O")),
            (key("kind"), Value::Bin(Bytes::from_static(b"O"))),
            (key("shape"), Value::from(vec![1])),
            (key("data"), Value::Bin(Bytes::from_static(b"\x80\x04."))),
        ];
        let e = RawArray::from_value(&Value::Map(m.clone())).unwrap_err();
        assert!(e.contains("kind 'O'"), "{e}");
        m[2].1 = Value::Bin(Bytes::from_static(b"V"));
        let e = RawArray::from_value(&Value::Map(m)).unwrap_err();
        assert!(e.contains("kind 'V'"), "{e}");
    }
}
