"""The greet server over WebSocket (greet_server --ws)."""

import os
import threading

import pytest
import websockets  # noqa: F401 - the [test] extra installs it; a missing package fails here

import framerpc

from conftest import PYROOT, ExampleServer


@pytest.fixture(scope="module")
def ws():
    try:
        s = ExampleServer("greet_server", ["--ws", "127.0.0.1:0"], expect=("listening on ws://", "token: "))
    except RuntimeError as e:
        if "exited early" in str(e):  # built without the ws feature: it says so on stderr and exits 2
            pytest.fail("greet_server was built without the `ws` feature (cargo build --examples --all-features)")
        raise
    yield s.value("listening on "), s.value("token: ")
    s.stop()


def test_calls_over_ws(ws):
    url, token = ws
    with framerpc.connect(url, token=token, timeout=5) as c:
        assert c.call("hello", "bob") == "hello bob"
        assert c.call("add_2_words", 0xFFFFFFFF, 3) == 2
        assert c.call("func_no_args") is None
        assert [r.name for r in c.list()] == ["hello", "goodbye", "add_2_words", "func_no_args"]
        assert c.ping(b"abc") == b"abc"
        assert c.status().waiting == 0
        with pytest.raises(framerpc.UnknownCommand):
            c.call_raw(777)
        with pytest.raises(framerpc.BadPayload):
            c.call_raw(3, b"\x01\x00\x00\x00")


def test_big_messages_beyond_the_websockets_default_cap(ws):
    url, token = ws
    with framerpc.connect(url, token=token, timeout=20) as c:
        big = os.urandom(8 << 20)
        assert c.ping(big) == big
        s = "x" * (3 << 20)
        assert c.call("hello", s) == "hello " + s


def test_token_from_env(ws, monkeypatch):
    url, token = ws
    monkeypatch.setenv("FRAMERPC_TOKEN", token)
    with framerpc.connect(url, timeout=5) as c:
        assert c.call("goodbye", "env") == "goodbye env"


def test_missing_or_wrong_token_is_401(ws, monkeypatch):
    url, token = ws
    monkeypatch.delenv("FRAMERPC_TOKEN", raising=False)
    with pytest.raises(framerpc.Unauthorized):
        framerpc.connect(url, timeout=5)
    with pytest.raises(framerpc.Unauthorized) as e:
        framerpc.connect(url, token=token + "x", timeout=5)
    assert token not in str(e.value)


def test_unknown_path_is_404(ws):
    url, token = ws
    base = url.rsplit("/", 1)[0]
    with pytest.raises(framerpc.ConnectError) as e:
        framerpc.connect(base + "/nope", token=token, timeout=5)
    assert e.value.status == 404


def test_threads_share_one_ws_client(ws):
    url, token = ws
    errors = []
    with framerpc.connect(url, token=token, timeout=10) as c:
        def work(t):
            try:
                for i in range(100):
                    assert c.call("add_2_words", t, i) == t + i
            except Exception as e:  # pragma: no cover
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors, errors


def test_cli_over_ws(ws):
    import json
    import subprocess
    import sys
    url, token = ws
    r = subprocess.run([sys.executable, "-m", "framerpc", url, "--token", token, "call", "hello", '"ws"'],
                       cwd=PYROOT, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "hello ws"


def test_raw_tcp_on_the_same_port_needs_the_token(ws):
    url, token = ws
    hostport = url[len("ws://"):].split("/", 1)[0]
    with framerpc.connect(hostport, token=token, timeout=5) as c:
        assert c.call("hello", "tcp") == "hello tcp"
    with pytest.raises((framerpc.Unauthorized, framerpc.Disconnected)):
        with framerpc.connect(hostport, token="wrong", timeout=5) as c:
            c.call("hello", "x")
