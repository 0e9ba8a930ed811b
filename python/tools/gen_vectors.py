"""Writes docs/vectors.json: shared/wire-vectors.json verbatim plus framerpc's own sections.

    python python/tools/gen_vectors.py [path/to/wire-vectors.json] [out.json]

The new sections are built here from explicit values with ``struct`` and the
framerpc codecs; the Python tests check every entry in both directions and a
Rust test loads the same file, so a wrong byte here fails on both sides.
"""

import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import framerpc  # noqa: E402
from framerpc import frame as fr  # noqa: E402

SRC = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/wire-vectors.json"
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "..", "docs", "vectors.json")

CONVENTIONS = {
    "hex": "lowercase, no separators; every integer little-endian unless the codec is a _be variant",
    "frames": "name, kind, cmd, id, hex (the whole frame, 12-byte header included)",
    "codec values": (
        "JSON numbers for integers (u64/i64 extremes are exact JSON integers); floats as JSON numbers, "
        "except the strings \"nan\", \"inf\", \"-inf\"; a bytes value is a hex string, optionally followed "
        "by \" (hex)\" (so \"00ff10 (hex)\" and \"(hex)\" for empty); vec and tuple as JSON arrays; "
        "option as null or the value; unit as null"
    ),
    "errors": "ERROR frames: payload is u16 code then the UTF-8 message; fields as frames plus code and message",
    "builtin_replies": "frames of the library commands; value is the decoded payload where it has structure",
    "codec_edges": "same fields as codecs: codec (a schema string), value, hex",
    "ndarray": ("layout msgpack-numpy (a map with bin keys nd, type, kind, shape, data; type is a str dtype), "
                "msgpack-numpy scalar ({nd: false, type, data}), __ndarray__ (decode only), or binary frame "
                "(a whole frame whose payload is the ndarray codec; the pad aligns the data to 8 bytes from "
                "the frame start); value is the array as nested lists"),
    "dynamic": ("frames on command 0xFF10, one session against examples/sim_server in order on one connection "
                "(each REPLY/ERROR has its CALL's id); msgpack is the payload as JSON where JSON can hold it "
                "(ext and bin values only in hex); array describes an ndarray argument"),
}


def frame(name, kind, cmd, cid, payload=b"", **extra):
    d = {"name": name, "kind": kind, "cmd": cmd, "id": cid}
    d.update(extra)
    d["hex"] = fr.encode_frame(kind, cmd, cid, payload).hex()
    return d


def errors():
    rows = [
        (1, 777, 9, "unknown command 777"),
        (2, 3, 10, "truncated: needs 4 bytes, 3 remain"),
        (3, 10, 11, "cannot divide 1 by zero"),
        (4, 11, 12, "handler for command 11 panicked: explode(7) always panics"),
        (5, 3, 13, "busy: 1 of 1 users active"),
        (6, 65280, 1, "unauthorized: wrong token"),
        (7, 1, 14, "too large: payload of 70000000 bytes exceeds the receiver's limit of 67108864 bytes"),
        (8, 1, 15, "server is shutting down"),
        (9, 3, 16, "timeout: waited 30.0s for the device"),
        (10, 0, 0, "protocol: unknown frame kind 9"),
        (1001, 10, 17, "cannot divide 1 by zero"),
    ]
    out = []
    for code, cmd, cid, msg in rows:
        name = framerpc.errors.CODE_NAMES.get(code, "application code")
        out.append(frame(f"ERROR {name} ({code})", 3, cmd, cid, fr.error_payload(code, msg), code=code, message=msg))
    return out


GREET = [
    framerpc.CommandInfo(1, "hello", "str", "str"),
    framerpc.CommandInfo(2, "goodbye", "str", "str"),
    framerpc.CommandInfo(3, "add_2_words", "(u32,u32)", "u32"),
    framerpc.CommandInfo(4, "func_no_args", "unit", "unit"),
]


def builtin_replies():
    table = [r._asdict() for r in GREET]
    return [
        frame("CALL list 0xFF01 id 1 (empty payload)", 1, fr.LIST, 1),
        frame("REPLY list 0xFF01: the greet server's table", 2, fr.LIST, 1, framerpc.encode_list(GREET), value=table),
        frame("REPLY list 0xFF01: an empty table", 2, fr.LIST, 2, framerpc.encode_list([]), value=[]),
        frame("CALL ping 0xFF02 with no bytes id 3 (a heartbeat)", 1, fr.PING, 3),
        frame("REPLY ping 0xFF02 with no bytes id 3", 2, fr.PING, 3),
        frame("REPLY ping 0xFF02 echoing 'abc' id 2", 2, fr.PING, 2, b"abc", value="616263"),
        frame("CALL status 0xFF03 id 4 (empty payload)", 1, fr.STATUS, 4),
        frame("REPLY status 0xFF03: active 1, max 4294967295 (no limit), waiting 0", 2, fr.STATUS, 4,
              struct.pack("<III", 1, 0xFFFFFFFF, 0), value={"active": 1, "max": 4294967295, "waiting": 0}),
        frame("REPLY status 0xFF03: active 0, max 1, waiting 0", 2, fr.STATUS, 5,
              struct.pack("<III", 0, 1, 0), value={"active": 0, "max": 1, "waiting": 0}),
        frame("REPLY auth 0xFF00 id 1 (accepted: empty payload)", 2, fr.AUTH, 1),
        # Sharing a device (PROTOCOL.md section 7).
        frame("CALL acquire 0xFF05 id 6: wait up to 5000 ms", 1, 0xFF05, 6, struct.pack("<I", 5000),
              value={"wait_ms": 5000}),
        frame("REPLY acquire 0xFF05 id 6: the device is held (empty payload)", 2, 0xFF05, 6),
        frame("CALL acquire 0xFF05 id 7: do not wait", 1, 0xFF05, 7, struct.pack("<I", 0), value={"wait_ms": 0}),
        frame("ERROR BUSY (5) answering acquire 0xFF05 id 7", 3, 0xFF05, 7,
              fr.error_payload(5, BUSY_TEXT), code=5, message=BUSY_TEXT),
        frame("CALL release 0xFF06 id 8 (empty payload)", 1, 0xFF06, 8),
        frame("REPLY release 0xFF06 id 8 (empty payload, also without a hold)", 2, 0xFF06, 8),
        frame("NOTIFY identify 0xFF07 'scan@bench-3' (how clients name themselves at connect)", 4, 0xFF07, 0,
              b"scan@bench-3", value="scan@bench-3"),
        frame("CALL identify 0xFF07 id 9 'scan@bench-3'", 1, 0xFF07, 9, b"scan@bench-3", value="scan@bench-3"),
        frame("REPLY identify 0xFF07 id 9 (empty payload)", 2, 0xFF07, 9),
        frame("CALL shared 0xFF08 id 10 (empty payload)", 1, 0xFF08, 10),
        frame("REPLY shared 0xFF08 id 10: commands 2 and 5 run without the device", 2, 0xFF08, 10,
              struct.pack("<HHH", 2, 2, 5), value=[2, 5]),
        frame("CALL queue 0xFF04 id 11 (empty payload)", 1, 0xFF04, 11),
        frame("REPLY queue 0xFF04 id 11: waiting", 2, 0xFF04, 11, QUEUE_TEXT.encode(), value=QUEUE_TEXT),
    ]


BUSY_TEXT = "busy: 1 of 1 users active; held by scan@bench-3 (10.0.0.5:4312) for 3.2s"
QUEUE_TEXT = ("waiting for the device: 1 of 1 users active; held by scan@bench-3 (10.0.0.5:4312) for 3.2s; "
              "number 1 of 2 in the queue")


F32_MAX = struct.unpack("<f", struct.pack("<f", 3.4028234663852886e38))[0]
F32_MIN_POS = struct.unpack("<f", bytes.fromhex("00008000"))[0]
F32_SUB = struct.unpack("<f", bytes.fromhex("01000000"))[0]


def codec_edges():
    c = []

    def add(schema, value):
        codec = framerpc.compile_schema(schema)
        c.append({"codec": schema, "value": value, "hex": codec.encode(codec.from_json(value)).hex()})

    for name, bits, signed in [("u8", 8, 0), ("i8", 8, 1), ("u16", 16, 0), ("i16", 16, 1),
                               ("u32", 32, 0), ("i32", 32, 1), ("u64", 64, 0), ("i64", 64, 1)]:
        lo = -(1 << (bits - 1)) if signed else 0
        hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        vals = [lo, hi] + ([0, 1, -1] if signed else [1])
        for suffix in ([""] if bits == 8 else ["", "_be"]):
            for v in vals:
                add(name + suffix, v)
    for suffix in ["", "_be"]:
        for v in [0.0, -0.0, 1.0, F32_MAX, -F32_MAX, F32_MIN_POS, F32_SUB, "inf", "-inf", "nan"]:
            add("f32" + suffix, v)
        for v in [0.0, -0.0, 0.1, 1.7976931348623157e308, -1.7976931348623157e308, 2.2250738585072014e-308,
                  5e-324, "inf", "-inf", "nan"]:
            add("f64" + suffix, v)
    add("bool", True)
    add("bool", False)
    add("str", "")
    add("str", "a\u0000b")
    add("str", "\u00e9\u4e2d\U0001f600")
    add("bytes", "(hex)")
    add("bytes", "00 (hex)")
    add("bytes", bytes(range(256)).hex() + " (hex)")
    add("unit", None)
    add("vec<u8>", [])
    add("vec<u8>", [0, 127, 255])
    add("vec<i64>", [-9223372036854775808, 9223372036854775807])
    add("vec<f32>", [1.5, -0.0, "inf"])
    add("vec<unit>", [])
    add("vec<bool>", [True, False])
    add("vec<str>", ["", "x"])
    add("vec<vec<u16>>", [[], [1], [65535, 0]])
    add("vec<bytes>", ["(hex)", "ff (hex)"])
    add("vec<option<u8>>", [None, 0, 255])
    add("option<u64>", None)
    add("option<u64>", 18446744073709551615)
    add("option<str>", "")
    add("option<bytes>", "(hex)")
    add("option<vec<u8>>", [])
    add("option<(u8,u8)>", [1, 2])
    add("(u8)", [255])
    add("(u32,u32)", [4294967295, 0])
    add("(u16_be,u16)", [258, 258])
    add("(bool,(str,unit),vec<u8>)", [False, ["z", None], [9]])
    add("(f64,f32,i8,u64_be)", [-0.1, 0.5, -128, 1])
    # Named user types (Rust's Map::named): the bytes of their parts.
    add("Pos{x:f64,y:f64}", [1.0, -2.5])
    add("Mode(u8)", 1)
    add("Pos(f64,f64)", [1.0, -2.5])
    add("Frame{id:u32,tags:vec<str>,at:option<Pos{x:f64,y:f64}>}", [7, ["a"], [0.5, 0.25]])
    return c


def ndarray_section():
    """msgpack-numpy 0.4.8 maps (bin keys nd/type/kind/shape/data; type a str), and the binary codec."""
    import msgpack
    import numpy as np
    from framerpc import ndarray as nd

    out = []

    def arr(name, a):
        out.append({"name": name, "layout": "msgpack-numpy", "dtype": a.dtype.str, "shape": list(a.shape),
                    "value": a.tolist(), "hex": msgpack.packb(nd.encode_array(a), use_bin_type=True).hex()})

    arr("2x2 float32 [[1,2],[3,4]]", np.array([[1, 2], [3, 4]], dtype="<f4"))
    arr("1-d int64 [-1, 0, 2**40]", np.array([-1, 0, 2**40], dtype="<i8"))
    arr("2x3 uint8", np.arange(6, dtype="|u1").reshape(2, 3))
    arr("bool [true, false]", np.array([True, False]))
    arr("empty float64 of shape [0, 3]", np.zeros((0, 3), dtype="<f8"))
    arr("0-d float32 array 7.0", np.array(7.0, dtype="<f4"))
    for name, x in [("scalar float64 1.5", np.float64(1.5)), ("scalar int32 -7", np.int32(-7))]:
        out.append({"name": name, "layout": "msgpack-numpy scalar", "dtype": x.dtype.str, "shape": None,
                    "value": x.item(), "hex": msgpack.packb(nd.encode_scalar(x), use_bin_type=True).hex()})
    a = np.array([1.5, -2.0], dtype="<f4")
    out.append({"name": "robotics dialect {__ndarray__, data, dtype, shape} (decode only)",
                "layout": "__ndarray__", "dtype": "<f4", "shape": [2], "value": a.tolist(),
                "hex": msgpack.packb({"__ndarray__": True, "data": a.tobytes(), "dtype": "<f4", "shape": [2]},
                                     use_bin_type=True).hex()})
    # the binary codec inside a whole frame (its pad aligns the data to 8 bytes from the frame start)
    c = framerpc.compile_schema("ndarray<float32>")
    buf = bytearray(12)
    c.enc(np.array([[1, 2], [3, 4]], dtype="<f4"), buf)
    struct.pack_into("<IBBHI", buf, 0, len(buf) - 12, 1, 0, 20, 5)
    out.append({"name": "CALL cmd 20 id 5 with ndarray<float32> [[1,2],[3,4]] (binary codec, pad 0)",
                "layout": "binary frame", "schema": "ndarray<float32>", "dtype": "float32", "shape": [2, 2],
                "value": [[1.0, 2.0], [3.0, 4.0]], "kind": 1, "cmd": 20, "id": 5, "hex": bytes(buf).hex()})
    buf = bytearray(12)
    c = framerpc.compile_schema("(u32,ndarray)")
    c.enc((7, np.array([1, 2, 3], dtype="<i4")), buf)
    struct.pack_into("<IBBHI", buf, 0, len(buf) - 12, 1, 0, 21, 6)
    pad = buf[12 + 4 + 2]
    out.append({"name": f"CALL cmd 21 id 6 with (u32,ndarray) (7, int32 [1,2,3]) (binary codec, pad {pad})",
                "layout": "binary frame", "schema": "(u32,ndarray)", "dtype": "int32", "shape": [3],
                "value": [7, [1, 2, 3]], "kind": 1, "cmd": 21, "id": 6, "hex": bytes(buf).hex()})
    return out


def dynamic_section():
    """The dynamic layer on command 0xFF10: msgpack [releases, calls, fetch].

    One session against examples/sim_server, in order on one connection
    (python/tests/test_sim.py replays it and compares every answer byte for
    byte): each REPLY or ERROR has the id of its CALL."""
    import msgpack

    def f(name, kind, cid, value, **extra):
        d = frame(name, kind, 0xFF10, cid, msgpack.packb(value, use_bin_type=True), **extra)
        d["msgpack"] = value
        return d

    def envelope(refusals, unlisted, value):
        data = msgpack.packb([refusals, unlisted, value], use_bin_type=True)
        return b"\xc9" + struct.pack(">I", len(data)) + b"\x03" + data

    action = {b"nd": True, b"type": "<f4", b"kind": b"", b"shape": [1], b"data": struct.pack("<f", 0.5)}
    pow_call = [1, 1, ["math", [0, "pow"]], [3, 2], {}]
    in_use = ("slot {} is in use (it holds {}): a call must name a free slot, one never used on this "
              "connection or released (by an earlier request or by this one's releases); the request was "
              "refused and none of its 1 call ran")
    pow_doc = {"kind": "function", "name": "math.pow", "doc": "x to the power y, as a float.",
               "params": [{"name": "x", "kind": "positional_or_keyword"},
                          {"name": "y", "kind": "positional_or_keyword"}]}
    step = [[1], [[1, 3, [2, [0, "step"]], [action], {}]], None]
    out = [
        f("CALL math.pow(3, 2) into slot 1 and fetch slot 1, in one request", 1, 1, [[], [pow_call], [1]]),
        f("REPLY 9.0 (math.pow returns a float64, as in docs/DYNAMIC.md)", 2, 1, 9.0),
        f("NOTIFY (as clients pipeline) sim.make('pendulum') into slot 2", 4, 0,
          [[], [[1, 2, ["sim", [0, "make"]], ["pendulum"], {}]], None]),
        frame("NOTIFY <slot 2>.step(float32 array [0.5]) into slot 3, releasing slot 1 first "
              "(the action is a msgpack-numpy map: bin keys, <f4, shape [1])", 4, 0xFF10, 0,
              msgpack.packb(step, use_bin_type=True),
              array={"dtype": "<f4", "shape": [1], "value": [0.5]}),
        f("CALL fetch <slot 3>[4] (partial materialize: only the info map of step's 5-tuple)", 1, 2,
          [[], [], [3, [1, 4]]]),
        f("REPLY {'steps': 1}", 2, 2, {"steps": 1}),
        f("CALL fetch <slot 2> (an object)", 1, 3, [[], [], [2]]),
        frame("REPLY an object as a handle: ext type 2, u64 big-endian 4294967296", 2, 0xFF10, 3,
              msgpack.packb(msgpack.ExtType(2, struct.pack(">Q", 1 << 32)))),
        f("CALL describe math.pow (the step [2, nil])", 1, 4, [[], [], ["math", [0, "pow"], [2, None]]]),
        f("REPLY the description of math.pow", 2, 4, pow_doc),
        f("NOTIFY math.pow(2, 1) into slot 3, which is in use: refused, nothing runs", 4, 0,
          [[], [[1, 3, ["math", [0, "pow"]], [2, 1], {}]], None]),
        f("CALL a barrier (fetch nil): collects the refusal", 1, 5, [[], [], None]),
        frame("REPLY nil in the envelope (ext 32, type 3): [[refusal of request 7], 0, nil]", 2, 0xFF10, 5,
              envelope([{"request": 7, "calls": 1, "slots": [3], "code": 2,
                         "message": in_use.format(3, "sim.make().step()")}], 0, None)),
        f("CALL math.pow(2, 1) into slot 2, which is in use: its own ERROR, nothing runs", 1, 6,
          [[], [[1, 2, ["math", [0, "pow"]], [2, 1], {}]], [2]]),
    ]
    msg = in_use.format(2, "sim.make()")
    out.append(frame("ERROR 2 BAD_PAYLOAD: slot 2 is in use", 3, 0xFF10, 6,
                     struct.pack("<H", 2) + msg.encode(), code=2, message=msg))
    return out


def main():
    with open(SRC, encoding="utf-8") as f:
        shared = json.load(f)
    out = dict(shared)  # about, frames, codecs, invalid_requests verbatim, in order
    out["conventions"] = CONVENTIONS
    out["errors"] = errors()
    out["builtin_replies"] = builtin_replies()
    out["codec_edges"] = codec_edges()
    out["ndarray"] = ndarray_section()
    out["dynamic"] = dynamic_section()
    extra = os.environ.get("FRAMERPC_VECTOR_EXTRA")
    if extra:
        for k, v in json.loads(extra).items():
            out[k] = v
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    assert math.isnan(float("nan"))
    main()
