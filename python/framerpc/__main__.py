"""Command line: ``python -m framerpc ADDR list | call NAME [JSON ...] | ping | status``.

``list`` marks, on a server that shares a device, which commands need it
and which are shared.

ADDR is ``tcp://HOST:PORT``, ``HOST:PORT`` or ``ws://HOST:PORT/PATH``.
``call`` takes one JSON value per argument (or one JSON array for a tuple
schema), converts them through the command's request schema (bytes as hex
strings; floats may be "nan", "inf", "-inf") and prints the reply as JSON.
"""

import argparse
import json
import sys

from . import FramerpcError, connect


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m framerpc", description=__doc__.split("\n\n")[0])
    p.add_argument("addr", help="tcp://HOST:PORT, HOST:PORT or ws://HOST:PORT/PATH")
    p.add_argument("--token", help="auth token (default: FRAMERPC_TOKEN)")
    p.add_argument("--timeout", type=float, default=30.0, help="call timeout in seconds (default 30)")
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("list", help="print the command table")
    c = sub.add_parser("call", help="call a command with JSON arguments")
    c.add_argument("name", help="command name or id")
    c.add_argument("args", nargs="*", help="JSON values")
    sub.add_parser("ping", help="round trip to the server")
    sub.add_parser("status", help="admission status")
    a = p.parse_args(argv)
    try:
        cl = connect(a.addr, token=a.token, timeout=a.timeout)
    except (FramerpcError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if a.what == "list":
            rows = cl.list()
            shared = None
            if cl.status().max:  # a device shared by admission: which commands need it
                try:
                    shared = set(cl.shared_commands())
                except FramerpcError:  # a server from before shared commands
                    pass
            w = max([len(r.name) for r in rows] + [4])
            wr = max([len(r.request) for r in rows] + [7])
            wp = max([len(r.response) for r in rows] + [8])
            print(f"{'id':>6}  {'name':<{w}}  {'request':<{wr}}  " + ("response" if shared is None else
                                                                     f"{'response':<{wp}}  device"))
            for r in rows:
                line = f"{r.id:>6}  {r.name:<{w}}  {r.request:<{wr}}  "
                if shared is None:
                    print(line + r.response)
                else:
                    print(line + f"{r.response:<{wp}}  " + ("shared" if r.id in shared else "needs it"))
        elif a.what == "call":
            name = int(a.name, 0) if a.name.isdigit() else a.name
            cmd = cl._command(name)
            try:
                jargs = [json.loads(x) for x in a.args]
            except json.JSONDecodeError as e:
                print(f"error: an argument is not JSON ({e}); quote strings: '\"bob\"'", file=sys.stderr)
                return 2
            req = cmd.req
            if cmd.arity == 0:
                args = ()
            elif cmd.arity > 0:
                if len(jargs) == 1 and isinstance(jargs[0], list) and len(jargs[0]) == cmd.arity:
                    jargs = jargs[0]
                if len(jargs) != cmd.arity:
                    raise_arity(cmd, len(jargs))
                args = req.from_json(list(jargs))
            else:
                if len(jargs) != 1:
                    raise_arity(cmd, len(jargs))
                args = (req.from_json(jargs[0]),)
            value = cl.call(cmd.info.id, *args)
            print(json.dumps(cmd.resp.to_json(value), ensure_ascii=False))
        elif a.what == "ping":
            import time
            t = time.perf_counter()
            cl.ping()
            print(f"pong in {(time.perf_counter() - t) * 1e3:.2f} ms")
        elif a.what == "status":
            s = cl.status()
            print(json.dumps(s._asdict()))
        return 0
    except (FramerpcError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        cl.close()


def raise_arity(cmd, n):
    from .errors import EncodeError
    raise EncodeError(f"{cmd.info.name} (id {cmd.info.id}) expects {cmd.info.request} -> {cmd.info.response}: "
                      f"got {n} JSON argument(s)")


if __name__ == "__main__":
    sys.exit(main())
