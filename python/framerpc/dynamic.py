"""Remote objects through lazy, pipelined proxies (the server's dynamic layer).

``sim = client.root("sim")`` names a registered root; attribute access,
indexing and calls on a proxy return new proxies at once. A call is sent
right away as a one-way NOTIFY on command 0xFF10 that names the slot its
result will have on the server (the client numbers them), so later calls can
use the result before it exists. Only :func:`materialize` (and
:meth:`Client.sync`) sends a CALL and waits: k chained calls and one
materialize cost one round trip.

Requests are one msgpack array ``[releases, calls, fetch]``:
``releases`` handles no longer needed, ``calls`` ``[1, slot, ref, args,
kwargs]`` items, ``fetch`` nil or a ref; a ref is ``[base, step...]`` with
base a root name or a handle and steps ``[0, "attr"]`` or ``[1, key]``. A
proxy argument is ext type 1 holding its packed ref; a handle in a reply is
ext type 2 holding a u64 big-endian id. See docs/DYNAMIC.md.

Handles are released when Python drops the last proxy of a result: the id is
queued and rides on the next request (or :meth:`Client.flush_releases`).

A request the server refuses runs none of its calls. A refused NOTIFY is
reported alongside the next REPLY (ext type 3 ``[refusals, unlisted,
value]``): the records are kept in :meth:`Session.take_refusals`, and
:meth:`Client.sync` raises them (once). :func:`describe` returns what a
root, object, function or method declares (the ``[2, nil]`` step).
"""

from __future__ import annotations

import itertools
import struct
import threading

import msgpack

from . import ndarray as _nd
from .errors import Disconnected, EncodeError, FramerpcError, RemoteError

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

DYNAMIC = 0xFF10
EXT_REF = 1
EXT_HANDLE = 2
EXT_ENVELOPE = 3
OP_CALL = 1
STEP_ATTR = 0
STEP_INDEX = 1
STEP_DESCRIBE = 2
SERVER_HANDLES = 1 << 32
_U64BE = struct.Struct(">Q")
#: The ndarray dtypes of docs/DYNAMIC.md (either byte order for multi-byte ones).
DTYPES = ("|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f4", "<f8")
_DTYPES = frozenset(DTYPES) | frozenset(">" + d[1:] for d in DTYPES if d[0] == "<")


class Session:
    """The dynamic layer on one client connection (``client.session``)."""

    def __init__(self, client, command: int = DYNAMIC):
        self.client = client
        self.command = command
        self._slots = itertools.count(1)
        self._rlock = threading.Lock()
        self.releases: list[int] = []
        self.refusals: list[dict] = []
        self.notifies = 0

    # releases ------------------------------------------------------------
    def _queue_release(self, hid: int) -> None:
        self.releases.append(hid)  # list.append is atomic; may run in __del__

    def _take_releases(self) -> list:
        with self._rlock:
            ids, self.releases = self.releases, []
        return ids

    def _requeue(self, ids) -> None:
        if ids:
            self.releases.extend(ids)

    def flush_releases(self) -> None:
        """Sends queued releases now as one NOTIFY (they otherwise ride on the next request)."""
        ids = self._take_releases()
        if not ids:
            return
        try:
            self.client.notify_raw(self.command, msgpack.packb([ids, [], None]))
        except FramerpcError:
            self._requeue(ids)
            raise

    # packing ---------------------------------------------------------------
    def _arg(self, obj):
        """A top-level argument: a proxy becomes ext type 1 holding its packed ref."""
        if isinstance(obj, Proxy):
            if obj._s is not self:
                raise EncodeError("a proxy of another connection cannot be passed as an argument")
            if isinstance(obj._base, _Failed):
                raise _PoisonedArg(obj._base)
            return msgpack.ExtType(EXT_REF, msgpack.packb(obj._ref(), use_bin_type=True, default=self._default))
        return obj

    def _default(self, obj):
        if isinstance(obj, Proxy):
            # docs/DYNAMIC.md: only top-level arguments (items of args, values of
            # kwargs) are resolved; a reference nested deeper would arrive as opaque data.
            raise EncodeError(f"a proxy ({obj._label()}) inside a container is not resolved by the server; "
                              "pass it as an argument of its own")
        if np is not None:
            if isinstance(obj, np.ndarray):
                _check_dtype(obj.dtype, "ndarray")
                return _nd.encode_array(obj)
            if isinstance(obj, np.generic):
                _check_dtype(obj.dtype, "numpy scalar")
                return _nd.encode_scalar(obj)
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if isinstance(obj, memoryview):
            return obj.tobytes()
        raise EncodeError(f"cannot send a {type(obj).__name__} to the dynamic layer: {obj!r:.60}")

    def pack(self, value) -> bytes:
        return msgpack.packb(value, use_bin_type=True, default=self._default)

    def _ext_hook(self, code, data):
        if code == EXT_HANDLE and len(data) == 8:
            hid = _U64BE.unpack(data)[0]
            return Proxy(self, _Handle(self, hid, f"<handle {hid}>"), ())
        return msgpack.ExtType(code, data)

    def unpack(self, data):
        return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=self._ext_hook,
                               object_hook=_object_hook, use_list=True)

    # requests --------------------------------------------------------------
    def call(self, target: "Proxy", args, kwargs) -> "Proxy":
        failed = target._base if isinstance(target._base, _Failed) else None
        label = target._label() + "()"
        if failed is None:
            slot = next(self._slots)
            if slot >= SERVER_HANDLES:
                failed = _Failed(FramerpcError("this session has used all 2^32-1 call slots"))
        if failed is not None:
            return Proxy(self, failed, ())
        ids = self._take_releases()
        try:
            body = self.pack([ids, [[OP_CALL, slot, target._ref(), [self._arg(a) for a in args],
                                     {k: self._arg(v) for k, v in kwargs.items()}]], None])
        except _PoisonedArg as p:
            self._requeue(ids)
            return Proxy(self, p.failure, ())
        except (EncodeError, TypeError, ValueError, OverflowError) as e:
            self._requeue(ids)
            raise EncodeError(f"arguments of {label}: {e}") from None
        try:
            self.client.notify_raw(self.command, body)
        except FramerpcError as e:
            self._requeue(ids)
            return Proxy(self, _Failed(type(e)(f"call {label} was not sent: {e}") if isinstance(e, Disconnected)
                                       else e), ())
        self.notifies += 1
        return Proxy(self, _Handle(self, slot, label), ())

    def request(self, fetch: "Proxy | None", timeout=None, describe=False):
        """One CALL: queued releases, no calls, and the fetch (nil for ``sync``).

        For ``sync`` (no fetch), refusals not yet taken are raised as one
        :class:`RemoteError` and forgotten (each is reported once)."""
        ids = self._take_releases()
        ref = None if fetch is None else fetch._ref()
        if describe:
            ref.append([STEP_DESCRIBE, None])
        body = msgpack.packb([ids, [], ref], use_bin_type=True, default=self._default)
        label = "sync" if fetch is None else fetch._label()
        try:
            cid, w = self.client._start(self.command, body)
        except FramerpcError:
            self._requeue(ids)
            raise
        reply = self.client._finish(cid, w, timeout, label)
        value = self._open(self.unpack(reply))
        if fetch is None and self.refusals:
            refused = self.take_refusals()
            many = len(refused) > 1
            text = "; ".join(f"request {r.get('request')}: {r.get('message')}" for r in refused)
            raise RemoteError.from_code(
                int(refused[0].get("code", 2)),
                f"{len(refused)} one-way request{'s were' if many else ' was'} refused "
                f"(none of {'their' if many else 'its'} calls ran): {text}", "dynamic")
        return value

    def _open(self, v):
        """The reply envelope (a top-level ext 3): keeps the refusals, returns the value."""
        if not (isinstance(v, msgpack.ExtType) and v.code == EXT_ENVELOPE):
            return v
        refusals, unlisted, value = self.unpack(v.data)
        self.refusals.extend(refusals)
        if unlisted:
            self.refusals.append({"request": 0, "calls": 0, "slots": [], "code": 2,
                                  "message": f"{unlisted} more one-way requests were refused (the server lists 64)"})
        return value

    def take_refusals(self) -> list:
        """Refusal records (dicts: request, calls, slots, code, message) received and not yet taken."""
        out, self.refusals = self.refusals, []
        return out

    def root(self, name: str) -> "Proxy":
        return Proxy(self, _Root(name), ())


def _check_dtype(dt, what):
    if dt.str not in _DTYPES:
        raise EncodeError(f"{what} of dtype {dt} ({dt.str}) cannot cross the dynamic layer; "
                          f"it takes {', '.join(DTYPES)}")


class _PoisonedArg(Exception):
    def __init__(self, failure):
        self.failure = failure


def _object_hook(m):
    if _nd.is_ndarray_map(m):
        return _nd.decode_map(m)
    return m


class _Root:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


class _Handle:
    """Keeps a server handle alive; when the last proxy using it goes, its release is queued."""

    __slots__ = ("session", "id", "label", "__weakref__")

    def __init__(self, session, hid, label):
        self.session = session
        self.id = hid
        self.label = label

    def __del__(self):
        try:
            self.session._queue_release(self.id)
        except Exception:  # interpreter shutdown
            pass


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error


def _step_label(step):
    if step[0] == STEP_DESCRIBE:
        return ".<describe>"
    return f".{step[1]}" if step[0] == STEP_ATTR else f"[{step[1]!r}]"


class Proxy:
    """A lazy reference to a remote value. Never waits except in :func:`materialize`.

    ``p.name``, ``p[key]`` and ``p(*args, **kwargs)`` return new proxies at
    once; a call is sent at once and runs exactly once on the server, in the
    order calls were made on the connection.
    """

    __slots__ = ("_s", "_base", "_steps")

    def __init__(self, session, base, steps):
        object.__setattr__(self, "_s", session)
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_steps", steps)

    def _derive(self, step) -> "Proxy":
        if isinstance(self._base, _Failed):
            return self
        return Proxy(self._s, self._base, self._steps + (step,))

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__") or name.startswith(("_ipython", "_repr_")):
            raise AttributeError(name)
        return self._derive((STEP_ATTR, name))

    def __getitem__(self, key):
        if isinstance(key, (slice, Proxy)):
            raise TypeError("a proxy index must be plain data (int, str, ...), not a slice or a proxy")
        return self._derive((STEP_INDEX, key))

    def __call__(self, *args, **kwargs):
        return self._s.call(self, args, kwargs)

    def __setattr__(self, name, value):
        raise AttributeError("remote attributes are read-only through a proxy")

    def __iter__(self):
        raise TypeError(f"cannot iterate over a proxy ({self._label()}); framerpc.materialize() it first")

    def __repr__(self):
        return f"<framerpc.Proxy {self._label()}>"

    def _ref(self):
        b = self._base
        base = b.name if isinstance(b, _Root) else b.id
        return [base, *([k, v] for k, v in self._steps)]

    def _label(self):
        b = self._base
        if isinstance(b, _Root):
            s = b.name
        elif isinstance(b, _Handle):
            s = b.label
        else:
            s = "<failed>"
        return s + "".join(_step_label(st) for st in self._steps)


def is_proxy(x) -> bool:
    """True for a remote-object proxy."""
    return isinstance(x, Proxy)


def materialize(p, timeout: float | None = None):
    """The value of a proxy (one round trip); non-proxies are returned as they are.

    Objects inside the value come back as proxies; ndarrays as numpy arrays
    (nested lists without numpy). A failed call, or one that depends on it,
    raises that call's error (a :class:`RemoteError`)."""
    if not isinstance(p, Proxy):
        return p
    if isinstance(p._base, _Failed):
        raise p._base.error
    return p._s.request(p, timeout)


def describe(p, timeout: float | None = None) -> dict:
    """What a root, module, object, function or method declares (one round trip, nothing runs).

    Returns the decoded description of docs/DYNAMIC.md ("Describe"): a dict
    with ``kind``, ``name`` and, by kind, ``doc``, ``class``, ``type``,
    ``members`` (dicts with ``name``, ``kind``, ``params``, ``doc``...) and
    ``params`` (dicts ``name``, ``kind`` in ``positional_or_keyword``,
    ``keyword_only``, ``var_keyword``, and ``default`` when there is one).
    A failed call raises its error, as :func:`materialize` does."""
    if not isinstance(p, Proxy):
        raise TypeError(f"describe() takes a proxy, not {type(p).__name__}")
    if isinstance(p._base, _Failed):
        raise p._base.error
    return p._s.request(p, timeout, describe=True)
