"""The greet server over raw TCP."""

import json
import subprocess
import sys
import threading

import pytest

import framerpc
from framerpc import frame as fr

from conftest import PYROOT

GREET_TABLE = [
    (1, "hello", "str", "str"),
    (2, "goodbye", "str", "str"),
    (3, "add_2_words", "(u32,u32)", "u32"),
    (4, "func_no_args", "unit", "unit"),
]


@pytest.fixture(scope="module")
def c(greet):
    with framerpc.connect(greet, timeout=5) as client:
        yield client


def test_hello_goodbye(c):
    assert c.call("hello", "bob") == "hello bob"
    assert c.call("goodbye", "héllo wörld") == "goodbye héllo wörld"
    assert c.call(1, "") == "hello "


def test_add_2_words_wraps(c):
    assert c.call("add_2_words", 2, 3) == 5
    assert c.call("add_2_words", (40, 2)) == 42
    assert c.call("add_2_words", 0xFFFFFFFF, 3) == 2


def test_func_no_args(c):
    assert c.call("func_no_args") is None


def test_list_schemas(c, vectors):
    assert [tuple(r) for r in c.list()] == GREET_TABLE
    assert c.command("add_2_words").request == "(u32,u32)"
    # the raw reply is the vector byte for byte
    want = [v for v in vectors["builtin_replies"] if v["cmd"] == fr.LIST and v["kind"] == fr.REPLY][0]
    assert c.call_raw(fr.LIST) == fr.decode_frame(bytes.fromhex(want["hex"]))[1]


def test_ping(c):
    assert c.ping() == b""
    assert c.ping(b"abc") == b"abc"
    big = bytes(range(256)) * 4096
    assert c.ping(big) == big


def test_status(c):
    s = c.status()
    assert isinstance(s, framerpc.Status)
    assert s.active >= 1 and s.max >= s.active and s.waiting == 0


def test_unknown_command(c):
    with pytest.raises(framerpc.UnknownCommand) as e:
        c.call_raw(777, b"")
    assert e.value.code == 1 and e.value.message == "unknown command 777"
    assert isinstance(e.value, framerpc.RemoteError)
    with pytest.raises(framerpc.UnknownCommand, match="no command 'nope'"):
        c.call("nope")
    assert c.call("add_2_words", 1, 1) == 2


def test_bad_payload_via_raw_call(c, vectors):
    by_schema = {r[2]: r[0] for r in GREET_TABLE}
    tried = 0
    for v in vectors["invalid_requests"]:
        if v["codec"] in by_schema:
            with pytest.raises(framerpc.BadPayload) as e:
                c.call_raw(by_schema[v["codec"]], bytes.fromhex(v["hex"]))
            assert e.value.code == 2 and e.value.message
            tried += 1
    assert tried >= 4
    assert c.call("hello", "still fine") == "hello still fine"


def test_wrong_argument_fails_locally(c):
    sent = c.frames_sent
    for args in [("a", 1), (1,), (1, 2, 3), (-1, 0), (1 << 32, 0)]:
        with pytest.raises(framerpc.EncodeError) as e:
            c.call("add_2_words", *args)
        assert "add_2_words" in str(e.value) and "(u32,u32)" in str(e.value)
    with pytest.raises(framerpc.EncodeError, match=r"hello .*expects str"):
        c.call("hello", 5)
    with pytest.raises(framerpc.EncodeError, match="func_no_args"):
        c.call("func_no_args", 1)
    assert c.frames_sent == sent


def test_timeouts_and_late_replies_dropped(greet):
    with framerpc.connect(greet, timeout=5) as c:
        timeouts = 0
        for i in range(50):
            try:
                assert c.call("add_2_words", i, 1, timeout=0) == i + 1
            except framerpc.CallTimeout as e:
                assert isinstance(e, TimeoutError) and isinstance(e, framerpc.Timeout)
                assert "add_2_words" in str(e) and f"id {e.call_id}" in str(e)
                timeouts += 1
            # whatever happened, the next call gets its own answer
            assert c.call("add_2_words", i, 1000) == i + 1000
        assert timeouts > 0
        c.ping()  # every late reply has arrived by now (the server answers in order)
        assert c.stray_replies <= timeouts


def test_threads_share_one_client(c):
    errors = []

    def work(t):
        try:
            for i in range(200):
                assert c.call("add_2_words", t * 1000, i) == t * 1000 + i
                if i % 50 == 0:
                    assert c.call("hello", f"t{t}") == f"hello t{t}"
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_local_frame_limit(greet):
    with framerpc.connect(greet, timeout=5, max_frame_len=200) as c:
        with pytest.raises(framerpc.FrameTooLarge, match="200"):
            c.call("hello", "x" * 300)
        assert c.call("hello", "x") == "hello x"


def test_token_on_open_server(greet):
    # an open server accepts the auth frame too
    with framerpc.connect(greet, token="secret", timeout=5) as c:
        assert c.call("hello", "t") == "hello t"


def test_disconnect_fails_pending_and_later_calls(greet_server):
    c = framerpc.connect(greet_server.addr, timeout=5)
    assert c.call("hello", "a") == "hello a"
    greet_server.stop()
    with pytest.raises(framerpc.Disconnected):
        for _ in range(100):  # the first call may still be written before the reader sees the end
            c.call("hello", "b")
    assert c.closed
    with pytest.raises(framerpc.Disconnected):
        c.ping()
    c.close()


def test_connect_refused():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(framerpc.ConnectError):
        framerpc.connect(f"127.0.0.1:{port}", connect_timeout=2)


def run_cli(*args):
    r = subprocess.run([sys.executable, "-m", "framerpc", *args], cwd=PYROOT, capture_output=True,
                       text=True, timeout=20)
    return r


def test_cli_list_and_call(greet):
    r = run_cli(greet, "list")
    assert r.returncode == 0, r.stderr
    assert "add_2_words" in r.stdout and "(u32,u32)" in r.stdout
    r = run_cli(greet, "call", "hello", '"bob"')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "hello bob"
    bare = greet[len("tcp://"):]
    r = run_cli(bare, "call", "add_2_words", "2", "3")
    assert json.loads(r.stdout) == 5, r.stderr
    r = run_cli(bare, "call", "add_2_words", "[4294967295, 1]")
    assert json.loads(r.stdout) == 0, r.stderr
    r = run_cli(bare, "call", "add_2_words", '"x"', "1")
    assert r.returncode != 0 and "(u32,u32)" in r.stderr
    r = run_cli(bare, "call", "nope")
    assert r.returncode != 0 and "nope" in r.stderr
    r = run_cli(bare, "status")
    assert r.returncode == 0 and "active" in r.stdout


def test_oversize_reply_closes_with_clear_error(greet):
    with framerpc.connect(greet, timeout=5, max_frame_len=200) as c:
        with pytest.raises(framerpc.Disconnected, match="TOO_LARGE.*limit of 200"):
            c.call("hello", "y" * 195)  # request 199 bytes fits; the reply is 205
