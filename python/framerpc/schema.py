"""Codecs built from schema strings, with the encodings of DESIGN.md.

A schema string names a codec: ``u32``, ``f64_be``, ``bool``, ``str``,
``bytes``, ``unit``, ``vec<T>``, ``option<T>``, ``(a,b,...)``, and the
named user types of Rust's ``Map::named``: ``Pos{x:f64,y:f64}`` (the bytes
of ``(f64,f64)``) and ``Mode(u8)`` / ``Pos(f64,f64)`` (the bytes of what
the parentheses hold).
:func:`compile_schema` turns one into a :class:`Codec` whose
:meth:`Codec.encode` and :meth:`Codec.decode` produce and check the exact
wire bytes: every length is checked against the bytes that remain before
anything is built, and bytes left over after the value are an error.

Python values: integers as ``int`` (range-checked; ``bool`` refused),
floats as ``float``, ``bool``, ``str``, ``bytes`` (any bytes-like on
encode), ``vec`` as ``list`` (any sequence on encode; ``vec<u8>`` also takes
bytes; a 1-d numpy array is taken as is for numeric vecs), ``option`` as the
value or ``None``, tuples as ``tuple`` (any sequence of the right length on
encode), ``unit`` as ``None``.
"""

from __future__ import annotations

import math
import numbers
import operator
import struct

from .errors import DecodeError, EncodeError, SchemaError

# A vec of items that take no bytes (vec<unit>) holds at most this many.
MAX_EMPTY_ITEMS = 65536

try:  # numpy is optional
    import numpy as _np
except ImportError:  # pragma: no cover - exercised without numpy
    _np = None

_U32 = struct.Struct("<I")


class Codec:
    """A compiled schema: ``encode(value) -> bytes``, ``decode(bytes) -> value``."""

    schema: str = ""
    min_len: int = 0

    def encode(self, value) -> bytes:
        out = bytearray()
        self.enc(value, out)
        return bytes(out)

    def encode_into(self, value, out: bytearray) -> None:
        self.enc(value, out)

    def decode(self, data):
        """Decodes a whole payload; bytes left over are an error."""
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        value, pos = self.dec(mv, 0)
        if pos != len(mv):
            raise DecodeError(f"{len(mv) - pos} trailing byte(s) after a {self.schema} value")
        return value

    # -- JSON bridges (CLI, test vectors) -------------------------------
    def from_json(self, j):
        """A Python value for this codec from a JSON value (bytes as hex)."""
        return j

    def to_json(self, v):
        """A JSON value from a decoded Python value (bytes as hex)."""
        return v

    # subclasses implement:
    def enc(self, v, out: bytearray) -> None:  # pragma: no cover
        raise NotImplementedError

    def dec(self, mv: memoryview, pos: int):  # pragma: no cover
        raise NotImplementedError

    def __repr__(self):
        return f"Codec({self.schema!r})"


def _need(mv, pos, n, what):
    if n > len(mv) - pos:
        raise DecodeError(f"{what} needs {n} byte(s), {len(mv) - pos} remain")


def _kind(v) -> str:
    return type(v).__name__


class Num(Codec):
    def __init__(self, name: str, fmt: str, is_float: bool, lo=None, hi=None):
        self.schema = name
        self.st = struct.Struct(fmt)
        self.fmt = fmt
        self.code = fmt[1]
        self.big = fmt[0] == ">"
        self.min_len = self.st.size
        self.is_float = is_float
        self.lo, self.hi = lo, hi

    def check(self, v):
        if self.is_float:
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise EncodeError(f"expected a number for {self.schema}, got {_kind(v)} {v!r}")
            v = float(v)
            if self.code == "f" and math.isfinite(v) and abs(v) > 3.4028234663852886e38:
                raise EncodeError(f"{v!r} is out of range for f32")
            return v
        if isinstance(v, bool):
            raise EncodeError(f"expected an integer for {self.schema}, got bool {v!r}")
        try:
            v = operator.index(v)
        except TypeError:
            raise EncodeError(f"expected an integer for {self.schema}, got {_kind(v)} {v!r}") from None
        if not self.lo <= v <= self.hi:
            raise EncodeError(f"{v} is out of range for {self.schema} ({self.lo}..={self.hi})")
        return v

    def enc(self, v, out):
        try:
            if type(v) is bool:
                raise TypeError
            out += self.st.pack(v)
        except (struct.error, TypeError, OverflowError):
            out += self.st.pack(self.check(v))  # raises the precise error

    def dec(self, mv, pos):
        end = pos + self.min_len
        if end > len(mv):
            raise DecodeError(f"{self.schema} needs {self.min_len} byte(s), {len(mv) - pos} remain")
        return self.st.unpack_from(mv, pos)[0], end

    def from_json(self, j):
        if self.is_float and isinstance(j, str):
            return float(j)  # "nan", "inf", "-inf"
        return j

    def to_json(self, v):
        if self.is_float and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return v


class Bool(Codec):
    schema = "bool"
    min_len = 1

    def enc(self, v, out):
        if v is True or v is False or (_np is not None and isinstance(v, _np.bool_)):
            out.append(1 if v else 0)
        else:
            raise EncodeError(f"expected a bool, got {_kind(v)} {v!r}")

    def dec(self, mv, pos):
        if pos >= len(mv):
            raise DecodeError("bool needs 1 byte, 0 remain")
        b = mv[pos]
        if b > 1:
            raise DecodeError(f"bool byte {b} is neither 0 nor 1")
        return b == 1, pos + 1


class Str(Codec):
    schema = "str"
    min_len = 4

    def enc(self, v, out):
        if not isinstance(v, str):
            raise EncodeError(f"expected a str, got {_kind(v)} {v!r}")
        b = v.encode("utf-8")
        out += _U32.pack(len(b))
        out += b

    def dec(self, mv, pos):
        _need(mv, pos, 4, "str length")
        (n,) = _U32.unpack_from(mv, pos)
        pos += 4
        _need(mv, pos, n, "str of claimed length")
        try:
            s = str(mv[pos : pos + n], "utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"str is not valid UTF-8: {e}") from None
        return s, pos + n


class Bytes_(Codec):
    schema = "bytes"
    min_len = 4

    def enc(self, v, out):
        if isinstance(v, str) or not isinstance(v, (bytes, bytearray, memoryview)):
            raise EncodeError(f"expected bytes, got {_kind(v)} {v!r:.60}")
        out += _U32.pack(len(memoryview(v).cast("B")) if isinstance(v, memoryview) else len(v))
        out += v

    def dec(self, mv, pos):
        _need(mv, pos, 4, "bytes length")
        (n,) = _U32.unpack_from(mv, pos)
        pos += 4
        _need(mv, pos, n, "bytes of claimed length")
        return bytes(mv[pos : pos + n]), pos + n

    def from_json(self, j):
        return _hex_value(j)

    def to_json(self, v):
        return bytes(v).hex()


def _hex_value(j):
    """Bytes from JSON: a hex string (an optional ``(hex)`` suffix is dropped) or a list of ints."""
    if isinstance(j, str):
        s = j.strip()
        if s.endswith("(hex)"):
            s = s[: -len("(hex)")].strip()
        return bytes.fromhex(s)
    if isinstance(j, list):
        return bytes(j)
    raise EncodeError(f"expected bytes as a hex string, got {_kind(j)} {j!r}")


class Unit(Codec):
    schema = "unit"
    min_len = 0

    def enc(self, v, out):
        if v is not None and v != ():
            raise EncodeError(f"expected None for unit, got {_kind(v)} {v!r}")

    def dec(self, mv, pos):
        return None, pos


class Vec(Codec):
    min_len = 4

    def __init__(self, item: Codec):
        self.item = item
        self.schema = f"vec<{item.schema}>"
        self.num = isinstance(item, Num)
        if self.num:
            self.end = item.fmt[0]
            self.code = item.code
            self.np_dtype = None
            if _np is not None:
                self.np_dtype = _np.dtype(self.end + {"b": "i1", "B": "u1", "h": "i2", "H": "u2", "i": "i4",
                                                      "I": "u4", "q": "i8", "Q": "u8", "f": "f4", "d": "f8"}[self.code])

    def enc(self, v, out):
        if _np is not None and self.num and isinstance(v, _np.ndarray):
            return self._enc_ndarray(v, out)
        if isinstance(v, (str, dict, set)) or not hasattr(v, "__len__"):
            if self.schema == "vec<u8>" and isinstance(v, (bytes, bytearray, memoryview)):
                pass
            else:
                raise EncodeError(f"expected a sequence for {self.schema}, got {_kind(v)} {v!r:.60}")
        if self.schema == "vec<u8>" and isinstance(v, (bytes, bytearray, memoryview)):
            b = bytes(v)
            out += _U32.pack(len(b))
            out += b
            return
        n = len(v)
        out += _U32.pack(n)
        if self.num and n:
            ok = True
            for x in v:
                if type(x) is bool:
                    ok = False
                    break
            if ok:
                try:
                    out += struct.pack(f"{self.end}{n}{self.code}", *v)
                    return
                except (struct.error, TypeError, OverflowError):
                    pass
        item = self.item
        for i, x in enumerate(v):
            try:
                item.enc(x, out)
            except EncodeError as e:
                raise EncodeError(f"item {i}: {e}") from None

    def _enc_ndarray(self, a, out):
        if a.ndim != 1:
            raise EncodeError(f"expected a 1-d array for {self.schema}, got shape {a.shape}")
        dt = self.np_dtype
        if a.dtype.kind == "b" or (dt.kind != "f" and a.dtype.kind not in "iu"):
            raise EncodeError(f"expected {self.schema}, got an array of {a.dtype}")
        if dt.kind in "iu" and a.size:
            lo, hi = a.min(), a.max()
            info = _np.iinfo(dt)
            if lo < info.min or hi > info.max:
                raise EncodeError(f"array values {lo}..{hi} are out of range for {self.item.schema}")
        out += _U32.pack(a.size)
        out += _np.ascontiguousarray(a, dtype=dt).tobytes()

    def dec(self, mv, pos):
        _need(mv, pos, 4, f"{self.schema} count")
        (n,) = _U32.unpack_from(mv, pos)
        pos += 4
        ml = self.item.min_len
        # as the Rust decoder: n items need n * min_len bytes; items that can
        # take no bytes at all (vec<unit>) are capped at MAX_EMPTY_ITEMS
        if ml == 0:
            if n > MAX_EMPTY_ITEMS:
                raise DecodeError(f"{self.schema} count {n} exceeds {MAX_EMPTY_ITEMS} zero-byte items")
        elif n * ml > len(mv) - pos:
            raise DecodeError(
                f"{self.schema} count {n} needs at least {n * ml} byte(s), {len(mv) - pos} remain")
        if self.num:
            fmt = f"{self.end}{n}{self.code}"
            return list(struct.unpack_from(fmt, mv, pos)), pos + n * ml
        out = []
        dec = self.item.dec
        for _ in range(n):
            x, pos = dec(mv, pos)
            out.append(x)
        return out, pos

    def from_json(self, j):
        if not isinstance(j, list):
            if self.schema == "vec<u8>" and isinstance(j, str):
                return _hex_value(j)
            raise EncodeError(f"expected a JSON array for {self.schema}, got {j!r}")
        return [self.item.from_json(x) for x in j]

    def to_json(self, v):
        return [self.item.to_json(x) for x in v]


class Opt(Codec):
    min_len = 1

    def __init__(self, item: Codec):
        self.item = item
        self.schema = f"option<{item.schema}>"

    def enc(self, v, out):
        if v is None:
            out.append(0)
        else:
            out.append(1)
            self.item.enc(v, out)

    def dec(self, mv, pos):
        if pos >= len(mv):
            raise DecodeError(f"{self.schema} tag needs 1 byte, 0 remain")
        tag = mv[pos]
        if tag == 0:
            return None, pos + 1
        if tag != 1:
            raise DecodeError(f"{self.schema} tag {tag} is neither 0 nor 1")
        return self.item.dec(mv, pos + 1)

    def from_json(self, j):
        return None if j is None else self.item.from_json(j)

    def to_json(self, v):
        return None if v is None else self.item.to_json(v)


class Tuple(Codec):
    def __init__(self, items: list):
        self.items = items
        self.schema = "(" + ",".join(c.schema for c in items) + ")"
        self.min_len = sum(c.min_len for c in items)

    def enc(self, v, out):
        if isinstance(v, (str, bytes, dict)) or not hasattr(v, "__len__"):
            raise EncodeError(f"expected a tuple of {len(self.items)} for {self.schema}, got {_kind(v)} {v!r:.60}")
        if len(v) != len(self.items):
            raise EncodeError(f"expected {len(self.items)} item(s) for {self.schema}, got {len(v)}")
        for i, (c, x) in enumerate(zip(self.items, v)):
            try:
                c.enc(x, out)
            except EncodeError as e:
                raise EncodeError(f"item {i}: {e}") from None

    def dec(self, mv, pos):
        vals = []
        for c in self.items:
            x, pos = c.dec(mv, pos)
            vals.append(x)
        return tuple(vals), pos

    def from_json(self, j):
        if not isinstance(j, list) or len(j) != len(self.items):
            raise EncodeError(f"expected a JSON array of {len(self.items)} for {self.schema}, got {j!r}")
        return tuple(c.from_json(x) for c, x in zip(self.items, j))

    def to_json(self, v):
        return [c.to_json(x) for c, x in zip(self.items, v)]


class Struct(Tuple):
    """A named struct, ``Pos{x:f64,y:f64}``: the bytes of the tuple of its
    fields. Decodes to a tuple; encodes a sequence or a mapping by field name."""

    def __init__(self, name: str, fields: list, items: list):
        super().__init__(items)
        self.name = name
        self.fields = fields
        self.schema = name + "{" + ",".join(f"{f}:{c.schema}" for f, c in zip(fields, items)) + "}"

    def enc(self, v, out):
        if isinstance(v, dict):
            missing = [f for f in self.fields if f not in v]
            extra = [k for k in v if k not in self.fields]
            if missing or extra:
                raise EncodeError(f"{self.schema}: missing fields {missing}, unknown fields {extra}")
            v = [v[f] for f in self.fields]
        super().enc(v, out)

    def from_json(self, j):
        if isinstance(j, dict):
            j = [j.get(f) for f in self.fields]
        return super().from_json(j)


class Named(Codec):
    """A named type, ``Mode(u8)`` or ``Pos(f64,f64)``: the bytes and Python
    values of what the parentheses hold."""

    def __init__(self, name: str, inner: Codec):
        self.inner = inner
        self.name = name
        s = inner.schema
        self.schema = name + (s if isinstance(inner, Tuple) and not isinstance(inner, Struct) else f"({s})")
        self.min_len = inner.min_len

    def enc(self, v, out):
        self.inner.enc(v, out)

    def dec(self, mv, pos):
        return self.inner.dec(mv, pos)

    def from_json(self, j):
        return self.inner.from_json(j)

    def to_json(self, v):
        return self.inner.to_json(v)


def _ints(bits, signed):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


_PRIMS: dict[str, Codec] = {}
for _name, _c, _bits, _signed in [
    ("u8", "B", 8, False), ("i8", "b", 8, True),
    ("u16", "H", 16, False), ("i16", "h", 16, True),
    ("u32", "I", 32, False), ("i32", "i", 32, True),
    ("u64", "Q", 64, False), ("i64", "q", 64, True),
]:
    _PRIMS[_name] = Num(_name, "<" + _c, False, *_ints(_bits, _signed))
    if _bits > 8:
        _PRIMS[_name + "_be"] = Num(_name + "_be", ">" + _c, False, *_ints(_bits, _signed))
for _name, _c in [("f32", "f"), ("f64", "d")]:
    _PRIMS[_name] = Num(_name, "<" + _c, True)
    _PRIMS[_name + "_be"] = Num(_name + "_be", ">" + _c, True)
_PRIMS["bool"] = Bool()
_PRIMS["str"] = Str()
_PRIMS["bytes"] = Bytes_()
_PRIMS["unit"] = Unit()

#: Extra named codecs (the ndarray layer registers itself here).
EXTENSIONS: dict = {}


class _Parser:
    def __init__(self, s: str):
        self.s = s
        self.i = 0

    def err(self, msg):
        raise SchemaError(f"bad schema {self.s!r} at {self.i}: {msg}")

    def ws(self):
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self):
        self.ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, ch):
        if self.peek() != ch:
            self.err(f"expected {ch!r}")
        self.i += 1

    def ident(self):
        self.ws()
        j = self.i
        while self.i < len(self.s) and (self.s[self.i].isalnum() or self.s[self.i] == "_"):
            self.i += 1
        if j == self.i:
            self.err("expected a type name")
        return self.s[j : self.i]

    def type(self) -> Codec:
        if self.peek() == "(":
            self.i += 1
            items = [self.type()]
            while self.peek() == ",":
                self.i += 1
                items.append(self.type())
            self.expect(")")
            return Tuple(items)
        name = self.ident()
        if self.peek() == "{":  # a named struct: Pos{x:f64,y:f64}
            self.i += 1
            fields, items = [], []
            while True:
                field = self.ident()
                if field in fields:
                    self.err(f"field {field!r} twice")
                self.expect(":")
                fields.append(field)
                items.append(self.type())
                if self.peek() != ",":
                    break
                self.i += 1
            self.expect("}")
            return Struct(name, fields, items)
        if self.peek() == "(" and name not in _PRIMS:  # a named type: Mode(u8), Pos(f64,f64)
            self.i += 1
            items = [self.type()]
            while self.peek() == ",":
                self.i += 1
                items.append(self.type())
            self.expect(")")
            return Named(name, items[0] if len(items) == 1 else Tuple(items))
        if name in ("vec", "option"):
            self.expect("<")
            inner = self.type()
            self.expect(">")
            return Vec(inner) if name == "vec" else Opt(inner)
        if name in _PRIMS:
            return _PRIMS[name]
        if name in EXTENSIONS:
            return EXTENSIONS[name](self)
        self.err(f"unknown type {name!r}")


_CACHE: dict[str, Codec] = {}


def compile_schema(schema: str) -> Codec:
    """The codec a schema string names (cached)."""
    c = _CACHE.get(schema)
    if c is None:
        p = _Parser(schema)
        c = p.type()
        if p.peek() != "":
            p.err("unexpected text after the type")
        _CACHE[schema] = c
    return c


def encode(schema: str, value) -> bytes:
    """Encodes ``value`` with the codec ``schema`` names."""
    return compile_schema(schema).encode(value)


def decode(schema: str, data):
    """Decodes a whole payload with the codec ``schema`` names."""
    return compile_schema(schema).decode(data)


# -- the ndarray binary codec (schema ``ndarray`` or ``ndarray<float32>`` ...) --
#
#   0  u8  dtype code: 0 bool, 1 i8, 2 u8, 3 i16, 4 u16, 5 i32, 6 u32, 7 i64, 8 u64, 9 f32, 10 f64
#   1  u8  ndim (0..=32)
#   2  u8  pad: zero bytes before the data (0..=7)
#   3  u8  0 (reserved)
#   4  8*ndim shape, u64 little-endian each; then pad zero bytes; then the data, C order, little-endian
#
# The encoder picks pad so the data starts 8-byte aligned relative to the start
# of the buffer being written. The client writes payloads after the 12-byte
# frame header in the same buffer, so its pad matches the Rust encoder's.

ND_DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
_ND_CODE = {n: i for i, n in enumerate(ND_DTYPES)}
_ND_NUMPY = ["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f4", "<f8"]
_ND_SIZE = [1, 1, 1, 2, 2, 4, 4, 8, 8, 4, 8]
_ND_STRUCT = ["?", "b", "B", "h", "H", "i", "I", "q", "Q", "f", "d"]
ND_MAX_DIMS = 32
_U64 = struct.Struct("<Q")


class NdArray(Codec):
    min_len = 4

    def __init__(self, dtype: str | None):
        self.dtype = dtype
        self.schema = "ndarray" if dtype is None else f"ndarray<{dtype}>"

    def _as_array(self, v):
        if _np is None:
            raise EncodeError(f"{self.schema} needs numpy to encode")
        if isinstance(v, _np.ndarray):
            a = v
        elif isinstance(v, (list, tuple)) or isinstance(v, _np.generic):
            a = _np.asarray(v, dtype=self.dtype)
        else:
            raise EncodeError(f"expected a numpy array for {self.schema}, got {_kind(v)}")
        name = a.dtype.name
        if name not in _ND_CODE:
            raise EncodeError(f"dtype {a.dtype} cannot cross as {self.schema}")
        if self.dtype is not None and name != self.dtype:
            raise EncodeError(f"expected an array of {self.dtype} for {self.schema}, got {name}")
        if a.ndim > ND_MAX_DIMS:
            raise EncodeError(f"{a.ndim} dimensions is over {ND_MAX_DIMS}")
        return a

    def enc(self, v, out):
        a = self._as_array(v)
        code = _ND_CODE[a.dtype.name]
        pad = (8 - (len(out) + 4 + 8 * a.ndim) % 8) % 8
        out += bytes((code, a.ndim, pad, 0))
        for d in a.shape:
            out += _U64.pack(d)
        out += bytes(pad)
        a = _np.ascontiguousarray(a, dtype=_np.dtype(_ND_NUMPY[code]))
        out += memoryview(a).cast("B") if a.size else b""

    def dec(self, mv, pos):
        _need(mv, pos, 4, "ndarray header")
        code, ndim, pad, zero = mv[pos], mv[pos + 1], mv[pos + 2], mv[pos + 3]
        pos += 4
        if code >= len(ND_DTYPES):
            raise DecodeError(f"unknown ndarray dtype code {code}")
        if ndim > ND_MAX_DIMS or pad > 7 or zero != 0:
            raise DecodeError("ndarray header: ndim > 32, pad > 7 or reserved byte set")
        if self.dtype is not None and ND_DTYPES[code] != self.dtype:
            raise DecodeError(f"ndarray of {ND_DTYPES[code]} where {self.schema} was expected")
        _need(mv, pos, 8 * ndim, "ndarray shape")
        shape = [_U64.unpack_from(mv, pos + 8 * i)[0] for i in range(ndim)]
        pos += 8 * ndim
        _need(mv, pos, pad, "ndarray padding")
        if any(mv[pos:pos + pad]):
            raise DecodeError("ndarray padding is not zero")
        pos += pad
        n = 1
        for d in shape:
            n *= d
        size = n * _ND_SIZE[code]
        _need(mv, pos, size, f"ndarray data of shape {shape}")
        data = mv[pos:pos + size]
        if code == 0 and any(b > 1 for b in bytes(data)):
            raise DecodeError("ndarray bool byte is neither 0 nor 1")
        if _np is not None:
            a = _np.frombuffer(data, dtype=_np.dtype(_ND_NUMPY[code])).reshape(shape)
        else:
            flat = list(struct.unpack(f"<{n}{_ND_STRUCT[code]}", data))
            a = _nest(flat, shape)
        return a, pos + size

    def from_json(self, j):
        if _np is None:
            raise EncodeError(f"{self.schema} needs numpy")
        return _np.asarray(j, dtype=self.dtype)

    def to_json(self, v):
        if _np is not None and isinstance(v, _np.ndarray):
            return v.tolist()
        return v


def _nest(flat, shape):
    if not shape:
        return flat[0]

    def build(dims, start):
        if len(dims) == 1:
            return flat[start:start + dims[0]]
        step = 1
        for d in dims[1:]:
            step *= d
        return [build(dims[1:], start + i * step) for i in range(dims[0])]

    return build(list(shape), 0)


def _parse_ndarray(p: "_Parser") -> Codec:
    if p.peek() == "<":
        p.i += 1
        name = p.ident()
        if name not in _ND_CODE:
            p.err(f"unknown ndarray dtype {name!r} (one of {', '.join(ND_DTYPES)})")
        p.expect(">")
        return NdArray(name)
    return NdArray(None)


EXTENSIONS["ndarray"] = _parse_ndarray
