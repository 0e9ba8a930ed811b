"""Remote objects that feel local: dir(), help(), inspect.signature(), hasattr
and argument checks from what sim_server declares (describe), and
framerpc.remote_module. Round trips are counted with the client's frame
counters."""

import inspect
import pydoc
import sys
import time
import types

import numpy as np
import pytest

import framerpc
from framerpc.dynamic import RemoteFunction, _check_call, _signature

from test_sim import c, sim_addr  # noqa: F401 - fixtures


def calls(client):
    return client.calls_sent


def test_dir_lists_the_declared_members_fetched_once(c):  # noqa: F811
    sim = c.root("sim")
    n = calls(c)
    assert dir(sim) == ["echo", "make"]
    assert calls(c) == n + 1  # one describe
    assert dir(sim) == ["echo", "make"] and dir(c.root("sim")) == ["echo", "make"]
    assert calls(c) == n + 1  # kept for the connection
    env = sim.make("pendulum")
    assert dir(env) == ["get_language_instruction", "name", "render", "reset", "step"]
    assert dir(env.step) == [] and dir(c.root("math").pi) == []
    with framerpc.connect(c.address, timeout=10) as other:  # another connection asks again
        m = calls(other)
        assert dir(other.root("sim")) == ["echo", "make"] and calls(other) == m + 1


def test_hasattr_true_only_for_declared_members_once_known(c):  # noqa: F811
    sim = c.root("sim")
    dir(sim)
    framerpc.describe(c.root("math"))
    n, notes = calls(c), c.notifies_sent
    assert hasattr(sim, "make") and hasattr(sim, "echo")
    assert not hasattr(sim, "nope")  # refused locally
    with pytest.raises(AttributeError) as e:
        sim.mkae
    assert "has no member 'mkae'" in str(e.value) and "echo, make" in str(e.value)
    env = sim.make("pendulum")
    early = env.reset  # before the description: a plain proxy (made once, then kept on env)
    assert type(early) is framerpc.dynamic.Proxy and env.reset is early and env.rest is env.rest
    framerpc.describe(env)
    assert hasattr(env, "reset") and hasattr(env, "name") and not hasattr(env, "rest")
    assert isinstance(env.reset, RemoteFunction) and not hasattr(env.reset, "anything")
    assert not hasattr(c.root("math"), "tau") and hasattr(c.root("math"), "pi")
    assert calls(c) == n + 1  # the object's description, nothing else
    assert c.notifies_sent == notes  # the make() call went with it, in the same request
    # a proxy whose description is not known stays lazy: nothing is asked on attribute access
    fresh = sim.make("cartpole")
    n = calls(c)
    assert hasattr(fresh, "whatever") and calls(c) == n


def test_signatures_and_local_argument_checks(c):  # noqa: F811
    math = c.root("math")
    dir(math)
    assert str(inspect.signature(math.pow)) == "(x, y)"
    env = c.root("sim").make("pendulum")
    assert str(inspect.signature(env.reset)) == "(seed=None)"
    assert str(inspect.signature(env.step)) == "(action)"  # known with env's description
    n, notes = calls(c), c.notifies_sent
    with pytest.raises(TypeError, match=r"math\.pow\(x, y\): missing a required argument: 'y'"):
        math.pow(2)
    with pytest.raises(TypeError, match="too many positional arguments"):
        math.pow(1, 2, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        math.pow(1, 2, z=3)
    with pytest.raises(TypeError, match="missing a required argument: 'action'"):
        env.step()
    with pytest.raises(TypeError, match="not callable"):
        math.pi()
    assert (calls(c), c.notifies_sent) == (n, notes)  # nothing sent
    assert framerpc.materialize(math.pow(y=3, x=2)) == 8.0
    obs = framerpc.materialize(env.reset(seed=2))
    assert obs.shape == (3,)
    r = env.step(np.array([0.5], np.float32))
    assert framerpc.materialize(r[4]) == {"steps": 1}


def test_keyword_only_and_var_keyword_parameters():
    # sim_server declares none of these; the signature is built as describe reports them
    d = {"kind": "function", "name": "m.f", "doc": "F.", "params": [
        {"name": "a", "kind": "positional_or_keyword"},
        {"name": "b", "kind": "positional_or_keyword", "default": 2},
        {"name": "c", "kind": "keyword_only"},
        {"name": "d", "kind": "keyword_only", "default": None},
        {"name": "kwargs", "kind": "var_keyword"}]}
    sig = _signature(d)
    assert str(sig) == "(a, b=2, *, c, d=None, **kwargs)"
    with pytest.raises(TypeError, match=r"m\.f\(a, b=2, \*, c, d=None, \*\*kwargs\): too many positional"):
        _check_call(_Labelled(), d, (1, 2, 3), {})  # c is keyword-only
    with pytest.raises(TypeError, match="missing a required argument: 'c'"):
        _check_call(_Labelled(), d, (1, 2), {})
    _check_call(_Labelled(), d, (1,), {"c": 3, "anything": 4})  # collected by **kwargs
    assert _signature({**d, "params": [{"name": "x", "kind": "var_positional"}]}) is None  # unknown: unchecked
    assert _signature({"kind": "module", "name": "m"}) is None


class _Labelled:
    def _label(self):
        return "m.f"


def test_help_shows_docs_and_parameters(c):  # noqa: F811
    text = pydoc.render_doc(c.root("sim"), renderer=pydoc.plaintext)
    assert "Simulated environments: make(name)" in text
    assert "make(name)\n" in text and "A new environment, private to this connection." in text
    env = c.root("sim").make("pendulum")
    text = pydoc.render_doc(env, renderer=pydoc.plaintext)
    assert "remote Env object" in text and "reset(seed=None)" in text
    text = pydoc.render_doc(env.step, renderer=pydoc.plaintext)
    assert text.splitlines()[2].startswith("step(action)")  # a routine: its signature line
    assert "Applies an action" in text
    assert c.root("math").pow.__doc__.startswith("math.pow(x, y)\n\nx to the power y")  # a plain proxy's
    dir(c.root("math"))
    pow_ = c.root("math").pow
    assert isinstance(pow_, RemoteFunction) and pow_.__doc__ == "x to the power y, as a float."  # a function's
    assert "a remote float value" in c.root("math").pi.__doc__


def test_remote_module(c):  # noqa: F811
    real_math = sys.modules["math"]
    m = framerpc.remote_module(c, "math")
    assert isinstance(m, types.ModuleType) and m.__name__ == "math"
    assert sys.modules["math"] is real_math  # not registered unless asked
    assert m.__all__ == ["pi", "pow"] and m.pi == pytest.approx(3.141592653589793)
    assert isinstance(m.pow, RemoteFunction) and inspect.isroutine(m.pow)
    assert str(inspect.signature(m.pow)) == "(x, y)"
    assert framerpc.materialize(m.pow(2, 10)) == 1024.0
    with pytest.raises(TypeError):
        m.pow(2)
    assert not hasattr(m, "tau")
    text = pydoc.render_doc(m, renderer=pydoc.plaintext)
    assert "FUNCTIONS\n    pow(x, y)\n        x to the power y, as a float." in text
    assert "pi = 3.14159" in text
    sim = framerpc.remote_module(c, "sim")
    assert sim.__doc__.startswith("Simulated environments")
    env = sim.make("reacher")
    assert framerpc.materialize(env.reset()).shape == (6,)
    os_ = framerpc.remote_module(c, "os", register="remote_os")
    try:
        import remote_os
        assert remote_os is os_ and os_.name == "posix"
        assert isinstance(os_.path, types.ModuleType) and os_.path.sep == "/" and os_.path.__name__ == "os.path"
    finally:
        del sys.modules["remote_os"]
    with pytest.raises(framerpc.RemoteError):
        framerpc.remote_module(c, "nosuch")


def test_chained_calls_stay_one_way_once_described(c):  # noqa: F811
    env = c.root("sim").make("pendulum")
    framerpc.describe(env)  # known: calls are checked locally, and still sent one way
    n, notes = calls(c), c.notifies_sent
    r = None
    for _ in range(5):
        r = env.step(np.array([0.5], np.float32))
    assert (calls(c), c.notifies_sent, c.session.pending) == (n, notes, 5)  # batched, nothing waited
    assert framerpc.materialize(r[4]) == {"steps": 5}
    assert (calls(c), c.notifies_sent) == (n + 1, notes)  # the five calls and the fetch: one CALL


def test_aio_describe_then_local_checks(sim_addr):  # noqa: F811
    import asyncio

    from framerpc import aio

    async def main():
        async with await aio.connect(sim_addr, timeout=10) as a:
            math = a.root("math")
            with pytest.raises(framerpc.FramerpcError, match="await framerpc.aio.describe"):
                dir(math)  # cannot wait here
            d = await aio.describe(math)
            assert [m["name"] for m in d["members"]] == ["pi", "pow"]
            assert dir(math) == ["pi", "pow"] and not hasattr(math, "tau")
            assert str(inspect.signature(math.pow)) == "(x, y)"
            with pytest.raises(TypeError, match="missing a required argument"):
                math.pow(1)
            assert await aio.materialize(math.pow(2, 3)) == 8.0

    asyncio.run(asyncio.wait_for(main(), 20))


def test_descriptions_do_not_survive_a_reconnect(sim_addr):  # noqa: F811
    with framerpc.connect(sim_addr, timeout=10, reconnect=framerpc.Reconnect(initial_delay=0.01)) as c2:
        dir(c2.root("math"))
        assert not hasattr(c2.root("math"), "tau")
        c2._conn.t.close()  # the connection breaks; the client dials again
        deadline = time.monotonic() + 10
        while c2.generation == 0 or not c2.is_connected():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        fresh = c2.root("math")
        assert c2.session.known(fresh) is None  # a new connection: asked again when needed
        n = c2.calls_sent
        assert dir(fresh) == ["pi", "pow"] and c2.calls_sent == n + 1


def test_aio_opens_the_refusal_envelope(sim_addr):  # noqa: F811
    import asyncio

    import msgpack

    from framerpc import aio

    async def main():
        async with await aio.connect(sim_addr, timeout=10) as a:
            env = a.root("sim").make("pendulum")  # slot 1
            # a hand-made NOTIFY reusing slot 1: refused whole, reported with the next reply
            a.notify_raw(0xFF10, msgpack.packb([[], [[1, 1, ["math", [0, "pow"]], [2, 1], {}]], None]))
            assert await aio.materialize(a.root("math").pow(2, 2)) == 4.0  # the value, not the envelope
            (r,) = a.session.take_refusals()
            assert r["code"] == 2 and r["message"].startswith("slot 1 is in use")
            del env

    asyncio.run(asyncio.wait_for(main(), 20))
