"""framerpc.aio against the real servers and a scripted peer."""

import asyncio
import threading

import numpy as np
import pytest

import framerpc
import framerpc.aio as aio
from framerpc import frame as fr

from conftest import IO_TIMEOUT, ExampleServer


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_typed_calls_and_concurrency(greet):
    async def main():
        async with await aio.connect(greet, timeout=IO_TIMEOUT) as c:
            assert await c.call("hello", "bob") == "hello bob"
            assert await c.call("add_2_words", 0xFFFFFFFF, 3) == 2
            assert await c.call("func_no_args") is None
            assert await c.ping(b"abc") == b"abc"
            assert (await c.status()).waiting == 0
            assert [r.name for r in await c.list()][:2] == ["hello", "goodbye"]
            got = await asyncio.gather(*(c.call("add_2_words", i, 1) for i in range(200)))
            assert got == [i + 1 for i in range(200)]
            with pytest.raises(framerpc.UnknownCommand):
                await c.call_raw(777)
            with pytest.raises(framerpc.EncodeError, match=r"\(u32,u32\)"):
                await c.call("add_2_words", -1, 0)
            big = bytes(range(256)) * 4096
            assert await c.ping(big) == big
        assert c.closed
    run(main())


def test_proxies_and_materialize():
    s = ExampleServer("sim_server", ["127.0.0.1:0"])
    try:
        async def main():
            async with await aio.connect(s.value("listening on "), timeout=IO_TIMEOUT) as c:
                env = c.root("sim").make("pendulum")
                obs = await aio.materialize(env.reset(seed=1))
                np.testing.assert_allclose(obs, [0.1, 0.2, 0.3], rtol=1e-6)
                calls0 = c.calls_sent
                r = None
                for _ in range(10):
                    r = env.step(np.array([0.5], np.float32))
                notes0 = c.notifies_sent
                assert c.session.pending == 10
                assert isinstance(await aio.materialize(r[1]), float)
                assert c.calls_sent - calls0 == 1  # ten calls, one round trip
                assert c.notifies_sent == notes0  # the calls rode in the fetch's request
                # calls nobody fetches go out as one NOTIFY on the loop's next turn
                for _ in range(3):
                    r = env.step(np.array([0.5], np.float32))
                assert c.session.pending == 3
                await asyncio.sleep(0)
                assert (c.session.pending, c.notifies_sent) == (0, notes0 + 1)
                # any other frame takes them first: here a raw NOTIFY that names the slot just used
                env2 = c.root("sim").make("pendulum")
                c.notify_raw(0xFF10, framerpc.dynamic.Session.pack(c.session, [[], [
                    [1, env2._base.id, ["math", [0, "pow"]], [2, 1], {}]], None]))
                assert await aio.materialize(env2.name) == "pendulum"
                (refused,) = c.session.take_refusals()
                assert refused["message"].startswith(f"slot {env2._base.id} is in use")
                assert await aio.materialize(c.root("math").pow(3, 2)) == 9
                with pytest.raises(framerpc.RemoteError, match="unknown environment"):
                    await aio.materialize(c.root("sim").make("unicycle").reset())
                await c.sync()
                assert await aio.materialize(5) == 5
        run(main())
    finally:
        s.stop()


def test_cancelled_task_and_timeout_send_cancel(fake):
    box = {}

    def peer():
        fake.accept()
        kind, cmd, cid, p = fake.recv()
        assert (kind, cmd, p) == (fr.CALL, 3, b"slow")
        box["cancel1"] = fake.recv()
        kind, cmd, cid2, p = fake.recv()
        box["cancel2"] = fake.recv()
        box["ids"] = (cid, cid2)
        kind, cmd, cid3, p = fake.recv()
        fake.send(fr.REPLY, 3, cid, b"late")
        fake.send(fr.REPLY, 3, cid3, b"mine")

    t = threading.Thread(target=peer)
    t.start()

    async def main():
        c = await aio.connect(fake.addr, timeout=IO_TIMEOUT)
        task = asyncio.ensure_future(c.call_raw(3, b"slow"))
        while c.calls_sent == 0:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(framerpc.CallTimeout):
            await c.call_raw(3, b"slow too", timeout=0.05)
        assert await c.call_raw(3, b"next") == b"mine"
        assert c.stray_replies == 1
        await c.close()

    run(main())
    t.join(IO_TIMEOUT)
    cid, cid2 = box["ids"]
    assert box["cancel1"] == (fr.CANCEL, 3, cid, b"")
    assert box["cancel2"] == (fr.CANCEL, 3, cid2, b"")


def test_async_handlers_serve_the_server():
    s = ExampleServer("agents_server", ["127.0.0.1:0"])
    try:
        async def main():
            news = asyncio.Queue()
            h = framerpc.Handlers()

            @h.command(10, "work", "u32", "u32")
            async def work(n, ctx):
                await ctx.client.call("progress", "aio", 50)  # calls the server back
                return n * (n + 1) // 2

            @h.command(11, "news", "str")
            def on_news(text):
                news.put_nowait(text)

            async with await aio.connect(s.value("listening on "), timeout=IO_TIMEOUT, handlers=h) as c:
                await c.call("hello", "aio", 10)
                while True:
                    text = await asyncio.wait_for(news.get(), IO_TIMEOUT)
                    if text.startswith("aio:"):
                        assert text == "aio: 1 + ... + 10 = 55"
                        break
        run(main())
        s.wait_line("progress aio 50%")
    finally:
        s.stop()


def test_token_from_environment(fake, monkeypatch):
    monkeypatch.setenv("FRAMERPC_TOKEN", "envtok")
    box = {}

    def peer():
        fake.accept()
        box["auth"] = fake.recv()
        fake.send(fr.REPLY, fr.AUTH, box["auth"][2])

    t = threading.Thread(target=peer)
    t.start()

    async def main():
        c = await aio.connect(fake.addr, timeout=IO_TIMEOUT)
        await c.close()

    run(main())
    t.join(IO_TIMEOUT)
    assert box["auth"][:2] == (fr.CALL, fr.AUTH) and box["auth"][3] == b"envtok"
    with pytest.raises(ValueError, match="raw TCP"):
        run(aio.connect("ws://127.0.0.1:1/x"))
