"""ndarrays as msgpack values, in the layout of msgpack-numpy 0.4.8.

An array is a map of 5 entries with **bin** keys, in this order: ``nd``
(true), ``type`` (str dtype such as ``<f4``), ``kind`` (bin, empty),
``shape`` (array of ints), ``data`` (bin, C order). A numpy scalar is
``{nd: false, type, data}``. Decoders also accept str keys and the
``{__ndarray__: true, data, dtype, shape}`` map of robotics policy servers.
Object (``O``) and structured (``V``) dtypes are refused: nothing is ever
unpickled.

Without numpy, decoded arrays become nested lists (and scalars plain numbers).
"""

from __future__ import annotations

import struct

from .errors import DecodeError, EncodeError

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

_KINDS = "biuf"  # kinds that cross; c (complex) too when numpy is present


def encode_array(a) -> dict:
    """The msgpack-numpy map of an ndarray (bin keys; 'type' a str)."""
    if a.dtype.kind in "OV" or a.dtype.hasobject:
        raise EncodeError(f"ndarray of dtype {a.dtype} cannot cross: object and structured dtypes are refused")
    if a.dtype.kind not in "biufc":
        raise EncodeError(f"ndarray of dtype {a.dtype} is not supported (bool, int, uint, float, complex only)")
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return {b"nd": True, b"type": a.dtype.str, b"kind": b"", b"shape": list(a.shape), b"data": a.tobytes()}


def encode_scalar(x) -> dict:
    """The msgpack-numpy map of a numpy scalar."""
    if x.dtype.kind not in "biufc":
        raise EncodeError(f"numpy scalar of dtype {x.dtype} cannot cross")
    return {b"nd": False, b"type": x.dtype.str, b"data": x.tobytes()}


def _get(m: dict, key: str):
    v = m.get(key.encode())
    if v is None:
        v = m.get(key)
    return v


def is_ndarray_map(m: dict) -> bool:
    return (b"nd" in m or "nd" in m or "__ndarray__" in m) and ("data" in m or b"data" in m)


def decode_map(m: dict):
    """An ndarray (or numpy scalar) from one of the two map layouts; other maps unchanged."""
    if "__ndarray__" in m:
        dtype, shape, data = m.get("dtype"), m.get("shape"), m.get("data")
        nd = True
    else:
        nd = _get(m, "nd")
        kind = _get(m, "kind")
        if kind not in (None, b"", ""):
            raise DecodeError(f"ndarray kind {kind!r} is refused (pickled or structured data never crosses)")
        dtype, shape, data = _get(m, "type"), _get(m, "shape"), _get(m, "data")
    if isinstance(dtype, bytes):
        dtype = dtype.decode("ascii", "replace")
    if not isinstance(dtype, str) or not isinstance(data, (bytes, bytearray)):
        raise DecodeError("ndarray map needs a str dtype and bin data")
    if dtype.lstrip("<>|=")[:1] in ("O", "V") or dtype.startswith("|O") or "V" in dtype[:2]:
        raise DecodeError(f"ndarray dtype {dtype!r} is refused (object/structured)")
    if nd:
        if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise DecodeError(f"ndarray shape {shape!r} is not a list of sizes")
    else:
        shape = ()
    if np is not None:
        try:
            dt = np.dtype(dtype)
        except TypeError as e:
            raise DecodeError(f"ndarray dtype {dtype!r}: {e}") from None
        if dt.kind not in "biufc":
            raise DecodeError(f"ndarray dtype {dtype!r} is not supported")
        n = 1
        for d in shape:
            n *= d
        if n * dt.itemsize != len(data):
            raise DecodeError(f"ndarray of shape {list(shape)} and dtype {dtype} needs {n * dt.itemsize} bytes, "
                              f"data has {len(data)}")
        a = np.frombuffer(data, dtype=dt)
        if not nd:
            return a[0]
        return a.reshape(shape)
    return _decode_pure(dtype, shape, data, nd)


_FMT = {("b", 1): "?", ("i", 1): "b", ("u", 1): "B", ("i", 2): "h", ("u", 2): "H", ("i", 4): "i", ("u", 4): "I",
        ("i", 8): "q", ("u", 8): "Q", ("f", 4): "f", ("f", 8): "d", ("f", 2): "e"}


def _decode_pure(dtype, shape, data, nd):
    order = dtype[0] if dtype[0] in "<>|=" else "="
    body = dtype[1:] if dtype[0] in "<>|=" else dtype
    kind, size = body[:1], int(body[1:] or 0)
    fmt = _FMT.get((kind, size))
    if fmt is None:
        raise DecodeError(f"ndarray dtype {dtype!r} needs numpy")
    end = ">" if order == ">" else "<"
    n = 1
    for d in shape:
        n *= d
    if n * size != len(data):
        raise DecodeError(f"ndarray of shape {list(shape)} needs {n * size} bytes, data has {len(data)}")
    flat = list(struct.unpack(f"{end}{n}{fmt}", data))
    if not nd:
        return flat[0]

    def build(dims, flat, start):
        if len(dims) == 1:
            return flat[start:start + dims[0]]
        step = 1
        for d in dims[1:]:
            step *= d
        return [build(dims[1:], flat, start + i * step) for i in range(dims[0])]

    if not shape:
        return flat[0]
    return build(list(shape), flat, 0)
