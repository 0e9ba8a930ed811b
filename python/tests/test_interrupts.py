"""Interrupts (KeyboardInterrupt) while a call waits or while a frame is written."""

import select
import signal
import threading
import time

import pytest

import framerpc
from framerpc import frame as fr

from conftest import IO_TIMEOUT, ExampleServer
from test_client_fake import connect_fake


@pytest.fixture
def sigint():
    """``interrupt_when(cond)``: SIGINT to this (the main) thread once cond() holds."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    threads = []

    def interrupt_when(cond):
        def run():
            deadline = time.monotonic() + IO_TIMEOUT
            while not cond():
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)
            signal.pthread_kill(main, signal.SIGINT)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)

    assert threading.current_thread() is threading.main_thread()
    yield interrupt_when
    for t in threads:
        t.join(IO_TIMEOUT)
    signal.signal(signal.SIGINT, old)


def test_interrupted_wait_in_the_device_queue_cancels_the_call(sigint):
    s = ExampleServer("device_server", ["127.0.0.1:0", "--max-users", "1"])
    addr = "tcp://" + s.value("listening on ")
    try:
        holder = framerpc.connect(addr, timeout=IO_TIMEOUT)
        assert holder.call("move_to", 3.0) == 3.0
        second = framerpc.connect(addr, timeout=IO_TIMEOUT)
        sent = second.calls_sent
        sigint(lambda: second.calls_sent > sent)  # once move_to(7.0) is on the wire
        with pytest.raises(KeyboardInterrupt):
            second.call("move_to", 7.0)
        assert not second.closed
        assert second.ping(b"usable") == b"usable"
        holder.close()
        s.wait_line("released by ")
        # admitted now: the interrupted move never ran
        assert second.call("position") == 3.0
        assert second.call("move_to", 1.0) == 1.0
        second.close()
    finally:
        s.stop()


def test_interrupted_wait_sends_cancel_and_the_client_lives_on(fake, sigint):
    c = connect_fake(fake, timeout=IO_TIMEOUT)
    sent = c.calls_sent
    sigint(lambda: c.calls_sent > sent)
    with pytest.raises(KeyboardInterrupt):
        c.call_raw(3, b"slow")
    kind, cmd, cid, p = fake.recv()
    assert (kind, cmd, p) == (fr.CALL, 3, b"slow")
    assert fake.recv() == (fr.CANCEL, 3, cid, b"")
    fake.send(fr.REPLY, 3, cid, b"late")  # dropped: nobody waits for it
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", c.call_raw(3, b"next")))
    t.start()
    kind, cmd, cid2, p = fake.recv()
    assert p == b"next" and cid2 != cid
    fake.send(fr.REPLY, 3, cid2, b"mine")
    t.join(IO_TIMEOUT)
    assert box["r"] == b"mine"
    c.close()


def _readable(sock):
    return bool(select.select([sock], [], [], 0)[0])


def test_interrupted_frame_write_closes_the_connection(fake, sigint):
    c = connect_fake(fake, timeout=IO_TIMEOUT)
    big = bytes(60 << 20)
    # the peer reads nothing, so the write blocks part way; interrupt it there
    sigint(lambda: _readable(fake.conn))
    with pytest.raises(KeyboardInterrupt):
        c.call_raw(3, big)
    with pytest.raises(framerpc.Disconnected, match="send was interrupted"):
        c.call_raw(3, b"small")
    assert c.closed
    # the peer sees the start of one frame, then the end of the stream: no other frame follows
    kind_len = fake._exact(12)
    n = int.from_bytes(kind_len[:4], "little")
    assert n == len(big)
    got = 0
    fake.conn.settimeout(IO_TIMEOUT)
    while True:
        chunk = fake.conn.recv(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    assert got < n


def test_interrupted_frame_write_then_reconnect(fake, sigint):
    c = connect_fake(fake, timeout=IO_TIMEOUT, reconnect=framerpc.Reconnect(initial_delay=0.01, max_delay=0.05,
                                                                            during_outage=framerpc.WAIT))
    sigint(lambda: _readable(fake.conn))
    with pytest.raises(KeyboardInterrupt):
        c.call_raw(3, bytes(60 << 20))
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", c.call_raw(3, b"again")))
    t.start()
    fake.accept_again()
    kind, cmd, cid, p = fake.recv()
    assert (kind, cmd, p) == (fr.CALL, 3, b"again")  # nothing of the broken frame is replayed
    fake.send(fr.REPLY, 3, cid, b"ok")
    t.join(IO_TIMEOUT)
    assert box["r"] == b"ok" and c.generation == 1
    c.close()
