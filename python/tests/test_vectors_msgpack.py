"""The ndarray and dynamic sections of docs/vectors.json, both directions."""

import struct

import msgpack
import pytest

import framerpc
from framerpc import frame as fr
from framerpc import ndarray as nd
from framerpc.dynamic import Session

import numpy as np  # a test dependency (python[test]): missing is a failure


class _NoClient:
    pass


def test_ndarray_msgpack_both_directions(vectors):
    s = Session(_NoClient())
    for v in vectors["ndarray"]:
        raw = bytes.fromhex(v["hex"])
        if v["layout"] == "binary frame":
            h, p = fr.decode_frame(raw)
            assert (h.kind, h.cmd, h.id) == (v["kind"], v["cmd"], v["id"])
            c = framerpc.compile_schema(v["schema"])
            got = c.decode(p)
            assert c.to_json(got) == v["value"] if not isinstance(got, tuple) else \
                [got[0], got[1].tolist()] == v["value"]
            buf = bytearray(12)
            c.enc(c.from_json(v["value"]) if not isinstance(got, tuple) else got, buf)
            struct.pack_into("<IBBHI", buf, 0, len(buf) - 12, h.kind, 0, h.cmd, h.id)
            assert bytes(buf) == raw, v["name"]
            continue
        got = s.unpack(raw)
        if v["layout"] == "msgpack-numpy scalar":
            assert isinstance(got, np.generic) and got.dtype.str == v["dtype"] and got.item() == v["value"]
            assert msgpack.packb(nd.encode_scalar(got), use_bin_type=True) == raw
            if not isinstance(got, (float, int)):  # np.float64 is a float: it packs as a plain float
                assert s.pack(got) == raw
            continue
        assert isinstance(got, np.ndarray), v["name"]
        assert got.dtype.str == v["dtype"] and list(got.shape) == v["shape"] and got.tolist() == v["value"]
        if v["layout"] == "msgpack-numpy":
            assert s.pack(got) == raw, v["name"]
            assert s.pack(np.array(v["value"], dtype=v["dtype"]).reshape(v["shape"])) == raw


def test_ndarray_str_keys_and_refusals():
    s = Session(_NoClient())
    a = np.arange(4, dtype="<u2")
    str_keys = msgpack.packb({"nd": True, "type": "<u2", "kind": b"", "shape": [4], "data": a.tobytes()})
    assert s.unpack(str_keys).tolist() == [0, 1, 2, 3]
    for bad in [{b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": b"x"},
                {b"nd": True, b"type": "|V4", b"kind": b"V", b"shape": [1], b"data": b"xxxx"},
                {b"nd": True, b"type": "<f4", b"kind": b"", b"shape": [2], b"data": b"xxxx"}]:
        with pytest.raises(framerpc.DecodeError):
            s.unpack(msgpack.packb(bad, use_bin_type=True))
    with pytest.raises(framerpc.EncodeError):
        s.pack(np.array([object()], dtype=object))


def test_ndarray_without_numpy_decodes_to_lists(monkeypatch):
    monkeypatch.setattr(nd, "np", None)
    m = {b"nd": True, b"type": "<f4", b"kind": b"", b"shape": [2, 2],
         b"data": struct.pack("<4f", 1, 2, 3, 4)}
    assert nd.decode_map(m) == [[1.0, 2.0], [3.0, 4.0]]
    assert nd.decode_map({b"nd": False, b"type": "<i8", b"data": struct.pack("<q", -5)}) == -5


def test_dynamic_requests_built_as_the_vectors(vectors):
    s = Session(_NoClient())
    by = {v["name"]: v for v in vectors["dynamic"]}
    for v in vectors["dynamic"]:
        h, p = fr.decode_frame(bytes.fromhex(v["hex"]))
        assert h.cmd == 0xFF10
        if "msgpack" in v:
            assert msgpack.unpackb(p, strict_map_key=False) == v["msgpack"]
            assert msgpack.packb(v["msgpack"], use_bin_type=True) == p
    # what the client itself sends: the pow example, and a handle arriving as a proxy
    math = s.root("math")
    call = [[], [[1, 1, math.pow._ref(), [3, 2], {}]], [1]]
    pow_v = [v for v in vectors["dynamic"] if "math.pow" in v["name"]][0]
    assert s.pack(call) == fr.decode_frame(bytes.fromhex(pow_v["hex"]))[1]
    handle_v = [v for v in vectors["dynamic"] if "handle" in v["name"] and v["kind"] == 2][0]
    p = s.unpack(fr.decode_frame(bytes.fromhex(handle_v["hex"]))[1])
    assert framerpc.is_proxy(p) and p._base.id == 1 << 32
    del p
    assert s.releases == [1 << 32]
    # the envelope: refusals kept, the value returned
    env_v = [v for v in vectors["dynamic"] if "envelope" in v["name"]][0]
    assert s._open(s.unpack(fr.decode_frame(bytes.fromhex(env_v["hex"]))[1])) is None
    (r,) = s.take_refusals()
    assert (r["request"], r["slots"], r["code"]) == (7, [3], 2) and "slot 3 is in use" in r["message"]
    # a describe step as the client writes it
    desc_v = [v for v in vectors["dynamic"] if v["name"].startswith("CALL describe")][0]
    assert desc_v["msgpack"][2] == [*math.pow._ref(), [framerpc.dynamic.STEP_DESCRIBE, None]]


class _Capture:
    """A connection that keeps the frames the session sends."""

    max_frame_len = 1 << 20

    def __init__(self):
        self.frames = []

    def send_dynamic(self, frame):
        self.frames.append(frame)


def test_a_batch_is_the_request_msgpack_would_write():
    c = _Capture()
    s = Session(c)
    math, sim = s.root("math"), s.root("sim")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    env = sim.make("pendulum")                      # slot 1
    r = env.step(a[:, ::2], flag=True, arr=a)         # slot 2: a strided array, kwargs, an ndarray kwarg
    p = math.pow(r, 2)                                # slot 3: a proxy argument
    q = env[1]["k"](None, b"\x00", [1, [2]], {"x": np.int16(3)})  # slot 4: steps, nested values
    assert s.pending == 4 and c.frames == []
    s.flush()
    (f,) = c.frames
    h, payload = fr.decode_frame(f)
    assert (h.kind, h.cmd, h.id) == (fr.NOTIFY, 0xFF10, 0)
    ref = lambda *x: msgpack.ExtType(1, msgpack.packb(list(x)))  # noqa: E731
    expected = [[], [
        [1, 1, ["sim", [0, "make"]], ["pendulum"], {}],
        [1, 2, [1, [0, "step"]], [s._default(np.ascontiguousarray(a[:, ::2]))], {"flag": True, "arr": s._default(a)}],
        [1, 3, ["math", [0, "pow"]], [ref(2), 2], {}],
        [1, 4, [1, [1, 1], [1, "k"]], [None, b"\x00", [1, [2]], {"x": s._default(np.int16(3))}], {}],
    ], None]
    assert payload == msgpack.packb(expected, use_bin_type=True)
    assert s.pending == 0
    del env, r, p, q
    # the handles the batch named were kept until it went out; now their releases queue
    assert sorted(s.releases) == [1, 2, 3, 4]
