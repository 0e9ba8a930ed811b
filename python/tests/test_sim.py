"""The simulator example (examples/sim_server.rs): remote objects through proxies.

Roots: ``sim`` (``make(name)`` -> an Env with ``reset(seed=)``, ``step(action)``,
``get_language_instruction()``, ``.name``), ``math`` (``pow``, ``pi``) and
``os`` (``name``, ``path.sep``). The wire format is docs/DYNAMIC.md.

sim_server exposes no handle count or call counter over the wire (Space::stats
is Rust-only), so handle release is observed through the per-connection
handle-table bound (1024): a connection that drops its proxies can make any
number of calls, one that keeps them hits "handle table full" at call 1025.
One round trip is proven by the client's own frame counters.
"""

import gc
import time
import socket
import struct

import msgpack
import pytest

import framerpc
from framerpc import frame as fr

from conftest import ExampleServer

import numpy as np  # a test dependency (python[test]): missing is a failure

BOUND = 1024  # SpaceBuilder::max_handles default, used by sim_server


@pytest.fixture(scope="module")
def sim_addr():
    # Built with `cargo build --all-features --examples`; a missing or
    # featureless sim_server fails here (never skips).
    s = ExampleServer("sim_server", ["127.0.0.1:0"])
    yield "tcp://" + s.value("listening on ").replace("tcp://", "")
    s.stop()


@pytest.fixture
def c(sim_addr):
    with framerpc.connect(sim_addr, timeout=10) as client:
        yield client


def act(x, dtype=np.float32):
    return np.array([x], dtype=dtype)


def test_pendulum_walkthrough(c):
    sim = c.root("sim")
    env = sim.make("pendulum")
    assert framerpc.is_proxy(sim) and framerpc.is_proxy(env)
    obs = framerpc.materialize(env.reset(seed=1))
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape == (3,)
    np.testing.assert_allclose(obs, [0.1, 0.2, 0.3], rtol=1e-6)

    r = env.step(act(0.5))
    assert framerpc.is_proxy(r) and framerpc.is_proxy(r[1])
    reward = framerpc.materialize(r[1])  # only the reward crosses
    state = np.array([0.1, 0.2, 0.3], np.float32) + np.float32(0.025)
    assert reward == pytest.approx(-float((state * state).sum()), rel=1e-6)

    obs, reward2, done, truncated, info = framerpc.materialize(r)
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32
    np.testing.assert_allclose(obs, state, rtol=1e-6)
    assert (reward2, done, truncated, info) == (reward, False, False, {"steps": 1})

    assert framerpc.materialize(env.get_language_instruction()) == "keep the pendulum upright"
    assert framerpc.materialize(env.name) == "pendulum"


def test_math_and_os(c):
    math, os_ = c.root("math"), c.root("os")
    assert framerpc.materialize(math.pow(3, 2)) == 9
    assert framerpc.materialize(math.pow(x=2, y=10)) == 1024
    assert framerpc.materialize(math.pi) == pytest.approx(3.141592653589793)
    assert framerpc.materialize(os_.path.sep) == "/"
    assert framerpc.materialize(os_.name) == "posix"


def test_objects_stay_remote(c):
    env = c.root("sim").make("cartpole")
    h = framerpc.materialize(env)  # an object: ext type 2, a server-made handle
    assert framerpc.is_proxy(h) and h._base.id >= 1 << 32
    assert framerpc.materialize(h.name) == "cartpole"
    assert framerpc.materialize(h.reset(seed=0)).shape == (4,)
    assert not framerpc.is_proxy(framerpc.materialize(env.name))
    assert framerpc.materialize(5) == 5  # not a proxy: returned as it is


def test_calls_run_exactly_once_in_order(c):
    env = c.root("sim").make("pendulum")
    rs = [env.step(act(0.1)) for _ in range(5)]
    assert [framerpc.materialize(r[4])["steps"] for r in rs] == [1, 2, 3, 4, 5]
    assert framerpc.materialize(rs[2][4]) == {"steps": 3}  # fetching twice runs nothing again
    env.reset()
    assert framerpc.materialize(env.step(act(0.0))[4]) == {"steps": 1}


def test_k_chained_calls_one_round_trip(c):
    k = 10
    calls0, notifies0, recv0 = c.calls_sent, c.notifies_sent, c.frames_received
    env = c.root("sim").make("pendulum")
    env.reset(seed=1)
    r = None
    for _ in range(k):
        r = env.step(act(0.5))
    assert (c.calls_sent - calls0, c.frames_received - recv0) == (0, 0)  # nothing waited yet
    assert c.session.pending == k + 2  # batched: nothing sent yet either
    reward = framerpc.materialize(r[1])
    assert isinstance(reward, float)
    # make + reset + k steps and the fetch as ONE request: one CALL frame and one REPLY
    assert c.notifies_sent - notifies0 == 0 and c.session.pending == 0
    assert c.calls_sent - calls0 == 1
    assert c.frames_received - recv0 == 1


def test_a_batch_goes_out_before_any_other_frame_and_on_the_keepers_timer(c, monkeypatch):
    notes = c.notifies_sent
    with monkeypatch.context() as m:
        m.setattr(c.session, "flush", lambda: None)  # the keeper's timer must not split the batch here
        env = c.root("sim").make("pendulum")
        env.reset(seed=1)
        assert c.session.pending == 2
    assert c.ping(b"x") == b"x"  # any frame on the connection takes the batch first
    assert (c.session.pending, c.notifies_sent) == (0, notes + 1)
    r = env.step(act(0.5))
    deadline = time.monotonic() + 5
    while c.session.pending:  # nobody fetches: the keeper sends it within about 20 ms
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert c.notifies_sent == notes + 2
    assert framerpc.materialize(r[4]) == {"steps": 1}


def test_a_batch_is_bounded(c, monkeypatch):
    math = c.root("math")
    notes = c.notifies_sent
    with monkeypatch.context() as m:
        m.setattr(c.session, "flush", lambda: None)  # only the bounds send here
        rs = [math.pow(2, i) for i in range(c.session.MAX_CALLS)]
        assert c.session.pending == 0 and c.notifies_sent == notes + 1  # full: sent at once
        big = np.zeros(c.session.MAX_BYTES, np.uint8)
        r = c.root("sim").echo(big)  # over the byte bound on its own: sent at once
        assert c.session.pending == 0 and c.notifies_sent == notes + 2
    assert framerpc.materialize(rs[-1]) == 2.0 ** (c.session.MAX_CALLS - 1)
    assert np.array_equal(framerpc.materialize(r), big)


def test_big_endian_action_is_accepted(c):
    env = c.root("sim").make("pendulum")
    env.reset(seed=3)
    a = framerpc.materialize(env.step(act(0.5))[1])
    env.reset(seed=3)
    b = framerpc.materialize(env.step(act(0.5, ">f4"))[1])
    assert a == b


# -- errors ---------------------------------------------------------------------------


def remote_error(p):
    with pytest.raises(framerpc.RemoteError) as e:
        framerpc.materialize(p)
    return e.value


def test_wrong_arity_and_keywords(c):
    math = c.root("math")
    e = remote_error(math.pow(1, 2, 3))
    assert isinstance(e, framerpc.HandlerError) and e.code == 3
    assert "wrong arity: math.pow() takes 2 positional arguments but 3 were given" in e.message
    assert "missing required argument 'y'" in remote_error(math.pow(1)).message
    e = remote_error(math.pow(x=1, y=2, z=3))
    assert "unknown keyword: math.pow() got an unexpected keyword argument 'z'" in e.message
    assert "got multiple values for argument 'x'" in remote_error(math.pow(1, 2, x=1)).message


def test_unknown_attribute_root_and_index(c):
    sim = c.root("sim")
    e = remote_error(sim.nope)  # resolving the fetch fails
    assert e.code == 3 and e.message == "unknown attribute 'nope' on sim (a module)"
    e = remote_error(sim.nope(1))  # the call stores the error under its slot
    assert e.message.startswith("call sim.nope() (handle ") and "unknown attribute 'nope'" in e.message
    assert remote_error(c.root("nope").x).message == "unknown root 'nope'"
    r = sim.make("pendulum").step(act(0.0))
    assert "index 7 out of range" in remote_error(r[7]).message


def test_calling_a_non_callable(c):
    assert "not callable: math.pi is a float value" in remote_error(c.root("math").pi()).message
    e = remote_error(c.root("sim").make("pendulum").name())
    assert "not callable: sim.make().name is a str value" in e.message


def test_failing_method_poisons_dependents(c):
    sim, math = c.root("sim"), c.root("math")
    env = sim.make("pendulum")
    bad = env.step(np.zeros(2, np.float32))  # the application's own error, code 1000
    dep_index, dep_arg, dep_call = bad[1], math.pow(bad, 2), bad.anything()
    first = remote_error(bad)
    assert first.code == 1000 and not isinstance(first, framerpc.HandlerError)
    assert "call sim.make().step() (handle " in first.message
    assert first.message.endswith(
        "failed: argument 'action': expected float32 array of shape (1,), found float32 array of shape (2,)")
    for dep in (dep_index, dep_arg, dep_call):  # the same error, code and message
        e = remote_error(dep)
        assert (e.code, e.message) == (first.code, first.message)

    broken = sim.make("unicycle")
    e = remote_error(broken.reset().step(act(0.0))[0])
    assert e.code == 3 and "call sim.make() (handle " in e.message
    assert e.message.endswith('failed: unknown environment "unicycle"')
    # the connection and the healthy env live on
    assert framerpc.materialize(env.step(act(0.0))[4]) == {"steps": 1}


def test_refused_locally_before_sending(c):
    env = c.root("sim").make("pendulum")
    n = c.notifies_sent
    with pytest.raises(framerpc.EncodeError, match="cannot cross the dynamic layer"):
        env.step(np.array([1j], np.complex64))
    with pytest.raises(framerpc.EncodeError, match="inside a container"):
        c.root("math").pow([env], 2)
    with pytest.raises(framerpc.EncodeError):
        env.step(object())
    assert c.notifies_sent == n
    assert framerpc.materialize(env.step(act(0.0))[4]) == {"steps": 1}


# -- handles --------------------------------------------------------------------------


def test_dropped_proxies_release_their_handles(c):
    math = c.root("math")
    r = None
    for i in range(3 * BOUND):  # each result dropped when r is rebound
        r = math.pow(i, 1)
    assert framerpc.materialize(r) == 3 * BOUND - 1  # would be "handle table full" without releases
    h = framerpc.materialize(c.root("sim").make("pendulum"))
    hid = h._base.id
    del h, r
    gc.collect()
    assert hid in c.session.releases
    c.sync()  # the releases ride on this request
    assert c.session.releases == []


def test_kept_proxies_hit_the_bound_then_release(c):
    math = c.root("math")
    kept = [math.pow(2, 1) for _ in range(BOUND)]
    c.session.flush()  # the next call is a batch (a request) of its own ...
    kept.append(math.pow(2, 1))
    c.session.flush()  # ... and a NOTIFY, not part of the fetch's request
    assert framerpc.materialize(kept[BOUND - 1]) == 2
    e = remote_error(kept[BOUND])
    assert "handle table full (1024 handles, the bound;" in e.message and "not run" in e.message
    # the refused NOTIFY was reported alongside the reply of kept[BOUND - 1]
    (r,) = c.session.take_refusals()
    assert r["slots"] == [kept[BOUND]._base.id] and "handle table full" in r["message"]
    del kept, e
    gc.collect()
    assert framerpc.materialize(math.pow(3, 2)) == 9  # the release rode on this request


def test_a_batch_of_calls_is_one_request_refused_whole(c, monkeypatch):
    math = c.root("math")
    kept = [math.pow(2, 1) for _ in range(BOUND - 3)]
    c.sync()
    with monkeypatch.context() as m:
        m.setattr(c.session, "flush", lambda: None)  # the keeper's timer must not split the batch here
        batch = [math.pow(3, 1) for _ in range(5)]  # five calls, three free handles
    assert c.session.pending == 5
    sent = c.notifies_sent
    c.session.flush()  # one NOTIFY: refused whole, reported with the next reply
    assert c.notifies_sent == sent + 1
    assert framerpc.materialize(kept[-1]) == 2
    (r,) = c.session.take_refusals()
    assert r["calls"] == 5 and r["slots"] == [p._base.id for p in batch]
    assert "handle table full" in r["message"]
    for p in batch:  # none of them ran: each slot holds the refusal
        e = remote_error(p)
        assert "not run: its request was refused: handle table full" in e.message
    del kept, batch, p, e
    gc.collect()
    assert framerpc.materialize(math.pow(3, 2)) == 9  # the releases rode on this request


def test_a_fetch_carries_the_batch_and_a_refusal_fails_it(c, monkeypatch):
    math = c.root("math")
    kept = [math.pow(2, 1) for _ in range(BOUND - 3)]
    c.sync()
    with monkeypatch.context() as m:
        m.setattr(c.session, "flush", lambda: None)
        batch = [math.pow(3, 1) for _ in range(5)]
    # the five calls and the fetch are one request: refused whole, the fetch raises the refusal
    e = remote_error(kept[-1])
    assert e.code == 3 and "handle table full" in e.message
    assert e.message.endswith("the request was refused and none of its 5 calls ran")
    assert c.session.take_refusals() == []  # reported once: as this error
    for p in batch:
        assert "not run: its request was refused" in remote_error(p).message
    assert framerpc.materialize(kept[-1]) == 2  # what ran before is intact
    del kept, batch, p, e
    gc.collect()
    assert framerpc.materialize(math.pow(3, 2)) == 9


def test_handles_are_per_connection(c, sim_addr):
    env = c.root("sim").make("pendulum")
    framerpc.materialize(env.name)
    with framerpc.connect(sim_addr, timeout=10) as other:
        slot = env._base.id
        foreign = framerpc.dynamic.Proxy(other.session, framerpc.dynamic._Handle(other.session, slot, "x"), ())
        assert "unknown handle" in remote_error(foreign.name).message
        del foreign


# -- arrays ---------------------------------------------------------------------------


def test_array_rules_name_both_dtypes_and_shapes(c):
    env = c.root("sim").make("pendulum")
    for bad, found in [(np.array([0.5], np.float64), "float64 array of shape (1,)"),
                       (np.array([[0.5]], np.float32), "float32 array of shape (1, 1)"),
                       (np.array(0.5, np.float32), "float32 array of shape ()"),
                       (np.float32(0.5), "float32 array of shape ()")]:
        e = remote_error(env.step(bad))
        assert e.message.endswith(f"argument 'action': expected float32 array of shape (1,), found {found}"), e.message
    e = remote_error(env.step(0.5))
    assert "found float (a plain msgpack value: arrays cross as ndarray maps)" in e.message
    assert framerpc.materialize(env.step(act(0.5))[4]) == {"steps": 1}


def test_render_and_echo_arrays(c):
    env = c.root("sim").make("pendulum")
    img = framerpc.materialize(env.render())
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.shape == (480, 640, 3)
    y, x, k = np.meshgrid(np.arange(480), np.arange(640), np.arange(3), indexing="ij")
    want = (y.astype(np.uint8) ^ x.astype(np.uint8) ^ (k * 85).astype(np.uint8))
    np.testing.assert_array_equal(img, want)
    a = np.arange(1000 * 1000, dtype=np.float32).reshape(1000, 1000)
    back = framerpc.materialize(c.root("sim").echo(a))
    assert back.dtype == np.float32 and back.shape == (1000, 1000)
    np.testing.assert_array_equal(back, a)


# -- refusals: all or nothing, reported once alongside the next reply -----------------


def raw_session(sim_addr):
    host, port = sim_addr.replace("tcp://", "").rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)

    def frame(kind, cid, obj):
        p = msgpack.packb(obj, use_bin_type=True)
        s.sendall(struct.pack("<IBBHI", len(p), kind, 0, 0xFF10, cid) + p)

    def reply():
        got = b""
        while len(got) < 12 or len(got) < 12 + struct.unpack_from("<I", got)[0]:
            chunk = s.recv(65536)
            assert chunk
            got += chunk
        return fr.decode_frame(got)

    return s, frame, reply


def test_a_refused_notify_runs_nothing_and_rides_on_the_next_reply(sim_addr):
    s, frame, reply = raw_session(sim_addr)
    with s:
        frame(4, 0, [[], [[1, 1, ["sim", [0, "make"]], ["pendulum"], {}]], None])
        # slot 1 is in use: the whole NOTIFY is refused, the step into slot 2 does not run
        frame(4, 0, [[], [[1, 1, ["math", [0, "pow"]], [2, 1], {}],
                          [1, 2, [1, [0, "step"]], [act(0.5).tobytes()], {}]], None])
        frame(4, 0, [[], [[1, 3, [1, [0, "step"]], [framerpc.dynamic._nd.encode_array(act(0.5))], {}]], None])
        frame(1, 1, [[], [], [3, [1, 4]]])
        h, p = reply()
        assert (h.kind, h.id) == (fr.REPLY, 1)
        env = msgpack.unpackb(p)
        assert isinstance(env, msgpack.ExtType) and env.code == 3
        refusals, unlisted, value = msgpack.unpackb(env.data)
        assert value == {"steps": 1}, "the step into slot 2 never ran"
        assert unlisted == 0 and len(refusals) == 1
        r = refusals[0]
        assert (r["request"], r["calls"], r["slots"], r["code"]) == (2, 2, [1, 2], 2)
        assert r["message"].startswith("slot 1 is in use (it holds sim.make())")
        assert r["message"].endswith("none of its 2 calls ran")
        frame(1, 2, [[], [], None])
        h, p = reply()
        assert p == b"\xc0", "reported once"


def test_a_call_that_reuses_a_slot_gets_its_own_error(sim_addr):
    s, frame, reply = raw_session(sim_addr)
    with s:
        frame(4, 0, [[], [[1, 1, ["sim", [0, "make"]], ["pendulum"], {}]], None])
        frame(1, 1, [[], [[1, 2, ["math", [0, "pow"]], [2, 1], {}], [1, 1, ["math", [0, "pow"]], [2, 1], {}]], [2]])
        h, p = reply()
        assert h.kind == fr.ERROR and struct.unpack("<H", p[:2])[0] == 2
        msg = p[2:].decode()
        assert msg.startswith("slot 1 is in use") and "one-way" not in msg, msg
        # slot 2 holds the refusal: its call did not run
        frame(1, 2, [[], [], [2]])
        h, p = reply()
        assert h.kind == fr.ERROR and "(handle 2) not run: its request was refused" in p[2:].decode()


def test_the_python_session_keeps_refusals_and_sync_raises_them_once(c):
    env = c.root("sim").make("pendulum")
    framerpc.materialize(env.name)
    slot = env._base.id
    c.notify_raw(0xFF10, msgpack.packb([[], [[1, slot, ["math", [0, "pow"]], [2, 1], {}]], None]))
    assert framerpc.materialize(env.name) == "pendulum"  # not replaced
    (r,) = c.session.take_refusals()
    assert r["slots"] == [slot] and f"slot {slot} is in use" in r["message"]
    c.sync()
    c.notify_raw(0xFF10, b"\xc1")
    with pytest.raises(framerpc.RemoteError, match="1 one-way request was refused .*bad dynamic request") as e:
        c.sync()
    assert e.value.code == 2
    c.sync()  # once


# -- describe -----------------------------------------------------------------------


def test_describe_a_root_an_object_a_method_and_a_function(c):
    from framerpc.dynamic import describe
    d = describe(c.root("sim"))
    assert (d["kind"], d["name"]) == ("module", "sim") and d["doc"].startswith("Simulated environments")
    assert [m["name"] for m in d["members"]] == ["echo", "make"]
    make = d["members"][1]
    assert make["kind"] == "function" and make["params"] == [{"name": "name", "kind": "positional_or_keyword"}]
    env = c.root("sim").make("pendulum")
    o = describe(env)
    assert (o["kind"], o["class"]) == ("object", "Env")
    assert [m["name"] for m in o["members"]] == ["get_language_instruction", "name", "render", "reset", "step"]
    reset = describe(env.reset)
    assert reset["kind"] == "method" and reset["params"] == [
        {"name": "seed", "kind": "positional_or_keyword", "default": None}]
    f = describe(c.root("math").pow)
    assert [p["name"] for p in f["params"]] == ["x", "y"] and f["doc"] == "x to the power y, as a float."
    assert describe(c.root("math").pi) == {"kind": "value", "name": "math.pi", "type": "float"}
    # env's description is known now: a member it does not declare is refused locally ...
    with pytest.raises(AttributeError, match="has no member '__class__'"):
        env._derive((0, "__class__"))
    # ... and by the server for a proxy whose description is not known
    with pytest.raises(framerpc.RemoteError, match="unknown attribute '__class__'"):
        describe(c.root("sim").make("pendulum")._derive((0, "__class__")))


# -- the bytes of docs/DYNAMIC.md against the real server ---------------------------


def test_dynamic_vectors_replayed_against_the_server(sim_addr, vectors):
    """docs/vectors.json's dynamic section is one session: every answer, byte for byte."""
    host, port = sim_addr.replace("tcp://", "").rsplit(":", 1)
    answers = {v["id"]: v for v in vectors["dynamic"] if v["kind"] in (2, 3)}
    with socket.create_connection((host, int(port)), timeout=5) as s:
        for v in vectors["dynamic"]:
            if v["kind"] not in (1, 4):
                continue
            s.sendall(bytes.fromhex(v["hex"]))
            if v["kind"] == 4:
                continue
            got = b""
            while len(got) < 12 or len(got) < 12 + struct.unpack_from("<I", got)[0]:
                chunk = s.recv(4096)
                assert chunk
                got += chunk
            assert got.hex() == answers[v["id"]]["hex"], v["name"]
    assert len(answers) == sum(v["kind"] == 1 for v in vectors["dynamic"])



def test_doc_example_bytes_against_the_server(sim_addr, vectors):
    host, port = sim_addr.replace("tcp://", "").rsplit(":", 1)
    dyn = {v["name"]: v for v in vectors["dynamic"]}
    req = next(v for n, v in dyn.items() if n.startswith("CALL math.pow"))
    rep = next(v for n, v in dyn.items() if n.startswith("REPLY 9"))
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(bytes.fromhex(req["hex"]))
        got = b""
        while len(got) < 12 or len(got) < 12 + struct.unpack_from("<I", got)[0]:
            chunk = s.recv(4096)
            assert chunk
            got += chunk
    assert got.hex() == rep["hex"]
    h, p = fr.decode_frame(got)
    assert msgpack.unpackb(p) == 9.0 and isinstance(msgpack.unpackb(p), float)
