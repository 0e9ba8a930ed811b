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
        "option as null or the value; unit as null; ndarray see the ndarray section"
    ),
    "errors": "ERROR frames: payload is u16 code then the UTF-8 message; fields as frames plus code and message",
    "builtin_replies": "frames of the library commands; value is the decoded payload where it has structure",
    "codec_edges": "same fields as codecs: codec (a schema string), value, hex",
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
    ]


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
    return c


def main():
    with open(SRC, encoding="utf-8") as f:
        shared = json.load(f)
    out = dict(shared)  # about, frames, codecs, invalid_requests verbatim, in order
    out["conventions"] = CONVENTIONS
    out["errors"] = errors()
    out["builtin_replies"] = builtin_replies()
    out["codec_edges"] = codec_edges()
    # keep sections added by later layers (ndarray, dynamic) if the file has them
    if os.path.exists(OUT):
        with open(OUT, encoding="utf-8") as f:
            old = json.load(f)
        for k in ("ndarray", "dynamic"):
            if k in old and k not in out:
                out[k] = old[k]
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
