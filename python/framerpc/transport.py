"""Transports: whole frames over raw TCP or inside WebSocket binary messages.

A transport has ``send(frame)`` (one whole frame, thread-safe, one write),
``recv(tick)`` (the next ``(Header, payload)``, :data:`TICK` when ``tick``
seconds pass with nothing, ``None`` at a clean end), ``received`` (bytes read
so far) and ``close()``.
"""

from __future__ import annotations

import inspect
import os
import socket
import threading
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
    """Raw TCP: frames back to back on one stream."""

    kind = "tcp"

    def __init__(self, host: str, port: int, connect_timeout: float, write_timeout: float, max_frame_len: int):
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as e:
            raise ConnectError(f"cannot connect to tcp://{host}:{port}: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(write_timeout)
        self._w = sock
        # A second socket object on the same connection for the reader, so
        # its short read timeout (the heartbeat tick) never bounds a write.
        self._r = sock.dup()
        self._wlock = threading.Lock()
        self._buf = bytearray()
        self._max = max_frame_len
        self._tick = None
        self.received = 0
        self.peer = f"tcp://{host}:{port}"
        self.local = _sockname(sock)
        self._closed = False

    def send(self, frame) -> None:
        with self._wlock:
            try:
                self._w.sendall(frame)
            except OSError as e:
                self.close()
                raise Disconnected(f"connection to {self.peer} lost while sending: {e}") from e

    def _fill(self, tick):
        if tick != self._tick:
            self._r.settimeout(tick)
            self._tick = tick
        try:
            chunk = self._r.recv(1 << 18)
        except socket.timeout:
            return TICK
        except OSError as e:
            if self._closed:
                return None
            raise Disconnected(f"connection to {self.peer} lost: {e}") from e
        if not chunk:
            return None
        self.received += len(chunk)
        self._buf += chunk
        return True

    def recv(self, tick: float):
        buf = self._buf
        while len(buf) < HEADER_LEN:
            r = self._fill(tick)
            if r is not True:
                if r is None and buf:
                    raise Disconnected(f"connection to {self.peer} ended inside a frame header")
                return r
            buf = self._buf
        h = parse_header(buf)
        if h.len > self._max:
            raise FrameOverLimit(h, self._max)
        end = HEADER_LEN + h.len
        while len(self._buf) < end:
            r = self._fill(tick)
            if r is None:
                raise Disconnected(f"connection to {self.peer} ended inside a frame of {h.len} bytes")
            if r is TICK:
                return TICK  # the partial frame stays buffered
        buf = self._buf
        payload = bytes(buf[HEADER_LEN:end])
        del buf[:end]
        return h, payload

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for s in (self._w, self._r):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self._w.close()
        except OSError:
            pass

    def close_reader(self) -> None:
        try:
            self._r.close()
        except OSError:
            pass


class WsTransport:
    """WebSocket: one whole frame per binary message."""

    kind = "ws"

    def __init__(self, url: str, token: str | None, connect_timeout: float, max_frame_len: int):
        try:
            from websockets.sync.client import connect as ws_connect
            from websockets.exceptions import InvalidStatus
        except ImportError as e:  # pragma: no cover
            raise ImportError("ws:// needs the websockets package: pip install 'framerpc[ws]'") from e
        headers = {}
        if token is None:
            token = os.environ.get("FRAMERPC_TOKEN") or None
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

    def send(self, frame) -> None:
        from websockets.exceptions import ConnectionClosed

        with self._wlock:
            try:
                self._ws.send(bytes(frame) if not isinstance(frame, bytes) else frame)
            except (ConnectionClosed, OSError) as e:
                raise Disconnected(f"connection to {self.peer} lost while sending: {e}") from e

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
    """``("tcp", host, port)`` or ``("ws", url)`` from ``tcp://h:p``, ``h:p`` or ``ws://...``."""
    if addr.startswith(("ws://", "wss://")):
        return ("ws", addr)
    if addr.startswith("tcp://"):
        addr = addr[len("tcp://"):]
    elif "://" in addr:
        raise ValueError(f"unsupported address {addr!r}: use tcp://HOST:PORT, HOST:PORT or ws://HOST:PORT/PATH")
    u = urlsplit("//" + addr)
    if u.hostname is None or u.port is None:
        raise ValueError(f"address {addr!r} needs a host and a port")
    return ("tcp", u.hostname, u.port)
