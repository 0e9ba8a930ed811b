"""The device example (examples/device_server.rs): exclusive access, status, queueing.

A motor and a camera behind ``max_users(1)``: the first connection holds the
device for its lifetime; later ones wait in a FIFO queue (default) or get
BUSY naming the holder (``--refuse``). ``ping``, ``status`` and ``list`` are
answered while a connection waits. Admission happens at connect, so the
holder is simply the first client connected.
"""

import threading
import time

import pytest

import framerpc

from conftest import ExampleServer


def start(args):
    s = ExampleServer("device_server", ["127.0.0.1:0", *args])
    s.addr = "tcp://" + s.value("listening on ")
    return s


@pytest.fixture
def queued():
    s = start(["--max-users", "1"])
    yield s
    s.stop()


@pytest.fixture
def refusing():
    s = start(["--max-users", "1", "--refuse"])
    yield s
    s.stop()


def connect(server, **kw):
    return framerpc.connect(server.addr, timeout=kw.pop("timeout", 10), **kw)


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_typed_calls(queued):
    with connect(queued) as c:
        assert [(i.id, i.name, i.request, i.response) for i in c.list()] == [
            (1, "move_to", "f64", "f64"), (2, "position", "unit", "f64"), (3, "capture", "(u16,u16)", "bytes"),
            (4, "stop", "unit", "unit"), (5, "frames", "unit", "u64")]
        assert c.call("position") == 0.0
        assert c.call("move_to", 12.5) == 12.5
        assert c.call("position") == 12.5
        n = c.call("frames")
        img = c.call("capture", 8, 4)
        assert isinstance(img, bytes) and len(img) == 32
        assert img == bytes((i + n + 12) % 256 for i in range(32))  # the server's test pattern
        assert c.call("frames") == n + 1
        assert c.call("stop") is None


def test_out_of_range_move_is_application_error_1001(queued):
    with connect(queued) as c:
        c.call("move_to", 3.0)
        with pytest.raises(framerpc.RemoteError) as e:
            c.call("move_to", 5000.0)
        assert e.value.code == 1001 and not isinstance(e.value, framerpc.HandlerError)
        assert e.value.message == "5000 mm is outside the travel of -1000..1000 mm"
        assert c.call("position") == 3.0  # nothing moved, the connection lives on
        with pytest.raises(framerpc.EncodeError):
            c.call("capture", 70000, 1)  # u16 range checked before sending


def test_exclusive_access_fifo(queued):
    first = connect(queued)
    assert first.call("move_to", 7.0) == 7.0
    assert first.status() == framerpc.Status(active=1, max=1, waiting=0)
    second = connect(queued)
    try:
        # queued on arrival (admission runs just after accept): waiting 1 before its first call
        wait_for(lambda: second.status().waiting == 1)
        assert second.status() == framerpc.Status(active=1, max=1, waiting=1)
        got = {}
        t = threading.Thread(target=lambda: got.setdefault("pos", second.call("position")), daemon=True)
        t.start()
        time.sleep(0.3)
        assert t.is_alive() and got == {}  # its call waits for the device
        # answered at once while waiting
        assert second.ping(b"still here") == b"still here"
        assert second.status().waiting == 1
        assert [i.name for i in second.list()][:2] == ["move_to", "position"]
        # a waiting caller's timeout names the holder and its queue place
        with pytest.raises(framerpc.CallTimeout) as e:
            second.call("frames", timeout=0.2)
        assert "held by 127.0.0.1:" in str(e.value) and "number 1 of 1 in the queue" in str(e.value)
        assert e.value.server.startswith("waiting for admission")
        assert first.call("position") == 7.0  # the holder is not slowed down
        first.close()
        queued.wait_line("released by ")  # the server stops the motor on release
        t.join(5)
        assert got == {"pos": 7.0}  # the queued call ran once the device was free
        assert second.status() == framerpc.Status(active=1, max=1, waiting=0)
        assert second.call("move_to", -3.0) == -3.0
    finally:
        first.close()
        second.close()


def test_three_waiters_are_admitted_in_order(queued):
    holder = connect(queued)
    holder.call("position")
    waiters, order = [], []
    try:
        for i in range(2):
            w = connect(queued)
            waiters.append(w)
            wait_for(lambda: holder.status().waiting == i + 1)
        threads = [threading.Thread(target=lambda i=i, w=w: (w.call("position"), order.append(i)), daemon=True)
                   for i, w in enumerate(waiters)]
        for t in threads:
            t.start()
        holder.close()
        threads[0].join(5)
        time.sleep(0.1)
        assert order == [0]  # the second waiter still waits behind the first
        waiters[0].close()
        threads[1].join(5)
        assert order == [0, 1]
    finally:
        holder.close()
        for w in waiters:
            w.close()


def test_wait_bound_runs_out_with_busy():
    s = start(["--max-users", "1", "--wait", "0.3"])
    try:
        with connect(s) as holder:
            holder.call("position")
            late = connect(s)
            with pytest.raises(framerpc.Busy) as e:
                late.call("position")
            assert e.value.code == 5 and holder.local_address in e.value.message
            assert holder.call("position") == 0.0
            # ... and the server closed the late connection
            with pytest.raises(framerpc.Disconnected):
                for _ in range(500):
                    late.ping()
                    time.sleep(0.01)
            late.close()
    finally:
        s.stop()


def test_refuse_names_the_holder(refusing):
    first = connect(refusing)
    assert first.call("position") == 0.0
    second = connect(refusing)
    try:
        with pytest.raises(framerpc.Busy) as e:
            second.call("move_to", 1.0)
        assert e.value.code == 5
        assert f"held by {first.local_address}" in e.value.message
        # the connection stays open: ping and status still work, and the call can be retried
        assert second.ping(b"x") == b"x"
        assert second.status() == framerpc.Status(active=1, max=1, waiting=0)
        first.close()
        wait_for(lambda: second.status().active == 0)
        assert second.call("move_to", 1.0) == 1.0  # the first call finding a free slot takes it
        with connect(refusing) as third:
            with pytest.raises(framerpc.Busy) as e:
                third.call("position")
            assert f"held by {second.local_address}" in e.value.message
    finally:
        first.close()
        second.close()
