"""The blocking client: one connection, one reader thread, shareable across threads.

Each call takes a call id, registers a waiter, writes its frame in one
write, and waits on its own lock; the reader thread routes every REPLY and
ERROR to its waiter by id, answers the server's ``ping`` calls (heartbeats),
refuses other calls with UNKNOWN_COMMAND and ignores NOTIFY. A call that
times out sends CANCEL and forgets its id, so its late reply is dropped
(counted in :attr:`Client.stray_replies`) and never reaches another call.
"""

from __future__ import annotations

import itertools
import struct
import threading
import time
from typing import NamedTuple

from . import frame as fr
from .errors import (
    BadPayload,
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
from .schema import Codec, Tuple, Unit, compile_schema
from .transport import TICK, FrameOverLimit, TcpTransport, WsTransport, parse_address

_HDR = fr.HEADER
_STATUS = struct.Struct("<III")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

DEFAULT_TIMEOUT = 30.0


class Status(NamedTuple):
    """Admission status of a server: users admitted, the limit, users waiting."""

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
    __slots__ = ("lock", "frame", "cmd")

    def __init__(self, cmd):
        self.lock = threading.Lock()
        self.lock.acquire()
        self.frame = None
        self.cmd = cmd


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


class Client:
    """A connection to a framerpc server. Use :func:`framerpc.connect`.

    Thread-safe: share one client between threads; their calls are
    pipelined on the one connection. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, transport, *, timeout: float = DEFAULT_TIMEOUT, max_frame_len: int = fr.DEFAULT_MAX_FRAME_LEN,
                 ping_after: float | None = 30.0, idle_timeout: float | None = 40.0, tick: float = 1.0):
        self._t = transport
        self.address = transport.peer
        #: Our end of the connection, ``host:port`` (how a server's BUSY message names a holder).
        self.local_address = getattr(transport, "local", None)
        self.timeout = timeout
        self.max_frame_len = max_frame_len
        self.ping_after = ping_after
        self.idle_timeout = idle_timeout
        self._tick = tick
        self._plock = threading.Lock()
        self._pending: dict[int, _Waiter] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._close_reason: str | None = None
        self._heartbeat_id = None
        #: Replies that arrived for ids nobody waits for (late replies to timed-out calls).
        self.stray_replies = 0
        #: Frames sent and received (a pipelining test counts round trips with these).
        self.frames_sent = 0
        self.frames_received = 0
        #: CALL and NOTIFY frames sent (heartbeat pings included in calls_sent).
        self.calls_sent = 0
        self.notifies_sent = 0
        self._commands: dict | None = None
        self._cmd_lock = threading.Lock()
        self._dynamic = None
        self._reader = threading.Thread(target=self._read_loop, name=f"framerpc-reader {self.address}", daemon=True)
        self._reader.start()

    # -- lifecycle --------------------------------------------------------
    def close(self) -> None:
        """Closes the connection; pending calls fail with Disconnected."""
        if not self._closed:
            self._closed = True
            self._close_reason = self._close_reason or "the client closed the connection"
            self._t.close()
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=5)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<framerpc.Client {self.address}{' closed' if self._closed else ''}>"

    # -- raw calls ------------------------------------------------------------
    def _next_id(self) -> int:
        while True:
            i = next(self._ids) & 0xFFFFFFFF
            if i:
                return i

    def _send(self, frame) -> None:
        if self._closed:
            raise Disconnected(self._close_reason or "connection closed")
        self._t.send(frame)
        self.frames_sent += 1
        kind = frame[4]
        if kind == fr.CALL:
            self.calls_sent += 1
        elif kind == fr.NOTIFY:
            self.notifies_sent += 1

    def _frame(self, kind, cmd, cid, payload) -> bytes:
        n = len(payload)
        if n > self.max_frame_len:
            raise FrameTooLarge(n, self.max_frame_len)
        return _HDR.pack(n, kind, 0, cmd, cid) + payload

    def _start(self, cmd: int, payload) -> tuple[int, _Waiter]:
        """Sends a CALL; returns its id and waiter (for pipelining)."""
        cid = self._next_id()
        data = self._frame(fr.CALL, cmd, cid, payload)
        w = _Waiter(cmd)
        with self._plock:
            if self._closed:
                raise Disconnected(self._close_reason or "connection closed")
            self._pending[cid] = w
        try:
            self._send(data)
        except BaseException:
            with self._plock:
                self._pending.pop(cid, None)
            raise
        return cid, w

    def _start_frame(self, cmd: int, buf: bytearray, kind: int = fr.CALL) -> tuple[int, _Waiter]:
        """Sends a CALL whose payload is already in ``buf`` after 12 placeholder bytes."""
        n = len(buf) - fr.HEADER_LEN
        if n > self.max_frame_len:
            raise FrameTooLarge(n, self.max_frame_len)
        if kind != fr.CALL:
            _HDR.pack_into(buf, 0, n, kind, 0, cmd, 0)
            self._send(buf)
            return 0, None
        cid = self._next_id()
        _HDR.pack_into(buf, 0, n, fr.CALL, 0, cmd, cid)
        w = _Waiter(cmd)
        with self._plock:
            if self._closed:
                raise Disconnected(self._close_reason or "connection closed")
            self._pending[cid] = w
        try:
            self._send(buf)
        except BaseException:
            with self._plock:
                self._pending.pop(cid, None)
            raise
        return cid, w

    def _finish(self, cid: int, w: _Waiter, timeout: float | None, name: str) -> bytes:
        """Waits for a started call's answer; REPLY payload or raises."""
        t = self.timeout if timeout is None else timeout
        if not w.lock.acquire(timeout=t if t >= 0 else -1):
            with self._plock:
                still = self._pending.pop(cid, None)
            if still is not None:
                try:
                    self._send(_HDR.pack(0, fr.CANCEL, 0, w.cmd, cid))
                except FramerpcError:
                    pass
                raise CallTimeout(name, cid, t, self._queue_state(w.cmd))
            w.lock.acquire()  # the reply won the race with the deadline
        f = w.frame
        if f is None:
            raise Disconnected(self._close_reason or "connection closed while the call was waiting")
        h, payload = f
        if h.kind == fr.REPLY:
            return payload
        code, msg = fr.parse_error_payload(payload)
        raise RemoteError.from_code(code, msg, name, cid)

    def _queue_state(self, cmd: int) -> str | None:
        """After a timeout, asks the server (``queue``, 0xFF04) where this
        connection stands, so the error can name the device's holder and
        the queue place; once the server says it is admitted, never again."""
        if cmd == fr.QUEUE or getattr(self, "_admitted_seen", False):
            return None
        try:
            cid, w = self._start(fr.QUEUE, b"")
            text = self._finish(cid, w, 0.25, "queue").decode("utf-8", "replace")
        except FramerpcError:
            return None
        if text in ("admitted", "no admission limit"):
            self._admitted_seen = True
            return None
        return text

    def call_raw(self, cmd: int | str, payload=b"", timeout: float | None = None) -> bytes:
        """Sends raw payload bytes to a command (id or name); returns the reply payload."""
        if isinstance(cmd, str):
            c = self._command(cmd)
            cmd, name = c.info.id, c.info.name
        else:
            name = f"command {cmd}"
        cid, w = self._start(cmd, payload)
        return self._finish(cid, w, timeout, name)

    def notify_raw(self, cmd: int, payload=b"") -> None:
        """Sends a NOTIFY (one-way, never answered)."""
        self._send(self._frame(fr.NOTIFY, cmd, 0, payload))

    # -- built-ins ----------------------------------------------------------------
    def ping(self, data: bytes = b"", timeout: float | None = None) -> bytes:
        """Round trip through the server's reader; returns the echoed bytes."""
        cid, w = self._start(fr.PING, bytes(data))
        return self._finish(cid, w, timeout, "ping")

    def status(self, timeout: float | None = None) -> Status:
        """The server's admission status: ``(active, max, waiting)``."""
        cid, w = self._start(fr.STATUS, b"")
        p = self._finish(cid, w, timeout, "status")
        if len(p) != 12:
            raise DecodeError(f"status reply of {len(p)} bytes, expected 12")
        return Status(*_STATUS.unpack(p))

    def list(self, timeout: float | None = None) -> list[CommandInfo]:
        """The server's command table (also refreshes the cache :meth:`call` uses)."""
        cid, w = self._start(fr.LIST, b"")
        rows = decode_list(self._finish(cid, w, timeout, "list"))
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

    def _command(self, name_or_id) -> _Command:
        table = self._commands
        if table is None or name_or_id not in table:
            self.list()
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
        c = self._command(command)
        cid, w = self._start_frame(c.info.id, c.encode_args(args))
        reply = self._finish(cid, w, timeout, c.info.name)
        try:
            return c.resp.decode(reply)
        except DecodeError as e:
            raise DecodeError(f"reply of {c.info.name} does not decode as {c.info.response}: {e}") from None

    def notify(self, command: str | int, *args) -> None:
        """Sends a typed NOTIFY (one-way)."""
        c = self._command(command)
        self._start_frame(c.info.id, c.encode_args(args), fr.NOTIFY)

    # -- remote objects (dynamic layer) -------------------------------------------
    @property
    def session(self):
        """The dynamic-layer session of this connection (created on first use)."""
        if self._dynamic is None:
            from .dynamic import Session
            with self._cmd_lock:
                if self._dynamic is None:
                    self._dynamic = Session(self)
        return self._dynamic

    def root(self, name: str):
        """A proxy for the server's registered root ``name``. Sends nothing."""
        return self.session.root(name)

    def sync(self, timeout: float | None = None) -> None:
        """Waits until the server has run every remote call sent so far (one round trip)."""
        self.session.request(None, timeout)

    def flush_releases(self) -> None:
        """Sends queued handle releases now (they otherwise ride on the next request)."""
        self.session.flush_releases()

    # -- reader -------------------------------------------------------------------
    def _read_loop(self) -> None:
        t = self._t
        reason = None
        last_life = time.monotonic()
        seen = 0
        pinged = False
        try:
            while True:
                try:
                    item = t.recv(self._tick)
                except FrameOverLimit as e:
                    if e.header.kind == fr.CALL:
                        try:
                            self._send(self._frame(fr.ERROR, e.header.cmd, e.header.id,
                                                   fr.error_payload(7, str(e))))
                        except FramerpcError:
                            pass
                    raise
                if item is None:
                    reason = f"the server closed the connection ({self.address})"
                    break
                if item is TICK:
                    if self._closed:
                        break
                    now = time.monotonic()
                    if t.received != seen:
                        seen, last_life, pinged = t.received, now, False
                    silent = now - last_life
                    if self.idle_timeout is not None and silent >= self.idle_timeout:
                        reason = f"no byte from {self.address} for {silent:.0f} s (idle timeout)"
                        break
                    if not pinged and self.ping_after is not None and silent >= self.ping_after:
                        pinged = True
                        hid = self._next_id()
                        self._heartbeat_id = hid
                        self._send(_HDR.pack(0, fr.CALL, 0, fr.PING, hid))
                    continue
                seen, last_life, pinged = t.received, time.monotonic(), False
                self.frames_received += 1
                self._on_frame(*item)
        except FramerpcError as e:
            reason = str(e)
        except Exception as e:  # never die silently
            reason = f"reader failed: {e!r}"
        finally:
            self._shutdown(reason)

    def _on_frame(self, h, payload) -> None:
        k = h.kind
        if k == fr.REPLY or k == fr.ERROR:
            with self._plock:
                w = self._pending.pop(h.id, None)
            if w is None:
                if h.id != self._heartbeat_id:
                    self.stray_replies += 1
                return
            if h.cmd != w.cmd:
                # not this call's answer: a broken peer; fail the call clearly
                msg = f"reply for call {h.id} names command {h.cmd}, the call was to {w.cmd}"
                w.frame = (fr.Header(0, fr.ERROR, w.cmd, h.id), fr.error_payload(10, msg))
            else:
                w.frame = (h, payload)
            w.lock.release()
        elif k == fr.CALL:
            if h.cmd == fr.PING:
                self._send(self._frame(fr.REPLY, h.cmd, h.id, payload))
            else:
                msg = f"unknown command {h.cmd}"
                self._send(self._frame(fr.ERROR, h.cmd, h.id, fr.error_payload(1, msg)))
        # NOTIFY and CANCEL: nothing to do (this client runs no handlers)

    def _shutdown(self, reason) -> None:
        with self._plock:
            if not self._closed:
                self._close_reason = reason or "connection closed"
            self._closed = True
            pending, self._pending = self._pending, {}
        try:
            self._t.close()
        finally:
            self._t.close_reader()
        for w in pending.values():
            w.lock.release()  # frame None: Disconnected


def connect(address: str, token=None, timeout: float = DEFAULT_TIMEOUT, *, connect_timeout: float = 10.0,
            max_frame_len: int = fr.DEFAULT_MAX_FRAME_LEN, write_timeout: float = 30.0,
            ping_after: float | None = 30.0, idle_timeout: float | None = 40.0) -> Client:
    """Connects to a framerpc server.

    ``address``: ``tcp://HOST:PORT``, ``HOST:PORT`` or ``ws://HOST:PORT/PATH``.
    ``token``: raw TCP sends it in the ``auth`` frame first; WebSocket sends
    it as ``Authorization: Bearer`` (default: ``FRAMERPC_TOKEN`` on WebSocket).
    ``timeout``: the default per-call timeout in seconds (30).
    ``max_frame_len``: the largest payload sent or accepted (64 MiB).
    ``ping_after``/``idle_timeout``: heartbeat after 30 s of silence, give up
    after 40 s with no byte received (None turns either off).
    """
    a = parse_address(address)
    if a[0] == "ws":
        t = WsTransport(a[1], token, connect_timeout, max_frame_len)
    else:
        t = TcpTransport(a[1], a[2], connect_timeout, write_timeout, max_frame_len)
    c = Client(t, timeout=timeout, max_frame_len=max_frame_len, ping_after=ping_after, idle_timeout=idle_timeout)
    if a[0] == "tcp" and token is not None:
        tok = token.encode("utf-8") if isinstance(token, str) else bytes(token)
        try:
            c.call_raw(fr.AUTH, tok, timeout=connect_timeout)
        except BaseException:
            c.close()
            raise
    return c
