"""The device example (examples/device_server.rs): sharing one device.

A motor and a camera behind ``max_users(1)``. A connection asks for the
device at its first call of a command that needs it (``move_to``,
``capture``, ``stop``) or with ``acquire``, and holds it until ``release``,
the end of the connection, or (``--hold-idle``) a while without such a
call. ``position`` and ``frames`` are shared: anyone reads them, also while
another connection holds the device. Later users wait in a FIFO queue
(default) or get BUSY naming the holder (``--refuse``); BUSY never closes
the connection. The server prints ``released by NAME (ADDR) after ...s
(Reason): motor stopped`` from its ``on_release`` hook.
"""

import threading
import time

import pytest

import framerpc
from framerpc.hold import default_name

from conftest import IO_TIMEOUT, ExampleServer
from test_interrupts import sigint  # noqa: F401 - a fixture

POSITION, FRAMES = 2, 5


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


def wait_for(cond, timeout=IO_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def released_line(server, client, reason):
    """The server's on_release line for ``client`` (checks name, address and reason)."""
    line = server.wait_line("released by ")
    who = f"{client.name} ({client.local_address})"
    assert line.startswith(f"released by {who} after ") and line.endswith(f"s ({reason}): motor stopped"), line
    return line


def test_typed_calls(queued):
    with connect(queued) as c:
        assert [(i.id, i.name, i.request, i.response) for i in c.list()] == [
            (1, "move_to", "f64", "f64"), (2, "position", "unit", "f64"), (3, "capture", "(u16,u16)", "bytes"),
            (4, "stop", "unit", "unit"), (5, "frames", "unit", "u64")]
        assert c.shared_commands() == [POSITION, FRAMES]
        assert [c.is_shared(n) for n in ("move_to", "position", "capture", "stop", "frames")] == [
            False, True, False, False, True]
        assert c.call("position") == 0.0
        assert c.status() == framerpc.Status(active=0, max=1, waiting=0)  # shared calls take no slot
        assert c.call("move_to", 12.5) == 12.5
        assert c.status() == framerpc.Status(active=1, max=1, waiting=0)  # the first call needing it did
        assert c.queue() == "admitted"
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


def test_connections_are_not_queued_at_accept(queued):
    clients = [connect(queued) for _ in range(5)]
    try:
        for c in clients:
            assert c.status() == framerpc.Status(active=0, max=1, waiting=0)
            assert c.queue().startswith("not waiting: 0 of 1 users active")
    finally:
        for c in clients:
            c.close()


def test_observers_read_while_another_holds(queued):
    with connect(queued, name="stage@bench-1") as holder, connect(queued, name="watch@bench-2") as observer:
        with holder.hold(timeout=5):
            assert holder.call("move_to", 7.0) == 7.0
            for _ in range(20):  # never queued, never a slot
                assert observer.call("position") == 7.0
                assert observer.call("frames") == 0
            assert observer.status() == framerpc.Status(active=1, max=1, waiting=0)
            text = observer.queue()
            assert text.startswith("not waiting: 1 of 1 users active; held by stage@bench-1 (127.0.0.1:"), text
            assert holder.call("capture", 2, 2) and observer.call("frames") == 1
        released_line(queued, holder, "Released")
        assert observer.status() == framerpc.Status(active=0, max=1, waiting=0)


def test_hold_and_release_hand_the_device_over(queued):
    first = connect(queued, name="scan@bench-3")
    second = connect(queued, name="align@bench-1")
    try:
        hold = first.acquire(5)
        assert hold.held and first.queue() == "admitted"
        first.acquire(0)  # holding already: renewed, at once
        assert first.call("move_to", 2.0) == 2.0
        # acquire(0) does not wait: BUSY names the holder by its name
        with pytest.raises(framerpc.Busy) as e:
            second.acquire(0)
        assert e.value.code == 5
        assert f"held by scan@bench-3 ({first.local_address}) for " in e.value.message, e.value.message
        assert second.ping(b"open") == b"open"  # BUSY never closes the connection

        got = []

        def waiter():
            with second.hold(timeout=IO_TIMEOUT):
                got.append(second.call("move_to", -4.0))

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        wait_for(lambda: first.status().waiting == 1)
        text = second.queue()
        assert text.startswith("waiting for the device: 1 of 1 users active; held by scan@bench-3 (")
        assert text.endswith("; number 1 of 1 in the queue"), text
        assert got == []
        hold.release()
        assert not hold.held
        released_line(queued, first, "Released")  # on_release ran before the next holder got it
        t.join(IO_TIMEOUT)
        assert got == [-4.0]
        released_line(queued, second, "Released")  # leaving the with block released it
        assert first.status() == framerpc.Status(active=0, max=1, waiting=0)
        # release without a hold: nothing happens, the connection stays open
        first.release()
        hold.release()  # twice: nothing either
        assert first.call("position") == -4.0
        assert first.status().active == 0
    finally:
        first.close()
        second.close()


def test_hold_released_when_the_block_raises(queued):
    with connect(queued, name="oops@bench-4") as c:
        with pytest.raises(ValueError, match="boom"):
            with c.hold(timeout=5) as h:
                assert h.held
                c.call("move_to", 9.0)
                raise ValueError("boom")
        released_line(queued, c, "Released")
        assert c.status() == framerpc.Status(active=0, max=1, waiting=0)
        assert c.queue().startswith("not waiting: ")


def test_a_waiter_that_times_out_leaves_the_queue(queued):
    with connect(queued, name="holder") as holder, connect(queued, name="quitter") as quitter:
        holder.call("move_to", 1.0)
        with pytest.raises(framerpc.CallTimeout) as e:
            quitter.call("move_to", 3.0, timeout=0.3)
        # where it stood is asked before the CANCEL: holder and queue place
        assert e.value.server.startswith("waiting for the device: 1 of 1 users active; held by holder ("), \
            e.value.server
        assert e.value.server.endswith("number 1 of 1 in the queue")
        wait_for(lambda: holder.status().waiting == 0)  # its only waiting call was cancelled
        assert quitter.queue().startswith("not waiting: ")
        holder.release()
        released_line(queued, holder, "Released")
        # the quitter was not made the holder behind its back, and the cancelled move never ran
        assert holder.status() == framerpc.Status(active=0, max=1, waiting=0)
        assert quitter.call("position") == 1.0
        assert quitter.call("move_to", 3.0) == 3.0  # its next call asks again and gets the free device


def test_an_interrupted_acquire_leaves_the_queue(queued, sigint):  # noqa: F811
    with connect(queued, name="holder") as holder, connect(queued, name="impatient") as waiter:
        holder.acquire(5)
        sent = waiter.calls_sent
        sigint(lambda: waiter.calls_sent > sent and holder.status().waiting == 1)  # once it waits
        with pytest.raises(KeyboardInterrupt):
            waiter.acquire(IO_TIMEOUT)
        wait_for(lambda: holder.status().waiting == 0)
        assert not waiter.closed and waiter.ping(b"usable") == b"usable"
        holder.release()
        released_line(queued, holder, "Released")
        assert holder.status() == framerpc.Status(active=0, max=1, waiting=0)


def test_acquire_wait_runs_out_with_busy_and_the_connection_stays(queued):
    with connect(queued, name="long@bench-5") as holder, connect(queued, name="short@bench-6") as late:
        holder.acquire(5)
        with pytest.raises(framerpc.Busy) as e:
            late.acquire(0.3)
        msg = e.value.message
        assert "held by long@bench-5 (" in msg and "gave up after waiting 0.3s" in msg, msg
        assert "was number 1 of 1 in the queue" in msg, msg
        assert late.status() == framerpc.Status(active=1, max=1, waiting=0)
        assert late.call("position") == 0.0 and late.ping(b"x") == b"x"
        holder.close()
        released_line(queued, holder, "Closed")
        late.acquire(0)  # free now
        assert late.call("move_to", 5.0) == 5.0


def test_server_wait_bound_runs_out_with_busy():
    s = start(["--max-users", "1", "--wait", "0.3"])
    try:
        with connect(s) as holder, connect(s) as late:
            holder.call("move_to", 1.0)
            with pytest.raises(framerpc.Busy) as e:
                late.call("move_to", 2.0)
            assert e.value.code == 5 and f"held by {holder.name} ({holder.local_address})" in e.value.message
            assert holder.call("position") == 1.0
            assert late.ping(b"still open") == b"still open"  # BUSY does not close the connection
            holder.release()
            s.wait_line("released by ")
            assert late.call("move_to", 2.0) == 2.0
    finally:
        s.stop()


def test_three_waiters_are_admitted_in_order(queued):
    holder = connect(queued)
    holder.call("move_to", 0.5)
    waiters, order, threads = [], [], []
    try:
        for i in range(2):
            w = connect(queued)
            waiters.append(w)
            t = threading.Thread(target=lambda i=i, w=w: (w.call("move_to", float(i)), order.append(i)),
                                 daemon=True)
            t.start()
            threads.append(t)
            wait_for(lambda: holder.status().waiting == i + 1)
        holder.release()
        threads[0].join(IO_TIMEOUT)
        assert order == [0]
        # the second waiter still waits behind the first, which holds the device now
        assert holder.status() == framerpc.Status(active=1, max=1, waiting=1)
        assert waiters[1].queue().endswith("number 1 of 1 in the queue")
        waiters[0].close()
        threads[1].join(IO_TIMEOUT)
        assert order == [0, 1]
    finally:
        holder.close()
        for w in waiters:
            w.close()


def test_refuse_names_the_holder(refusing):
    first = connect(refusing, name="first")
    assert first.call("move_to", 0.0) == 0.0
    second = connect(refusing, name="second")
    try:
        with pytest.raises(framerpc.Busy) as e:
            second.call("move_to", 1.0)
        assert e.value.code == 5
        assert f"held by first ({first.local_address})" in e.value.message
        with pytest.raises(framerpc.Busy):
            second.acquire(10)  # a refusing server never queues: at once
        # the connection stays open: shared commands, ping and status still work, and the call can be retried
        assert second.call("position") == 0.0
        assert second.ping(b"x") == b"x"
        assert second.status() == framerpc.Status(active=1, max=1, waiting=0)
        first.close()
        wait_for(lambda: second.status().active == 0)
        assert second.call("move_to", 1.0) == 1.0  # the first call finding a free slot takes it
        with connect(refusing) as third:
            with pytest.raises(framerpc.Busy) as e:
                third.call("stop")
            assert f"held by second ({second.local_address})" in e.value.message
    finally:
        first.close()
        second.close()


def test_a_hold_lapses_after_hold_idle():
    s = start(["--max-users", "1", "--hold-idle", "1"])
    try:
        with connect(s, name="sleepy") as sleeper, connect(s, name="worker") as worker:
            sleeper.acquire(5)
            # the waiter is admitted once the idle holder's hold lapses
            assert worker.call("move_to", 4.0, timeout=IO_TIMEOUT) == 4.0
            released_line(s, sleeper, "Lapsed")
            # the lapsed holder stays connected; asking again is answered with why it lost the device
            with pytest.raises(framerpc.Busy) as e:
                sleeper.acquire(0)
            assert "held by worker (" in e.value.message
            assert "this connection's hold lapsed after 1 s without a call needing the device" in e.value.message
            assert sleeper.call("position") == 4.0  # shared: never queued
            # with nobody waiting, a hold lapses too (on_release makes the device safe)
            released_line(s, worker, "Lapsed")
            assert worker.status() == framerpc.Status(active=0, max=1, waiting=0)
            assert sleeper.call("move_to", 1.0) == 1.0
    finally:
        s.stop()


def test_names_are_checked_locally_and_default_to_user_at_host(queued, monkeypatch):
    for bad, why in [("", "1 to 64 bytes"), ("x" * 65, "1 to 64 bytes"), ("tab\there", "printable"),
                     ("bell\x07", "printable")]:
        with pytest.raises(ValueError, match=why):
            connect(queued, name=bad)
    assert len("é" * 32) == 32 and connect(queued, name="é" * 32).name == "é" * 32  # 64 bytes
    with pytest.raises(ValueError, match="1 to 64 bytes"):
        connect(queued, name="é" * 33)
    monkeypatch.setenv("USER", "tester")
    monkeypatch.setenv("HOSTNAME", "bench-9")
    assert default_name() == "tester@bench-9"
    assert default_name({"LOGNAME": "ab\x01c", "HOSTNAME": "h" * 80}) == "abc@" + "h" * 60
    with connect(queued) as a, connect(queued, name="other") as b:
        assert a.name == "tester@bench-9"
        a.acquire(5)
        with pytest.raises(framerpc.Busy) as e:
            b.acquire(0)
        assert f"held by tester@bench-9 ({a.local_address})" in e.value.message


def test_aio_holds_names_and_shared_commands(queued):
    import asyncio

    from framerpc import aio

    async def main():
        async with await aio.connect(queued.addr, timeout=IO_TIMEOUT, name="async@bench-7") as a, \
                await aio.connect(queued.addr, timeout=IO_TIMEOUT, name="other@bench-8") as b:
            assert await a.shared_commands() == [POSITION, FRAMES]
            async with a.hold(timeout=5) as h:
                assert h.held and await a.queue() == "admitted"
                assert await a.call("move_to", 6.0) == 6.0
                assert await b.call("position") == 6.0  # shared
                with pytest.raises(framerpc.Busy) as e:
                    await b.acquire(0)
                assert f"held by async@bench-7 ({a.local_address})" in e.value.message
                # a cancelled wait leaves the queue
                task = asyncio.ensure_future(b.acquire(IO_TIMEOUT))
                while (await a.status()).waiting != 1:
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                while (await a.status()).waiting != 0:
                    await asyncio.sleep(0.01)
            line = await asyncio.get_running_loop().run_in_executor(None, queued.wait_line, "released by ")
            assert line.startswith(f"released by async@bench-7 ({a.local_address}) after ") and "(Released)" in line
            hb = await b.acquire(1)
            assert hb.held
            await hb.release()
            assert (await a.status()).active == 0

    asyncio.run(asyncio.wait_for(main(), 20))


def test_cli_list_marks_shared_commands(queued, capsys):
    from framerpc.__main__ import main
    assert main([queued.addr, "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "name", "request", "response", "device"]
    assert [ln.split()[1] + ":" + ln.split(None, 4)[4] for ln in lines[1:]] == [
        "move_to:needs it", "position:shared", "capture:needs it", "stop:needs it", "frames:shared"]
