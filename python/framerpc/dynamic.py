"""Remote objects through lazy, pipelined proxies (the server's dynamic layer).

``sim = client.root("sim")`` names a registered root; attribute access,
indexing and calls on a proxy return new proxies at once. A call is packed
at once, names the slot its result will have on the server (the client
numbers them), so later calls can use the result before it exists, and
waits in the session's batch: consecutive calls are ONE request on command
0xFF10. Only :func:`materialize` (and :meth:`Client.sync`, and a
description) sends a CALL and waits, and that CALL carries the batch: k
chained calls and one materialize cost one frame each way and one round
trip. A batch nobody fetches goes out as one NOTIFY (see :class:`Session`).

Requests are one msgpack array ``[releases, calls, fetch]``:
``releases`` handles no longer needed, ``calls`` ``[1, slot, ref, args,
kwargs]`` items, ``fetch`` nil or a ref; a ref is ``[base, step...]`` with
base a root name or a handle and steps ``[0, "attr"]`` or ``[1, key]``. A
proxy argument is ext type 1 holding its packed ref; a handle in a reply is
ext type 2 holding a u64 big-endian id. See docs/DYNAMIC.md.

Handles are released when Python drops the last proxy of a result: the id is
queued and rides on the next request (or :meth:`Client.flush_releases`).

A request the server refuses runs none of its calls, so a refusal covers
a whole batch. A refused CALL raises its error from the materialize (or
sync) that sent it. A refused NOTIFY is reported alongside the next REPLY
(ext type 3 ``[refusals, unlisted, value]``): the records, one per
request, are kept in :meth:`Session.take_refusals`, and
:meth:`Client.sync` raises them (once). :func:`describe` returns what a
root, object, function or method declares (the ``[2, nil]`` step).
"""

from __future__ import annotations

import copy
import inspect
import itertools
import struct
import sys
import threading
import types

import msgpack

from . import ndarray as _nd
from .errors import EncodeError, FramerpcError, FrameTooLarge, RemoteError

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
_ndarray = np.ndarray if np is not None else None
_ARRAY_HEADS = [bytes([0x90 | i]) for i in range(16)]
_ND_HEADS: dict = {}  # (dtype, shape) -> the packed ndarray map up to its data
_NOTIFY = struct.Struct("<IBBHI")


def _bin_head(n: int) -> bytes:
    """The msgpack bin header of ``n`` bytes."""
    if n < 0x100:
        return bytes((0xC4, n))
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _NOTIFY_HEAD(n: int, cmd: int) -> bytes:
    return _NOTIFY.pack(n, 4, 0, cmd, 0)


class Session:
    """The dynamic layer on one client connection (``client.session``).

    Proxied calls are batched: each call is packed at once (its arguments
    are captured when it is made) and waits in the session's batch. The
    batch is ONE request: a dynamic CALL (materialize, sync, describe)
    carries it, ``[releases, calls, fetch]``, so k calls and a fetch are one
    frame and one round trip; otherwise it goes out as a NOTIFY
    ``[releases, calls, nil]`` when something forces it out: any other frame
    on the connection, :attr:`MAX_CALLS` calls or :attr:`MAX_BYTES` bytes of
    packed calls, :meth:`flush`, or the client's timer (the blocking
    client's keeper within 20 ms; the asyncio client on the loop's next
    turn). The server refuses or runs a request whole, so a refusal covers
    every call of its batch: a refused CALL raises its error (none of its
    calls ran) and a refused NOTIFY is kept for :meth:`take_refusals`."""

    #: a batch holding this many calls goes out at once
    MAX_CALLS = 64
    #: a batch holding this many bytes of packed calls goes out at once
    MAX_BYTES = 64 << 10

    def __init__(self, client, command: int = DYNAMIC):
        self.client = client
        self.command = command
        self._slots = itertools.count(1)
        self._rlock = threading.Lock()
        self.releases: list[int] = []
        self.refusals: list[dict] = []
        #: dynamic requests sent as NOTIFY (batches of calls, or releases alone)
        self.notifies = 0
        # Descriptions of root-based refs, by (root, steps); those of
        # handle-based refs live on the handle. One session per connection:
        # a reconnect starts over.
        self._described: dict = {}
        self._can_wait = hasattr(client, "_finish")  # the asyncio client fetches with aio.describe
        # The batch: packed calls, their byte count, and the handles they use
        # (kept alive until the batch is sent, so no release of a handle the
        # batch names can be queued before the batch goes out).
        self._lock = threading.Lock()
        self._pend: list[bytes] = []
        self._pend_bytes = 0
        self._keep: list = []
        self._packer = msgpack.Packer(use_bin_type=True, default=self._default, autoreset=True)
        self._max_frame = getattr(client, "max_frame_len", None) or (1 << 62)
        self._limit = min(self.MAX_BYTES, self._max_frame - 64)  # a batch over this goes out first
        # the inlined path takes calls that leave the batch below both bounds
        self._fast_calls = self.MAX_CALLS - 1
        self._fast_bytes = min(self.MAX_BYTES, self._limit)
        self._arm = getattr(client, "arm", None)  # called when a batch starts (the asyncio timer)

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
        """Sends queued releases (and any batched calls) now as one NOTIFY
        (they otherwise ride on the next request)."""
        with self._lock:
            if not self.releases and not self._pend:
                return
            self._send_batch_locked()

    # the batch ------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Calls made and not sent yet (they go out with the next request)."""
        return len(self._pend)

    def flush(self) -> None:
        """Sends the batched calls now (one NOTIFY; nothing when there are none)."""
        if self._pend:
            with self._lock:
                if self._pend:
                    self._send_batch_locked()

    def _send_batch_locked(self) -> None:
        """Sends the batch (and the queued releases) as one NOTIFY. Under ``_lock``."""
        calls, keep = self._pend, self._keep
        self._pend, self._keep = [], []
        nbytes, self._pend_bytes = self._pend_bytes, 0
        ids = self._take_releases()
        rel = self._packer.pack(ids) if ids else b"\x90"
        n = len(calls)
        head = _ARRAY_HEADS[n] if n < 16 else b"\xdc" + n.to_bytes(2, "big")
        size = 2 + len(rel) + len(head) + nbytes
        try:
            self.client.send_dynamic(b"".join([_NOTIFY_HEAD(size, self.command), b"\x93", rel, head, *calls,
                                               b"\xc0"]))
        except FramerpcError:
            self._requeue(ids)  # the calls are lost with the connection; their proxies fail there
            raise
        finally:
            del keep  # releases of handles only this batch used are queued now, for the next request
        self.notifies += 1

    def _request_body_locked(self, ref):
        """A CALL's payload: the queued releases, the batch's calls (they go
        with the fetch: one request) and ``ref`` (None: nil). Under ``_lock``.
        Returns ``(body, ids, calls, keep)``; the caller drops ``keep`` once
        the body is sent and puts ``ids`` and ``calls`` back if it could not be."""
        calls, keep = self._pend, self._keep
        if calls:
            self._pend, self._keep = [], []
            self._pend_bytes = 0
        ids = self._take_releases()
        P = self._packer
        n = len(calls)
        try:
            body = b"".join((b"\x93", P.pack(ids) if ids else b"\x90",
                             _ARRAY_HEADS[n] if n < 16 else b"\xdc" + n.to_bytes(2, "big"), *calls,
                             P.pack(ref) if ref is not None else b"\xc0"))
        except BaseException:
            P.reset()
            self._unsent_locked(ids, calls, keep)
            raise
        return body, ids, calls, keep

    def _unsent_locked(self, ids, calls, keep) -> None:
        """A request body that was not sent: its releases and calls wait for the next one."""
        self._requeue(ids)
        if calls:
            self._pend[:0] = calls
            self._pend_bytes += sum(map(len, calls))
            self._keep[:0] = keep

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
        if np is not None:
            if obj.__class__ is _ndarray:
                if obj.dtype.str not in _DTYPES:
                    _check_dtype(obj.dtype, "ndarray")
                if not obj.flags.c_contiguous:
                    obj = np.ascontiguousarray(obj)
                return {b"nd": True, b"type": obj.dtype.str, b"kind": b"", b"shape": list(obj.shape),
                        b"data": obj.tobytes()}
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
        base = target._base
        bcls = base.__class__
        if bcls is _Handle and len(args) == 1 and not kwargs:
            # The common case, inlined: a method of a remote object called with
            # one C-ordered array of a dtype and shape seen before (an action),
            # joining a batch that has room.
            a = args[0]
            if a.__class__ is _ndarray and a.flags.c_contiguous:
                head = _ND_HEADS.get((a.dtype, a.shape))
                if head is not None:
                    steps = target._steps
                    P = self._packer
                    with self._lock:
                        pend = self._pend
                        if 0 < len(pend) < self._fast_calls:
                            slot = next(self._slots)
                            item = b"".join((b"\x95\x01", P.pack(slot), P.pack((base.id, *steps)), b"\x91", head,
                                             a.tobytes(), b"\x80"))
                            nb = self._pend_bytes + len(item)
                            if nb < self._fast_bytes and slot < SERVER_HANDLES:
                                h = _new(_Handle)
                                _set_hs(h, self)
                                _set_hid(h, slot)
                                _set_hlbl(h, (base._lbl, steps))
                                _set_hdesc(h, None)
                                pend.append(item)
                                self._pend_bytes = nb
                                self._keep += (h, base)
                                p = _new(Proxy)
                                _set_s(p, self)
                                _set_base(p, h)
                                _set_steps(p, ())
                                _set_kids(p, None)
                                return p
                            return self._enqueue_locked(target, base, bcls, steps, base._lbl, slot, item, None)
        if bcls is _Failed:
            return _proxy(Proxy, self, base, ())
        keep = None
        for x in args:
            if isinstance(x, Proxy):
                args, keep = self._resolve_args(target, args, keep)
                if args.__class__ is Proxy:
                    return args  # a failed argument poisons the call
                break
        if kwargs:
            for x in kwargs.values():
                if isinstance(x, Proxy):
                    kwargs, keep = self._resolve_args(target, kwargs, keep)
                    if kwargs.__class__ is Proxy:
                        return kwargs
                    break
        steps = target._steps
        if bcls is _Handle:
            ref = (base.id, *steps)
            lbl = base._lbl
        else:
            ref = (base.name, *steps)
            lbl = base.name
        with self._lock:
            slot = next(self._slots)
            if slot >= SERVER_HANDLES:
                return _proxy(Proxy, self, _Failed(FramerpcError("this session has used all 2^32-1 call slots")), ())
            P = self._packer
            try:
                if len(args) == 1 and args[0].__class__ is _ndarray and not kwargs:  # one array (an action)
                    a = args[0]
                    head = _ND_HEADS.get((a.dtype, a.shape)) if a.flags.c_contiguous else None
                    if head is not None:
                        item = b"".join((b"\x95\x01", P.pack(slot), P.pack(ref), b"\x91", head, a.tobytes(),
                                         b"\x80"))
                    else:
                        item = b"".join((b"\x95\x01", P.pack(slot), P.pack(ref), self._pack_args(args), b"\x80"))
                else:
                    item = b"".join((b"\x95\x01", P.pack(slot), P.pack(ref), self._pack_args(args),
                                     self._pack_kwargs(kwargs) if kwargs else b"\x80"))
            except (EncodeError, TypeError, ValueError, OverflowError) as e:
                P.reset()
                raise EncodeError(f"arguments of {target._label()}(): {e}") from None
            return self._enqueue_locked(target, base, bcls, steps, lbl, slot, item, keep)

    def _enqueue_locked(self, target, base, bcls, steps, lbl, slot, item, keep) -> "Proxy":
        """Puts a packed call into the batch (sending the batch when it is
        full) and returns its proxy. Under ``_lock``."""
        if slot >= SERVER_HANDLES:
            return _proxy(Proxy, self, _Failed(FramerpcError("this session has used all 2^32-1 call slots")), ())
        n = len(item)
        pend = self._pend
        nb = self._pend_bytes + n
        if nb > self._limit:
            if n + 64 > self._max_frame:
                return _proxy(Proxy, self, _Failed(FrameTooLarge(n + 64, self._max_frame)), ())
            if pend:
                self._send_quietly()  # what came before goes first; this call starts the next batch
                pend = self._pend
                nb = n
        if not pend and self._arm is not None:
            self._arm()
        h = _new(_Handle)
        _set_hs(h, self)
        _set_hid(h, slot)
        _set_hlbl(h, (lbl, steps))
        _set_hdesc(h, None)
        pend.append(item)
        self._pend_bytes = nb
        if bcls is _Handle:
            self._keep += (h, base)
        else:
            self._keep.append(h)
        if keep is not None:
            self._keep.extend(keep)
        if nb >= self.MAX_BYTES or len(pend) >= self.MAX_CALLS:
            self._send_quietly()
        p = _new(Proxy)
        _set_s(p, self)
        _set_base(p, h)
        _set_steps(p, ())
        _set_kids(p, None)
        return p

    def _resolve_args(self, target, args, keep):
        """Arguments (a tuple or a dict) with each proxy turned into an ext 1
        reference; the handles they name are added to ``keep``. Returns a
        failed proxy instead when an argument is one."""
        items = args.items() if isinstance(args, dict) else enumerate(args)
        out = {} if isinstance(args, dict) else list(args)
        keep = [] if keep is None else keep
        for k, x in items:
            if isinstance(x, Proxy):
                try:
                    out[k] = self._arg(x)
                except _PoisonedArg as p:
                    return _proxy(Proxy, self, p.failure, ()), keep
                except (EncodeError, TypeError, ValueError, OverflowError) as e:
                    raise EncodeError(f"arguments of {target._label()}(): {e}") from None
                keep.append(x._base)
            else:
                out[k] = x
        return out, keep

    def _pack_args(self, a) -> bytes:
        """The msgpack array of a call's arguments (under ``_lock``: the session's packer)."""
        for x in a:
            if x.__class__ is _ndarray:
                break
        else:
            return self._packer.pack(a)
        n = len(a)
        parts = [_ARRAY_HEADS[n] if n < 16 else self._array_head(n)]
        for x in a:
            parts.append(self._pack_nd(x) if x.__class__ is _ndarray else self._packer.pack(x))
        return b"".join(parts)

    def _pack_kwargs(self, kw) -> bytes:
        for x in kw.values():
            if x.__class__ is _ndarray:
                break
        else:
            return self._packer.pack(kw)
        P = self._packer
        n = len(kw)
        parts = [bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")]
        for k, x in kw.items():
            parts.append(P.pack(k))
            parts.append(self._pack_nd(x) if x.__class__ is _ndarray else P.pack(x))
        return b"".join(parts)

    @staticmethod
    def _array_head(n) -> bytes:
        return b"\xdc" + n.to_bytes(2, "big") if n < 0x10000 else b"\xdd" + n.to_bytes(4, "big")

    def _pack_nd(self, a) -> bytes:
        """An ndarray as msgpack-numpy's map, the bytes before its data kept per dtype and shape."""
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        key = (a.dtype, a.shape)
        head = _ND_HEADS.get(key)
        if head is None:
            if a.dtype.str not in _DTYPES:
                _check_dtype(a.dtype, "ndarray")
            P = self._packer
            head = b"".join((b"\x85", P.pack(b"nd"), b"\xc3", P.pack(b"type"), P.pack(a.dtype.str),
                             P.pack(b"kind"), P.pack(b""), P.pack(b"shape"), P.pack(list(a.shape)),
                             P.pack(b"data"), _bin_head(a.nbytes)))
            if len(_ND_HEADS) < 256:
                _ND_HEADS[key] = head
        return head + a.tobytes()

    def _send_quietly(self) -> None:
        """Sends the batch from a call: a call never raises for the connection
        (its proxy fails where it is used, as the connection's end says)."""
        try:
            self._send_batch_locked()
        except FramerpcError:
            pass

    def request(self, fetch: "Proxy | None", timeout=None, describe=False):
        """One CALL: the queued releases, the batched calls and the fetch (nil
        for ``sync``), one request.

        For ``sync`` (no fetch), refusals not yet taken are raised as one
        :class:`RemoteError` and forgotten (each is reported once)."""
        ref = None if fetch is None else fetch._ref()
        if describe:
            ref.append([STEP_DESCRIBE, None])
        label = "sync" if fetch is None else None
        with self._lock:
            body, ids, calls, keep = self._request_body_locked(ref)
            try:
                cid, w = self.client._start(self.command, body)
            except FrameTooLarge:
                # the batch and the fetch do not fit one frame: the batch goes first, on its own
                self._unsent_locked(ids, calls, keep)
                self._send_batch_locked()
                body, ids, calls, keep = self._request_body_locked(ref)
                try:
                    cid, w = self.client._start(self.command, body)
                except BaseException:
                    self._unsent_locked(ids, calls, keep)
                    raise
            except BaseException:
                self._unsent_locked(ids, calls, keep)
                raise
        del keep  # releases of handles only the batch used are queued now, for the next request
        reply = self.client._finish(cid, w, timeout, label or fetch._label)
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

    # descriptions ------------------------------------------------------------
    @staticmethod
    def _cache_of(p: "Proxy"):
        """(dict, key) where ``p``'s description is kept, or None (a failed proxy, an unhashable index)."""
        b = p._base
        try:
            hash(p._steps)
        except TypeError:
            return None
        if isinstance(b, _Root):
            return p._s._described, (b.name, p._steps)
        if isinstance(b, _Handle):
            if b.described is None:
                b.described = {}
            return b.described, p._steps
        return None

    def known(self, p: "Proxy") -> dict | None:
        """``p``'s description if this connection has it already (no I/O)."""
        b = p._base
        cls = b.__class__
        try:
            if cls is _Handle:
                d = b.described
                return None if d is None else d.get(p._steps)
            if cls is _Root:
                d = self._described
                return d.get((b.name, p._steps)) if d else None
        except TypeError:  # an unhashable index
            return None
        return None

    def remember(self, p: "Proxy", d: dict) -> None:
        """Keeps ``p``'s description, and those its members carry (a function's
        or method's params come with its module's or object's description)."""
        where = self._cache_of(p)
        if where is None or not isinstance(d, dict):
            return
        where[0][where[1]] = d
        if d.get("kind") in ("module", "object"):
            for m in d.get("members") or ():
                if not isinstance(m, dict):
                    continue
                full = f"{d.get('name')}.{m.get('name')}"
                if m.get("kind") in ("function", "method") and "params" in m:
                    child = {**m, "name": full}
                elif m.get("kind") == "constant" and "type" in m:
                    child = {"kind": "value", "name": full, "type": m["type"]}  # as describe says it
                else:
                    continue  # a submodule's or object's members are not in it
                cw = self._cache_of(p._derive((STEP_ATTR, m.get("name"))))
                if cw is not None and cw[1] not in cw[0]:
                    cw[0][cw[1]] = child

    def description(self, p: "Proxy", timeout=None) -> dict:
        """``p``'s description: the known one, else fetched (one round trip, nothing runs) and kept."""
        d = self.known(p)
        if d is not None:
            return d
        if not self._can_wait:
            raise FramerpcError(f"the description of {p._label()} is not known yet on this asyncio "
                                "connection: await framerpc.aio.describe(proxy) first")
        d = self.request(p, timeout, describe=True)
        self.remember(p, d)
        return d


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
    """Keeps a server handle alive; when the last proxy using it goes, its release is queued.

    Its label (``sim.make().step()``, for messages) is made when first asked:
    ``_lbl`` is a str, or ``(parent's _lbl, steps)`` for a call's result."""

    __slots__ = ("session", "id", "_lbl", "described", "__weakref__")

    def __init__(self, session, hid, label):
        self.session = session
        self.id = hid
        self._lbl = label
        self.described = None  # steps -> description, once asked

    @property
    def label(self) -> str:
        lbl = self._lbl
        if lbl.__class__ is not str:
            lbl = self._lbl = _resolve_label(lbl)
        return lbl

    def __del__(self):
        try:
            self.session.releases.append(self.id)  # as _queue_release, one call less
        except Exception:  # interpreter shutdown
            pass


def _lbl_of(base):
    """What a call's result keeps of its target's base for its label (no reference to a handle)."""
    cls = base.__class__
    if cls is _Root:
        return base.name
    if cls is _Handle:
        return base._lbl
    return "<failed>"


def _resolve_label(lbl) -> str:
    """The text of a lazy label: ``(parent, steps)`` pairs down to a str (no recursion)."""
    chain = []
    while lbl.__class__ is not str:
        lbl, steps = lbl
        chain.append(steps)
    for steps in reversed(chain):
        lbl = lbl + "".join(_step_label(st) for st in steps) + "()"
    return lbl


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error


def _step_label(step):
    if step[0] == STEP_DESCRIBE:
        return ".<describe>"
    return f".{step[1]}" if step[0] == STEP_ATTR else f"[{step[1]!r}]"


_CONTAINERS = ("module", "object")
_CALLABLES = ("function", "method")


class Proxy:
    """A lazy reference to a remote value. Never waits except in :func:`materialize`
    and in the questions that need its description (below).

    ``p.name``, ``p[key]`` and ``p(*args, **kwargs)`` return new proxies at
    once; a call is sent at once and runs exactly once on the server, in the
    order calls were made on the connection.

    What the server declares (:func:`describe`) makes a proxy feel local:
    ``dir(p)`` lists the declared members, ``help(p)`` and ``p.__doc__``
    show the doc strings and parameters, ``inspect.signature(p)`` is the
    declared signature. Those fetch the description once (one round trip,
    nothing runs; kept for the connection, lost at a reconnect). Once a
    description is known, a member the server does not declare raises
    AttributeError (so ``hasattr`` is False) and a call whose arguments do
    not fit the declared parameters raises TypeError, both locally, nothing
    sent. Attribute access and calls never fetch a description themselves:
    chained calls stay one-way and pipelined.
    """

    __slots__ = ("_s", "_base", "_steps", "_kids")

    def __init__(self, session, base, steps):
        _set_s(self, session)
        _set_base(self, base)
        _set_steps(self, steps)
        _set_kids(self, None)

    def _derive(self, step) -> "Proxy":
        if self._base.__class__ is _Failed:
            return self
        cls = Proxy
        if step[0] == STEP_ATTR:
            d = self._s.known(self)
            if d is not None:
                kind = _member_kind(d, step[1])
                if kind is None:
                    raise AttributeError(_no_member(self, d, step[1]))
                if kind in _CALLABLES:
                    cls = RemoteFunction
        return _proxy(cls, self._s, self._base, self._steps + (step,))

    def __getattr__(self, name):
        if name[:1] == "_" and (name.startswith("__") and name.endswith("__")
                                or name.startswith(("_ipython", "_repr_"))):
            raise AttributeError(name)
        b = self._base
        if b.__class__ is _Handle and b.described is None:
            # The common case, inlined: nothing known about the value. The
            # member's proxy is kept on this one (no cycle: it names the
            # handle, not this proxy), so env.step in a loop is made once.
            kids = self._kids
            if kids is None:
                kids = {}
                _set_kids(self, kids)
            else:
                p = kids.get(name)
                if p is not None:
                    return p
            p = _new(Proxy)
            _set_s(p, self._s)
            _set_base(p, b)
            _set_steps(p, (*self._steps, (STEP_ATTR, name)))
            _set_kids(p, None)
            if len(kids) < 64:
                kids[name] = p
            return p
        return self._derive((STEP_ATTR, name))

    def __getitem__(self, key):
        if isinstance(key, (slice, Proxy)):
            raise TypeError("a proxy index must be plain data (int, str, ...), not a slice or a proxy")
        return self._derive((STEP_INDEX, key))

    def __call__(self, *args, **kwargs):
        s = self._s
        b = self._base
        if b.__class__ is not _Handle or b.described is not None:
            d = s.known(self)
            if d is not None:
                _check_call(self, d, args, kwargs)
        return s.call(self, args, kwargs)

    def __setattr__(self, name, value):
        raise AttributeError("remote attributes are read-only through a proxy")

    def __iter__(self):
        raise TypeError(f"cannot iterate over a proxy ({self._label()}); framerpc.materialize() it first")

    def __repr__(self):
        return f"<framerpc.Proxy {self._label()}>"

    # what the server declares ------------------------------------------------------
    def _description(self) -> dict:
        if isinstance(self._base, _Failed):
            raise self._base.error
        return self._s.description(self)

    def __dir__(self):
        d = self._description()
        if d.get("kind") in _CONTAINERS:
            return sorted(m["name"] for m in d.get("members") or () if isinstance(m, dict) and "name" in m)
        return []

    @property
    def __doc__(self):
        if isinstance(self._base, _Failed):
            return f"a failed remote value: {self._base.error}"
        return _doc_text(self._description())

    @property
    def __signature__(self):
        if isinstance(self._base, _Failed):
            raise AttributeError("__signature__")
        sig = _signature(self._description())
        if sig is None:
            raise AttributeError("__signature__")  # inspect.signature then says it has none
        return sig

    @property
    def __name__(self):
        if self._steps and self._steps[-1][0] == STEP_ATTR:
            return str(self._steps[-1][1])
        return self._label()

    def _ref(self):
        b = self._base
        return [b.name if b.__class__ is _Root else b.id, *map(list, self._steps)]

    def _label(self):
        b = self._base
        if isinstance(b, _Root):
            s = b.name
        elif isinstance(b, _Handle):
            s = b.label
        else:
            s = "<failed>"
        return s + "".join(_step_label(st) for st in self._steps)


class RemoteFunction(Proxy):
    """A proxy of a function or method the server declares: Python's
    introspection (``inspect.isroutine``, ``help``, pydoc) treats it as a
    routine. Calling it sends the call, as any proxy."""

    __slots__ = ()

    @property
    def __doc__(self):  # the declared doc string (pydoc shows the signature itself)
        if isinstance(self._base, _Failed):
            return f"a failed remote value: {self._base.error}"
        d = self._description()
        return d.get("doc") if d.get("kind") in _CALLABLES else _doc_text(d)

    def __get__(self, obj, objtype=None):
        return self  # never bound: stored on a class or a module it stays the remote function


_set_s, _set_base, _set_steps, _set_kids = (Proxy._s.__set__, Proxy._base.__set__, Proxy._steps.__set__,
                                            Proxy._kids.__set__)
_new = object.__new__
_set_hs, _set_hid, _set_hlbl, _set_hdesc = (_Handle.session.__set__, _Handle.id.__set__, _Handle._lbl.__set__,
                                            _Handle.described.__set__)


def _proxy(cls, session, base, steps) -> Proxy:
    """A new proxy without the cost of __init__ (its slots are set directly)."""
    p = _new(cls)
    _set_s(p, session)
    _set_base(p, base)
    _set_steps(p, steps)
    _set_kids(p, None)
    return p


def _member_kind(d: dict, name) -> str | None:
    """The kind of member ``name`` of a described value, None if not declared."""
    if d.get("kind") not in _CONTAINERS:
        return None
    for m in d.get("members") or ():
        if isinstance(m, dict) and m.get("name") == name:
            return m.get("kind") or "value"
    return None


def _no_member(p: Proxy, d: dict, name) -> str:
    kind = d.get("kind")
    if kind in _CONTAINERS:
        names = [m.get("name") for m in d.get("members") or () if isinstance(m, dict)]
        return (f"{p._label()} ({kind} {d.get('class') or d.get('name')}) has no member {name!r}; "
                f"the server declares {', '.join(map(str, names)) or 'none'}")
    return f"{p._label()} is a {kind} and has no members (asked for {name!r})"


_KINDS = {
    "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "keyword_only": inspect.Parameter.KEYWORD_ONLY,
    "var_keyword": inspect.Parameter.VAR_KEYWORD,
}


def _signature(d: dict) -> inspect.Signature | None:
    """The Python signature of a described function or method (None for other kinds
    or a parameter kind this client does not know)."""
    if not isinstance(d, dict) or d.get("kind") not in _CALLABLES:
        return None
    params = []
    for p in d.get("params") or ():
        kind = _KINDS.get(p.get("kind"))
        if kind is None or not isinstance(p.get("name"), str) or not p["name"].isidentifier():
            return None
        default = p["default"] if "default" in p and kind is not inspect.Parameter.VAR_KEYWORD \
            else inspect.Parameter.empty
        params.append(inspect.Parameter(p["name"], kind, default=default))
    try:
        return inspect.Signature(params)
    except ValueError:  # an order Python would not declare (a required one after a default): as declared
        return inspect.Signature(params, __validate_parameters__=False)


def _check_call(p: Proxy, d: dict, args, kwargs) -> None:
    kind = d.get("kind")
    if kind in ("module", "value"):
        raise TypeError(f"{p._label()} is a {kind}, not callable")
    sig = _signature(d)
    if sig is None:
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{p._label()}{sig}: {e}") from None


def _doc_text(d: dict) -> str:
    """The text ``help()`` shows for a description."""
    kind, name = d.get("kind"), d.get("name")
    lines = []
    if kind in _CALLABLES:
        sig = _signature(d)
        head = f"{name}{sig if sig is not None else '(...)'}"
        if kind == "method":
            head += f"  (method of {d.get('class')})"
        lines += [head, ""]
        if d.get("doc"):
            lines.append(d["doc"])
        return "\n".join(lines).rstrip()
    if kind == "value":
        return f"{name}: a remote {d.get('type')} value"
    what = f"remote module {name}" if kind == "module" else f"remote {d.get('class')} object {name}"
    lines.append(what)
    if d.get("doc"):
        lines += ["", d["doc"]]
    members = [m for m in d.get("members") or () if isinstance(m, dict)]
    if members:
        lines += ["", "Members:"]
        for m in members:
            mk = m.get("kind")
            if mk in _CALLABLES:
                sig = _signature(m)
                lines.append(f"    {m.get('name')}{sig if sig is not None else '(...)'}")
                if m.get("doc"):
                    lines.append(f"        {m['doc']}")
            elif mk == "constant":
                lines.append(f"    {m.get('name')}: constant ({m.get('type')})")
            elif mk == "object":
                lines.append(f"    {m.get('name')}: {m.get('class')} object")
            else:
                lines.append(f"    {m.get('name')}: {mk}")
    return "\n".join(lines)


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
    A failed call raises its error, as :func:`materialize` does. Fetched
    once per remote value and connection (later calls answer from memory).
    Knowing it, the proxy checks member names and call arguments locally."""
    if not isinstance(p, Proxy):
        raise TypeError(f"describe() takes a proxy, not {type(p).__name__}")
    if isinstance(p._base, _Failed):
        raise p._base.error
    return copy.deepcopy(p._s.description(p, timeout))


def remote_module(client, name: str, *, register: bool | str = False, timeout: float | None = None):
    """The server's root ``name`` as a Python module object (:class:`types.ModuleType`).

    Its functions are callable proxies (:class:`RemoteFunction`) with the
    declared signatures and doc strings (``help(mod)``, ``inspect.signature``,
    arguments checked locally); calling one sends the call and returns a
    proxy, as ``client.root(name).f(...)`` does. Constants are fetched
    once, as plain values; submodules become modules of their own; other
    members stay proxies. ``__all__`` lists the declared members, nothing
    else is there.

    One description per module (round trips: one per module and submodule,
    one per constant), taken from the client's current connection: after a
    reconnect, call it again. ``sys.modules`` is left alone unless
    ``register`` is True (registered under ``name``) or a str (under that
    name), so ``import`` finds it.
    """
    mod = _module_of(client.root(name), name, timeout)
    if register:
        sys.modules[name if register is True else register] = mod
    return mod


def _module_of(proxy: Proxy, name: str, timeout) -> types.ModuleType:
    d = proxy._s.description(proxy, timeout)
    if d.get("kind") != "module":
        raise TypeError(f"{proxy._label()} is a {d.get('kind')}, not a module")
    mod = types.ModuleType(name, d.get("doc"))
    names = []
    constants = []
    for m in d.get("members") or ():
        mname, kind = m.get("name"), m.get("kind")
        if not isinstance(mname, str) or not mname.isidentifier():
            continue
        member = proxy._derive((STEP_ATTR, mname))
        if kind == "module":
            value = _module_of(member, f"{name}.{mname}", timeout)
        elif kind == "constant":
            constants.append((mname, member))
            continue
        else:
            value = member
        setattr(mod, mname, value)
        names.append(mname)
    for mname, member in constants:
        setattr(mod, mname, materialize(member, timeout))
        names.append(mname)
    mod.__all__ = sorted(names)
    mod._framerpc_proxy = proxy
    return mod
