"""Client behaviour against a scripted peer: CANCEL, late replies, server calls, limits, auth."""

import struct
import threading

import pytest

import framerpc
from framerpc import frame as fr


def connect_fake(fake, **kw):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("c", framerpc.connect(fake.addr, **kw)))
    t.start()
    fake.accept()
    if kw.get("token") is not None:
        kind, cmd, cid, p = fake.recv()
        assert (kind, cmd, p) == (fr.CALL, fr.AUTH, kw["token"].encode())
        fake.send(fr.REPLY, fr.AUTH, cid)
    t.join(5)
    c = box["c"]
    if c.name is not None:
        # the client names itself at once (one way; the keeper sends it within 20 ms)
        assert fake.recv(names=True) == (fr.NOTIFY, fr.IDENTIFY, 0, c.name.encode())
    return c


def test_timeout_sends_cancel_and_drops_late_reply(fake):
    c = connect_fake(fake, timeout=5)
    with pytest.raises(framerpc.CallTimeout) as e:
        c.call_raw(3, b"slow", timeout=0.2)
    kind, cmd, cid, p = fake.recv()
    assert (kind, cmd, p) == (fr.CALL, 3, b"slow")
    assert e.value.call_id == cid and "command 3" in str(e.value) and f"id {cid}" in str(e.value)
    assert isinstance(e.value, TimeoutError)
    # before cancelling, the client asks where it stands (queue, 0xFF04: a
    # device server forgets a waiter's place once all its waiting calls are
    # cancelled); this peer does not answer, so the timeout is reported without it
    kind, cmd, qid, p = fake.recv()
    assert (kind, cmd, p) == (fr.CALL, fr.QUEUE, b"")
    assert fake.recv() == (fr.CANCEL, fr.QUEUE, qid, b"")
    assert fake.recv() == (fr.CANCEL, 3, cid, b"")  # same cmd and id, empty payload
    assert e.value.server is None
    # the next call is in flight when the late reply arrives: it must not get it
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", c.call_raw(3, b"next")))
    t.start()
    kind, cmd, cid2, p = fake.recv()
    assert p == b"next" and cid2 != cid
    fake.send(fr.REPLY, 3, cid, b"late")
    fake.send(fr.REPLY, 3, cid2, b"mine")
    t.join(5)
    assert box["r"] == b"mine"
    assert c.stray_replies == 1
    c.close()


def test_replies_out_of_order_reach_their_callers(fake):
    c = connect_fake(fake, timeout=5)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.setdefault(i, c.call_raw(7, bytes([i])))) for i in range(4)]
    for t in threads:
        t.start()
    calls = [fake.recv() for _ in range(4)]
    for kind, cmd, cid, p in reversed(calls):
        fake.send(fr.REPLY, cmd, cid, p * 2)
    for t in threads:
        t.join(5)
    assert results == {i: bytes([i]) * 2 for i in range(4)}
    c.close()


def test_server_calls_ping_answered_others_refused_notify_ignored(fake):
    c = connect_fake(fake, timeout=5)
    fake.send(fr.NOTIFY, 1, 0, b"x")
    fake.send(fr.CALL, fr.PING, 41, b"beat")
    assert fake.recv() == (fr.REPLY, fr.PING, 41, b"beat")
    fake.send(fr.CALL, fr.PING, 42)
    assert fake.recv() == (fr.REPLY, fr.PING, 42, b"")
    fake.send(fr.CALL, 9, 43, b"?")
    kind, cmd, cid, p = fake.recv()
    assert (kind, cmd, cid) == (fr.ERROR, 9, 43)
    assert fr.parse_error_payload(p) == (1, "unknown command 9")
    fake.send(fr.CANCEL, 9, 43)
    # still a working connection
    t = threading.Thread(target=lambda: c.call_raw(1, b""))
    t.start()
    kind, cmd, cid, _ = fake.recv()
    fake.send(fr.REPLY, cmd, cid)
    t.join(5)
    assert not c.closed
    c.close()


@pytest.mark.parametrize("code,cls", [
    (1, framerpc.UnknownCommand), (2, framerpc.BadPayload), (3, framerpc.HandlerError), (4, framerpc.Panic),
    (5, framerpc.Busy), (6, framerpc.Unauthorized), (7, framerpc.TooLarge), (8, framerpc.ShuttingDown),
    (9, framerpc.RemoteTimeout), (10, framerpc.ProtocolError), (1001, framerpc.RemoteError),
])
def test_remote_errors_by_code(fake, code, cls):
    c = connect_fake(fake, timeout=5)
    box = {}

    def run():
        try:
            c.call_raw(5, b"")
        except Exception as e:
            box["e"] = e

    t = threading.Thread(target=run)
    t.start()
    kind, cmd, cid, _ = fake.recv()
    fake.send(fr.ERROR, cmd, cid, fr.error_payload(code, f"message {code}"))
    t.join(5)
    e = box["e"]
    assert type(e) is cls and e.code == code and e.message == f"message {code}" and e.call_id == cid
    assert isinstance(e, framerpc.RemoteError)
    if code == 9:
        assert isinstance(e, TimeoutError)
    c.close()


def test_oversize_frame_from_server_closes(fake):
    c = connect_fake(fake, timeout=5, max_frame_len=1000)
    box = {}

    def run():
        try:
            c.call_raw(5, b"")
        except Exception as e:
            box["e"] = e

    t = threading.Thread(target=run)
    t.start()
    kind, cmd, cid, _ = fake.recv()
    fake.conn.sendall(struct.pack("<IBBHI", 1001, fr.REPLY, 0, cmd, cid))
    t.join(5)
    assert isinstance(box["e"], framerpc.Disconnected)
    assert "1001" in str(box["e"]) and "1000" in str(box["e"])


def test_bad_kind_or_flags_from_server_closes(fake):
    c = connect_fake(fake, timeout=5)
    fake.conn.sendall(struct.pack("<IBBHI", 0, 9, 0, 1, 1))
    with pytest.raises(framerpc.Disconnected, match="unknown frame kind 9"):
        for _ in range(50):
            c.call_raw(1, b"", timeout=1)


def test_token_sent_first_on_tcp(fake):
    c = connect_fake(fake, token="s3cret", timeout=5)
    assert not c.closed
    c.close()


def test_wrong_token_raises_unauthorized(fake):
    box = {}

    def run():
        try:
            framerpc.connect(fake.addr, token="bad", timeout=5)
        except Exception as e:
            box["e"] = e

    t = threading.Thread(target=run)
    t.start()
    fake.accept()
    kind, cmd, cid, p = fake.recv()
    fake.send(fr.ERROR, cmd, cid, fr.error_payload(6, "unauthorized: wrong token"))
    fake.conn.close()
    t.join(5)
    assert isinstance(box["e"], framerpc.Unauthorized) and "bad" not in str(box["e"])


def test_disconnect_fails_pending_call_at_once(fake):
    c = connect_fake(fake, timeout=30)
    box = {}

    def run():
        try:
            c.call_raw(5, b"")
        except Exception as e:
            box["e"] = e

    t = threading.Thread(target=run)
    t.start()
    fake.recv()
    fake.conn.close()
    t.join(5)
    assert not t.is_alive()
    assert isinstance(box["e"], framerpc.Disconnected)


def test_heartbeat_and_idle_timeout(fake):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault(
        "c", framerpc.connect(fake.addr, timeout=5, ping_after=0.3, idle_timeout=1.2)))
    t.start()
    fake.accept()
    t.join(5)
    c = box["c"]
    c._tick = 0.1
    kind, cmd, cid, p = fake.recv()  # the client's heartbeat after ~0.3 s of silence
    assert (kind, cmd, p) == (fr.CALL, fr.PING, b"")
    fake.send(fr.REPLY, fr.PING, cid)  # the answer is not a stray reply
    kind, cmd, cid, p = fake.recv()
    assert cmd == fr.PING
    # no answer this time: the client gives up after idle_timeout
    import time
    deadline = time.monotonic() + 5
    while not c.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(framerpc.Disconnected, match="idle"):
        c.ping()
    assert c.stray_replies == 0
