"""Both directions against examples/agents_server.rs: the server calls the
Python client's handlers (which call the server back), and NOTIFYs and
``Server::broadcast`` reach the client."""

import threading

import pytest

import framerpc

from conftest import IO_TIMEOUT, ExampleServer


@pytest.fixture
def orchestrator():
    s = ExampleServer("agents_server", ["127.0.0.1:0"])
    s.addr = "tcp://" + s.value("listening on ")
    yield s
    s.stop()


class Inbox:
    """NOTIFYs a client received, waited for with a bound."""

    def __init__(self):
        self.items = []
        self.cv = threading.Condition()

    def put(self, x):
        with self.cv:
            self.items.append(x)
            self.cv.notify_all()

    def wait_for(self, pred, timeout=IO_TIMEOUT):
        with self.cv:
            assert self.cv.wait_for(lambda: any(pred(x) for x in self.items), timeout), self.items
        return [x for x in self.items if pred(x)]


def worker(addr, name):
    inbox, threads = Inbox(), []
    h = framerpc.Handlers()

    @h.command(10, "work", "u32", "u32")
    def work(n, ctx):
        threads.append(threading.current_thread().name)
        assert ctx.command == "work" and ctx.call_id and not ctx.cancelled
        for pct in (50, 100):
            ctx.client.call("progress", name, pct)  # a handler calls the server back
        return n * (n + 1) // 2

    @h.command(11, "news", "str")
    def news(text):
        inbox.put(text)

    c = framerpc.connect(addr, handlers=h, timeout=IO_TIMEOUT)
    return c, inbox, threads


def test_server_calls_the_client_which_calls_back(orchestrator):
    c, inbox, threads = worker(orchestrator.addr, "py")
    with c:
        c.call("hello", "py", 40)
        orchestrator.wait_line("progress py 50%")
        orchestrator.wait_line("progress py 100%")
        assert orchestrator.wait_line("result py") == "result py: 1 + ... + 40 = 820"
        inbox.wait_for(lambda t: t == "py: 1 + ... + 40 = 820")  # the broadcast after the job
        assert threads and all(t.startswith("framerpc-handler") for t in threads)  # never the reader
        assert c.call("shout", "still here") >= 1


def test_broadcast_reaches_every_client(orchestrator):
    a, ia, _ = worker(orchestrator.addr, "a")
    b, ib, _ = worker(orchestrator.addr, "b")
    with a, b:
        b.ping()  # b's connection is served (so registered) before the broadcast
        assert a.call("shout", "hello everyone") == 2
        ia.wait_for(lambda t: t == "hello everyone")
        ib.wait_for(lambda t: t == "hello everyone")
        b.call("hello", "b", 3)
        for inbox in (ia, ib):  # a's connection hears of b's job too
            inbox.wait_for(lambda t: t == "b: 1 + ... + 3 = 6")


def test_a_client_without_handlers_refuses_server_calls_and_drops_news(orchestrator):
    with framerpc.connect(orchestrator.addr, timeout=IO_TIMEOUT) as c:
        c.call("hello", "nobody", 5)
        line = orchestrator.wait_line("work for nobody failed")
        assert "unknown command 10" in line
        assert c.call("shout", "x") == 1
        assert c.ping(b"ok") == b"ok"  # the connection lives on


def test_handlers_registered_after_connect(orchestrator):
    got = Inbox()
    with framerpc.connect(orchestrator.addr, timeout=IO_TIMEOUT) as c:
        @c.handle(10, "work", "u32", "u32")
        def work(n):
            return 7 * n

        @c.handle(11, "news", "str")
        def news(text):
            got.put(text)

        c.call("hello", "late", 6)
        assert orchestrator.wait_line("result late") == "result late: 1 + ... + 6 = 42"
        got.wait_for(lambda t: t.startswith("late:"))
