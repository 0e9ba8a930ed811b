"""Sharing a device from the client side (the Rust client's ``hold.rs``):
holding it (``acquire``/``release``), the connection's name (``identify``)
and which commands are shared.

A server with an admission limit gives its device to one connection at a
time (``max_users``). A connection asks for it at its first call of a
command that needs it (every application command not registered *shared*)
or with :meth:`Client.acquire`, and holds it until :meth:`Client.release`,
the end of the connection, or (``hold_idle`` on the server) a while without
a call that needs it. Shared commands run at any time, also while another
connection holds the device.
"""

from __future__ import annotations

import os
import struct
import unicodedata

from . import frame as fr
from .errors import DecodeError, Disconnected, FramerpcError

#: Longest ``identify`` label, in bytes.
MAX_NAME = 64
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def _is_control(c: str) -> bool:
    return unicodedata.category(c) == "Cc"  # Rust's char::is_control


def check_name(name) -> bytes:
    """The ``identify`` payload for ``name``, or ValueError saying why the
    server would refuse it: 1 to 64 bytes of printable UTF-8."""
    if isinstance(name, (bytes, bytearray)):
        raw = bytes(name)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"a name must be UTF-8: {e}") from None
    elif isinstance(name, str):
        text = name
        try:
            raw = name.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"a name must be UTF-8: {e}") from None
    else:
        raise TypeError(f"a name is a str, not {type(name).__name__}")
    if not 1 <= len(raw) <= MAX_NAME:
        raise ValueError(f"a name must be 1 to {MAX_NAME} bytes of printable UTF-8, got {len(raw)} bytes")
    bad = next((c for c in text if _is_control(c)), None)
    if bad is not None:
        raise ValueError(f"a name must be printable: it holds the control character {bad!r}")
    return raw


def default_name(environ=None) -> str | None:
    """``user@host`` from the environment (``USER`` or ``LOGNAME``, and
    ``HOSTNAME`` or /etc/hostname), cut to what ``identify`` takes; None
    when neither is known. The Rust client's default."""
    env = os.environ if environ is None else environ
    user = env.get("USER") or env.get("LOGNAME")
    host = env.get("HOSTNAME")
    if host is None:
        try:
            with open("/etc/hostname", encoding="utf-8", errors="replace") as f:
                host = f.read().strip()
        except OSError:
            host = None
    if user is not None and host:
        name = f"{user}@{host}"
    elif user is not None:
        name = user
    elif host:
        name = host
    else:
        return None
    name = "".join(c for c in name if not _is_control(c))
    raw = name.encode("utf-8")[:MAX_NAME].decode("utf-8", "ignore")  # cut on a character boundary
    return raw or None


def wait_payload(wait: float) -> bytes:
    """``acquire``'s request: the longest wait in whole milliseconds (u32 LE, saturating)."""
    if wait != wait or wait < 0:
        raise ValueError(f"the longest wait for the device is 0 or more seconds, not {wait!r}")
    ms = min(int(wait * 1000), 0xFFFFFFFF) if wait != float("inf") else 0xFFFFFFFF
    return _U32.pack(ms)


def decode_shared(p) -> list[int]:
    """The ids of a ``shared`` reply: ``u16 count`` then ``u16`` ids."""
    mv = memoryview(p)
    if len(mv) < 2:
        raise DecodeError("shared reply shorter than its u16 count")
    (n,) = _U16.unpack_from(mv, 0)
    if len(mv) < 2 + 2 * n:
        raise DecodeError(f"shared reply names {n} ids in {len(mv) - 2} bytes")
    if len(mv) > 2 + 2 * n:
        raise DecodeError(f"{len(mv) - 2 - 2 * n} trailing byte(s) after the shared reply")
    return [_U16.unpack_from(mv, 2 + 2 * i)[0] for i in range(n)]


class Hold:
    """The device, held by one connection of a client until released.

    ``with client.hold(timeout=60):`` waits (at most 60 s) for the device
    on entering and gives it back on leaving, also when an exception leaves
    the block. :meth:`Client.acquire` returns one already held (release it
    with :meth:`release` or :meth:`Client.release`, or use it in ``with``).

    Unlike the Rust ``Hold``, dropping this object releases nothing: a hold
    ends by :meth:`release`, by leaving its ``with`` block, or with the
    connection. A hold belongs to the connection that acquired it: after a
    reconnect it is gone (the server ended it with the old connection), and
    releasing it does nothing.
    """

    def __init__(self, client, timeout: float | None = None):
        self.client = client
        #: the longest wait for the device, in seconds (None: the client's timeout)
        self.timeout = timeout
        self._conn = None
        self._held = False

    @property
    def held(self) -> bool:
        """True from acquiring until releasing, while the connection that acquired it lives."""
        return self._held and not self._conn.closed

    def acquire(self) -> "Hold":
        """Waits for the device (renews the hold when this connection holds it already)."""
        self._conn = self.client._acquire(self.timeout)
        self._held = True
        return self

    def release(self) -> None:
        """Gives the device back (once; after a reconnect or on a closed connection, nothing to do)."""
        if not self._held:
            return
        self._held = False
        conn = self._conn
        if conn.closed:
            return  # the server ended the hold with the connection
        try:
            conn.call_raw(fr.RELEASE, b"", None, "release")
        except Disconnected:
            pass  # ... and here too

    def __enter__(self) -> "Hold":
        if not self._held:
            self.acquire()
        return self

    def __exit__(self, et, e, tb):
        try:
            self.release()
        except FramerpcError:
            if et is None:
                raise  # otherwise the block's own exception is the one to see
        return False

    def __repr__(self):
        state = "held" if self.held else "not held"
        return f"<framerpc.Hold {state} on {self.client.address}>"
