"""Benchmarks of the Python client; prints a markdown table.

    python bench.py [--n 20000] [--examples DIR]
    taskset -c 0 python bench.py        # everything on one core

Rows:
- bare Python socket ping-pong: a Python client with no threads and no
  codecs against a Python echo server in another process, with the same
  12-byte framing: the floor for any Python client.
- bare Python client -> Rust greet_server: the same loop against the Rust server.
- framerpc client -> Rust greet_server: ``c.call("add_2_words", i, 1)``
  (reader thread, call ids, schema codecs) and ``c.ping()``.
- ndarray: sim_server has no echo function (its roots are sim, math, os),
  so the 1000x1000 f32 round trip (both ways) runs against the Python echo
  server: the client's own encode/frame/decode cost plus a Python copy. The
  simulator rows send the same array one way as an ``env.step`` argument
  (decoded by the server, answered with a small error) and time the
  observation fetches and pipelined steps it does offer.
"""

import argparse
import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
HDR = struct.Struct("<IBBHI")


def recv_exact(s, n):
    b = bytearray()
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError
        b += chunk
    return bytes(b)


def echo_server():
    """Answers every CALL with a REPLY carrying the same payload (one connection at a time)."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    print("listening on 127.0.0.1:%d" % ls.getsockname()[1], flush=True)
    while True:
        s, _ = ls.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                n, kind, _, cmd, cid = HDR.unpack(recv_exact(s, 12))
                p = recv_exact(s, n) if n else b""
                s.sendall(HDR.pack(n, 2, 0, cmd, cid) + p)
        except (EOFError, OSError):
            s.close()


def start(argv):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening on "):
        p.kill()
        raise RuntimeError(f"{argv[0]} printed {line!r}")
    return p, line.split()[-1]


def bare_loop(addr, n, cmd, payload):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(200):
        s.sendall(HDR.pack(len(payload), 1, 0, cmd, i + 1) + payload)
        h = recv_exact(s, 12)
        recv_exact(s, HDR.unpack(h)[0])
    t = time.perf_counter()
    for i in range(n):
        s.sendall(HDR.pack(len(payload), 1, 0, cmd, i + 1) + payload)
        h = recv_exact(s, 12)
        m = HDR.unpack(h)[0]
        if m:
            recv_exact(s, m)
    dt = time.perf_counter() - t
    s.close()
    return dt / n


def timed(f, n):
    for _ in range(min(n, 200)):
        f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--examples", default=os.environ.get("FRAMERPC_EXAMPLES_DIR"))
    ap.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--array-reps", type=int, default=20)
    a = ap.parse_args()
    if a.echo_server:
        return echo_server()
    import framerpc

    ex = a.examples
    if ex is None:
        for cand in ("release", "debug"):
            d = os.path.join(HERE, "..", "target", cand, "examples")
            if os.path.exists(os.path.join(d, "greet_server")):
                ex = d
                break
    rows = []
    procs = []
    try:
        echo, eaddr = start([sys.executable, __file__, "--echo-server"])
        procs.append(echo)
        add_payload = struct.pack("<II", 2, 3)
        rows.append(("bare Python socket ping-pong (Python echo server)", bare_loop(eaddr, a.n, 3, add_payload)))
        with framerpc.connect(eaddr) as c:
            rows.append(("framerpc `call_raw` -> Python echo server", timed(lambda: c.call_raw(3, add_payload), a.n)))
        greet = os.path.join(ex, "greet_server") if ex else None
        if greet and os.path.exists(greet):
            g, gaddr = start([greet, "127.0.0.1:0"])
            procs.append(g)
            rows.append(("bare Python socket client -> Rust greet_server (add_2_words)",
                         bare_loop(gaddr, a.n, 3, add_payload)))
            with framerpc.connect(gaddr) as c:
                rows.append(("framerpc `c.ping()` -> Rust greet_server", timed(c.ping, a.n)))
                rows.append(("framerpc `c.call_raw(3, payload)` -> Rust greet_server",
                             timed(lambda: c.call_raw(3, add_payload), a.n)))
                i = [0]

                def typed():
                    i[0] += 1
                    c.call("add_2_words", i[0], 1)

                rows.append(("framerpc `c.call(\"add_2_words\", i, 1)` -> Rust greet_server", timed(typed, a.n)))
        else:
            print(f"(greet_server not found in {ex}; build the examples)", file=sys.stderr)
        arr_rows = array_bench(ex, a.array_reps, framerpc, eaddr)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    print(f"small calls, mean of {a.n} (server binaries: {os.path.normpath(ex) if ex else '-'})\n")
    print("| case | round trip (us) | calls/s |")
    print("| --- | ---: | ---: |")
    for name, per in rows:
        print(f"| {name} | {per * 1e6:.1f} | {1 / per:,.0f} |")
    if arr_rows:
        print("\n| ndarray and simulator | ms | MiB/s (array bytes / time) |")
        print("| --- | ---: | ---: |")
        for name, per, mib in arr_rows:
            print(f"| {name} | {per * 1e3:.3f} | {'-' if mib is None else f'{mib:,.0f}'} |")


def array_bench(ex, reps, framerpc, echo_addr):
    """ndarray rows. sim_server has no echo function, so the full 1000x1000 f32
    round trip runs against the Python echo server (the client's own cost:
    encode, send, receive, decode), and the sim gives an upload (the array as
    an argument the server decodes, answered with a small error) and the
    observation fetches it really offers."""
    try:
        import numpy as np
    except ImportError:
        print("(numpy missing: no ndarray rows)", file=sys.stderr)
        return []
    a = np.random.default_rng(1).random((1000, 1000), dtype=np.float32)
    mib = a.nbytes / 2**20
    out = []
    with framerpc.connect(echo_addr, timeout=60) as c:
        s = c.session

        def echo():
            return s.unpack(c.call_raw(0xFF10, s.pack(a)))

        back = echo()
        assert back.shape == a.shape and back.dtype == a.dtype and (back == a).all()
        per = timed(echo, reps)
        out.append((f"1000x1000 f32 ({mib:.1f} MiB) both ways: pack + frame + Python echo server + unpack",
                    per, mib / per))
    sim = os.path.join(ex, "sim_server") if ex else None
    if not sim or not os.path.exists(sim):
        print("(sim_server not built: no simulator rows)", file=sys.stderr)
        return out
    p, addr = start([sim, "127.0.0.1:0"])
    try:
        with framerpc.connect(addr, timeout=60) as c:
            env = c.root("sim").make("pendulum")

            def upload():
                try:
                    framerpc.materialize(env.step(a))
                except framerpc.RemoteError as e:
                    assert "ndarray" in e.message
                else:
                    raise AssertionError("the sim accepted a 1000x1000 action")

            per = timed(upload, reps)
            out.append((f"1000x1000 f32 ({mib:.1f} MiB) one way to sim_server: `env.step(a)` + materialize "
                        "(server decodes it, answers a small error)", per, mib / per))
            flat = a.reshape(-1)

            def upload_flat():
                try:
                    framerpc.materialize(env.step(flat))
                except framerpc.RemoteError as e:
                    assert "1 element" in e.message

            per = timed(upload_flat, reps)
            out.append((f"1e6 f32 ({mib:.1f} MiB) one way to sim_server: `env.step(a)` + materialize "
                        "(server converts it to Array1<f32>, answers a small error)", per, mib / per))
            act = np.array([0.1], np.float32)
            per = timed(lambda: framerpc.materialize(env.reset(seed=1)), reps * 50)
            out.append(("observation fetch: `materialize(env.reset(seed=1))` (3 f32)", per, None))
            per = timed(lambda: framerpc.materialize(env.step(act)[1]), reps * 50)
            out.append(("`materialize(env.step(a)[1])` (the reward only)", per, None))

            def ten_steps():
                r = None
                for _ in range(10):
                    r = env.step(act)
                framerpc.materialize(r[1])

            per = timed(ten_steps, reps * 10)
            out.append(("10 pipelined `env.step(a)` + one materialize (one round trip)", per, None))
        return out
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
