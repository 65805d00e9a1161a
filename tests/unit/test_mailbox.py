"""The runner's mailbox and flag keep the asyncio.Queue/Event semantics the runner relies on."""

from __future__ import annotations

import asyncio

from corral.runtime.mailbox import Flag, Mailbox, any_done


def test_mailbox_is_fifo_and_ready_takes_nothing_out() -> None:
    async def go() -> list[str]:
        box: Mailbox[str] = Mailbox()
        ready = box.ready()
        assert not ready.done() and not box
        box.put("a")
        box.put("b")
        assert ready.done() and len(box) == 2
        assert box.ready().done()  # items waiting: ready at once, still two
        got = [box.pop(), await box.get()]
        reader = asyncio.ensure_future(box.get())
        await asyncio.sleep(0)
        assert not reader.done()
        box.put("c")
        got.append(await reader)
        return got

    assert asyncio.run(go()) == ["a", "b", "c"]


def test_flag_wakes_every_waiter_even_if_cleared_before_they_run() -> None:
    async def go() -> None:
        flag = Flag()
        waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
        await asyncio.sleep(0)
        waiters[0].cancel()  # one cancelled waiter does not cancel the others
        await asyncio.sleep(0)
        flag.set()
        flag.clear()
        await asyncio.wait_for(asyncio.gather(*waiters[1:]), 1)
        assert waiters[0].cancelled()
        flag.set()
        await asyncio.wait_for(flag.wait(), 1)  # already set: returns at once

    asyncio.run(go())


def test_any_done_wakes_on_the_first_and_unhooks_from_the_rest() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        a, b = loop.create_future(), loop.create_future()
        woken = any_done(a, b)
        await asyncio.sleep(0)
        assert not woken.done()
        b.set_result(1)
        await asyncio.wait_for(woken, 1)
        assert not a.done()
        assert a.remove_done_callback(lambda _: None) == 0  # nothing left hooked on a
        cancelled = any_done(a)
        cancelled.cancel()
        await asyncio.sleep(0)
        a.set_result(2)  # the cancelled waiter's hook is gone: no error, nothing to wake
        assert any_done(a).done()

    asyncio.run(go())
