"""framerpc's Python client against a bare socket and peer libraries; prints a markdown table.

    python python/bench.py [--examples target/release/examples] [--rounds 3]
    taskset -c 0 python python/bench.py     # everything (servers too) on one CPU

Every server runs in its own process on 127.0.0.1; the clients run in this
process. Rows (medians over ``--rounds`` interleaved rounds):

- small call p50: one ``add(i, 1)`` round trip, timed call by call (framerpc
  and the bare socket alternate, call by call).
- 10 dependent calls on a remote object, then one value: framerpc sends ten
  ``env.step(a)`` to sim_server and one materialize (one request, one CALL
  frame: the batched calls ride in the fetch's request);
  Pyro5 uses a BatchProxy (one message); the others make eleven calls.
- 4 MB array fetched into numpy: a float32 array of 2**20 elements; framerpc
  calls bench_server's ``array`` (binary ndarray codec); the bare socket
  reads the same frames into a buffer of exactly the payload's size (the
  two fetches alternate, one by one, so drifting load falls on both); rpyc
  (bytes through ``obtain`` and as a netref'd array), Pyro5 (msgpack
  serializer), websockets + msgpack-numpy and grpcio (raw bytes) send the
  same array.
- 8 threads, one client: calls/s of 8 threads sharing one client (Pyro5:
  one proxy per thread, as it requires; websockets: a lock around each
  request/response pair, its sync client does not route replies).

Peers are optional (``pip install './python[bench]'``); a missing one shows
as "-". Servers: ``--examples`` (default target/release/examples, else
target/debug/examples) must hold bench_server, sim_server (built with
``--all-features``).
"""

import argparse
import os
import warnings
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
HDR = struct.Struct("<IBBHI")
N_ARRAY = 1 << 20  # float32 elements: 4 MiB
MIB = N_ARRAY * 4 / 2**20
ADD, ARRAY = 3, 20


# -- peer servers (each runs as `bench.py --serve NAME` in its own process) -----------------

class Env:
    """The remote object of the chained-call row: ten steps, then a value."""

    def __init__(self):
        self.state = 0.0

    def step(self, a):
        self.state = self.state * 0.9 + a
        return self.state

    def value(self):
        return self.state


def _array():
    import numpy as np
    return np.arange(N_ARRAY, dtype=np.float32)


def serve_rpyc():
    import rpyc
    from rpyc.utils.server import ThreadedServer
    arr = _array()
    env = Env()

    class S(rpyc.Service):
        def exposed_add(self, a, b):
            return (a + b) & 0xFFFFFFFF

        def exposed_env(self):
            return env

        def exposed_array_bytes(self, n):
            return arr[:n].tobytes()

        def exposed_array(self, n):
            return arr[:n]

    t = ThreadedServer(S, hostname="127.0.0.1", port=0,
                       protocol_config={"allow_public_attrs": True, "allow_all_attrs": True, "allow_pickle": True})
    print("listening on 127.0.0.1:%d" % t.port, flush=True)
    t.start()


def serve_pyro5():
    import Pyro5.api
    Pyro5.config.SERIALIZER = "msgpack"
    Pyro5.config.SERVERTYPE = "thread"
    Pyro5.config.THREADPOOL_SIZE = 64
    arr = _array().tobytes()

    @Pyro5.api.expose
    @Pyro5.api.behavior(instance_mode="session")
    class S:
        def __init__(self):
            self.env = Env()

        def add(self, a, b):
            return (a + b) & 0xFFFFFFFF

        def step(self, a):
            return self.env.step(a)

        def value(self):
            return self.env.value()

        def array(self, n):
            return arr[:4 * n]

    d = Pyro5.api.Daemon(host="127.0.0.1", port=0)
    uri = d.register(S, "bench")
    print(f"listening on {uri}", flush=True)
    d.requestLoop()


def serve_ws():
    import msgpack
    import msgpack_numpy
    from websockets.sync.server import serve
    arr = _array()

    def handler(ws):
        env = Env()
        for msg in ws:
            op, args = msgpack.unpackb(msg)
            if op == "add":
                r = (args[0] + args[1]) & 0xFFFFFFFF
            elif op == "step":
                r = env.step(args[0])
            elif op == "value":
                r = env.value()
            else:
                r = arr[:args[0]]
            ws.send(msgpack.packb(r, default=msgpack_numpy.encode))

    with serve(handler, "127.0.0.1", 0, max_size=None, compression=None) as srv:
        print("listening on 127.0.0.1:%d" % srv.socket.getsockname()[1], flush=True)
        srv.serve_forever()


def serve_grpc():
    from concurrent import futures

    import grpc
    arr = _array().tobytes()
    env = Env()

    def add(req, ctx):
        a, b = struct.unpack("<II", req)
        return struct.pack("<I", (a + b) & 0xFFFFFFFF)

    def step(req, ctx):
        return struct.pack("<d", env.step(struct.unpack("<d", req)[0]))

    def value(req, ctx):
        return struct.pack("<d", env.value())

    def array(req, ctx):
        return arr[:4 * struct.unpack("<I", req)[0]]

    handlers = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in
                [("add", add), ("step", step), ("value", value), ("array", array)]}
    opts = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=opts)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("listening on 127.0.0.1:%d" % port, flush=True)
    server.wait_for_termination()


SERVERS = {"rpyc": serve_rpyc, "pyro5": serve_pyro5, "ws": serve_ws, "grpc": serve_grpc}


def start(argv):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening on "):
        p.kill()
        raise RuntimeError(f"{argv} printed {line!r}")
    return p, line.split()[-1]


# -- clients ---------------------------------------------------------------------------------

def p50(f, n):
    for _ in range(min(n, 200)):
        f()
    out = []
    pc = time.perf_counter_ns
    for _ in range(n):
        t = pc()
        f()
        out.append(pc() - t)
    return statistics.median(out) / 1e3  # us


def p50_pair(f, g, n):
    """p50 of ``f`` and of ``g``, timed call by call and alternately (f, g, f, g, ...)."""
    for _ in range(min(n, 200)):
        f()
        g()
    a, b = [], []
    pc = time.perf_counter_ns
    for _ in range(n):
        t = pc()
        f()
        t1 = pc()
        g()
        t2 = pc()
        a.append(t1 - t)
        b.append(t2 - t1)
    return statistics.median(a) / 1e3, statistics.median(b) / 1e3  # us


def per_op(f, n):
    f()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def per_op_pair(f, g, n):
    """Medians of ``f`` and ``g`` timed alternately (f, g, f, g, ...): load that
    comes and goes on a shared machine falls on both alike."""
    f()
    g()
    a, b = [], []
    pc = time.perf_counter
    for _ in range(n):
        t = pc()
        f()
        t1 = pc()
        g()
        t2 = pc()
        a.append(t1 - t)
        b.append(t2 - t1)
    return statistics.median(a), statistics.median(b)


def threads8(make_call, per_thread):
    """calls/s of 8 threads; each thread gets its callable from make_call() (in that thread)."""
    barrier = threading.Barrier(9)
    errors = []

    def run():
        try:
            c = make_call()
            c()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            barrier.abort()
            return
        barrier.wait()
        try:
            for _ in range(per_thread):
                c()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=run) for _ in range(8)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return 8 * per_thread / dt


def recv_exact_into(s, mv):
    got, n = 0, len(mv)
    while got < n:
        r = s.recv_into(mv[got:])
        if not r:
            raise EOFError
        got += r


class Bare:
    """A Python client with no threads and no codecs, same frames as framerpc:
    one recv_into a reused buffer for a small reply; a big payload read
    into a buffer of exactly its size."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray(1 << 16)
        self.mv = memoryview(self.buf)
        self.id = 0

    def call(self, cmd, payload):
        self.id += 1
        s = self.s
        s.sendall(HDR.pack(len(payload), 1, 0, cmd, self.id) + payload)
        got = 0
        while got < 12:
            r = s.recv_into(self.mv[got:])
            if not r:
                raise EOFError
            got += r
        n = HDR.unpack_from(self.buf)[0]
        if 12 + n <= len(self.buf):
            if got < 12 + n:
                recv_exact_into(s, self.mv[got:12 + n])
            return self.mv[12:12 + n]
        out = bytearray(n)
        out[:got - 12] = self.mv[12:got]
        recv_exact_into(s, memoryview(out)[got - 12:])
        return memoryview(out)

    def add(self, i):
        return self.call(ADD, struct.pack("<II", i, 1))

    def array(self):
        import numpy as np
        mv = self.call(ARRAY, struct.pack("<I", N_ARRAY))
        ndim, pad = mv[1], mv[2]
        return np.frombuffer(mv[4 + 8 * ndim + pad:], dtype=np.float32)


def bench_framerpc(ex, procs, n, chained_n, array_n, t8):
    import numpy as np

    import framerpc
    p, addr = start([os.path.join(ex, "bench_server"), "127.0.0.1:0"])
    q, sim_addr = start([os.path.join(ex, "sim_server"), "127.0.0.1:0"])
    try:
        def run():
            out = {}
            b = Bare(addr)
            bare = {}
            with framerpc.connect(addr) as c:
                i = [0]

                def small():
                    i[0] += 1
                    c.call("add_2_words", i[0], 1)

                j = [0]

                def bare_small():
                    j[0] += 1
                    b.add(j[0])

                out["small"], bare["small"] = p50_pair(small, bare_small, n)

                def fetch():
                    a = c.call("array", N_ARRAY)
                    assert a.shape == (N_ARRAY,) and a[5] == 5.0

                def bare_fetch():
                    a = b.array()
                    assert a[5] == 5.0

                fa, ba = per_op_pair(fetch, bare_fetch, array_n)
                out["array"], bare["array"] = MIB / fa, MIB / ba
                out["t8"] = threads8(lambda: small, t8)
            with framerpc.connect(sim_addr) as c:
                env = c.root("sim").make("pendulum")
                act = np.array([0.1], np.float32)

                def chain():
                    r = None
                    for _ in range(10):
                        r = env.step(act)
                    framerpc.materialize(r[1])

                out["chain"] = per_op(chain, chained_n) * 1e6
            b.s.close()
            return out, bare

        return run
    finally:
        procs.extend([p, q])


def make_peer(name, addr):
    """The peer's round-runner: returns a dict of the four figures."""
    import numpy as np
    if name == "rpyc":
        import rpyc

        def run(n, chained_n, array_n, t8):
            c = rpyc.connect(*addr.rsplit(":", 1)[0:1], port=int(addr.rsplit(":", 1)[1]),
                             config={"allow_public_attrs": True, "allow_pickle": True,
                                                                "sync_request_timeout": 60})
            add = c.root.add
            out = {"small": p50(lambda: add(5, 1), n)}
            env = c.root.env()

            def chain():
                for _ in range(10):
                    env.step(0.1)
                env.value()

            out["chain"] = per_op(chain, chained_n) * 1e6

            def fetch():
                np.frombuffer(c.root.array_bytes(N_ARRAY), np.float32)

            out["array"] = MIB / per_op(fetch, array_n)

            def fetch_netref():
                rpyc.classic.obtain(c.root.array(N_ARRAY))

            try:
                out["array2"] = MIB / per_op(fetch_netref, max(1, array_n // 10))
            except Exception:  # noqa: BLE001 - obtain needs pickling, which may be off
                out["array2"] = None
            out["t8"] = threads8(lambda: (lambda: add(5, 1)), t8)
            c.close()
            return out
        return run
    if name == "pyro5":
        import Pyro5.api
        Pyro5.config.SERIALIZER = "msgpack"

        def run(n, chained_n, array_n, t8):
            pr = Pyro5.api.Proxy(addr)
            pr._pyroBind()
            out = {"small": p50(lambda: pr.add(5, 1), n)}

            def chain():
                with Pyro5.api.BatchProxy(pr) as b:
                    for _ in range(10):
                        b.step(0.1)
                    b.value()
                    list(b())

            out["chain"] = per_op(chain, chained_n) * 1e6

            def fetch():
                np.frombuffer(pr.array(N_ARRAY), np.float32)

            out["array"] = MIB / per_op(fetch, array_n)

            def own_proxy():
                p = Pyro5.api.Proxy(addr)
                return lambda: p.add(5, 1)

            out["t8"] = threads8(own_proxy, t8)
            pr._pyroRelease()
            return out
        return run
    if name == "ws":
        import msgpack
        import msgpack_numpy
        from websockets.sync.client import connect

        def run(n, chained_n, array_n, t8):
            ws = connect(f"ws://{addr}", max_size=None, compression=None)

            def rpc(op, *args):
                ws.send(msgpack.packb([op, args]))
                return msgpack.unpackb(ws.recv(), object_hook=msgpack_numpy.decode)

            out = {"small": p50(lambda: rpc("add", 5, 1), n)}

            def chain():
                for _ in range(10):
                    rpc("step", 0.1)
                rpc("value")

            out["chain"] = per_op(chain, chained_n) * 1e6
            out["array"] = MIB / per_op(lambda: rpc("array", N_ARRAY), array_n)
            lock = threading.Lock()

            def locked():
                def f():
                    with lock:
                        rpc("add", 5, 1)
                return f

            out["t8"] = threads8(locked, t8)
            ws.close()
            return out
        return run
    if name == "grpc":
        import grpc

        def run(n, chained_n, array_n, t8):
            opts = [("grpc.max_receive_message_length", 64 << 20)]
            ch = grpc.insecure_channel(addr, options=opts)
            add = ch.unary_unary("/bench/add")
            step = ch.unary_unary("/bench/step")
            value = ch.unary_unary("/bench/value")
            array = ch.unary_unary("/bench/array")
            req = struct.pack("<II", 5, 1)
            out = {"small": p50(lambda: add(req), n)}
            s01 = struct.pack("<d", 0.1)

            def chain():
                for _ in range(10):
                    step(s01)
                value(b"")

            out["chain"] = per_op(chain, chained_n) * 1e6
            nreq = struct.pack("<I", N_ARRAY)
            out["array"] = MIB / per_op(lambda: np.frombuffer(array(nreq), np.float32), array_n)
            out["t8"] = threads8(lambda: (lambda: add(req)), t8)
            ch.close()
            return out
        return run
    raise ValueError(name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", default=os.environ.get("FRAMERPC_EXAMPLES_DIR"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=5000, help="small calls per round")
    ap.add_argument("--serve", choices=sorted(SERVERS), help=argparse.SUPPRESS)
    ap.add_argument("--peers", default="rpyc,pyro5,ws,grpc")
    a = ap.parse_args()
    if a.serve:
        return SERVERS[a.serve]()
    warnings.simplefilter("ignore", DeprecationWarning)
    ex = a.examples
    if ex is None:
        for cand in ("release", "debug"):
            d = os.path.join(HERE, "..", "target", cand, "examples")
            if os.path.exists(os.path.join(d, "bench_server")):
                ex = d
                break
    if ex is None or not os.path.exists(os.path.join(ex, "bench_server")):
        sys.exit("bench_server not built: cargo build --release --all-features --examples")
    chained_n, array_n, t8 = max(50, a.n // 20), 30, max(200, a.n // 8)
    procs = []
    runners = {}
    try:
        runners["framerpc"] = bench_framerpc(ex, procs, a.n, chained_n, array_n, t8)
        for name in [p for p in a.peers.split(",") if p]:
            try:
                proc, addr = start([sys.executable, __file__, "--serve", name])
            except Exception as e:  # noqa: BLE001 - an optional peer
                print(f"({name}: not run: {e})", file=sys.stderr)
                continue
            procs.append(proc)
            runners[name] = make_peer(name, addr)
        results = {k: [] for k in ["framerpc", "bare", *[k for k in runners if k != "framerpc"]]}
        for r in range(a.rounds):
            for name, run in runners.items():
                if name == "framerpc":
                    out, bare = run()
                    results["framerpc"].append(out)
                    results["bare"].append(bare)
                else:
                    try:
                        results[name].append(run(a.n, chained_n, array_n, t8))
                    except Exception as e:  # noqa: BLE001
                        print(f"({name} round {r}: {e!r})", file=sys.stderr)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    report(results, a, ex)


def med(results, name, key):
    vals = [r[key] for r in results.get(name, []) if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def report(results, a, ex):
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    peers = [k for k in results if k not in ("framerpc", "bare")]
    names = {"rpyc": "rpyc", "pyro5": "Pyro5", "ws": "websockets + msgpack-numpy", "grpc": "grpcio"}
    print(f"medians of {a.rounds} interleaved rounds; CPUs {cpus}; servers {os.path.normpath(ex)}\n")
    print("| workload | framerpc-py to Rust | bare socket, same frames | "
          + " | ".join(names.get(p, p) for p in peers) + " |")
    print("| --- | ---: | ---: | " + " | ".join("---:" for _ in peers) + " |")

    def fmt(v, f, suffix=""):
        return "-" if v is None else f.format(v) + suffix

    fs, bs = med(results, "framerpc", "small"), med(results, "bare", "small")
    ratio = f" ({fs / bs:.2f}x bare)" if fs and bs else ""
    print("| small call p50 (µs) | " + fmt(fs, "{:.1f}") + ratio + " | " + fmt(bs, "{:.1f}") + " | "
          + " | ".join(fmt(med(results, p, "small"), "{:.1f}") for p in peers) + " |")
    print("| 10 dependent calls on a remote object, then one value (µs) | "
          + fmt(med(results, "framerpc", "chain"), "{:.0f}") + " | — | "
          + " | ".join(fmt(med(results, p, "chain"), "{:.0f}") + (" (BatchProxy)" if p == "pyro5" else "")
                       for p in peers) + " |")
    fa, ba = med(results, "framerpc", "array"), med(results, "bare", "array")
    ratio = f" ({fa / ba:.2f}x bare)" if fa and ba else ""

    def arr(p):
        s = fmt(med(results, p, "array"), "{:.0f}")
        if p == "rpyc":
            s += " / " + fmt(med(results, p, "array2"), "{:.0f}") + " (obtain)"
        return s

    print("| 4 MB array fetched into numpy (MiB/s) | " + fmt(fa, "{:.0f}") + ratio + " | " + fmt(ba, "{:.0f}")
          + " | " + " | ".join(arr(p) for p in peers) + " |")
    print("| 8 threads, one client (calls/s) | " + fmt(med(results, "framerpc", "t8"), "{:,.0f}") + " | — | "
          + " | ".join(fmt(med(results, p, "t8"), "{:,.0f}") + (" (8 proxies)" if p == "pyro5" else "")
                       for p in peers) + " |")


if __name__ == "__main__":
    main()
