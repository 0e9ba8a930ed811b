"""tls:// and wss:// with the standard ssl module, against the Rust server
(greet_server --tls CERT KEY [--ws] [--client-ca CA])."""

import ssl
import threading

import pytest
import websockets  # noqa: F401 - the [test] extra installs it

import framerpc
from framerpc import ConnectError

from conftest import ExampleServer
from tls_lab import Lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return Lab(str(tmp_path_factory.mktemp("tls-lab")))


def _start(lab, *extra, expect=("listening on tls://",)):
    try:
        return ExampleServer("greet_server", ["--tls", lab.path("server.pem"), lab.path("server.key"), *extra,
                                              "127.0.0.1:0"], expect=expect)
    except RuntimeError as e:
        if "exited early" in str(e):
            pytest.fail("greet_server was built without the `tls` feature "
                        "(cargo build --examples --all-features)")
        raise


@pytest.fixture(scope="module")
def tls_server(lab):
    s = _start(lab)
    yield s.value("listening on tls://")
    s.stop()


@pytest.fixture(scope="module")
def wss_server(lab):
    s = _start(lab, "--ws", expect=("listening on wss://", "token: "))
    yield s.value("listening on "), s.value("token: ")
    s.stop()


def _port(addr):
    return int(addr.rsplit(":", 1)[1].split("/")[0])


def test_calls_over_tls(lab, tls_server):
    port = _port(tls_server)
    with framerpc.connect(f"tls://localhost:{port}", cafile=lab.path("ca.pem"), timeout=5) as c:
        assert c.call("hello", "tls") == "hello tls"
        assert c.call("add_2_words", 0xFFFFFFFF, 3) == 2
    # By IP address (the certificate names 127.0.0.1), and with a context of one's own.
    ctx = ssl.create_default_context(cafile=lab.path("ca.pem"))
    with framerpc.connect(f"tls://127.0.0.1:{port}", ssl_context=ctx, timeout=5) as c:
        assert c.call("goodbye", "x") == "goodbye x"


def test_calls_over_wss(lab, wss_server):
    url, token = wss_server
    url = url.replace("127.0.0.1", "localhost")
    with framerpc.connect(url, token=token, cafile=lab.path("ca.pem"), timeout=5) as c:
        assert c.call("hello", "wss") == "hello wss"
        big = "é" * 400_000
        assert c.call("hello", big) == "hello " + big
    with pytest.raises(framerpc.FramerpcError) as e:
        framerpc.connect(url, token="wrong", cafile=lab.path("ca.pem"), timeout=5)
    assert "401" in str(e.value)


@pytest.mark.parametrize("round_", range(8))
def test_one_sslsocket_is_full_duplex_under_load(lab, tls_server, round_):
    """Several threads send big and small frames while the reader thread
    receives, on one SSLSocket. Without the TLS lock around every OpenSSL
    call about one round in four failed (the server saw bad_record_mac)."""
    port = _port(tls_server)
    errors = []
    with framerpc.connect(f"tls://localhost:{port}", cafile=lab.path("ca.pem"), timeout=20) as c:
        def work(t):
            try:
                for i in range(25):
                    if i % 5 == 0:
                        s = chr(ord("a") + t) * 700_000
                        assert c.call("hello", s) == "hello " + s
                    else:
                        assert c.call("add_2_words", t, i) == t + i
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not any(th.is_alive() for th in threads)
        assert not errors, errors
        assert c.call("hello", "after") == "hello after"


def test_unknown_ca_and_name_mismatch_are_named(lab, tls_server):
    port = _port(tls_server)
    with pytest.raises(ConnectError) as e:
        framerpc.connect(f"tls://localhost:{port}", cafile=lab.path("other_ca.pem"), timeout=5)
    assert "certificate" in str(e.value) and "cafile" in str(e.value), str(e.value)
    with pytest.raises(ConnectError) as e:
        framerpc.connect(f"tls://127.0.0.1:{port}", cafile=lab.path("ca.pem"), server_hostname="wrong.example",
                         timeout=5)
    assert "certificate" in str(e.value), str(e.value)


def test_plain_and_tls_mixups_are_told(lab, tls_server, greet):
    port = _port(tls_server)
    # A plain client on the TLS port: the server says so.
    with pytest.raises(framerpc.FramerpcError) as e:
        with framerpc.connect(f"tcp://127.0.0.1:{port}", timeout=5) as c:
            c.call("hello", "x")
    assert "TLS" in str(e.value), str(e.value)
    # A TLS client on a plain port.
    plain_port = _port(greet)
    with pytest.raises(ConnectError) as e:
        framerpc.connect(f"tls://localhost:{plain_port}", cafile=lab.path("ca.pem"), timeout=5)
    assert "TLS" in str(e.value), str(e.value)


def test_client_certificate(lab):
    s = _start(lab, "--client-ca", lab.path("ca.pem"))
    try:
        port = _port(s.value("listening on tls://"))
        with framerpc.connect(f"tls://localhost:{port}", cafile=lab.path("ca.pem"),
                              certfile=lab.path("alice.pem"), keyfile=lab.path("alice.key"), timeout=5) as c:
            assert c.call("hello", "alice") == "hello alice"
        # Without one: refused; in TLS 1.3 the refusal arrives after the
        # handshake, so it shows at connect or at the first call.
        with pytest.raises(framerpc.FramerpcError) as e:
            with framerpc.connect(f"tls://localhost:{port}", cafile=lab.path("ca.pem"), timeout=5) as c:
                c.call("hello", "nobody")
        assert "certificate" in str(e.value) or "closed" in str(e.value) or "lost" in str(e.value), str(e.value)
    finally:
        s.stop()


def test_option_mistakes_are_value_errors(lab):
    with pytest.raises(ValueError):
        framerpc.connect("tls://localhost:1", keyfile=lab.path("alice.key"))
    with pytest.raises(ValueError):
        framerpc.connect("tls://localhost:1", cafile=lab.path("ca.pem"), ssl_context=ssl.create_default_context())
