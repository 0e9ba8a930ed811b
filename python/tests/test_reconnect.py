"""Reconnecting (the Rust client's semantics): backoff with jitter, a bound
on attempts, fail-fast or wait during an outage, the token sent again,
calls in flight fail and are never replayed, proxies from before fail."""

import socket
import threading
import time

import pytest

import framerpc
from framerpc import frame as fr

from conftest import IO_TIMEOUT, ExampleServer
from test_client_fake import connect_fake

FAST = dict(initial_delay=0.01, max_delay=0.05)


def test_delay_doubles_caps_and_jitters():
    p = framerpc.Reconnect()
    for attempt in range(30):
        base = min(0.1 * 2 ** min(attempt, 20), 5.0)
        for rnd in (0.0, 0.5, 0.999):
            d = p.delay(attempt, rnd)
            assert base / 2 <= d <= base
        assert base / 2 <= p.delay(attempt) <= base
    with pytest.raises(ValueError):
        framerpc.Reconnect(during_outage="sometimes")


def test_call_in_flight_fails_token_sent_again_nothing_replayed(fake):
    c = connect_fake(fake, token="tok", timeout=IO_TIMEOUT,
                     reconnect=framerpc.Reconnect(**FAST, during_outage=framerpc.WAIT))
    box = {}

    def first():
        try:
            c.call_raw(5, b"in flight")
        except Exception as e:
            box["e"] = e

    t = threading.Thread(target=first)
    t.start()
    assert fake.recv()[3] == b"in flight"
    fake.conn.close()  # the connection breaks with the call unanswered
    t.join(IO_TIMEOUT)
    assert isinstance(box["e"], framerpc.Disconnected)
    fake.accept_again()
    kind, cmd, cid, p = fake.recv()
    assert (kind, cmd, p) == (fr.CALL, fr.AUTH, b"tok")  # the token, again, first
    fake.send(fr.REPLY, fr.AUTH, cid)
    t = threading.Thread(target=lambda: box.setdefault("r", c.call_raw(5, b"after")))
    t.start()
    kind, cmd, cid, p = fake.recv()
    assert (kind, cmd, p) == (fr.CALL, 5, b"after")  # not the call that was in flight
    fake.send(fr.REPLY, 5, cid, b"fine")
    t.join(IO_TIMEOUT)
    assert box["r"] == b"fine" and c.generation == 1 and c.is_connected()
    c.close()


def test_the_name_is_sent_after_the_token_at_every_connect(fake):
    c = connect_fake(fake, token="tok", name="scan@bench-3", timeout=IO_TIMEOUT,
                     reconnect=framerpc.Reconnect(**FAST, during_outage=framerpc.WAIT))
    # (connect_fake checked the first: a NOTIFY identify right after auth)
    fake.accept_again()  # the old connection breaks
    kind, cmd, cid, p = fake.recv(names=True)
    assert (kind, cmd, p) == (fr.CALL, fr.AUTH, b"tok")
    fake.send(fr.REPLY, fr.AUTH, cid)
    assert fake.recv(names=True) == (fr.NOTIFY, fr.IDENTIFY, 0, b"scan@bench-3")
    c.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_on(name, port, args=()):
    """The example server on a given port (retried a while: the port may linger)."""
    deadline = time.monotonic() + IO_TIMEOUT
    while True:
        try:
            return ExampleServer(name, [f"127.0.0.1:{port}", *args])
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_down(c):
    """Until the client has noticed that its connection ended (its keeper reads the end)."""
    deadline = time.monotonic() + IO_TIMEOUT
    while c.is_connected():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_fail_fast_then_back_with_a_restarted_server():
    port = free_port()
    s = start_on("greet_server", port)
    c = framerpc.connect(f"127.0.0.1:{port}", timeout=IO_TIMEOUT, reconnect=framerpc.Reconnect(**FAST))
    try:
        assert c.call("hello", "a") == "hello a"
        s.stop()
        wait_down(c)
        with pytest.raises(framerpc.Disconnected, match="reconnecting"):
            c.call("hello", "b")  # fails at once during the outage
        s = start_on("greet_server", port)
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            try:
                assert c.call("hello", "c") == "hello c"
                break
            except framerpc.Disconnected:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        assert c.generation >= 1 and not c.closed
    finally:
        c.close()
        s.stop()


def test_wait_during_outage_and_proxies_from_before_fail():
    port = free_port()
    s = start_on("sim_server", port)
    c = framerpc.connect(f"127.0.0.1:{port}", timeout=IO_TIMEOUT,
                         reconnect=framerpc.Reconnect(**FAST, during_outage=framerpc.WAIT))
    try:
        env = c.root("sim").make("pendulum")
        assert framerpc.materialize(env.name) == "pendulum"
        s.stop()
        wait_down(c)
        s = start_on("sim_server", port)
        assert framerpc.materialize(c.root("math").pow(2, 3)) == 8  # waits for the reconnect
        assert c.generation >= 1
        with pytest.raises(framerpc.Disconnected, match="do not survive a reconnect"):
            framerpc.materialize(env.name)
        with pytest.raises(framerpc.Disconnected, match="do not survive a reconnect"):
            framerpc.materialize(env.reset(seed=1))
    finally:
        c.close()
        s.stop()


def test_gives_up_after_max_attempts():
    port = free_port()
    s = start_on("greet_server", port)
    c = framerpc.connect(f"127.0.0.1:{port}", timeout=IO_TIMEOUT,
                         reconnect=framerpc.Reconnect(**FAST, max_attempts=3, during_outage=framerpc.WAIT))
    s.stop()
    deadline = time.monotonic() + IO_TIMEOUT
    while not c.closed:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(framerpc.Disconnected, match="gave up reconnecting .* after 3 failed attempt"):
        c.call("hello", "x")
    c.close()


def test_token_from_the_environment_on_tcp(fake, monkeypatch):
    monkeypatch.setenv("FRAMERPC_TOKEN", "from-env")
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("c", framerpc.connect(fake.addr, timeout=IO_TIMEOUT)))
    t.start()
    fake.accept()
    kind, cmd, cid, p = fake.recv()
    assert (kind, cmd, p) == (fr.CALL, fr.AUTH, b"from-env")
    fake.send(fr.REPLY, fr.AUTH, cid)
    t.join(IO_TIMEOUT)
    box["c"].close()


def test_missing_token_names_the_fix(fake, monkeypatch):
    monkeypatch.delenv("FRAMERPC_TOKEN", raising=False)
    c = connect_fake(fake, timeout=IO_TIMEOUT)
    box = {}

    def run():
        try:
            c.call("hello", "x")
        except Exception as e:
            box["e"] = e

    t = threading.Thread(target=run)
    t.start()
    kind, cmd, cid, p = fake.recv()
    assert cmd == fr.LIST
    fake.send(fr.ERROR, cmd, cid, fr.error_payload(6, "unauthorized: no token"))
    t.join(IO_TIMEOUT)
    e = box["e"]
    assert isinstance(e, framerpc.Unauthorized)
    assert "'hello'" in str(e) and "FRAMERPC_TOKEN" in str(e)
    c.close()
