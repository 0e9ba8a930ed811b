"""Reproducers: where the Rust dynamic layer disagrees with docs/DYNAMIC.md.

    python python/tools/dynamic_doc_disagreements.py target/debug/examples/sim_server

Starts sim_server on 127.0.0.1:0 and talks raw frames (msgpack + socket only).
"""
import msgpack, socket, struct, subprocess, sys
srv = subprocess.Popen([sys.argv[1], "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
host, port = srv.stdout.readline().split()[-1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
def frame(kind, cid, obj):
    p = msgpack.packb(obj, use_bin_type=True)
    s.sendall(struct.pack("<IBBHI", len(p), kind, 0, 0xFF10, cid) + p)
def reply():
    n, kind, _, _, _ = struct.unpack("<IBBHI", s.recv(12, socket.MSG_WAITALL))
    body = s.recv(n, socket.MSG_WAITALL) if n else b""
    if kind == 3:
        return ("ERROR", struct.unpack("<H", body[:2])[0], body[2:].decode())
    return msgpack.unpackb(body, raw=False)
ND = lambda x: {b"nd": True, b"type": "<f4", b"kind": b"", b"shape": [1], b"data": struct.pack("<f", x)}
# 1. "a call past the bound stores the 'handle table full' error instead of running" -- it runs.
frame(4, 0, [[], [[1, 1, ["sim", [0, "make"]], ["pendulum"], {}]], None])          # env = slot 1
frame(4, 0, [[], [[1, i, ["math", [0, "pow"]], [2, 1], {}] for i in range(2, 1025)], None])  # fill to 1024
frame(1, 1, [[], [[1, 2000, [1, [0, "step"]], [ND(0.5)], {}]], [2000]])             # past the bound
print("call past the bound:", reply())
frame(1, 2, [list(range(2, 1025)), [[1, 2001, [1, [0, "step"]], [ND(0.5)], {}]], [2001, [1, 4]]])
print("next step's info (doc: steps 1):", reply())
# 2. "fetch: NOTIFY: must be nil" -- a NOTIFY with a fetch is accepted, and fetching an object
#    in it takes a server handle the client never learns (freed only when the connection ends).
for _ in range(1100):
    frame(4, 0, [[], [], [1]])
frame(1, 3, [[], [[1, 3000, ["math", [0, "pow"]], [2, 1], {}]], [3000]])
print("after 1100 NOTIFYs fetching env:", reply())
frame(1, 4, [[], [], [1]])
print("fetch env by CALL:", reply())
srv.kill()
