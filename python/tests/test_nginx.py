"""The Python client behind a real nginx (docs/DEPLOY.md): wss:// terminated
at nginx and routed by path to two ws:// example servers, tls:// terminated
by the stream module in front of a raw-TCP example server (PROXY protocol),
a long call outliving nginx's idle timeout through heartbeats, BUSY naming
the real client, and a server restart with the reconnecting client.
Fails (never skips) when nginx or its stream module is missing."""

import os
import re
import shutil
import socket
import subprocess
import time

import pytest
import websockets  # noqa: F401 - the [test] extra installs it

import framerpc
from framerpc import Busy, Reconnect

from conftest import ExampleServer
from tls_lab import Lab

NGINX_IDLE = "1s"  # proxy_read_timeout / proxy_timeout
MOVE_MS = "2500"  # a move outlives NGINX_IDLE
HEARTBEAT = 0.2  # seconds, both sides

CONF = """{load}
{user}
# One process (no workers): killing the child ends nginx whole, and no
# orphaned worker keeps the ports.
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream stage  {{ server 127.0.0.1:{stage}; }}
    upstream camera {{ server 127.0.0.1:{camera}; }}
    server {{
        listen 127.0.0.1:{https} ssl;
        server_name localhost;
        ssl_certificate     {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_read_timeout {idle};
        proxy_send_timeout {idle};
        location = /stage  {{ proxy_pass http://stage/greet; }}
        location = /camera {{ proxy_pass http://camera/device; }}
    }}
}}
stream {{
    server {{
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate     {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        proxy_pass 127.0.0.1:{motor};
        proxy_protocol on;
        proxy_connect_timeout 1s;
        proxy_timeout {idle};
    }}
}}
"""


def _nginx_bin():
    for c in ("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        path = shutil.which(c) or (c if os.path.exists(c) else None)
        if path:
            return path
    pytest.fail("nginx is not installed: apt-get install nginx-light libnginx-mod-stream (or nginx)",
                pytrace=False)


def _stream_module_line(nginx):
    v = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=10).stderr
    if "--with-stream=dynamic" in v:
        m = re.search(r"--modules-path=(\S+)", v)
        so = os.path.join(m.group(1) if m else "/usr/lib/nginx/modules", "ngx_stream_module.so")
        if not os.path.exists(so):
            pytest.fail(f"nginx's stream module is not installed ({so}): apt-get install libnginx-mod-stream",
                        pytrace=False)
        return f"load_module {so};"
    if "--with-stream" not in v:
        pytest.fail("this nginx has no stream module", pytrace=False)
    return ""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port(url):
    return int(url.split("://")[-1].split("/")[0].rsplit(":", 1)[1])


class Nginx:
    def __init__(self, d, lab, stage, camera, motor):
        nginx = _nginx_bin()
        self.dir = d
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        shutil.copy(lab.path("server.pem"), os.path.join(d, "server.pem"))
        shutil.copy(lab.path("server.key"), os.path.join(d, "server.key"))
        self.https, self.tls = _free_port(), _free_port()
        conf = CONF.format(load=_stream_module_line(nginx), user="user root;" if os.geteuid() == 0 else "",
                           d=d, stage=stage, camera=camera, motor=motor, https=self.https, tls=self.tls,
                           idle=NGINX_IDLE)
        path = os.path.join(d, "nginx.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(conf)
        self.proc = subprocess.Popen([nginx, "-p", d, "-c", path, "-g", "daemon off;"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                for p in (self.https, self.tls):
                    socket.create_connection(("127.0.0.1", p), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    with open(os.path.join(d, "error.log"), encoding="utf-8", errors="replace") as f:
                        log = f.read()
                    pytest.fail(f"nginx did not start; error.log:\n{log}", pytrace=False)
                time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)


def _device(addr, ws):
    args = [addr, "--refuse", "--move-ms", MOVE_MS, "--heartbeat", str(int(HEARTBEAT * 1000)),
            "--trust-proxy", "127.0.0.1"]
    if ws:
        return ExampleServer("device_server", args + ["--ws"], expect=("listening on ws://", "token: "))
    return ExampleServer("device_server", args)


def test_python_client_behind_nginx(tmp_path):
    lab = Lab(str(tmp_path / "lab"))
    stage = ExampleServer("greet_server", ["--ws", "--trust-proxy", "127.0.0.1", "127.0.0.1:0"],
                          expect=("listening on ws://", "token: "))
    camera = _device("127.0.0.1:0", ws=True)
    motor = _device("127.0.0.1:0", ws=False)
    motor_port = _port(motor.value("listening on "))
    nginx = Nginx(str(tmp_path / "nginx"), lab, _port(stage.value("listening on ")),
                  _port(camera.value("listening on ")), motor_port)
    hb = dict(ping_after=HEARTBEAT, idle_timeout=4 * HEARTBEAT, cafile=lab.path("ca.pem"), timeout=10)
    try:
        # (a) wss:// routed by path.
        with framerpc.connect(f"wss://localhost:{nginx.https}/stage", token=stage.value("token: "), **hb) as s:
            assert s.call("hello", "nginx") == "hello nginx"

        # (c) a long call through nginx's 1 s idle timeout; (d) BUSY names
        # the client from X-Forwarded-For (port 0).
        cam_url = f"wss://localhost:{nginx.https}/camera"
        with framerpc.connect(cam_url, token=camera.value("token: "), **hb) as cam:
            assert cam.call("move_to", 5.0) == 5.0
            with framerpc.connect(cam_url, token=camera.value("token: "), **hb) as other:
                with pytest.raises(Busy) as e:
                    other.call("stop")
                assert "127.0.0.1:0" in str(e.value), str(e.value)

        # (b) tls:// through the stream module, then a restart behind nginx.
        m = framerpc.connect(f"tls://localhost:{nginx.tls}",
                             reconnect=Reconnect(initial_delay=0.05, max_delay=0.3, during_outage="wait"), **hb)
        try:
            assert m.call("move_to", 7.0) == 7.0
            with framerpc.connect(f"tls://localhost:{nginx.tls}", **hb) as other:
                with pytest.raises(Busy) as e:
                    other.call("stop")
                text = str(e.value)
                assert "127.0.0.1:" in text and "127.0.0.1:0 " not in text and "127.0.0.1:0)" not in text, text
            motor.stop()
            motor = _device(f"127.0.0.1:{motor_port}", ws=False)
            deadline = time.monotonic() + 15
            while True:
                try:
                    pos = m.call("position", timeout=2)
                    break
                except framerpc.FramerpcError as e:
                    assert time.monotonic() < deadline, f"no reconnect through nginx: {e}"
                    time.sleep(0.05)
            assert pos == 0.0  # a new server process
            assert m.call("move_to", 1.0) == 1.0
        finally:
            m.close()
    finally:
        nginx.stop()
        for s in (stage, camera, motor):
            s.stop()
