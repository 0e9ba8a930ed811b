"""Frames: the 12-byte header and whole frames.

::

    offset size field
    0      4    len   u32  payload length (header excluded), little-endian
    4      1    kind  u8   1 CALL, 2 REPLY, 3 ERROR, 4 NOTIFY, 5 CANCEL
    5      1    flags u8   0
    6      2    cmd   u16  command id
    8      4    id    u32  call id
    12     len  payload
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import DecodeError, ProtocolViolation

HEADER = struct.Struct("<IBBHI")
HEADER_LEN = 12

CALL, REPLY, ERROR, NOTIFY, CANCEL = 1, 2, 3, 4, 5
KIND_NAMES = {CALL: "CALL", REPLY: "REPLY", ERROR: "ERROR", NOTIFY: "NOTIFY", CANCEL: "CANCEL"}

AUTH, LIST, PING, STATUS, QUEUE = 0xFF00, 0xFF01, 0xFF02, 0xFF03, 0xFF04
#: Sharing a device: ``acquire`` (u32 LE longest wait in ms), ``release``,
#: ``identify`` (a UTF-8 label), ``shared`` (``u16 count`` then ``u16`` ids).
ACQUIRE, RELEASE, IDENTIFY, SHARED = 0xFF05, 0xFF06, 0xFF07, 0xFF08
RESERVED_START = 0xFF00

#: Default frame payload limit (64 MiB), as the Rust side.
DEFAULT_MAX_FRAME_LEN = 64 << 20

_ERR_HEAD = struct.Struct("<H")


class Header(NamedTuple):
    len: int
    kind: int
    cmd: int
    id: int


_new_header = tuple.__new__


def parse_header(b) -> Header:
    """Parses 12 bytes; rejects unknown kinds and any flag bit."""
    if len(b) < HEADER_LEN:
        raise ProtocolViolation(f"short frame header: {len(b)} of 12 bytes")
    n, kind, flags, cmd, cid = HEADER.unpack_from(b, 0)
    if kind not in KIND_NAMES:
        raise ProtocolViolation(f"unknown frame kind {kind}")
    if flags:
        raise ProtocolViolation(f"unknown frame flags 0x{flags:02x}")
    return _new_header(Header, (n, kind, cmd, cid))  # Header(...) without its Python-level __new__


def encode_frame(kind: int, cmd: int, id: int, payload=b"") -> bytes:
    """One whole frame: header then payload."""
    return HEADER.pack(len(payload), kind, 0, cmd, id) + bytes(payload)


def decode_frame(b) -> tuple[Header, bytes]:
    """Splits one whole frame; its length must match exactly."""
    h = parse_header(b)
    if len(b) - HEADER_LEN != h.len:
        raise ProtocolViolation(f"frame len field says {h.len} but {len(b) - HEADER_LEN} payload bytes follow")
    return h, bytes(b[HEADER_LEN:])


def error_payload(code: int, message: str) -> bytes:
    """An ERROR payload: ``u16 code`` then the UTF-8 message."""
    return _ERR_HEAD.pack(code) + message.encode("utf-8")


def parse_error_payload(p) -> tuple[int, str]:
    """``(code, message)`` from an ERROR payload."""
    if len(p) < 2:
        raise DecodeError(f"ERROR payload of {len(p)} bytes is shorter than its 2-byte code")
    return _ERR_HEAD.unpack_from(p, 0)[0], bytes(p[2:]).decode("utf-8", "replace")
