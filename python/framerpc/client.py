"""The blocking client: shareable across threads, calls in both directions,
reconnects when asked to.

Each call takes a call id, registers a waiter and writes its frame in one
write. Reading has no thread of its own on the common path: a caller whose
connection nobody is reading reads its own reply (routing whatever else
arrives), so one caller at a time costs no hand-off between threads. A
keeper thread per connection reads while the connection is idle (the
server's calls and NOTIFYs, heartbeats, the end of the connection) and
while calls wait whose callers are not reading. Calls from the server run
on handler threads, never on a thread that reads.

A call that times out or is interrupted (any exception, KeyboardInterrupt
included) sends CANCEL and forgets its id, so its late reply is dropped
(counted in :attr:`Client.stray_replies`) and never reaches another call;
the client stays usable. An exception in the middle of writing or reading
a frame closes the connection instead (a partial frame is never followed
by another).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import queue
import random
import struct
import threading
from math import inf
from time import monotonic
from typing import NamedTuple

from . import frame as fr
from .errors import (
    BadPayload,
    Busy,
    CallTimeout,
    DecodeError,
    Disconnected,
    EncodeError,
    FrameTooLarge,
    FramerpcError,
    ProtocolViolation,
    RemoteError,
    UnknownCommand,
)
from .hold import Hold, check_name, decode_shared, default_name, wait_payload
from .schema import Codec, Tuple, Unit, compile_schema
from .transport import TICK, FrameOverLimit, TcpTransport, WsTransport, make_ssl_context, parse_address

log = logging.getLogger("framerpc")

_HDR = fr.HEADER
_STATUS = struct.Struct("<III")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

DEFAULT_TIMEOUT = 30.0


class Status(NamedTuple):
    """Admission status of a server: connections holding the device, the
    limit, connections waiting for it now."""

    active: int
    max: int
    waiting: int


class CommandInfo(NamedTuple):
    """One row of the command table ``list`` returns."""

    id: int
    name: str
    request: str
    response: str


class _Waiter:
    """One call waiting for its answer. ``lock`` (made only when the caller
    has to wait while another thread reads) is held until the answer (or a
    nudge to take over reading) comes; ``signaled`` says one came; ``done``
    and ``frame`` are set under the connection's pending lock."""

    __slots__ = ("lock", "frame", "cmd", "done", "signaled")

    def __init__(self, cmd):
        self.lock = None
        self.frame = None
        self.cmd = cmd
        self.done = False
        self.signaled = False

    def wake(self):  # under the pending lock
        if not self.signaled:
            self.signaled = True
            if self.lock is not None:
                self.lock.release()


class _Command:
    __slots__ = ("info", "req", "resp", "arity")

    def __init__(self, info: CommandInfo):
        self.info = info
        self.req: Codec = compile_schema(info.request)
        self.resp: Codec = compile_schema(info.response)
        if isinstance(self.req, Unit):
            self.arity = 0
        elif isinstance(self.req, Tuple):
            self.arity = len(self.req.items)
        else:
            self.arity = -1  # exactly one argument

    def encode_args(self, args) -> bytes:
        info, req = self.info, self.req
        try:
            if self.arity == 0:
                if args and args != (None,):
                    raise EncodeError(f"takes no arguments, got {len(args)}")
                return bytearray(12)
            if self.arity > 0:
                if len(args) != self.arity:
                    if len(args) == 1 and isinstance(args[0], (list, tuple)) and len(args[0]) == self.arity:
                        args = args[0]
                    else:
                        raise EncodeError(f"takes {self.arity} argument(s), got {len(args)}")
                value = args
            else:
                if len(args) != 1:
                    raise EncodeError(f"takes 1 argument, got {len(args)}")
                value = args[0]
            out = bytearray(12)  # the frame header goes here (see _start_frame)
            req.enc(value, out)
            return out
        except EncodeError as e:
            raise EncodeError(
                f"{info.name} (id {info.id}) expects {info.request} -> {info.response}: {e}"
            ) from None


def decode_list(p) -> list[CommandInfo]:
    """The command table from a ``list`` reply payload."""
    mv = memoryview(p)
    if len(mv) < 2:
        raise DecodeError("list reply shorter than its u16 count")
    (n,) = _U16.unpack_from(mv, 0)
    pos = 2
    s = compile_schema("str")
    rows = []
    for _ in range(n):
        if len(mv) - pos < 2:
            raise DecodeError("list reply truncated in a command id")
        (cid,) = _U16.unpack_from(mv, pos)
        name, pos = s.dec(mv, pos + 2)
        req, pos = s.dec(mv, pos)
        resp, pos = s.dec(mv, pos)
        rows.append(CommandInfo(cid, name, req, resp))
    if pos != len(mv):
        raise DecodeError(f"{len(mv) - pos} trailing byte(s) after the list reply")
    return rows


def encode_list(rows) -> bytes:
    """A ``list`` reply payload (the inverse of :func:`decode_list`)."""
    s = compile_schema("str")
    out = bytearray(_U16.pack(len(rows)))
    for r in rows:
        out += _U16.pack(r[0])
        for x in r[1:4]:
            s.enc(x, out)
    return bytes(out)




#: A connection with no call started for this long is its keeper's to read.
IDLE = 0.02

FAIL_FAST = "fail_fast"
WAIT = "wait"


class Reconnect:
    """How a client reconnects (the Rust client's ``Reconnect``); every
    argument states its default.

    ``initial_delay`` (0.1 s) is the first wait before dialing again; it
    doubles after each failed attempt up to ``max_delay`` (5 s), and each
    wait is drawn between 50% and 100% of that (jitter, so clients do not
    come back in step). ``max_attempts`` (None: never give up) bounds the
    failed attempts in a row. ``during_outage``: ``"fail_fast"`` (default)
    makes calls fail at once with :class:`Disconnected` while the client is
    down; ``"wait"`` makes them wait for the reconnect within their own
    timeout. Calls in flight when the connection breaks fail with
    :class:`Disconnected` and are never replayed; the token is sent again
    on every new connection; proxies made before a reconnect fail clearly.
    """

    def __init__(self, initial_delay: float = 0.1, max_delay: float = 5.0, max_attempts: int | None = None,
                 during_outage: str = FAIL_FAST):
        if during_outage not in (FAIL_FAST, WAIT):
            raise ValueError(f"during_outage is {FAIL_FAST!r} or {WAIT!r}, not {during_outage!r}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts is None or at least 1")
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.during_outage = during_outage

    def delay(self, attempt: int, rnd: float | None = None) -> float:
        """The wait before attempt ``attempt`` (0-based): exponential, capped, jittered."""
        base = min(self.initial_delay * (1 << min(attempt, 20)), self.max_delay)
        return base * (0.5 + 0.5 * (random.random() if rnd is None else rnd))

    def __repr__(self):
        return (f"Reconnect(initial_delay={self.initial_delay}, max_delay={self.max_delay}, "
                f"max_attempts={self.max_attempts}, during_outage={self.during_outage!r})")


# -- serving the peer's calls ----------------------------------------------------------


class _Handler:
    __slots__ = ("info", "req", "resp", "arity", "fn", "wants_ctx")

    def __init__(self, info: CommandInfo, fn):
        c = _Command(info)
        self.info, self.req, self.resp, self.arity = info, c.req, c.resp, c.arity
        self.fn = fn
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        self.wants_ctx = "ctx" in params

    def args(self, payload):
        v = self.req.decode(payload)
        if self.arity == 0:
            return ()
        if self.arity > 0:
            return v
        return (v,)


class Handlers:
    """Commands this client serves: the server may call them (CALL, answered)
    or send them one way (NOTIFY, including ``Server::broadcast``).

    Each command is typed by schema strings, like the calls the client makes::

        h = framerpc.Handlers()

        @h.command(10, "work", "u32", "u32")
        def work(n, ctx):            # a parameter named ctx gets a CallContext
            ctx.client.call("progress", "me", 50)   # a handler may call the server
            return n * (n + 1) // 2

        c = framerpc.connect(addr, handlers=h)

    Arguments arrive decoded as :meth:`Client.call` takes them (a tuple
    schema's items as separate arguments, ``unit`` as none); the return
    value is encoded with the response schema. An exception answers ERROR
    HANDLER (3) with its message; a :class:`RemoteError` answers its own
    code (1000 and up for the application's).
    """

    def __init__(self):
        self._by_id: dict[int, _Handler] = {}

    def command(self, id: int, name: str, request: str = "unit", response: str = "unit"):
        """A decorator that registers a function for command ``id``."""
        def deco(fn):
            self.add(id, name, request, response, fn)
            return fn
        return deco

    def add(self, id: int, name: str, request: str, response: str, fn) -> None:
        """Registers ``fn`` for command ``id`` (``name`` and the schemas are what ``list`` reports)."""
        if not 0 <= id < fr.RESERVED_START:
            raise ValueError(f"command id {id} is not an application id (0..0xFEFF)")
        if any(h.info.name == name and i != id for i, h in self._by_id.items()):
            raise ValueError(f"command name {name!r} is already registered")
        self._by_id[id] = _Handler(CommandInfo(id, name, request, response), fn)

    def get(self, id: int):
        return self._by_id.get(id)

    def rows(self) -> list[CommandInfo]:
        """The table a ``list`` call from the peer gets, ordered by id."""
        return [self._by_id[i].info for i in sorted(self._by_id)]

    def __len__(self):
        return len(self._by_id)


class CallContext:
    """What a handler that takes a ``ctx`` parameter gets."""

    __slots__ = ("client", "call_id", "command", "_inbound")

    def __init__(self, client, inbound):
        #: the :class:`Client`: a handler may call the server through it
        self.client = client
        #: the peer's call id (None for a NOTIFY)
        self.call_id = inbound.id
        #: the command's name
        self.command = inbound.handler.info.name
        self._inbound = inbound

    @property
    def cancelled(self) -> bool:
        """True once the peer sent CANCEL for this call (it gave up waiting)."""
        return self._inbound.cancelled

    def is_cancelled(self) -> bool:
        return self._inbound.cancelled


class _Inbound:
    __slots__ = ("conn", "id", "cmd", "handler", "payload", "cancelled")

    def __init__(self, conn, cid, cmd, handler, payload):
        self.conn, self.id, self.cmd, self.handler, self.payload = conn, cid, cmd, handler, payload
        self.cancelled = False


# -- one connection -------------------------------------------------------------------------


class _Conn:
    """One connection of a client (a reconnecting client has one after another).

    The dynamic layer's session of a connection talks to it directly, so
    proxies made on a connection that has ended fail clearly instead of
    reaching the next connection's server-side table."""

    def __init__(self, client: "Client", transport, generation: int):
        self.client = client
        self.t = transport
        self.generation = generation
        self.address = transport.peer
        self.local_address = getattr(transport, "local", None)
        self.plock = threading.Lock()
        self.pending: dict[int, _Waiter] = {}
        self.inbound: dict[int, _Inbound] = {}
        self.ids = itertools.count(1)
        self.closed = False
        self.reason: str | None = None
        self.role = threading.Lock()  # held by whichever thread reads
        self.kick = threading.Lock()  # released to wake the keeper early
        self.kick.acquire()
        self.last_call = 0.0
        self.heartbeat_id = None
        self.seen = 0
        self.last_life = monotonic()
        self.pinged = False
        self.no_limit_seen = False
        self._session = None
        self.keeper = threading.Thread(target=self._keep, name=f"framerpc-keeper {self.address}", daemon=True)
        self.keeper.start()

    # -- state ---------------------------------------------------------------------
    def dead(self) -> str:
        """Why calls on this connection fail."""
        r = self.reason or "connection closed"
        gen = self.client.generation
        if gen > self.generation:
            r += (f"; the client has reconnected since (connection {gen} is in use, this was {self.generation}): "
                  "remote objects and proxies do not survive a reconnect, make new ones from client.root()")
        return r

    @property
    def session(self):
        if self._session is None:
            from .dynamic import Session
            with self.plock:
                if self._session is None:
                    self._session = Session(self)
        return self._session

    def close(self, reason="the client closed the connection") -> None:
        self._shutdown(reason)

    def _shutdown(self, reason) -> None:
        with self.plock:
            if self.closed:
                return
            self.closed = True
            self.reason = getattr(self.t, "broken", None) or reason or "connection closed"
            pending, self.pending = self.pending, {}
            for w in pending.values():
                w.done = True  # frame None: Disconnected
                w.wake()
            for inb in self.inbound.values():
                inb.cancelled = True
        self.t.close()
        _kick(self.kick)
        self.client._conn_ended(self)

    # -- sending -------------------------------------------------------------------
    def _next_id(self) -> int:
        while True:
            i = next(self.ids) & 0xFFFFFFFF
            if i:
                return i

    @property
    def max_frame_len(self) -> int:
        return self.client.max_frame_len

    def send(self, frame, more: bool = False) -> None:
        s = self._session
        if s is not None and s._pend:
            s.flush()  # the dynamic layer's batched calls go first (any frame forces them out)
        self._send(frame, more)

    def send_dynamic(self, frame) -> None:
        """The dynamic layer's NOTIFY (its batch): queued for the next write."""
        self._send(frame, True)

    def _send(self, frame, more: bool = False) -> None:
        if self.closed:
            raise Disconnected(self.dead())
        try:
            self.t.send(frame, more)
        except Disconnected:
            self._shutdown(self.t.broken or "connection lost while sending")
            raise Disconnected(self.dead()) from None
        except BaseException:
            if self.t.broken:
                self._shutdown(self.t.broken)
            raise
        c = self.client
        c.frames_sent += 1
        kind = frame[4]
        if kind == fr.CALL:
            c.calls_sent += 1
        elif kind == fr.NOTIFY:
            c.notifies_sent += 1

    def flush(self) -> None:
        """Sends queued NOTIFYs (and the dynamic layer's batched calls) now
        (the keeper calls it at least every 20 ms)."""
        s = self._session
        if s is not None and s._pend:
            try:
                s.flush()
            except FramerpcError:
                pass  # the connection is gone; its end says why
        if getattr(self.t, "_queued", None):
            try:
                self.t.flush()
            except BaseException as e:  # noqa: BLE001 - the connection is gone either way
                self._shutdown(getattr(self.t, "broken", None) or f"connection lost while sending: {e}")

    def frame(self, kind, cmd, cid, payload) -> bytes:
        n = len(payload)
        if n > self.client.max_frame_len:
            raise FrameTooLarge(n, self.client.max_frame_len)
        return _HDR.pack(n, kind, 0, cmd, cid) + payload

    def _register(self, cmd) -> tuple[int, _Waiter]:
        cid = self._next_id()
        w = _Waiter(cmd)
        with self.plock:
            if self.closed:
                raise Disconnected(self.dead())
            self.pending[cid] = w
        return cid, w

    def _start(self, cmd: int, payload) -> tuple[int, _Waiter]:
        """Sends a CALL; returns its id and waiter (for pipelining)."""
        n = len(payload)
        if n > self.client.max_frame_len:
            raise FrameTooLarge(n, self.client.max_frame_len)
        cid, w = self._register(cmd)
        return self._send_call(cid, w, _HDR.pack(n, fr.CALL, 0, cmd, cid) + payload)

    def _start_frame(self, cmd: int, buf: bytearray) -> tuple[int, _Waiter]:
        """Sends a CALL whose payload is already in ``buf`` after 12 placeholder bytes."""
        n = len(buf) - fr.HEADER_LEN
        if n > self.client.max_frame_len:
            raise FrameTooLarge(n, self.client.max_frame_len)
        cid, w = self._register(cmd)
        _HDR.pack_into(buf, 0, n, fr.CALL, 0, cmd, cid)
        return self._send_call(cid, w, buf)

    def _send_call(self, cid, w, data):
        self.last_call = monotonic()
        try:
            self.send(data)
        except BaseException:
            with self.plock:
                self.pending.pop(cid, None)
            raise
        return cid, w

    def notify_raw(self, cmd: int, payload=b"") -> None:
        """Sends a NOTIFY (one-way). NOTIFYs sent back to back share one
        write: they go out with the next frame of any kind, or within 20 ms
        (the keeper flushes them)."""
        self.send(self.frame(fr.NOTIFY, cmd, 0, payload), True)

    def notify_frame(self, cmd: int, buf: bytearray) -> None:
        """A typed NOTIFY: sent at once (with any queued before it)."""
        n = len(buf) - fr.HEADER_LEN
        if n > self.client.max_frame_len:
            raise FrameTooLarge(n, self.client.max_frame_len)
        _HDR.pack_into(buf, 0, n, fr.NOTIFY, 0, cmd, 0)
        self.send(buf)

    # -- waiting -------------------------------------------------------------------
    def _finish(self, cid: int, w: _Waiter, timeout: float | None, name):
        """Waits for a started call's answer; REPLY payload or raises.
        ``name`` (for messages) is a str or a function that makes it.

        Any exception while waiting (KeyboardInterrupt included) sends
        CANCEL for the call and is raised again; the client stays usable."""
        t = self.client.timeout if timeout is None else timeout
        deadline = monotonic() + t if t >= 0 else inf
        try:
            ok = self._await(w, deadline)
        except BaseException:
            self._abandon(cid, w)
            raise
        if not ok:
            with self.plock:
                still = self.pending.pop(cid, None)
            if still is not None:
                # Where the call stands is asked before the CANCEL: a
                # connection whose waiting calls are all cancelled leaves
                # the device's queue, and its place would be gone.
                server = self._queue_state(w.cmd)
                if callable(name):
                    name = name()
                try:
                    self.send(_HDR.pack(0, fr.CANCEL, 0, w.cmd, cid))
                except FramerpcError:
                    pass
                raise CallTimeout(name, cid, t, server)
            # the answer won the race with the deadline (done under the lock)
        f = w.frame
        if f is None:
            raise Disconnected(self.dead())
        h, payload = f
        if h.kind == fr.REPLY:
            return payload
        if callable(name):
            name = name()
        code, msg = fr.parse_error_payload(payload)
        e = RemoteError.from_code(code, msg, name, cid)
        if code == 6 and not self.client._token_sent:
            e.args = (f"{e} (this client sent no token: pass token= or set FRAMERPC_TOKEN)",)
        raise e

    def _abandon(self, cid, w) -> None:
        with self.plock:
            still = self.pending.pop(cid, None)
        if still is not None and not self.closed:
            try:
                self.send(_HDR.pack(0, fr.CANCEL, 0, w.cmd, cid))
            except BaseException:  # noqa: BLE001 - the first exception is the one raised
                pass

    def _await(self, w: _Waiter, deadline: float) -> bool:
        """True once ``w`` has its answer (or the connection ended), False at the deadline."""
        while True:
            if w.done:
                return True
            if self.role.acquire(False):
                try:
                    tick = self.client._tick
                    while not w.done:
                        left = deadline - monotonic()
                        if left <= 0:
                            break
                        if not self._step(tick if left >= tick else max(left, 0.001)):
                            break
                except BaseException:
                    if self.t.mid_frame:
                        self._shutdown("the connection was closed because a receive was interrupted in the "
                                       "middle of a frame")
                    raise
                finally:
                    self._release_role()
                if w.done:
                    return True
                if monotonic() >= deadline:
                    return False
            else:
                left = deadline - monotonic()
                if left <= 0:
                    return w.done
                with self.plock:
                    if w.signaled:  # answered or nudged before it waited
                        w.signaled = False
                        continue
                    lk = w.lock
                    if lk is None:
                        lk = w.lock = threading.Lock()
                        lk.acquire()
                if not lk.acquire(timeout=-1 if left == inf else left):
                    return w.done
                with self.plock:
                    w.signaled = False  # answered, or nudged to take over reading

    def _release_role(self) -> None:
        self.role.release()
        if self.pending:
            with self.plock:
                for w in self.pending.values():
                    if not w.signaled:
                        w.wake()  # a caller waiting without reading: it reads now
                        break

    # -- reading -------------------------------------------------------------------
    def _step(self, tick) -> bool:
        """Reads and routes one frame (or notices a silent tick); False once the connection ended."""
        t = self.t
        try:
            item = t.recv(tick)
        except FrameOverLimit as e:
            if e.header.kind == fr.CALL:
                try:
                    self.send(self.frame(fr.ERROR, e.header.cmd, e.header.id, fr.error_payload(7, str(e))))
                except FramerpcError:
                    pass
            self._shutdown(str(e))
            return False
        except FramerpcError as e:
            self._shutdown(str(e))
            return False
        if item is None:
            self._shutdown(f"the server closed the connection ({self.address})")
            return False
        if item is TICK:
            return self._tick()
        self.pinged = False
        self.last_life = monotonic()
        self.seen = t.received
        self.client.frames_received += 1
        self._on_frame(*item)
        return True

    def _tick(self) -> bool:
        if self.closed:
            return False
        c = self.client
        now = monotonic()
        if self.t.received != self.seen:
            self.seen, self.last_life, self.pinged = self.t.received, now, False
        silent = now - self.last_life
        if c.idle_timeout is not None and silent >= c.idle_timeout:
            self._shutdown(f"no byte from {self.address} for {silent:.0f} s (idle timeout)")
            return False
        if not self.pinged and c.ping_after is not None and silent >= c.ping_after:
            self.pinged = True
            hid = self._next_id()
            self.heartbeat_id = hid
            try:
                self.send(_HDR.pack(0, fr.CALL, 0, fr.PING, hid))
            except FramerpcError:
                return False
        return True

    def _on_frame(self, h, payload) -> None:
        k = h.kind
        if k == fr.REPLY or k == fr.ERROR:
            with self.plock:
                w = self.pending.pop(h.id, None)
                if w is not None:
                    if h.cmd != w.cmd:
                        # not this call's answer: a broken peer; fail the call clearly
                        msg = f"reply for call {h.id} names command {h.cmd}, the call was to {w.cmd}"
                        w.frame = (fr.Header(0, fr.ERROR, w.cmd, h.id), fr.error_payload(10, msg))
                    else:
                        w.frame = (h, payload)
                    w.done = True
                    w.wake()
                    return
            if h.id != self.heartbeat_id:
                self.client.stray_replies += 1
        elif k == fr.CALL:
            self._on_call(h, payload)
        elif k == fr.NOTIFY:
            hd = self.client.handlers.get(h.cmd)
            if hd is None:
                self.client.notifies_dropped += 1
            else:
                self.client._dispatch(_Inbound(self, None, h.cmd, hd, payload))
        elif k == fr.CANCEL:
            with self.plock:
                inb = self.inbound.get(h.id)
                if inb is not None and inb.cmd == h.cmd:
                    inb.cancelled = True

    def _on_call(self, h, payload) -> None:
        cmd = h.cmd
        if cmd == fr.PING:
            out = payload
        elif cmd == fr.LIST:
            out = encode_list(self.client.handlers.rows())
        else:
            hd = self.client.handlers.get(cmd)
            if hd is None:
                self.answer_error(cmd, h.id, 1, f"unknown command {cmd}")
                return
            inb = _Inbound(self, h.id, cmd, hd, payload)
            with self.plock:
                self.inbound[h.id] = inb
            self.client._dispatch(inb)
            return
        try:
            self.send(self.frame(fr.REPLY, cmd, h.id, out))
        except FramerpcError:
            pass

    def answer_error(self, cmd, cid, code, msg) -> None:
        try:
            self.send(self.frame(fr.ERROR, cmd, cid, fr.error_payload(code, msg)))
        except FramerpcError:
            pass

    def _keep(self) -> None:
        """The keeper: reads while the connection is idle or calls wait unread."""
        try:
            while not self.closed:
                self.kick.acquire(timeout=IDLE)
                if self.closed:
                    break
                self.flush()
                if monotonic() - self.last_call < IDLE and not self.pending:
                    continue  # callers are active and read for themselves
                if not self.role.acquire(False):
                    continue
                try:
                    while not self.closed:
                        tick = self.client._tick
                        if not self._step(tick if tick < IDLE else IDLE):
                            break
                        self.flush()
                        if monotonic() - self.last_call < IDLE and not self.pending:
                            break  # callers are back: leave reading to them
                finally:
                    self._release_role()
        except BaseException as e:  # noqa: BLE001 - never die silently
            self._shutdown(f"reader failed: {e!r}")
        finally:
            try:
                self.t.close_reader()
            except Exception:  # noqa: BLE001
                pass

    # -- built-ins the session and the client use -----------------------------------------
    def _queue_state(self, cmd: int) -> str | None:
        """After a timeout, asks the server (``queue``, 0xFF04) where this
        connection stands, so the error can name the device's holder and
        the queue place. Not for commands known to be shared (they never
        wait for the device), nor once the server said it has no admission
        limit. A connection that held the device may have lost it since
        (release, lapse), so "admitted" is not remembered."""
        if cmd == fr.QUEUE or self.no_limit_seen or self.closed:
            return None
        shared = self.client._shared
        if shared is not None and cmd in shared:
            return None
        try:
            cid, w = self._start(fr.QUEUE, b"")
            text = bytes(self._finish(cid, w, 0.25, "queue")).decode("utf-8", "replace")
        except FramerpcError:
            return None
        if text == "no admission limit":
            self.no_limit_seen = True
            return None
        if text == "admitted":
            return None
        return text

    def call_raw(self, cmd: int, payload=b"", timeout: float | None = None, name: str | None = None):
        cid, w = self._start(cmd, payload)
        return self._finish(cid, w, timeout, name or f"command {cmd}")


def _kick(k) -> None:
    """Wakes the thread waiting on lock ``k`` (a binary semaphore)."""
    if k is not None:
        try:
            k.release()
        except RuntimeError:  # already released: the thread wakes anyway
            pass


def _run_handler(client, inb: _Inbound) -> None:
    conn, hd = inb.conn, inb.handler
    cid = inb.id
    try:
        if cid is not None and inb.cancelled:
            return  # the peer gave up before it started: dropped, no answer
        try:
            args = hd.args(inb.payload)
        except DecodeError as e:
            if cid is not None:
                conn.answer_error(inb.cmd, cid, 2, f"{hd.info.name} expects {hd.info.request}: {e}")
            return
        try:
            if hd.wants_ctx:
                result = hd.fn(*args, ctx=CallContext(client, inb))
            else:
                result = hd.fn(*args)
            if cid is None:
                return
            out = bytearray(12)
            try:
                hd.resp.enc(result, out)
            except EncodeError as e:
                raise EncodeError(f"the reply of {hd.info.name} does not fit {hd.info.response}: {e}") from None
            n = len(out) - fr.HEADER_LEN
            if n > client.max_frame_len:
                conn.answer_error(inb.cmd, cid, 7, f"too large: reply of {n} bytes exceeds the client's limit "
                                                   f"of {client.max_frame_len} bytes")
                return
            _HDR.pack_into(out, 0, n, fr.REPLY, 0, inb.cmd, cid)
            try:
                conn.send(out)
            except FramerpcError:
                pass
        except RemoteError as e:
            if cid is not None:
                conn.answer_error(inb.cmd, cid, e.code, e.message)
        except Exception as e:  # noqa: BLE001 - reported to the peer
            if cid is None:
                log.warning("handler of NOTIFY %s failed: %r", hd.info.name, e)
            else:
                conn.answer_error(inb.cmd, cid, 3, str(e) or type(e).__name__)
    finally:
        if cid is not None:
            with conn.plock:
                conn.inbound.pop(cid, None)


# -- the client ------------------------------------------------------------------------------


class Client:
    """A connection to a framerpc server. Use :func:`framerpc.connect`.

    Thread-safe: share one client between threads; their calls are
    pipelined on the one connection. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, dial, *, timeout: float = DEFAULT_TIMEOUT, max_frame_len: int = fr.DEFAULT_MAX_FRAME_LEN,
                 ping_after: float | None = 30.0, idle_timeout: float | None = 40.0, tick: float = 1.0,
                 auth: bytes | None = None, token_sent: bool = False, auth_timeout: float = 10.0,
                 handlers: Handlers | None = None, handler_threads: int = 1, reconnect: Reconnect | None = None,
                 name: str | None = None):
        self._dial = dial
        #: the name this client gives the server (``identify`` at every connect), or None
        self.name = name
        self._name_bytes = None if name is None else check_name(name)
        self.timeout = timeout
        self.max_frame_len = max_frame_len
        self.ping_after = ping_after
        self.idle_timeout = idle_timeout
        self._tick = tick
        self._auth = auth
        self._token_sent = token_sent
        self._auth_timeout = auth_timeout
        #: the commands this client serves (add more with :meth:`handle`)
        self.handlers = handlers if handlers is not None else Handlers()
        self._handler_threads = max(1, handler_threads)
        self._inq = None
        self._workers: list = []
        self._wlock = threading.Lock()
        self.reconnect = reconnect
        self._cv = threading.Condition()
        self._closed = False
        self._gave_up: str | None = None
        self._supervising = False
        #: connections made so far after the first (0 until a reconnect)
        self.generation = 0
        self._commands: dict | None = None
        self._cmd_lock = threading.Lock()
        self._shared: frozenset | None = None  # ids of the shared commands, once asked
        #: Replies that arrived for ids nobody waits for (late replies to timed-out calls).
        self.stray_replies = 0
        #: NOTIFYs for commands this client does not serve (dropped).
        self.notifies_dropped = 0
        #: Frames sent and received (a pipelining test counts round trips with these).
        self.frames_sent = 0
        self.frames_received = 0
        #: CALL and NOTIFY frames sent (heartbeat pings included in calls_sent).
        self.calls_sent = 0
        self.notifies_sent = 0
        if len(self.handlers):
            self._start_workers()
        self._conn = self._open()

    def _open(self) -> _Conn:
        conn = _Conn(self, self._dial(), self.generation)
        if self._auth is not None:
            try:
                conn.call_raw(fr.AUTH, self._auth, timeout=self._auth_timeout, name="auth")
            except BaseException:
                conn.close("authentication failed")
                raise
        if self._name_bytes is not None:
            # One way, no round trip: it goes out with the first call (or
            # within 20 ms), before anything that could make the server
            # name this connection.
            conn.notify_raw(fr.IDENTIFY, self._name_bytes)
        return conn

    # -- lifecycle --------------------------------------------------------
    def close(self) -> None:
        """Closes the connection for good (no reconnect); pending calls fail with Disconnected."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        conn = self._conn
        conn.close()
        with self._wlock:
            workers, self._workers = self._workers, []
            for _ in workers:
                self._inq.put(None)
        me = threading.current_thread()
        if conn.keeper is not me:
            conn.keeper.join(timeout=5)

    @property
    def closed(self) -> bool:
        """True once closed by :meth:`close`, after the connection ended
        without reconnecting, or once reconnecting gave up."""
        return self._closed or self._gave_up is not None or (self.reconnect is None and self._conn.closed)

    def is_connected(self) -> bool:
        """False while the connection is down."""
        return not self._closed and not self._conn.closed

    @property
    def address(self) -> str:
        return self._conn.address

    @property
    def local_address(self) -> str | None:
        """Our end of the connection, ``host:port`` (how a server's BUSY message names this client)."""
        return self._conn.local_address

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<framerpc.Client {self.address}{' closed' if self.closed else ''}>"

    # -- reconnecting -----------------------------------------------------------
    def _conn_ended(self, conn: _Conn) -> None:
        if self.reconnect is None:
            return
        with self._cv:
            if self._closed or conn is not getattr(self, "_conn", None) or self._supervising:
                self._cv.notify_all()
                return
            self._supervising = True
            self._cv.notify_all()
        threading.Thread(target=self._supervise, name="framerpc-reconnect", daemon=True).start()

    def _supervise(self) -> None:
        policy = self.reconnect
        attempt = 0
        last = None
        while True:
            with self._cv:
                if self._closed:
                    self._supervising = False
                    return
                self._cv.wait(policy.delay(attempt))
                if self._closed:
                    self._supervising = False
                    return
            try:
                conn = self._open()
            except Exception as e:  # noqa: BLE001 - counted, reported when giving up
                last = e
                attempt += 1
                if policy.max_attempts is not None and attempt >= policy.max_attempts:
                    with self._cv:
                        self._gave_up = (f"gave up reconnecting to {self._conn.address} after {attempt} failed "
                                         f"attempt(s); last: {last}")
                        self._supervising = False
                        self._cv.notify_all()
                    return
                continue
            with self._cv:
                if self._closed:
                    self._supervising = False
                    conn.close()
                    return
                self.generation += 1
                conn.generation = self.generation
                self._conn = conn
                self._commands = None  # the server may have changed
                self._shared = None
                self._cv.notify_all()
                if not conn.closed:
                    self._supervising = False
                    return
            attempt = 0  # it ended at once: start over

    def _current(self, wait: float | None = None) -> _Conn:
        """The connection to use now (see :class:`Reconnect` for the outage)."""
        conn = self._conn
        if not conn.closed or self.reconnect is None:
            return conn
        wait = self.timeout if wait is None else wait
        deadline = monotonic() + wait if wait >= 0 else inf
        with self._cv:
            while True:
                conn = self._conn
                if not conn.closed:
                    return conn
                if self._closed:
                    raise Disconnected("the client was closed")
                if self._gave_up:
                    raise Disconnected(self._gave_up)
                if self.reconnect.during_outage == FAIL_FAST:
                    raise Disconnected(f"{conn.reason}; reconnecting")
                left = deadline - monotonic()
                if left <= 0:
                    raise Disconnected(f"{conn.reason}; still reconnecting after waiting {wait:g} s")
                self._cv.wait(None if left == inf else left)

    # -- serving the peer's calls -----------------------------------------------------
    def handle(self, id: int, name: str, request: str = "unit", response: str = "unit"):
        """A decorator: serve command ``id`` (see :class:`Handlers`)."""
        def deco(fn):
            self.handlers.add(id, name, request, response, fn)
            self._start_workers()
            return fn
        return deco

    def _start_workers(self) -> None:
        with self._wlock:
            if self._workers or self._closed:
                return
            if self._inq is None:
                self._inq = queue.SimpleQueue()
            for i in range(self._handler_threads):
                t = threading.Thread(target=self._work, name=f"framerpc-handler-{i}", daemon=True)
                t.start()
                self._workers.append(t)

    def _dispatch(self, inb: _Inbound) -> None:
        q = self._inq
        if q is None:
            self._start_workers()
            q = self._inq
        q.put(inb)

    def _work(self) -> None:
        q = self._inq
        while True:
            inb = q.get()
            if inb is None:
                return
            try:
                _run_handler(self, inb)
            except BaseException as e:  # noqa: BLE001 - a handler thread never dies
                log.error("framerpc handler thread: %r", e)

    # -- raw calls ------------------------------------------------------------
    def call_raw(self, cmd: int | str, payload=b"", timeout: float | None = None):
        """Sends raw payload bytes to a command (id or name); returns the reply payload
        (bytes, or a bytearray for a reply over 64 KiB: handed on without a copy)."""
        if isinstance(cmd, str):
            c = self._command(cmd)
            cmd, name = c.info.id, c.info.name
        else:
            name = f"command {cmd}"
        return self._current(timeout).call_raw(cmd, payload, timeout, name)

    def notify_raw(self, cmd: int, payload=b"") -> None:
        """Sends a NOTIFY (one-way, never answered)."""
        self._current().notify_raw(cmd, payload)

    # -- built-ins ----------------------------------------------------------------
    def ping(self, data: bytes = b"", timeout: float | None = None):
        """Round trip through the server's reader; returns the echoed bytes."""
        return self._current(timeout).call_raw(fr.PING, bytes(data), timeout, "ping")

    def status(self, timeout: float | None = None) -> Status:
        """The server's admission status: ``(active, max, waiting)``."""
        p = self._current(timeout).call_raw(fr.STATUS, b"", timeout, "status")
        if len(p) != 12:
            raise DecodeError(f"status reply of {len(p)} bytes, expected 12")
        return Status(*_STATUS.unpack(p))

    def list(self, timeout: float | None = None) -> list[CommandInfo]:
        """The server's command table (also refreshes the cache :meth:`call` uses)."""
        rows = decode_list(self._current(timeout).call_raw(fr.LIST, b"", timeout, "list"))
        table = {}
        for r in rows:
            try:
                c = _Command(r)
            except FramerpcError:
                c = r  # a schema this client cannot parse: callable raw only
            table[r.name] = c
            table[r.id] = c
        with self._cmd_lock:
            self._commands = table
        return rows

    # -- sharing the device ----------------------------------------------------------
    def acquire(self, timeout: float | None = None) -> Hold:
        """Waits (at most ``timeout`` seconds; default the client's timeout;
        0: do not wait) until this connection holds the device of a server
        with an admission limit, and returns the :class:`Hold` (a context
        manager; :meth:`Hold.release` or :meth:`release` gives it back).
        Holding it already renews the hold. Raises :class:`Busy` naming the
        holder, how long it has held the device and this connection's place
        in the queue when the wait runs out (at once on a server that
        refuses instead of queueing).

        Without ``acquire``, a connection asks for the device at its first
        call that needs it, and holds it until :meth:`release` or the end
        of the connection. An interrupted wait (KeyboardInterrupt, a local
        timeout) sends CANCEL: the connection leaves the queue."""
        return Hold(self, timeout).acquire()

    def hold(self, timeout: float | None = None) -> Hold:
        """``with client.hold(timeout=60): ...``: the device is acquired on
        entering (see :meth:`acquire`) and released on leaving, also when an
        exception leaves the block."""
        return Hold(self, timeout)

    def _acquire(self, timeout: float | None) -> _Conn:
        wait = self.timeout if timeout is None else timeout
        payload = wait_payload(wait)
        # The server answers when the wait is decided: give it that long plus the usual timeout.
        conn = self._current()
        try:
            conn.call_raw(fr.ACQUIRE, payload, wait + (self.timeout if self.timeout >= 0 else inf), "acquire")
        except Busy:
            raise  # decided: this connection holds nothing
        except BaseException:
            # The server may have admitted it just as this side gave up (a
            # timeout, Ctrl-C): give back what nobody knows it holds.
            # Without a hold this does nothing.
            if not conn.closed:
                try:
                    conn.call_raw(fr.RELEASE, b"", 1.0, "release")
                except Exception:
                    pass
            raise
        return conn

    def release(self, timeout: float | None = None) -> None:
        """Gives the device back now (after this connection's calls sent
        before it): the server's ``on_release`` runs and the next waiter is
        admitted; the connection stays open. Without a hold nothing happens."""
        self._current(timeout).call_raw(fr.RELEASE, b"", timeout, "release")

    def shared_commands(self, timeout: float | None = None) -> list[int]:
        """The ids of the server's shared commands: those that run without
        the device, also while another connection holds it."""
        ids = decode_shared(self._current(timeout).call_raw(fr.SHARED, b"", timeout, "shared"))
        self._shared = frozenset(ids)
        return ids

    def is_shared(self, command: str | int, timeout: float | None = None) -> bool:
        """Whether a command (name or id) runs without the device (asks the
        server once per connection: ``shared``)."""
        cid = self._command(command).info.id if isinstance(command, str) else command
        if self._shared is None:
            self.shared_commands(timeout)
        return cid in self._shared

    def queue(self, timeout: float | None = None) -> str:
        """Where this connection stands, in the server's words (``queue``):
        ``"admitted"``, ``"no admission limit"``, ``"waiting for the device:
        ...; number k of n in the queue"`` or ``"not waiting: ..."``."""
        p = self._current(timeout).call_raw(fr.QUEUE, b"", timeout, "queue")
        return bytes(p).decode("utf-8", "replace")

    def _command(self, name_or_id) -> _Command:
        table = self._commands
        if table is None or name_or_id not in table:
            try:
                self.list()
            except RemoteError as e:
                err = type(e)(e.code, f"{e.message} (while looking up {name_or_id!r} in the server's command "
                                      "table with list)", str(name_or_id), e.call_id)
                if e.code == 6 and not self._token_sent:
                    err.args = (f"{err} (this client sent no token: pass token= or set FRAMERPC_TOKEN)",)
                raise err from None
            table = self._commands
        c = table.get(name_or_id)
        if c is None:
            names = ", ".join(k for k in table if isinstance(k, str))
            raise UnknownCommand(1, f"no command {name_or_id!r} in the server's table ({names})", str(name_or_id))
        if isinstance(c, CommandInfo):
            # raise the schema error for this command
            _Command(c)
        return c

    def command(self, name_or_id) -> CommandInfo:
        """The table row of a command, by name or id."""
        return self._command(name_or_id).info

    # -- typed calls --------------------------------------------------------------
    def call(self, command: str | int, *args, timeout: float | None = None):
        """Calls a command by name (or id) with arguments encoded per its schema.

        ``(a,b)`` schemas take the items as arguments (or one sequence),
        ``unit`` takes none, any other schema exactly one.
        """
        table = self._commands
        c = table.get(command) if table is not None else None
        if c is None or c.__class__ is not _Command:
            c = self._command(command)
        buf = c.encode_args(args)
        conn = self._conn
        if conn.closed:
            conn = self._current(timeout)
        cid, w = conn._start_frame(c.info.id, buf)
        reply = conn._finish(cid, w, timeout, c.info.name)
        try:
            return c.resp.decode(reply)
        except DecodeError as e:
            raise DecodeError(f"reply of {c.info.name} does not decode as {c.info.response}: {e}") from None

    def notify(self, command: str | int, *args) -> None:
        """Sends a typed NOTIFY (one-way)."""
        c = self._command(command)
        self._current().notify_frame(c.info.id, c.encode_args(args))

    # -- remote objects (dynamic layer) -------------------------------------------
    @property
    def session(self):
        """The dynamic-layer session of the current connection (created on first use)."""
        return self._current().session

    def root(self, name: str):
        """A proxy for the server's registered root ``name``. Sends nothing."""
        return self.session.root(name)

    def sync(self, timeout: float | None = None) -> None:
        """Waits until the server has run every remote call sent so far (one round trip)."""
        self.session.request(None, timeout)

    def flush_releases(self) -> None:
        """Sends queued handle releases now (they otherwise ride on the next request)."""
        self.session.flush_releases()


def connect(address: str, token=None, timeout: float = DEFAULT_TIMEOUT, *, connect_timeout: float = 10.0,
            max_frame_len: int = fr.DEFAULT_MAX_FRAME_LEN, write_timeout: float = 30.0,
            ping_after: float | None = 30.0, idle_timeout: float | None = 40.0,
            handlers: Handlers | None = None, handler_threads: int = 1,
            reconnect: Reconnect | None = None, name: str | None = None,
            cafile: str | None = None, certfile: str | None = None, keyfile: str | None = None,
            ssl_context=None, server_hostname: str | None = None) -> Client:
    """Connects to a framerpc server.

    ``address``: ``tcp://HOST:PORT``, ``HOST:PORT``, ``ws://HOST:PORT/PATH``,
    or inside TLS ``tls://HOST:PORT`` and ``wss://HOST:PORT/PATH``.
    ``cafile``/``certfile``/``keyfile`` (TLS): trusted roots (PEM; default
    the system's), and a client certificate and its key; or ``ssl_context``
    (an :class:`ssl.SSLContext` of your own). ``server_hostname``: the name
    the certificate must be valid for (``tls://``; default the host).
    ``token``: raw TCP sends it in the ``auth`` frame first; WebSocket sends
    it as ``Authorization: Bearer`` (default, on every transport:
    ``FRAMERPC_TOKEN``).
    ``timeout``: the default per-call timeout in seconds (30).
    ``max_frame_len``: the largest payload sent or accepted (64 MiB).
    ``ping_after``/``idle_timeout``: heartbeat after 30 s of silence, give up
    after 40 s with no byte received (None turns either off).
    ``handlers``: commands this client serves (:class:`Handlers`), run on
    ``handler_threads`` threads (1: in arrival order).
    ``reconnect``: a :class:`Reconnect` policy (default None: a broken
    connection stays broken).
    ``name``: what this client calls itself (``identify``, sent one way at
    every connect and reconnect): a server's BUSY and ``queue`` texts and
    its holder list name the connection ``name (address)``. 1 to 64 bytes
    of printable text, checked here (ValueError). Default: ``user@host``
    from the environment (``USER``/``LOGNAME``, ``HOSTNAME``/``/etc/hostname``).
    Never used for authorization.
    """
    if name is None:
        name = default_name()
    else:
        try:
            check_name(name)
        except ValueError as e:
            raise ValueError(f"connect(name=...): {e}") from None
    if token is None:
        token = os.environ.get("FRAMERPC_TOKEN") or None
    a = parse_address(address)
    tls = a[0] == "tls" or address.startswith("wss://")
    ctx = make_ssl_context(cafile, certfile, keyfile, ssl_context) if tls else None
    if a[0] == "ws":
        def dial():
            return WsTransport(a[1], token, connect_timeout, max_frame_len, ssl_context=ctx)
        auth = None
    else:
        def dial():
            return TcpTransport(a[1], a[2], connect_timeout, write_timeout, max_frame_len,
                                ssl_context=ctx, server_hostname=server_hostname)
        auth = None if token is None else (token.encode("utf-8") if isinstance(token, str) else bytes(token))
    # The reader wakes at least 4 times per heartbeat period, so short
    # heartbeats (behind a proxy with a short idle timeout) are kept.
    tick = min([1.0] + [v / 4 for v in (ping_after, idle_timeout) if v])
    return Client(dial, timeout=timeout, max_frame_len=max_frame_len, ping_after=ping_after, tick=tick,
                  idle_timeout=idle_timeout, auth=auth, token_sent=token is not None, auth_timeout=connect_timeout,
                  handlers=handlers, handler_threads=handler_threads, reconnect=reconnect, name=name)
