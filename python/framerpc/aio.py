"""asyncio: the same calls as the blocking client, awaited, on asyncio streams.

::

    import framerpc.aio as aio

    async def main():
        async with await aio.connect("tcp://127.0.0.1:7878") as c:
            print(await c.call("add_2_words", 2, 3))          # 5
            env = c.root("sim").make("pendulum")                # a proxy, sent at once
            print(await aio.materialize(env.reset(seed=1)))     # one round trip

One reader task per connection routes replies to futures by call id (no
thread per call); the codecs, schema strings, command table, handler table
and the dynamic layer's request building are the blocking client's.
A call whose task is cancelled (or whose timeout runs out) sends CANCEL;
its late reply is dropped. Raw TCP only (``tcp://HOST:PORT`` or
``HOST:PORT``); the token comes from ``token=`` or ``FRAMERPC_TOKEN``.

Handlers (:class:`framerpc.Handlers`) may be coroutine functions or plain
functions; each call from the server runs in its own task.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import copy
import socket
import struct
import time

from . import frame as fr
from .client import DEFAULT_TIMEOUT, CallContext, CommandInfo, Handlers, Status, _Command, _Inbound, \
    decode_list, encode_list
from .dynamic import STEP_DESCRIBE, Proxy, Session
from .errors import CallTimeout, DecodeError, Disconnected, EncodeError, FramerpcError, FrameTooLarge, \
    ProtocolViolation, RemoteError, UnknownCommand
from .hold import check_name, decode_shared, default_name, wait_payload
from .transport import ConnectError, parse_address

_HDR = fr.HEADER
_STATUS = struct.Struct("<III")
__all__ = ["connect", "AsyncClient", "AsyncHold", "materialize", "describe"]


class _SessionLink:
    """What the dynamic layer's Session needs of a connection: one-way sends."""

    def __init__(self, client: "AsyncClient"):
        self._c = client

    def notify_raw(self, cmd: int, payload=b"") -> None:
        self._c.notify_raw(cmd, payload)

    @property
    def max_frame_len(self) -> int:
        return self._c.max_frame_len

    def send_dynamic(self, frame) -> None:
        """The session's batch (a whole NOTIFY frame): written with the next write."""
        self._c._write(frame, True, batch=True)

    def arm(self) -> None:
        """A batch started: it goes out on the loop's next turn unless something sends it sooner."""
        self._c._loop.call_soon(self._c._flush_session)


class AsyncClient:
    """A connection to a framerpc server for asyncio code. Use :func:`connect`."""

    def __init__(self, reader, writer, *, address, timeout, max_frame_len, ping_after, idle_timeout, handlers,
                 token_sent):
        self._r, self._w = reader, writer
        self.address = address
        #: the name given to the server (``identify``), or None
        self.name = None
        sock = writer.get_extra_info("sockname")
        self.local_address = f"{sock[0]}:{sock[1]}" if sock else None
        self.timeout = timeout
        self.max_frame_len = max_frame_len
        self.ping_after, self.idle_timeout = ping_after, idle_timeout
        self.handlers = handlers if handlers is not None else Handlers()
        self._token_sent = token_sent
        self._pending: dict[int, tuple[asyncio.Future, int]] = {}
        self._inbound: dict[int, _Inbound] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._reason: str | None = None
        self._commands: dict | None = None
        self._queued: list = []
        self._flush_scheduled = False
        self._last_life = time.monotonic()
        self._session = None
        self._tasks: set = set()
        self._heartbeats: set = set()
        self.stray_replies = 0
        self.frames_sent = self.frames_received = self.calls_sent = self.notifies_sent = 0
        self.notifies_dropped = 0
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._reader_task = loop.create_task(self._read_loop())
        self._watch_task = loop.create_task(self._watch()) if (ping_after or idle_timeout) else None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Closes the connection; pending calls fail with Disconnected."""
        self._shutdown("the client closed the connection")
        for t in (self._reader_task, self._watch_task):
            if t is not None and t is not asyncio.current_task():
                t.cancel()
                try:
                    await t
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def __repr__(self):
        return f"<framerpc.aio.AsyncClient {self.address}{' closed' if self._closed else ''}>"

    def _shutdown(self, reason) -> None:
        if self._closed:
            return
        self._closed = True
        self._reason = reason
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(Disconnected(reason))
        for inb in self._inbound.values():
            inb.cancelled = True
        try:
            self._w.close()
        except Exception:  # noqa: BLE001
            pass

    # -- sending --------------------------------------------------------------------------
    def _next_id(self) -> int:
        while True:
            i = next(self._ids) & 0xFFFFFFFF
            if i:
                return i

    def _flush_session(self) -> None:
        s = self._session
        if s is not None and s._pend and not self._closed:
            try:
                s.flush()
            except FramerpcError:
                pass

    def _write(self, frame, more=False, batch=False) -> None:
        if not batch:
            s = self._session
            if s is not None and s._pend:
                s.flush()  # the dynamic layer's batched calls go first (any frame forces them out)
        if self._closed:
            raise Disconnected(self._reason or "connection closed")
        self.frames_sent += 1
        if more:  # NOTIFYs of one burst share one write
            self.notifies_sent += 1
            self._queued.append(frame)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
            return
        if frame[4] == fr.CALL:
            self.calls_sent += 1
        if self._queued:
            self._queued.append(frame)
            self._flush()
        else:
            self._w.write(frame)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._queued and not self._closed:
            data = b"".join(self._queued)
            self._queued.clear()
            self._w.write(data)

    def _frame(self, kind, cmd, cid, payload) -> bytes:
        n = len(payload)
        if n > self.max_frame_len:
            raise FrameTooLarge(n, self.max_frame_len)
        return _HDR.pack(n, kind, 0, cmd, cid) + payload

    async def _roundtrip(self, cmd: int, frame_or_payload, timeout, name, prebuilt=False):
        if self._closed:
            raise Disconnected(self._reason or "connection closed")
        cid = self._next_id()
        if prebuilt:
            buf = frame_or_payload
            n = len(buf) - fr.HEADER_LEN
            if n > self.max_frame_len:
                raise FrameTooLarge(n, self.max_frame_len)
            _HDR.pack_into(buf, 0, n, fr.CALL, 0, cmd, cid)
            data = buf
        else:
            data = self._frame(fr.CALL, cmd, cid, frame_or_payload)
        fut = self._loop.create_future()
        self._pending[cid] = (fut, cmd)
        self._write(data)
        if self._w.transport.get_write_buffer_size() > (1 << 20):
            await self._w.drain()
        t = self.timeout if timeout is None else timeout
        try:
            if t is None or t < 0:
                h, payload = await fut
            else:
                h, payload = await asyncio.wait_for(fut, t)
        except asyncio.TimeoutError:
            self._cancel(cid, cmd)
            raise CallTimeout(name, cid, t) from None
        except BaseException:  # cancelled task (or anything else): the server is told
            self._cancel(cid, cmd)
            raise
        if h.kind == fr.REPLY:
            return payload
        code, msg = fr.parse_error_payload(payload)
        e = RemoteError.from_code(code, msg, name, cid)
        if code == 6 and not self._token_sent:
            e.args = (f"{e} (this client sent no token: pass token= or set FRAMERPC_TOKEN)",)
        raise e

    def _cancel(self, cid, cmd) -> None:
        if self._pending.pop(cid, None) is not None and not self._closed:
            try:
                self._write(_HDR.pack(0, fr.CANCEL, 0, cmd, cid))
            except FramerpcError:
                pass

    # -- calls ----------------------------------------------------------------------------
    async def call_raw(self, cmd: int | str, payload=b"", timeout: float | None = None):
        """Raw payload bytes to a command (id or name); the reply payload."""
        if isinstance(cmd, str):
            c = await self._command(cmd)
            cmd, name = c.info.id, c.info.name
        else:
            name = f"command {cmd}"
        return await self._roundtrip(cmd, payload, timeout, name)

    def notify_raw(self, cmd: int, payload=b"") -> None:
        """Sends a NOTIFY (one-way; consecutive ones share one write)."""
        self._write(self._frame(fr.NOTIFY, cmd, 0, payload), True)

    async def ping(self, data: bytes = b"", timeout=None):
        return await self._roundtrip(fr.PING, bytes(data), timeout, "ping")

    async def status(self, timeout=None) -> Status:
        p = await self._roundtrip(fr.STATUS, b"", timeout, "status")
        if len(p) != 12:
            raise DecodeError(f"status reply of {len(p)} bytes, expected 12")
        return Status(*_STATUS.unpack(p))

    async def list(self, timeout=None) -> list[CommandInfo]:
        rows = decode_list(await self._roundtrip(fr.LIST, b"", timeout, "list"))
        table = {}
        for r in rows:
            try:
                c = _Command(r)
            except FramerpcError:
                c = r
            table[r.name] = c
            table[r.id] = c
        self._commands = table
        return rows

    # -- sharing the device (as framerpc.Client's) --------------------------------------
    async def acquire(self, timeout: float | None = None) -> "AsyncHold":
        """Waits (at most ``timeout`` s; default the client's timeout) until
        this connection holds the device; see :meth:`framerpc.Client.acquire`.
        A cancelled task's wait sends CANCEL: the connection leaves the queue."""
        wait = self.timeout if timeout is None else timeout
        local = None if self.timeout is None or self.timeout < 0 else wait + self.timeout
        await self._roundtrip(fr.ACQUIRE, wait_payload(wait), local, "acquire")
        return AsyncHold(self, timeout, held=True)

    def hold(self, timeout: float | None = None) -> "AsyncHold":
        """``async with client.hold(timeout=60): ...``: acquired on entering, released on leaving."""
        return AsyncHold(self, timeout)

    async def release(self, timeout: float | None = None) -> None:
        """Gives the device back (without a hold nothing happens)."""
        await self._roundtrip(fr.RELEASE, b"", timeout, "release")

    async def shared_commands(self, timeout: float | None = None) -> list[int]:
        """The ids of the server's shared commands (they run without the device)."""
        return decode_shared(await self._roundtrip(fr.SHARED, b"", timeout, "shared"))

    async def queue(self, timeout: float | None = None) -> str:
        """Where this connection stands, in the server's words (``queue``)."""
        return bytes(await self._roundtrip(fr.QUEUE, b"", timeout, "queue")).decode("utf-8", "replace")

    async def _command(self, name_or_id) -> _Command:
        table = self._commands
        if table is None or name_or_id not in table:
            await self.list()
            table = self._commands
        c = table.get(name_or_id)
        if c is None:
            names = ", ".join(k for k in table if isinstance(k, str))
            raise UnknownCommand(1, f"no command {name_or_id!r} in the server's table ({names})", str(name_or_id))
        if isinstance(c, CommandInfo):
            _Command(c)
        return c

    async def command(self, name_or_id) -> CommandInfo:
        return (await self._command(name_or_id)).info

    async def call(self, command: str | int, *args, timeout: float | None = None):
        """A typed call, as :meth:`framerpc.Client.call`."""
        table = self._commands
        c = table.get(command) if table is not None else None
        if c is None or c.__class__ is not _Command:
            c = await self._command(command)
        reply = await self._roundtrip(c.info.id, c.encode_args(args), timeout, c.info.name, prebuilt=True)
        try:
            return c.resp.decode(reply)
        except DecodeError as e:
            raise DecodeError(f"reply of {c.info.name} does not decode as {c.info.response}: {e}") from None

    async def notify(self, command: str | int, *args) -> None:
        c = await self._command(command)
        buf = c.encode_args(args)
        n = len(buf) - fr.HEADER_LEN
        if n > self.max_frame_len:
            raise FrameTooLarge(n, self.max_frame_len)
        _HDR.pack_into(buf, 0, n, fr.NOTIFY, 0, c.info.id, 0)
        self._write(buf, True)

    # -- remote objects -------------------------------------------------------------------
    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session(_SessionLink(self))
        return self._session

    def root(self, name: str) -> Proxy:
        """A proxy for the server's root ``name`` (sends nothing)."""
        return self.session.root(name)

    async def sync(self, timeout=None) -> None:
        """Waits until the server has run every remote call sent so far."""
        await _request(self.session, None, timeout)

    def flush_releases(self) -> None:
        self.session.flush_releases()

    # -- serving --------------------------------------------------------------------------
    def handle(self, id: int, name: str, request: str = "unit", response: str = "unit"):
        """A decorator: serve command ``id`` (see :class:`framerpc.Handlers`)."""
        def deco(fn):
            self.handlers.add(id, name, request, response, fn)
            return fn
        return deco

    # -- reading --------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        r = self._r
        reason = None
        try:
            while True:
                try:
                    head = await r.readexactly(fr.HEADER_LEN)
                except asyncio.IncompleteReadError as e:
                    reason = (f"the server closed the connection ({self.address})" if not e.partial
                              else f"connection to {self.address} ended inside a frame header")
                    break
                h = fr.parse_header(head)
                if h.len > self.max_frame_len:
                    if h.kind == fr.CALL:
                        self._answer_error(h.cmd, h.id, 7, f"too large: payload of {h.len} bytes exceeds the "
                                                          f"client's limit of {self.max_frame_len} bytes")
                    reason = (f"TOO_LARGE: the server sent a frame of {h.len} bytes, over the client's limit of "
                              f"{self.max_frame_len} bytes (set by the client: max_frame_len)")
                    break
                try:
                    payload = await r.readexactly(h.len) if h.len else b""
                except asyncio.IncompleteReadError:
                    reason = f"connection to {self.address} ended inside a frame of {h.len} bytes"
                    break
                self._last_life = time.monotonic()
                self.frames_received += 1
                self._on_frame(h, payload)
        except asyncio.CancelledError:
            reason = reason or "the client closed the connection"
        except ProtocolViolation as e:
            reason = str(e)
        except (OSError, ConnectionError) as e:
            reason = f"connection to {self.address} lost: {e}"
        except Exception as e:  # noqa: BLE001 - never die silently
            reason = f"reader failed: {e!r}"
        finally:
            self._shutdown(reason or "connection closed")

    def _on_frame(self, h, payload) -> None:
        k = h.kind
        if k == fr.REPLY or k == fr.ERROR:
            entry = self._pending.pop(h.id, None)
            if entry is None:
                if h.id in self._heartbeats:
                    self._heartbeats.discard(h.id)
                else:
                    self.stray_replies += 1
                return
            fut, cmd = entry
            if fut.done():
                return
            if h.cmd != cmd:
                msg = f"reply for call {h.id} names command {h.cmd}, the call was to {cmd}"
                fut.set_result((fr.Header(0, fr.ERROR, cmd, h.id), fr.error_payload(10, msg)))
            else:
                fut.set_result((h, payload))
        elif k == fr.CALL:
            if h.cmd == fr.PING:
                self._reply(h.cmd, h.id, payload)
            elif h.cmd == fr.LIST:
                self._reply(h.cmd, h.id, encode_list(self.handlers.rows()))
            else:
                hd = self.handlers.get(h.cmd)
                if hd is None:
                    self._answer_error(h.cmd, h.id, 1, f"unknown command {h.cmd}")
                    return
                inb = _Inbound(self, h.id, h.cmd, hd, payload)
                self._inbound[h.id] = inb
                self._spawn(self._serve(inb))
        elif k == fr.NOTIFY:
            hd = self.handlers.get(h.cmd)
            if hd is None:
                self.notifies_dropped += 1
            else:
                self._spawn(self._serve(_Inbound(self, None, h.cmd, hd, payload)))
        elif k == fr.CANCEL:
            inb = self._inbound.get(h.id)
            if inb is not None and inb.cmd == h.cmd:
                inb.cancelled = True

    def _spawn(self, coro) -> None:
        t = self._loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _reply(self, cmd, cid, payload) -> None:
        try:
            self._write(self._frame(fr.REPLY, cmd, cid, payload))
        except FramerpcError:
            pass

    def _answer_error(self, cmd, cid, code, msg) -> None:
        try:
            self._write(self._frame(fr.ERROR, cmd, cid, fr.error_payload(code, msg)))
        except FramerpcError:
            pass

    async def _serve(self, inb: _Inbound) -> None:
        hd, cid = inb.handler, inb.id
        try:
            await asyncio.sleep(0)  # a CANCEL read in the same burst is seen first
            if cid is not None and inb.cancelled:
                return
            try:
                args = hd.args(inb.payload)
            except DecodeError as e:
                if cid is not None:
                    self._answer_error(inb.cmd, cid, 2, f"{hd.info.name} expects {hd.info.request}: {e}")
                return
            try:
                kw = {"ctx": CallContext(self, inb)} if hd.wants_ctx else {}
                result = hd.fn(*args, **kw)
                if inspect.isawaitable(result):
                    result = await result
                if cid is None:
                    return
                out = bytearray()
                try:
                    hd.resp.enc(result, out)
                except EncodeError as e:
                    raise EncodeError(f"the reply of {hd.info.name} does not fit {hd.info.response}: {e}") from None
                self._reply(inb.cmd, cid, bytes(out))
            except RemoteError as e:
                if cid is not None:
                    self._answer_error(inb.cmd, cid, e.code, e.message)
            except Exception as e:  # noqa: BLE001 - reported to the peer
                if cid is not None:
                    self._answer_error(inb.cmd, cid, 3, str(e) or type(e).__name__)
        finally:
            if cid is not None:
                self._inbound.pop(cid, None)

    async def _watch(self) -> None:
        """Heartbeats after ``ping_after`` s of silence; gives up after ``idle_timeout``."""
        tick = min(x for x in (self.ping_after, self.idle_timeout, 1.0) if x)
        pinged = False
        seen = self._last_life
        while not self._closed:
            await asyncio.sleep(tick)
            if self._last_life != seen:
                seen, pinged = self._last_life, False
            silent = time.monotonic() - self._last_life
            if self.idle_timeout is not None and silent >= self.idle_timeout:
                self._shutdown(f"no byte from {self.address} for {silent:.0f} s (idle timeout)")
                return
            if not pinged and self.ping_after is not None and silent >= self.ping_after:
                pinged = True
                hid = self._next_id()
                try:
                    self._write(_HDR.pack(0, fr.CALL, 0, fr.PING, hid))
                except FramerpcError:
                    return
                self._heartbeats.add(hid)  # its answer is not a stray


async def _request(session: Session, fetch: Proxy | None, timeout, describe=False):
    """The dynamic layer's request (docs/DYNAMIC.md), built as the blocking client builds it, awaited."""
    client = session.client._c
    ref = None if fetch is None else fetch._ref()
    if describe:
        ref.append([STEP_DESCRIBE, None])
    label = "sync" if fetch is None else fetch._label()
    with session._lock:
        body, ids, calls, keep = session._request_body_locked(ref)  # the batched calls ride along
        if len(body) > client.max_frame_len and calls:
            session._unsent_locked(ids, calls, keep)  # too big together: the batch goes first
            session._send_batch_locked()
            body, ids, calls, keep = session._request_body_locked(ref)
    del keep
    try:
        reply = await client._roundtrip(session.command, body, timeout, label)
    except (Disconnected, FrameTooLarge):
        session._requeue(ids)  # the calls are lost with the connection
        raise
    return session._open(session.unpack(reply))  # refusals of earlier NOTIFYs are kept, the value returned


async def materialize(p, timeout: float | None = None):
    """The value of a proxy of an :class:`AsyncClient` (one round trip); non-proxies as they are."""
    if not isinstance(p, Proxy):
        return p
    from .dynamic import _Failed
    if isinstance(p._base, _Failed):
        raise p._base.error
    return await _request(p._s, p, timeout)


async def describe(p, timeout: float | None = None) -> dict:
    """What a remote value declares (see :func:`framerpc.describe`), fetched
    once per value and connection. Knowing it, the proxy checks member
    names and call arguments locally, and ``dir()``/``help()``/
    ``inspect.signature()`` work on it (they cannot wait on an asyncio
    connection: describe first)."""
    if not isinstance(p, Proxy):
        raise TypeError(f"describe() takes a proxy, not {type(p).__name__}")
    from .dynamic import _Failed
    if isinstance(p._base, _Failed):
        raise p._base.error
    d = p._s.known(p)
    if d is None:
        d = await _request(p._s, p, timeout, describe=True)
        p._s.remember(p, d)
    return copy.deepcopy(d)


class AsyncHold:
    """The device held by an :class:`AsyncClient` (``async with``; see :class:`framerpc.Hold`)."""

    def __init__(self, client: AsyncClient, timeout: float | None = None, held: bool = False):
        self.client, self.timeout, self._held = client, timeout, held

    @property
    def held(self) -> bool:
        return self._held and not self.client.closed

    async def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if not self.client.closed:
            try:
                await self.client.release()
            except Disconnected:
                pass  # the hold ended with the connection

    async def __aenter__(self) -> "AsyncHold":
        if not self._held:
            await self.client.acquire(self.timeout)
            self._held = True
        return self

    async def __aexit__(self, et, e, tb):
        try:
            await self.release()
        except FramerpcError:
            if et is None:
                raise
        return False


async def connect(address: str, token=None, timeout: float = DEFAULT_TIMEOUT, *, connect_timeout: float = 10.0,
                  max_frame_len: int = fr.DEFAULT_MAX_FRAME_LEN, ping_after: float | None = 30.0,
                  idle_timeout: float | None = 40.0, handlers: Handlers | None = None,
                  name: str | None = None) -> AsyncClient:
    """Connects (raw TCP); the arguments are :func:`framerpc.connect`'s."""
    if name is None:
        name = default_name()
    else:
        try:
            check_name(name)
        except ValueError as e:
            raise ValueError(f"connect(name=...): {e}") from None
    a = parse_address(address)
    if a[0] != "tcp":
        raise ValueError(f"framerpc.aio speaks raw TCP (tcp://HOST:PORT), not {address!r}; "
                         "use framerpc.connect for WebSocket")
    if token is None:
        token = os.environ.get("FRAMERPC_TOKEN") or None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(a[1], a[2], limit=1 << 20),
                                                connect_timeout)
    except (OSError, asyncio.TimeoutError) as e:
        raise ConnectError(f"cannot connect to tcp://{a[1]}:{a[2]}: {e}") from e
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = AsyncClient(reader, writer, address=f"tcp://{a[1]}:{a[2]}", timeout=timeout, max_frame_len=max_frame_len,
                    ping_after=ping_after, idle_timeout=idle_timeout, handlers=handlers,
                    token_sent=token is not None)
    if token is not None:
        tok = token.encode("utf-8") if isinstance(token, str) else bytes(token)
        try:
            await c._roundtrip(fr.AUTH, tok, connect_timeout, "auth")
        except BaseException:
            await c.close()
            raise
    c.name = name
    if name is not None:
        c.notify_raw(fr.IDENTIFY, check_name(name))  # one way, goes out with the next frame
    return c
