"""The WebSocket transport against a Python websockets server speaking framerpc frames."""

import struct
import threading

import pytest

import framerpc

import websockets.sync.server as ws_server  # noqa: E402 - the [test] extra installs it
HDR = struct.Struct("<IBBHI")


@pytest.fixture
def echo_ws():
    seen = {}

    def process_request(conn, request):
        seen["auth"] = request.headers.get("Authorization")
        seen["ext"] = request.headers.get("Sec-WebSocket-Extensions")
        if request.path != "/greet":
            return conn.respond(404, "no such path\n")
        if request.headers.get("Authorization") != "Bearer tok":
            return conn.respond(401, "unauthorized\n")
        return None

    def handler(ws):
        for msg in ws:
            n, kind, _, cmd, cid = HDR.unpack_from(msg)
            assert n == len(msg) - 12
            ws.send(HDR.pack(n, 2, 0, cmd, cid) + msg[12:])

    srv = ws_server.serve(handler, "127.0.0.1", 0, process_request=process_request, max_size=None,
                          compression=None)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    port = srv.socket.getsockname()[1]
    yield f"ws://127.0.0.1:{port}", seen
    srv.shutdown()
    t.join(5)


def test_bearer_token_no_compression_big_messages(echo_ws):
    base, seen = echo_ws
    with framerpc.connect(base + "/greet", token="tok", timeout=10) as c:
        assert c.call_raw(5, b"abc") == b"abc"
        big = bytes(range(256)) * (12 << 12)  # 12 MiB: far over websockets' 1 MiB default
        assert c.call_raw(5, big) == big
    assert seen["auth"] == "Bearer tok"
    assert not seen["ext"]  # no permessage-deflate offered


def test_env_token_and_refusals(echo_ws, monkeypatch):
    base, seen = echo_ws
    monkeypatch.setenv("FRAMERPC_TOKEN", "tok")
    with framerpc.connect(base + "/greet", timeout=5) as c:
        assert c.ping(b"x") == b"x"
    monkeypatch.delenv("FRAMERPC_TOKEN")
    with pytest.raises(framerpc.Unauthorized):
        framerpc.connect(base + "/greet", timeout=5)
    with pytest.raises(framerpc.ConnectError) as e:
        framerpc.connect(base + "/other", token="tok", timeout=5)
    assert e.value.status == 404
