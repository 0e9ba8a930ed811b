#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target to tests/fuzz_corpus/<target>/
from docs/vectors.json (valid frames, codec values, msgpack requests and
ndarrays) plus a few hand-made edge cases. Run from the repository root;
rerun after docs/vectors.json changes. Files are named seed-*; inputs found
by fuzzing are kept beside them under other names."""
import json
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fuzz_corpus")
v = json.load(open(os.path.join(ROOT, "docs", "vectors.json")))


def slug(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:60]


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + slug(name)), "wb") as f:
        f.write(data)


frames = [(e["name"], bytes.fromhex(e["hex"]))
          for k in ("frames", "errors", "builtin_replies", "dynamic")
          for e in v[k]]
frames += [(e["name"], bytes.fromhex(e["hex"])) for e in v["ndarray"]
           if e["layout"] == "binary frame"]

# frame_reader: [limit/split byte, chunk-size count, sizes..., stream]
for name, f in frames:
    write("frame_reader", name, bytes([7, 0]) + f)
stream = b"".join(f for _, f in frames)
write("frame_reader", "all frames back to back", bytes([7 | (5 << 3), 3, 1, 0x85, 0x3f]) + stream)
write("frame_reader", "all frames, limit 64", bytes([2, 2, 0x02, 0xc7]) + stream)
write("frame_reader", "4 GiB claim", bytes([7, 0]) + b"\xff\xff\xff\xff\x01\x00\x03\x00\x09\x00\x00\x00")
write("frame_reader", "big frame truncated", bytes([6, 1, 0x3f]) + struct.pack("<IBBHI", 400_000, 2, 0, 1, 2) + b"x" * 200)
write("frame_reader", "unknown kind", bytes([7, 0]) + b"\x00\x00\x00\x00\x07\x00\x03\x00\x02\x00\x00\x00")
write("frame_reader", "unknown flags", bytes([7, 0]) + b"\x00\x00\x00\x00\x01\x04\x03\x00\x02\x00\x00\x00")

# codecs: one encoded value (or invalid request) per file
for k in ("codecs", "codec_edges", "invalid_requests"):
    for i, e in enumerate(v[k]):
        write("codecs", f"{k}-{i}-{e['codec']}", bytes.fromhex(e["hex"]))

# msgpack_value and dynamic_request: msgpack payloads (frame minus header)
for e in v["dynamic"]:
    p = bytes.fromhex(e["hex"])[12:]
    write("msgpack_value", e["name"], p)
    write("dynamic_request", e["name"], p)
for e in v["ndarray"]:
    if e["layout"] != "binary frame":
        write("msgpack_value", e["name"], bytes.fromhex(e["hex"]))
write("msgpack_value", "deep nesting", b"\x91" * 200 + b"\xc0")
write("msgpack_value", "array32 claiming 4 billion", b"\xdd\xff\xff\xff\xff")
write("msgpack_value", "every marker", bytes([0xc0, 0xc2, 0xc3, 0xcc, 1, 0xcd, 0, 1, 0xd0, 0xff, 0xca, 0, 0, 0, 0,
                                              0xa1, 0x61, 0xc4, 1, 0, 0xd4, 1, 0, 0x80, 0x90]))
# a request with an ext-1 reference argument: [[], [[1, 2, [1], [ext1([1, [0, "x"]])], {}]], [2]]
ref = bytes([0x92, 0x01, 0x92, 0x00, 0xa1, 0x78])
req = bytes([0x93, 0x90, 0x91, 0x95, 0x01, 0x02, 0x91, 0x01, 0x91, 0xc7, len(ref), 0x01]) + ref + bytes([0x80, 0x91, 0x02])
write("dynamic_request", "ext1 reference argument", req)
write("dynamic_request", "kwargs and index step", bytes([0x93, 0x91, 0x07, 0x91, 0x95, 0x01, 0x03, 0x92, 0xa1, 0x74, 0x92, 0x01, 0xc0,
                                                         0x90, 0x81, 0xa1, 0x6b, 0x2a, 0xc0]))

# describe: [mode, ...]: even mode = a whole request (mode % 4 == 0: as a CALL), odd mode = steps
# (a msgpack array) before a describe step on base sim (mode 1), slot 1 (3), "nope" (5), 7 (7)
for e in v["dynamic"]:
    if e["kind"] in (1, 4):
        write("describe", "request " + e["name"], bytes([0 if e["kind"] == 1 else 2]) + bytes.fromhex(e["hex"])[12:])
write("describe", "root", bytes([1, 0x90]))
write("describe", "object in slot 1", bytes([3, 0x90]))
write("describe", "method of slot 1", bytes([3, 0x91, 0x92, 0x00, 0xa4]) + b"step")
write("describe", "function make", bytes([1, 0x91, 0x92, 0x00, 0xa4]) + b"make")
write("describe", "submodule and constant", bytes([1, 0x92, 0x92, 0x00, 0xa4]) + b"path" + bytes([0x92, 0x00, 0xa3]) + b"sep")
write("describe", "describe of a description", bytes([1, 0x92, 0x92, 0x02, 0xc0, 0x92, 0x01, 0xa7]) + b"members")
write("describe", "unknown root", bytes([5, 0x90]))
write("describe", "unknown handle", bytes([7, 0x90]))
write("describe", "dunder", bytes([3, 0x91, 0x92, 0x00, 0xa9]) + b"__class__")

# ndarray: msgpack-numpy maps and binary-codec payloads
for e in v["ndarray"]:
    data = bytes.fromhex(e["hex"])
    if e["layout"] == "binary frame":
        data = data[12:]
        if data[:1] != b"\x09":  # (u32, ndarray): drop the u32
            data = data[4:]
    write("ndarray", e["name"], data)


def binary(code, shape, data, pad=None):
    if pad is None:
        pad = (8 - (4 + 8 * len(shape)) % 8) % 8
    return bytes([code, len(shape), pad, 0]) + b"".join(struct.pack("<Q", d) for d in shape) + b"\0" * pad + data


write("ndarray", "binary f64 1-d", binary(10, [2], struct.pack("<2d", 1.0, 2.0)))
write("ndarray", "binary bool 2x2", binary(0, [2, 2], bytes([1, 0, 2, 1])))
write("ndarray", "binary zero dims", binary(5, [], struct.pack("<i", -7)))
write("ndarray", "binary shape with a zero and a huge dim", binary(9, [0, 1 << 62], b""))
write("ndarray", "binary 2^40 elements claimed", binary(9, [1 << 40], b""))
