"""Fixtures: the real Rust example servers on 127.0.0.1 port 0, and a scripted fake peer.

The binaries are found in FRAMERPC_EXAMPLES_DIR (default ../target/debug/examples
relative to python/); build them with ``cargo build --examples`` (with
``--all-features`` for the WebSocket and simulator examples).
"""

import json
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PYROOT = os.path.dirname(HERE)
sys.path.insert(0, PYROOT)

EXAMPLES_DIR = os.environ.get("FRAMERPC_EXAMPLES_DIR") or os.path.join(PYROOT, "..", "target", "debug", "examples")
VECTORS = os.path.join(PYROOT, "..", "docs", "vectors.json")
START_TIMEOUT = 10.0
IO_TIMEOUT = 5.0


def example_path(name):
    return os.path.join(EXAMPLES_DIR, name)


class ExampleServer:
    """A Rust example server process; ``lines`` holds what it printed at start."""

    def __init__(self, name, args=(), expect=("listening on ",), env=None):
        path = example_path(name)
        if not os.path.exists(path):
            pytest.fail(f"{path} is not built (cargo build --examples --all-features; "
                        "FRAMERPC_EXAMPLES_DIR names another folder)", pytrace=False)
        self.proc = subprocess.Popen(
            [path, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, text=True, bufsize=1,
        )
        self.lines = []
        self._q = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        wanted = list(expect)
        while wanted:
            left = deadline - time.monotonic()
            try:
                line = self._q.get(timeout=max(left, 0.01))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"{name} printed {self.lines!r}, still waiting for {wanted!r}")
            if line is None:
                self.stop()
                raise RuntimeError(f"{name} exited early after printing {self.lines!r}")
            self.lines.append(line)
            if line.startswith("listening on ") and any(w.startswith("listening on ") for w in wanted) \
                    and not any(line.startswith(w) for w in wanted):
                self.stop()
                raise RuntimeError(f"{name} printed {line!r}, expected {wanted!r} (stale binary?)")
            wanted = [w for w in wanted if not line.startswith(w)]

    def _pump(self):
        try:
            for line in self.proc.stdout:
                self._q.put(line.rstrip("\n"))
        except (ValueError, OSError):
            pass  # stop() closed the pipe while this thread read it
        self._q.put(None)

    def wait_line(self, prefix, timeout=IO_TIMEOUT):
        """The next line the server prints that starts with ``prefix`` (all lines kept in ``lines``)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._q.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no line starting with {prefix!r} within {timeout} s; got {self.lines!r}")
            if line is None:
                raise AssertionError(f"the server exited before printing {prefix!r}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def value(self, prefix):
        for line in self.lines:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        raise KeyError(prefix)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()


# A test that cannot find what it needs fails; it never skips (a skip would
# hide a missing server binary, feature or package behind a green run).
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped, which this suite counts as a failure: {rep.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped:
        rep.outcome = "failed"
        rep.longrepr = f"module skipped, which this suite counts as a failure: {rep.longrepr}"


@pytest.fixture(scope="module")
def greet():
    """``tcp://ADDR`` of a greet_server shared by a test module."""
    s = ExampleServer("greet_server", ["127.0.0.1:0"])
    yield "tcp://" + s.value("listening on ")
    s.stop()


@pytest.fixture
def greet_server():
    """A greet_server of one's own (to kill in the test)."""
    s = ExampleServer("greet_server", ["127.0.0.1:0"])
    s.addr = "tcp://" + s.value("listening on ")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def vectors():
    with open(VECTORS, encoding="utf-8") as f:
        return json.load(f)


HDR = struct.Struct("<IBBHI")


class FakePeer:
    """A one-connection TCP server the test scripts frame by frame."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(IO_TIMEOUT)
        self.addr = "tcp://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.conn = None
        self.names = []

    def accept(self):
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(IO_TIMEOUT)
        return self

    def _exact(self, n):
        b = bytearray()
        while len(b) < n:
            chunk = self.conn.recv(n - len(b))
            if not chunk:
                raise EOFError("peer closed")
            b += chunk
        return bytes(b)

    def recv(self, names=False):
        """(kind, cmd, id, payload) of the next frame. The ``identify``
        NOTIFY a client sends at connect is kept in ``self.names`` and
        skipped, unless ``names``."""
        while True:
            n, kind, flags, cmd, cid = HDR.unpack(self._exact(12))
            assert flags == 0
            frame = kind, cmd, cid, self._exact(n)
            if names or (kind, cmd) != (4, 0xFF07):
                return frame
            self.names.append(frame[3].decode("utf-8"))

    def accept_again(self):
        """Accepts the client's next connection (after a reconnect)."""
        if self.conn is not None:
            self.conn.close()
        return self.accept()

    def send(self, kind, cmd, cid, payload=b""):
        self.conn.sendall(HDR.pack(len(payload), kind, 0, cmd, cid) + payload)

    def close(self):
        for s in (self.conn, self.listener):
            if s is not None:
                s.close()


@pytest.fixture
def fake():
    p = FakePeer()
    yield p
    p.close()
