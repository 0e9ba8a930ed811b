"""The client's side of calls from the server, against a scripted peer:
built-ins, errors by kind, CANCEL before a handler starts, arrival order."""

import threading

import pytest

import framerpc
from framerpc import frame as fr

from test_client_fake import connect_fake


def handlers(started, release):
    h = framerpc.Handlers()

    @h.command(1, "add", "(u32,u32)", "u32")
    def add(a, b):
        return a + b

    @h.command(2, "slow", "unit", "str")
    def slow():
        started.set()
        assert release.wait(5)
        return "done"

    @h.command(3, "fail", "str", "unit")
    def fail(kind):
        if kind == "app":
            raise framerpc.RemoteError(1001, "motor jammed")
        raise ValueError("bad value")

    @h.command(4, "wrong", "unit", "u8")
    def wrong():
        return 300

    return h


def test_server_calls_are_served(fake):
    started, release = threading.Event(), threading.Event()
    c = connect_fake(fake, timeout=5, handlers=handlers(started, release))
    try:
        fake.send(fr.CALL, fr.LIST, 1)
        kind, cmd, cid, p = fake.recv()
        assert (kind, cmd, cid) == (fr.REPLY, fr.LIST, 1)
        assert [tuple(r) for r in framerpc.decode_list(p)] == [
            (1, "add", "(u32,u32)", "u32"), (2, "slow", "unit", "str"), (3, "fail", "str", "unit"),
            (4, "wrong", "unit", "u8")]
        fake.send(fr.CALL, 1, 2, framerpc.encode("(u32,u32)", (2, 3)))
        assert fake.recv() == (fr.REPLY, 1, 2, framerpc.encode("u32", 5))
        fake.send(fr.CALL, 1, 3, b"\x01")
        kind, cmd, cid, p = fake.recv()
        assert (kind, cid) == (fr.ERROR, 3) and fr.parse_error_payload(p)[0] == 2  # BAD_PAYLOAD
        fake.send(fr.CALL, 3, 4, framerpc.encode("str", "app"))
        kind, cmd, cid, p = fake.recv()
        assert (kind, cid) == (fr.ERROR, 4) and fr.parse_error_payload(p) == (1001, "motor jammed")
        fake.send(fr.CALL, 3, 5, framerpc.encode("str", "other"))
        kind, cmd, cid, p = fake.recv()
        assert (kind, cid) == (fr.ERROR, 5) and fr.parse_error_payload(p) == (3, "bad value")
        fake.send(fr.CALL, 4, 6)
        kind, cmd, cid, p = fake.recv()
        code, msg = fr.parse_error_payload(p)
        assert (kind, cid, code) == (fr.ERROR, 6, 3) and "does not fit u8" in msg
        fake.send(fr.CALL, 99, 7)
        kind, cmd, cid, p = fake.recv()
        assert (kind, cid) == (fr.ERROR, 7) and fr.parse_error_payload(p) == (1, "unknown command 99")
        fake.send(fr.NOTIFY, 1, 0, framerpc.encode("(u32,u32)", (1, 1)))  # served, never answered
        fake.send(fr.NOTIFY, 42, 0, b"")  # nobody serves it: dropped
        fake.send(fr.CALL, fr.PING, 8, b"p")
        assert fake.recv() == (fr.REPLY, fr.PING, 8, b"p")
        assert c.notifies_dropped == 1
    finally:
        release.set()
        c.close()


def test_cancel_before_start_drops_the_call(fake):
    started, release = threading.Event(), threading.Event()
    c = connect_fake(fake, timeout=5, handlers=handlers(started, release))
    try:
        fake.send(fr.CALL, 2, 10)  # occupies the one handler thread
        assert started.wait(5)
        fake.send(fr.CALL, 1, 11, framerpc.encode("(u32,u32)", (1, 2)))  # queued behind it
        fake.send(fr.CANCEL, 1, 11)
        fake.send(fr.CALL, 1, 12, framerpc.encode("(u32,u32)", (3, 4)))
        release.set()
        assert fake.recv() == (fr.REPLY, 2, 10, framerpc.encode("str", "done"))
        assert fake.recv() == (fr.REPLY, 1, 12, framerpc.encode("u32", 7))  # 11 never answered
    finally:
        release.set()
        c.close()


def test_bad_registrations_are_refused():
    h = framerpc.Handlers()
    with pytest.raises(ValueError):
        h.add(0xFF02, "ping", "bytes", "bytes", lambda b: b)
    with pytest.raises(framerpc.SchemaError):
        h.add(1, "x", "vec<", "unit", lambda: None)
    h.add(1, "x", "unit", "unit", lambda: None)
    with pytest.raises(ValueError):
        h.add(2, "x", "unit", "unit", lambda: None)
