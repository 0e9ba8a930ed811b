"""Transports: whole frames over raw TCP or inside WebSocket binary messages,
either of them optionally inside TLS (``tls://``, ``wss://``).

A transport has ``send(frame)`` (one whole frame, thread-safe, one write),
``recv(tick)`` (the next ``(Header, payload)``, :data:`TICK` when ``tick``
seconds pass with nothing, ``None`` at a clean end), ``received`` (bytes read
so far) and ``close()``.

TLS uses the standard :mod:`ssl` module. A ``tls://`` connection is one
:class:`ssl.SSLSocket` shared by the reading thread and the writers (an
``SSLSocket`` cannot be ``dup()``-ed like the plain socket: the TLS state
lives in the object). One thread in ``recv`` while another is in
``sendall`` on the same ``SSLSocket`` is NOT safe, even with one thread per
direction and TLS 1.3: with a socket timeout, CPython runs OpenSSL on a
non-blocking socket, a large ``SSL_write`` stops half way when the socket
buffer is full, and an ``SSL_read`` in the other thread meanwhile works on
the same connection state; under load the peer then receives corrupted
records (``bad_record_mac``; ``tests/test_tls.py`` reproduced it with six
threads sending 700 KB frames while the reader received). So here the
socket is non-blocking and every OpenSSL call (``recv_into``, ``send``)
runs under one lock that is only held for that call, which never waits:
a writer that meets a full socket buffer (``SSLWantWriteError``) lets go
of the lock and waits for the socket with ``select``, and so does the
reader for the next record (or its heartbeat tick). Reading and writing
stay full duplex, and no OpenSSL call overlaps another.
"""

from __future__ import annotations

import inspect
import select
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from .errors import Disconnected, FramerpcError, ProtocolViolation, Unauthorized
from .frame import HEADER_LEN, Header, parse_header

TICK = object()


class ConnectError(FramerpcError, ConnectionError):
    """The connection could not be set up (refused, HTTP status, timeout)."""

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


class FrameOverLimit(ProtocolViolation):
    """The peer announced a frame over this side's limit."""

    def __init__(self, header: Header, limit: int):
        self.header = header
        self.limit = limit
        super().__init__(
            f"TOO_LARGE: the server sent a frame of {header.len} bytes, over the client's "
            f"limit of {limit} bytes (set by the client: max_frame_len)"
        )


class TcpTransport:
    """Raw TCP: frames back to back on one stream.

    Reading: small frames come out of one reused 128 KiB buffer (one
    ``recv_into`` usually brings a whole reply); a frame whose payload is
    over 64 KiB is read straight into a buffer of exactly its length (after
    the limit check), which is handed on as it is: no copy.

    Writing: one ``sendall`` per frame, or for all the frames that threads
    sent while another write was under way; NOTIFY frames sent with
    ``more=True`` wait in a small queue and go out with the next frame, or
    when :meth:`flush` runs (the client's keeper does within 20 ms), in one write.
    An exception in the middle of a write (KeyboardInterrupt included)
    closes the connection: a partial frame is never followed by another.
    """

    kind = "tcp"
    BUF = 128 << 10
    BIG = 64 << 10
    #: queued NOTIFY bytes that make the queue go out at once
    FLUSH_AT = 64 << 10

    def __init__(self, host: str, port: int, connect_timeout: float, write_timeout: float, max_frame_len: int,
                 ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None):
        scheme = "tls" if ssl_context is not None else "tcp"
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as e:
            raise ConnectError(f"cannot connect to {scheme}://{host}:{port}: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._ssl = ssl_context is not None
        if self._ssl:
            sock = _tls_handshake(ssl_context, sock, server_hostname or host, f"tls://{host}:{port}")
        self._write_timeout = write_timeout
        self._w = sock
        if self._ssl:
            # One non-blocking SSLSocket for both directions, every OpenSSL
            # call under _tls (see the module's notes).
            sock.setblocking(False)
            self._tls = threading.Lock()
            self._r = sock
            self._wn = None
        else:
            sock.settimeout(write_timeout)
            # A second socket object on the same connection for the reader, so
            # its short read timeout (the heartbeat tick) never bounds a write.
            self._r = sock.dup()
            # And one without a timeout for the first try of each write: a socket
            # with a timeout polls before every send, this one sends at once
            # (the connection's file is non-blocking either way).
            self._wn = sock.dup()
            self._wn.settimeout(0.0)
        self._wlock = threading.Lock()
        self._queued: list = []
        self._queued_len = 0
        self._writing = None  # the token of the thread in _write_all
        self._buf = bytearray(self.BUF)
        self._mv = memoryview(self._buf)
        self._start = 0  # unread bytes are _buf[_start:_end]
        self._end = 0
        self._big = None  # (header, bytearray payload, filled) of a big frame being read
        self._max = max_frame_len
        self._tick = None
        self.received = 0
        self.peer = f"{scheme}://{host}:{port}"
        self.local = _sockname(sock)
        self._closed = False
        #: why this side closed the connection (an interrupted write), or None
        self.broken: str | None = None

    # -- writing ---------------------------------------------------------------
    def send(self, frame, more: bool = False) -> None:
        """Writes one whole frame (after any queued ones). ``more``: a NOTIFY
        that may wait for the next write or :meth:`flush`.

        Threads that send at the same time share writes: a frame is queued,
        and the thread that finds no write under way writes everything
        queued, again and again until the queue is empty (each of its
        writes takes all that came in during the one before); the others
        return at once. Frames keep their order."""
        with self._wlock:
            if self._closed:
                raise Disconnected(self.broken or f"connection to {self.peer} closed")
            self._queued.append(frame)
            self._queued_len += len(frame)
            if (more and self._queued_len < self.FLUSH_AT) or self._writing is not None:
                return
            self._writing = me = object()
            q = self._queued
            self._queued = []
            self._queued_len = 0
        self._write_all(q, me)

    def flush(self) -> None:
        """Sends queued NOTIFY frames now."""
        with self._wlock:
            if not self._queued or self._closed or self._writing is not None:
                return
            self._writing = me = object()
            q = self._queued
            self._queued = []
            self._queued_len = 0
        self._write_all(q, me)

    def _write_all(self, q, me) -> None:
        """The writer's loop (``_writing`` is ``me``): writes ``q``, then what
        was queued meanwhile, until nothing is."""
        w, wn = self._w, self._wn
        try:
            while True:
                data = q[0] if len(q) == 1 else b"".join(q)
                done = False
                try:
                    if self._ssl:
                        self._send_tls(data)
                    else:
                        try:
                            n = wn.send(data)
                        except (BlockingIOError, InterruptedError):
                            n = 0
                        if n < len(data):
                            w.sendall(memoryview(data)[n:])  # the rest, waiting as long as the write timeout
                    done = True
                except OSError as e:
                    self._close_locked(f"connection to {self.peer} lost while sending: {e}")
                    raise Disconnected(self.broken) from e
                finally:
                    if not done and not self._closed:
                        self._close_locked("the connection was closed because a send was interrupted in the "
                                           "middle of a frame (a partial frame is never followed by another)")
                with self._wlock:
                    q = self._queued
                    if not q or self._closed:
                        self._writing = None
                        return
                    self._queued = []
                    self._queued_len = 0
        finally:
            if self._writing is me:  # left by an exception: no longer the writer
                with self._wlock:
                    if self._writing is me:
                        self._writing = None

    def _close_locked(self, reason: str) -> None:
        self.broken = reason
        self.close()

    # -- reading ---------------------------------------------------------------
    @property
    def mid_frame(self) -> bool:
        """Whether part of a frame has been read (an interrupted read then
        leaves the stream unusable)."""
        return self._big is not None or self._end > self._start

    def _settick(self, tick) -> None:
        if tick != self._tick:
            self._r.settimeout(tick)
            self._tick = tick

    def _recv_into(self, mv, tick):
        """Reads into ``mv``: the count, TICK, or None at the end."""
        if self._ssl:
            return self._recv_tls(mv, tick)
        self._settick(tick)
        try:
            n = self._r.recv_into(mv)
        except socket.timeout:
            return TICK
        except OSError as e:
            if self._closed:
                return None
            raise Disconnected(f"connection to {self.peer} lost: {e}") from e
        if not n:
            return None
        self.received += n
        return n

    def _send_tls(self, data) -> None:
        """Writes all of ``data`` through the shared SSLSocket within the
        write timeout: each ``send`` under the TLS lock, the waits for room
        outside it."""
        view = memoryview(data)
        s = self._w
        deadline = None if self._write_timeout is None else time.monotonic() + self._write_timeout
        off = 0
        while off < len(view):
            with self._tls:
                try:
                    off += s.send(view[off:])
                    continue
                except (ssl.SSLWantWriteError, BlockingIOError):
                    want_read = False
                except ssl.SSLWantReadError:
                    want_read = True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise socket.timeout(f"write timeout: the peer did not take a frame within {self._write_timeout} s")
            if want_read:
                select.select([s], [], [], left)
            else:
                select.select([], [s], [], left)

    def _recv_tls(self, mv, tick):
        """:meth:`_recv_into` on the shared SSLSocket: each ``recv_into``
        under the TLS lock, the waits for bytes (``select``, up to the
        tick) outside it."""
        s = self._r
        deadline = None if tick is None else time.monotonic() + tick
        try:
            while True:
                with self._tls:
                    try:
                        n = s.recv_into(mv)
                        break
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        pass
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return TICK
                ready, _, _ = select.select([s], [], [], left)
                if not ready:
                    return TICK
        except ssl.SSLZeroReturnError:
            return None  # close_notify
        except ssl.SSLError as e:
            if self._closed:
                return None
            raise Disconnected(f"connection to {self.peer} failed: {_tls_reason(e)}") from e
        except (OSError, ValueError) as e:
            if self._closed:
                return None
            raise Disconnected(f"connection to {self.peer} lost: {e}") from e
        if not n:
            return None
        self.received += n
        return n

    def recv(self, tick: float):
        """The next ``(Header, payload)``, TICK after ``tick`` s of silence, or None at a clean end."""
        if self._big is not None:
            return self._read_big(tick)
        buf = self._buf
        while self._end - self._start < HEADER_LEN:
            if self._start == self._end:
                self._start = self._end = 0
            elif len(buf) - self._start < HEADER_LEN:
                self._compact()
            r = self._recv_into(self._mv[self._end:], tick)
            if r is None:
                if self._end > self._start:
                    raise Disconnected(f"connection to {self.peer} ended inside a frame header")
                return None
            if r is TICK:
                return TICK
            self._end += r
        s = self._start
        h = parse_header(self._mv[s:s + HEADER_LEN])
        if h.len > self._max:
            raise FrameOverLimit(h, self._max)
        end = s + HEADER_LEN + h.len
        if end <= self._end:
            self._start = end if end < self._end else 0
            if end == self._end:
                self._end = 0
            return h, bytes(self._mv[s + HEADER_LEN:end])
        if h.len > self.BIG:
            # exactly the payload's size, filled in place and handed on
            payload = bytearray(h.len)
            have = self._end - s - HEADER_LEN
            payload[:have] = self._mv[s + HEADER_LEN:self._end]
            self._start = self._end = 0
            self._big = (h, payload, have)
            return self._read_big(tick)
        if end > len(buf):
            self._compact()
        while self._end - self._start < HEADER_LEN + h.len:
            r = self._recv_into(self._mv[self._end:], tick)
            if r is None:
                raise Disconnected(f"connection to {self.peer} ended inside a frame of {h.len} bytes")
            if r is TICK:
                return TICK  # the partial frame stays buffered
            self._end += r
        s = self._start
        end = s + HEADER_LEN + h.len
        self._start = end
        if end == self._end:
            self._start = self._end = 0
        return h, bytes(self._mv[s + HEADER_LEN:end])

    def _compact(self) -> None:
        n = self._end - self._start
        self._buf[:n] = self._mv[self._start:self._end]
        self._start, self._end = 0, n

    def _read_big(self, tick):
        h, payload, have = self._big
        mv = memoryview(payload)
        n = len(payload)
        while have < n:
            r = self._recv_into(mv[have:], tick)
            if r is None:
                raise Disconnected(f"connection to {self.peer} ended inside a frame of {n} bytes")
            if r is TICK:
                self._big = (h, payload, have)
                return TICK
            have += r
            self._big = (h, payload, have)
        self._big = None
        return h, payload

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for s in (self._w, self._r):
            try:
                # The plain socket's shutdown: SSLSocket.shutdown would drop
                # the TLS object under a reader that may be using it.
                socket.socket.shutdown(s, socket.SHUT_RDWR)
            except OSError:
                pass
        for s in (self._w, self._wn):
            if s is None:
                continue
            try:
                s.close()
            except OSError:
                pass

    def close_reader(self) -> None:
        if self._r is self._w:
            return  # TLS: one socket, closed by close()
        try:
            self._r.close()
        except OSError:
            pass


def make_ssl_context(cafile=None, certfile=None, keyfile=None, ssl_context=None) -> ssl.SSLContext:
    """The context for ``tls://`` and ``wss://``: ``ssl_context`` as given,
    else one that checks the server's certificate and name against
    ``cafile`` (a PEM of trusted roots: a lab's CA, or the server's
    self-signed certificate; default: the system's roots), presenting the
    client certificate ``certfile`` (PEM chain, leaf first) with its
    ``keyfile`` if given."""
    if ssl_context is not None:
        if cafile or certfile or keyfile:
            raise ValueError("pass either ssl_context= or cafile=/certfile=/keyfile=, not both")
        return ssl_context
    if keyfile and not certfile:
        raise ValueError("keyfile= needs certfile= (the client certificate)")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


def _tls_reason(e: ssl.SSLError) -> str:
    """What an ssl error means, in words."""
    verify = getattr(e, "verify_message", None)
    if verify:
        hint = ""
        if "issuer" in verify or "self-signed" in verify or "self signed" in verify:
            hint = " (pass the server's CA, or its self-signed certificate, as cafile=)"
        elif "mismatch" in verify or "match" in verify:
            hint = " (the certificate is not valid for the name connected to)"
        return f"the server's certificate was refused: {verify}{hint}"
    reason = getattr(e, "reason", None) or str(e)
    text = str(reason).upper()
    if "CERTIFICATE_REQUIRED" in text or "TLSV13_ALERT_CERTIFICATE_REQUIRED" in text:
        return "the server requires a client certificate (pass certfile= and keyfile=)"
    if "UNKNOWN_CA" in text or "BAD_CERTIFICATE" in text:
        return f"the server refused our client certificate ({reason})"
    if "BAD_RECORD_TYPE" in text or "DECRYPTION_FAILED" in text or "BAD_RECORD_MAC" in text:
        return (f"the server sent a TLS record this side cannot read ({reason}); right after a TLS 1.3 "
                "handshake this is how a server's refusal of our client certificate arrives (none was "
                "sent, or the server does not trust it: pass certfile= and keyfile=)")
    if "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER_FAILURE" in text or "PACKET_LENGTH_TOO_LONG" in text:
        return f"the server does not speak TLS on this port ({reason}); connect with tcp:// or ws://"
    return f"TLS error: {reason}"


def _tls_handshake(ctx: ssl.SSLContext, sock, server_hostname: str, where: str):
    """Wraps ``sock`` and runs the handshake within its (connect) timeout."""
    try:
        return ctx.wrap_socket(sock, server_hostname=server_hostname)
    except ssl.SSLError as e:
        sock.close()
        raise ConnectError(f"TLS handshake with {where} failed: {_tls_reason(e)}") from None
    except (OSError, TimeoutError) as e:
        sock.close()
        if isinstance(e, (socket.timeout, TimeoutError)):
            raise ConnectError(f"TLS handshake with {where} did not finish in time") from None
        raise ConnectError(f"TLS handshake with {where} failed: {e} (does the server speak TLS on this port?)") \
            from None


class WsTransport:
    """WebSocket: one whole frame per binary message."""

    kind = "ws"

    def __init__(self, url: str, token: str | None, connect_timeout: float, max_frame_len: int,
                 ssl_context: ssl.SSLContext | None = None):
        try:
            from websockets.sync.client import connect as ws_connect
            from websockets.exceptions import InvalidStatus
        except ImportError as e:  # pragma: no cover
            raise ImportError("ws:// needs the websockets package: pip install 'framerpc[ws]'") from e
        headers = {}
        if token is not None:
            if isinstance(token, bytes):
                token = token.decode("utf-8")
            headers["Authorization"] = f"Bearer {token}"
        kwargs = dict(
            additional_headers=headers,
            max_size=max_frame_len + HEADER_LEN,  # lift the 1 MiB default to the frame limit
            compression=None,  # arrays do not compress; deflate costs CPU
            open_timeout=connect_timeout,
            close_timeout=2,
        )
        if url.startswith("wss://"):
            kwargs["ssl"] = ssl_context if ssl_context is not None else make_ssl_context()
        params = inspect.signature(ws_connect).parameters
        if "proxy" in params:
            kwargs["proxy"] = None
        if "legacy" in params:  # websockets >= 16: return the connection directly, no warning
            kwargs["legacy"] = True
        if "max_queue" in params:
            kwargs["max_queue"] = 64
        try:
            self._ws = ws_connect(url, **kwargs)
        except InvalidStatus as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status == 401:
                raise Unauthorized(6, f"HTTP 401 from {url}: missing or wrong token") from None
            raise ConnectError(f"cannot connect to {url}: HTTP {status}", status) from None
        except ssl.SSLError as e:
            raise ConnectError(f"TLS handshake with {url} failed: {_tls_reason(e)}") from None
        except (OSError, TimeoutError) as e:
            raise ConnectError(f"cannot connect to {url}: {e}") from e
        except Exception as e:  # websockets' handshake errors
            raise ConnectError(f"cannot connect to {url}: {e}") from e
        self._max = max_frame_len
        self._wlock = threading.Lock()
        self.received = 0
        self.peer = url
        self.local = _sockname(getattr(self._ws, "socket", None))
        self._closed = False
        self.broken: str | None = None

    mid_frame = False  # websockets hands over whole messages
    _queued = ()  # every frame is sent at once

    def send(self, frame, more: bool = False) -> None:
        from websockets.exceptions import ConnectionClosed

        with self._wlock:
            if self.broken:
                raise Disconnected(self.broken)
            done = False
            try:
                self._ws.send(frame if isinstance(frame, bytes) else bytes(frame))
                done = True
            except (ConnectionClosed, OSError) as e:
                self.broken = f"connection to {self.peer} lost while sending: {e}"
                raise Disconnected(self.broken) from e
            finally:
                if not done and not self.broken:
                    self.broken = ("the connection was closed because a send was interrupted in the middle "
                                   "of a frame (a partial frame is never followed by another)")
                    sock = getattr(self._ws, "socket", None)
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except (AttributeError, OSError):
                        pass

    def flush(self) -> None:
        pass

    def recv(self, tick: float):
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

        try:
            msg = self._ws.recv(timeout=tick)
        except TimeoutError:
            return TICK
        except ConnectionClosedOK:
            return None
        except ConnectionClosed as e:
            if self._closed:
                return None
            raise Disconnected(f"connection to {self.peer} closed: {e}") from e
        except OSError as e:
            raise Disconnected(f"connection to {self.peer} lost: {e}") from e
        if isinstance(msg, str):
            raise ProtocolViolation("the server sent a text message; frames travel in binary messages")
        self.received += len(msg)
        h = parse_header(msg)
        if h.len > self._max:
            raise FrameOverLimit(h, self._max)
        if len(msg) - HEADER_LEN != h.len:
            raise ProtocolViolation(
                f"binary message of {len(msg)} bytes carries a frame whose len field says {h.len}")
        return h, msg[HEADER_LEN:]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._ws.close()
        except Exception:
            pass

    def close_reader(self) -> None:
        pass


def _sockname(sock):
    """``host:port`` of our end of the connection (as a server names it), or None."""
    try:
        host, port = sock.getsockname()[:2]
    except (AttributeError, OSError, TypeError, ValueError):
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(addr: str):
    """``("tcp", host, port)``, ``("tls", host, port)`` or ``("ws", url)`` from
    ``tcp://h:p``, ``h:p``, ``tls://h:p``, ``ws://...`` or ``wss://...``."""
    if addr.startswith(("ws://", "wss://")):
        return ("ws", addr)
    kind = "tcp"
    if addr.startswith("tcp://"):
        addr = addr[len("tcp://"):]
    elif addr.startswith("tls://"):
        kind, addr = "tls", addr[len("tls://"):].rstrip("/")
    elif "://" in addr:
        raise ValueError(f"unsupported address {addr!r}: use tcp://HOST:PORT, HOST:PORT, tls://HOST:PORT, "
                         "ws://HOST:PORT/PATH or wss://HOST:PORT/PATH")
    u = urlsplit("//" + addr)
    if u.hostname is None or u.port is None:
        raise ValueError(f"address {addr!r} needs a host and a port")
    return (kind, u.hostname, u.port)
