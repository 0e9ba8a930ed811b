"""Every vector of docs/vectors.json, byte for byte, in both directions."""

import math

import pytest

import framerpc
from framerpc import frame as fr


def norm(codec, v):
    """A JSON value made comparable (bytes hex without the (hex) suffix, NaN as a marker)."""
    return codec.to_json(codec.decode(codec.encode(codec.from_json(v))))


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b) or (a == b and {type(a), type(b)} <= {int, float})


def test_sections_present(vectors):
    for k in ("frames", "codecs", "invalid_requests", "errors", "builtin_replies", "codec_edges"):
        assert vectors[k], k
    assert {e["code"] for e in vectors["errors"]} >= set(range(1, 11))


def frame_cases(vectors):
    return vectors["frames"] + vectors["errors"] + vectors["builtin_replies"]


@pytest.mark.parametrize("section", ["frames", "errors", "builtin_replies"])
def test_frames_both_directions(vectors, section):
    for v in vectors[section]:
        raw = bytes.fromhex(v["hex"])
        h, payload = fr.decode_frame(raw)
        assert (h.kind, h.cmd, h.id, h.len) == (v["kind"], v["cmd"], v["id"], len(raw) - 12), v["name"]
        assert fr.encode_frame(v["kind"], v["cmd"], v["id"], payload) == raw, v["name"]
        if h.kind == fr.NOTIFY:
            assert h.id == 0


# payload schemas of the shared frames, by command id
GREET_SCHEMAS = {1: ("str", "str"), 3: ("(u32,u32)", "u32"), 4: ("unit", "unit")}


def test_shared_frame_payloads_decode(vectors):
    seen = 0
    for v in vectors["frames"]:
        h, p = fr.decode_frame(bytes.fromhex(v["hex"]))
        if h.cmd in GREET_SCHEMAS and h.kind in (fr.CALL, fr.REPLY, fr.NOTIFY):
            schema = GREET_SCHEMAS[h.cmd][0 if h.kind != fr.REPLY else 1]
            c = framerpc.compile_schema(schema)
            assert c.encode(c.decode(p)) == p
            seen += 1
    assert seen >= 5
    hello = [v for v in vectors["frames"] if v["cmd"] == 1 and v["kind"] == 1][0]
    assert framerpc.decode("str", fr.decode_frame(bytes.fromhex(hello["hex"]))[1]) == "bob"


def test_error_frames(vectors):
    for v in vectors["errors"]:
        _, p = fr.decode_frame(bytes.fromhex(v["hex"]))
        assert fr.parse_error_payload(p) == (v["code"], v["message"])
        assert fr.error_payload(v["code"], v["message"]) == p
        e = framerpc.RemoteError.from_code(v["code"], v["message"])
        assert e.code == v["code"] and e.message == v["message"]
        assert isinstance(e, framerpc.RemoteError)
    # the shared UNKNOWN_COMMAND frame too
    unk = [v for v in vectors["frames"] if v["kind"] == 3][0]
    _, p = fr.decode_frame(bytes.fromhex(unk["hex"]))
    assert fr.parse_error_payload(p) == (1, "unknown command 777")


def test_builtin_reply_values(vectors):
    for v in vectors["builtin_replies"]:
        if "value" not in v:
            continue
        _, p = fr.decode_frame(bytes.fromhex(v["hex"]))
        if v["cmd"] == fr.LIST:
            rows = framerpc.decode_list(p)
            assert [r._asdict() for r in rows] == v["value"]
            assert framerpc.encode_list(rows) == p
        elif v["cmd"] == fr.STATUS:
            assert list(framerpc.client._STATUS.unpack(p)) == [v["value"][k] for k in ("active", "max", "waiting")]
        elif v["cmd"] == fr.PING:
            assert p.hex() == v["value"]
    shared_list = [v for v in vectors["frames"] if v["cmd"] == fr.LIST][0]
    _, p = fr.decode_frame(bytes.fromhex(shared_list["hex"]))
    assert [tuple(r) for r in framerpc.decode_list(p)] == [(1, "hello", "str", "str"), (3, "add_2_words", "(u32,u32)", "u32")]


@pytest.mark.parametrize("section", ["codecs", "codec_edges"])
def test_codecs_both_directions(vectors, section):
    for v in vectors[section]:
        c = framerpc.compile_schema(v["codec"])
        assert c.schema == v["codec"].replace(" ", "")
        raw = bytes.fromhex(v["hex"])
        assert c.encode(c.from_json(v["value"])).hex() == v["hex"], v
        got = c.to_json(c.decode(raw))
        assert same(got, norm(c, v["value"])), (v, got)


def test_invalid_requests_refused(vectors):
    for v in vectors["invalid_requests"]:
        with pytest.raises(framerpc.DecodeError):
            framerpc.decode(v["codec"], bytes.fromhex(v["hex"]))


@pytest.mark.parametrize("schema,hex_", [
    ("vec<u64>", "ffffffff"), ("vec<unit>", "ffffffff"), ("vec<str>", "0200000001000000"),
    ("bytes", "05000000aa"), ("option<u8>", ""), ("(u8,u8)", "01"), ("unit", "00"), ("f64", "00"),
    ("str", "03000000c3a9"), ("vec<vec<u8>>", "0100000009000000"),
])
def test_decode_refuses(schema, hex_):
    with pytest.raises(framerpc.DecodeError):
        framerpc.decode(schema, bytes.fromhex(hex_))


@pytest.mark.parametrize("schema,value", [
    ("u8", 256), ("u8", -1), ("i8", 128), ("u64", 1 << 64), ("i64", -(1 << 63) - 1), ("u32", True),
    ("u32", 1.0), ("f32", 1e39), ("f64", "1"), ("bool", 1), ("str", b"x"), ("bytes", "x"),
    ("vec<u8>", 5), ("vec<u32>", [1, -1]), ("(u32,u32)", [1]), ("(u32,u32)", "ab"), ("unit", 0),
    ("option<u8>", 300), ("vec<f64>", [1.0, "x"]),
])
def test_encode_refuses(schema, value):
    with pytest.raises(framerpc.EncodeError):
        framerpc.encode(schema, value)


@pytest.mark.parametrize("schema", ["", "u128", "vec<u8", "(u8,)", "()", "option<>", "u8 u8", "vec<u8>>", "u8_be"])
def test_bad_schemas(schema):
    with pytest.raises(framerpc.SchemaError):
        framerpc.compile_schema(schema)


def test_numpy_vec_fast_path():
    import numpy as np  # a test dependency (python[test]): missing is a failure
    assert framerpc.encode("vec<f32>", np.array([1.5, 2.0])) == framerpc.encode("vec<f32>", [1.5, 2.0])
    assert framerpc.encode("vec<u16_be>", np.arange(3)) == framerpc.encode("vec<u16_be>", [0, 1, 2])
    with pytest.raises(framerpc.EncodeError):
        framerpc.encode("vec<u8>", np.array([256]))
    assert framerpc.encode("u32", np.uint32(7)) == b"\x07\0\0\0"
